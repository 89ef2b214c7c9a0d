/** The root pino logger and the redaction every component shares. */
import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino';
import { errorCode, errorMessage } from './errors.js';

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

/**
 * A pino destination on `fd` that gathers lines up to 4 KiB (a write per request line would cost
 * a syscall each); a timer writes what waits every 100 ms, and pino writes the rest synchronously
 * on exit. The timer stops flushing a second after the last line: sonic-boom's own periodicFlush
 * writes an empty buffer through the thread pool every time, which kept idle agents waking ~20
 * times a second.
 */
export function bufferedDestination(fd: number): DestinationStream & { flush(): void } {
  const dest = pino.destination({ fd, sync: false, minLength: BUFFER_BYTES });
  const write = dest.write.bind(dest);
  let ticksLeft = 0;
  dest.write = (line: string): boolean => {
    ticksLeft = FLUSH_TICKS_AFTER_LAST_LINE;
    return write(line);
  };
  setInterval(() => {
    if (ticksLeft === 0) return;
    ticksLeft--;
    dest.flush();
  }, FLUSH_MS).unref();
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
