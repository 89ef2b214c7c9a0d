/** The root pino logger and the redaction every component shares. */
import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino';
import { errorCode, errorMessage } from './errors.js';
import { EventEmitter } from 'node:events';
import { write, writeSync } from 'node:fs';

export type { Logger };

/** The levels AMBIT_LOG_LEVEL accepts (pino's, and `silent`). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const satisfies readonly LevelWithSilent[];
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Paths whose values are replaced before any line is written: keys, tokens, authorization headers. */
export const REDACT_PATHS = [
  'privateKey',
  'key',
  '*.privateKey',
  '*.key',
  '*.keyPem',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
];

export interface LoggerOptions {
  level?: LevelWithSilent;
  name?: string;
  /** Where lines go; defaults to stderr so stdout stays for command output. */
  destination?: DestinationStream;
}

/** Bytes of log lines gathered before one write(2), and the longest a line waits for it. */
const BUFFER_BYTES = 4096;
const FLUSH_MS = 100;

export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      ...(opts.name ? { name: opts.name } : {}),
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: serializeError },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? stderrDestination(),
  );
}

let sharedStderr: DestinationStream | undefined;

/** Flush ticks after the last line: a flush that meets a write in progress does nothing, so a few more follow. */
const FLUSH_TICKS_AFTER_LAST_LINE = 10;

/** The process's one stderr destination (bufferedDestination), shared by every logger made here. */
function stderrDestination(): DestinationStream {
  sharedStderr ??= bufferedDestination(2);
  return sharedStderr;
}

/** Live buffered destinations; what each still holds is written synchronously when the process exits. */
const liveDestinations = new Set<BufferedFd>();
let exitHooked = false;

/**
 * Lines gathered in memory and written to `fd` in batches: one write(2) per `minLength` bytes
 * (asynchronous, one in flight at a time, partial writes and EAGAIN continued), the rest
 * synchronously at exit. sonic-boom (pino.destination) measured the byte length of its whole
 * pending buffer on every line, ~13 µs per access-log line at 4 KiB; this costs ~1.5 µs.
 */
class BufferedFd extends EventEmitter {
  private parts: string[] = [];
  private pending = 0;
  private writing = false;
  private ending = false;

  constructor(
    private readonly fd: number,
    private readonly minLength: number,
  ) {
    super();
    liveDestinations.add(this);
    if (!exitHooked) {
      exitHooked = true;
      process.once('exit', () => {
        for (const d of liveDestinations) d.flushSync();
      });
    }
  }

  write(line: string): boolean {
    this.parts.push(line);
    this.pending += line.length;
    if (this.pending >= this.minLength) this.flush();
    return true;
  }

  /** Starts writing what waits (unless a write is in flight: its end writes the rest when due). */
  flush(cb?: (err?: Error) => void): void {
    if (!this.writing && this.pending > 0) {
      const data = Buffer.from(this.parts.length === 1 ? this.parts[0]! : this.parts.join(''));
      this.parts = [];
      this.pending = 0;
      this.writing = true;
      this.writeOut(data, 0);
    }
    cb?.();
  }

  private writeOut(data: Buffer, offset: number): void {
    write(this.fd, data, offset, data.length - offset, null, (err, n) => {
      if (err && (err as NodeJS.ErrnoException).code === 'EAGAIN') {
        setTimeout(() => this.writeOut(data, offset), 10).unref();
        return;
      }
      if (!err && offset + n < data.length) return this.writeOut(data, offset + n);
      this.writing = false;
      // A log line that cannot be written is dropped; a listener (if any) hears why.
      if (err && this.listenerCount('error') > 0) this.emit('error', err);
      if (this.ending) {
        if (this.pending > 0) this.flush();
        else this.close();
      } else if (this.pending >= this.minLength) this.flush();
    });
  }

  /** Writes what waits now (process exit). A write in flight finishes on its own. */
  flushSync(): void {
    if (this.pending === 0) return;
    const data = Buffer.from(this.parts.join(''));
    this.parts = [];
    this.pending = 0;
    let offset = 0;
    // Bounded: each step writes at least a byte or stops at a hard error; EAGAIN is retried at most 1,000 times.
    for (let again = 0; offset < data.length && again < 1000; ) {
      try {
        offset += writeSync(this.fd, data, offset, data.length - offset);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') return;
        again++;
      }
    }
  }

  /** Writes what waits, then emits 'close' (the fd stays open: it is the caller's). */
  end(): void {
    this.ending = true;
    if (this.writing) return;
    if (this.pending > 0) this.flush();
    else this.close();
  }

  private close(): void {
    liveDestinations.delete(this);
    this.emit('close');
  }
}

/**
 * A pino destination on `fd` that gathers lines up to 4 KiB (a write per request line would cost
 * a syscall each); a timer writes what waits every 100 ms, and the rest is written synchronously
 * on exit. The timer stops flushing a second after the last line (an idle process is not woken
 * ~10 times a second to write nothing).
 */
export function bufferedDestination(fd: number): DestinationStream & { flush(): void } {
  const dest = new BufferedFd(fd, BUFFER_BYTES);
  const write = dest.write.bind(dest);
  let ticksLeft = 0;
  dest.write = (line: string): boolean => {
    ticksLeft = FLUSH_TICKS_AFTER_LAST_LINE;
    return write(line);
  };
  const timer = setInterval(() => {
    if (ticksLeft === 0) return;
    ticksLeft--;
    dest.flush();
  }, FLUSH_MS);
  timer.unref();
  dest.once('close', () => clearInterval(timer));
  return dest;
}

/**
 * A child for per-request/per-connection lines built only from known-safe fields (addresses,
 * identities, status, sizes: never headers, keys or tokens). It skips the redaction pass, which
 * walks every field of every line for the wildcard paths above.
 */
export function accessLogger(parent: Logger, bindings: Record<string, unknown> = {}): Logger {
  return parent.child({ scope: 'access', ...bindings }, { redact: [] });
}

/**
 * Writes `info` lines of one message for a logger made by accessLogger, byte for byte as pino
 * writes them (level, time, the logger's bindings, the fields, msg), with the fields serialised
 * by one JSON.stringify: pino's per-field serialisation (nested objects through its safe
 * stringifier) cost more than the rest of a waypoint request's telemetry. Only for plain
 * known-safe fields, as accessLogger: no serializers or redaction run. Checks the level per line.
 */
export function infoLineWriter(logger: Logger, msg: string): (fields: Record<string, unknown>) => void {
  const tail = `,"msg":${JSON.stringify(msg)}}\n`;
  return (fields) => {
    if (!logger.isLevelEnabled('info')) return;
    const l = logger as unknown as Record<symbol, unknown>;
    const stream = l[pino.symbols.streamSym] as DestinationStream;
    const chindings = l[pino.symbols.chindingsSym] as string;
    const body = JSON.stringify(fields);
    stream.write(`{"level":${logger.levels.values['info']},"time":"${new Date().toISOString()}"${chindings}${body.length > 2 ? ',' + body.slice(1, -1) : ''}${tail}`);
  };
}

/** Writes a preformatted line (an Envoy-format access log) to the logger's destination, when info is on. */
export function rawLineWriter(logger: Logger): (line: string) => void {
  return (line) => {
    if (!logger.isLevelEnabled('info')) return;
    ((logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as DestinationStream).write(line);
  };
}

/** An error as it appears under a log line's `err` key. */
export interface LoggedError {
  type: string;
  message: string;
  /** AmbitError code (`AMBIT_ERR_*`) or Node's (`ECONNREFUSED`): what callers branch on. */
  code?: string;
  cause?: LoggedError;
  /** Only for errors without a code: those are unexpected, and where they came from matters. */
  stack?: string;
}

/** Causes followed at most this deep (a cycle of causes must not hang the logger). */
const MAX_CAUSE_DEPTH = 4;

/**
 * The `err` serializer of every logger made here: type, message, code and the cause chain, so a
 * wrapped AmbitError keeps what it wraps. An AmbitError's `details` are left out: they may hold
 * whole objects from the network or the API (the message already names the offending value).
 * Anything thrown that is not an Error is logged by its message.
 */
export function serializeError(e: unknown, depth = 0): LoggedError {
  if (!(e instanceof Error)) return { type: typeof e, message: errorMessage(e) };
  const out: LoggedError = { type: e.name, message: e.message };
  const code = errorCode(e);
  if (code !== undefined) out.code = code;
  if (e.cause !== undefined && depth < MAX_CAUSE_DEPTH) out.cause = serializeError(e.cause, depth + 1);
  if (code === undefined && e.stack !== undefined) out.stack = e.stack;
  return out;
}

/** A logger that writes nothing, for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
