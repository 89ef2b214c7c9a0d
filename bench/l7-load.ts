/**
 * HTTP/1.1 load generator for the L7 section, run inside the client pod:
 *   node dist/bench/l7-load.js <host> <port> [--host-header H] [--path P] [--connections C]
 *        [--seconds S] [--warmup-seconds W] [--max-requests N]
 * Closed loop: C keep-alive connections, each sends one GET, reads the whole response, sends the
 * next. Warm-up requests are not sampled. Prints one JSON line (L7LoadResult, or {error}).
 * Bounded: stops at the deadline or after N requests, whichever comes first; each response has a
 * 5 s timeout; after 100 errors it stops.
 */
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import { quantile } from './load.js';

export interface L7LoadResult {
  mode: 'http';
  connections: number;
  /** Requests answered in the measured window (after the warm-up). */
  requests: number;
  /** Requests answered in all, warm-up included (for CPU per request). */
  totalRequests: number;
  errors: number;
  /** Seconds of the measured window; `totalSeconds` includes the warm-up. */
  seconds: number;
  totalSeconds: number;
  reqPerSec: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  statuses: Record<string, number>;
  firstError?: string;
}

const MAX_ERRORS = 100;
const MAX_HEAD = 16 * 1024;

/** Parses one response out of `buf`: its status and total length, or undefined when incomplete. */
export function parseResponse(buf: Buffer): { status: number; length: number } | undefined {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) {
    if (buf.length > MAX_HEAD) throw new Error(`response head longer than ${MAX_HEAD} bytes`);
    return undefined;
  }
  const head = buf.subarray(0, headEnd).toString('latin1');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]);
  if (!Number.isInteger(status)) throw new Error(`not an HTTP/1.x response: ${JSON.stringify(head.slice(0, 80))}`);
  const bodyStart = headEnd + 4;
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (cl) {
    const length = bodyStart + Number(cl[1]);
    return buf.length >= length ? { status, length } : undefined;
  }
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
    // Walk the chunks; bounded by the buffer length (each step advances).
    let at = bodyStart;
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at);
      if (lineEnd < 0) return undefined;
      const size = parseInt(buf.subarray(at, lineEnd).toString('latin1'), 16);
      if (!Number.isFinite(size)) throw new Error('bad chunk size');
      if (size === 0) {
        // No trailers expected: the last chunk is followed by an empty line.
        const end = buf.indexOf('\r\n', lineEnd + 2);
        return end < 0 ? undefined : { status, length: end + 2 };
      }
      at = lineEnd + 2 + size + 2;
      if (at > buf.length) return undefined;
    }
  }
  if (status === 204 || status === 304) return { status, length: bodyStart };
  throw new Error('response without content-length or chunked encoding (keep-alive impossible)');
}

function open(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, noDelay: true });
    const timer = setTimeout(() => s.destroy(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`)), timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** One connection: sends requests one at a time, calls `onResponse` per answer, until `more()` is false. */
function connectionLoop(s: Duplex, request: Buffer, more: () => boolean, onResponse: (status: number, us: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let t0 = 0n;
    let timer: NodeJS.Timeout | undefined;
    const fail = (err: Error): void => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    const send = (): void => {
      if (!more()) {
        clearTimeout(timer);
        resolve();
        return;
      }
      t0 = process.hrtime.bigint();
      clearTimeout(timer);
      timer = setTimeout(() => fail(new Error('no response within 5 s')), 5000);
      s.write(request);
    };
    s.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      let r: ReturnType<typeof parseResponse>;
      try {
        r = parseResponse(buf);
      } catch (err) {
        fail(err as Error);
        return;
      }
      if (!r) return;
      const us = Number((process.hrtime.bigint() - t0) / 1000n);
      buf = buf.subarray(r.length);
      if (buf.length > 0) {
        fail(new Error(`${buf.length} unexpected bytes after a response`));
        return;
      }
      onResponse(r.status, us);
      send();
    });
    s.once('error', fail);
    s.once('close', () => fail(new Error('connection closed by the server')));
    send();
  });
}

/**
 * Runs the closed loop. `open` makes one connection (default: TCP to host:port); the waypoint
 * micro-benchmark passes HBONE CONNECT streams instead.
 */
export async function runHttpLoad(o: { host: string; port: number; hostHeader: string; path: string; connections: number; seconds: number; warmupSeconds: number; maxRequests: number; open?: () => Promise<Duplex> }): Promise<L7LoadResult> {
  const request = Buffer.from(`GET ${o.path} HTTP/1.1\r\nHost: ${o.hostHeader}\r\nUser-Agent: ambit-bench\r\nAccept: */*\r\n\r\n`, 'latin1');
  const start = performance.now();
  const measureFrom = start + o.warmupSeconds * 1000;
  const deadline = measureFrom + o.seconds * 1000;
  const samples: number[] = [];
  const statuses: Record<string, number> = {};
  let total = 0;
  let errors = 0;
  let firstError: string | undefined;
  let measuredStart: number | undefined;
  const more = (): boolean => performance.now() < deadline && total < o.maxRequests && errors < MAX_ERRORS;
  const onResponse = (status: number, us: number): void => {
    total++;
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (performance.now() >= measureFrom) {
      measuredStart ??= performance.now();
      samples.push(us);
    }
  };
  const worker = async (): Promise<void> => {
    // A connection that fails is replaced, up to the error bound.
    while (more()) {
      let s: Duplex | undefined;
      try {
        s = await (o.open ? o.open() : open(o.host, o.port, 5000));
        await connectionLoop(s, request, more, onResponse);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      } finally {
        s?.destroy();
      }
    }
  };
  await Promise.all(Array.from({ length: o.connections }, () => worker()));
  const end = performance.now();
  const seconds = (end - (measuredStart ?? end)) / 1000;
  samples.sort((a, b) => a - b);
  return {
    mode: 'http',
    connections: o.connections,
    requests: samples.length,
    totalRequests: total,
    errors,
    seconds,
    totalSeconds: (end - start) / 1000,
    reqPerSec: seconds > 0 ? samples.length / seconds : 0,
    p50Us: quantile(samples, 0.5),
    p90Us: quantile(samples, 0.9),
    p99Us: quantile(samples, 0.99),
    statuses,
    ...(firstError !== undefined ? { firstError } : {}),
  };
}

function num(v: string | undefined, name: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${name} must be a number ${min}..${max} (got ${JSON.stringify(v)})`);
  return n;
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'host-header': { type: 'string' },
      path: { type: 'string', default: '/' },
      connections: { type: 'string', default: '8' },
      seconds: { type: 'string', default: '5' },
      'warmup-seconds': { type: 'string', default: '1' },
      'max-requests': { type: 'string', default: '1000000' },
    },
  });
  const [host, portText] = positionals;
  if (!host || !portText) throw new Error('usage: l7-load.js <host> <port> [--host-header H] [--connections C] [--seconds S] [--warmup-seconds W] [--max-requests N]');
  const r = await runHttpLoad({
    host,
    port: num(portText, 'port', 1, 65535),
    hostHeader: values['host-header'] ?? host,
    path: values.path!,
    connections: num(values.connections, 'connections', 1, 256),
    seconds: num(values.seconds, 'seconds', 0.1, 120),
    warmupSeconds: num(values['warmup-seconds'], 'warmup-seconds', 0, 60),
    maxRequests: num(values['max-requests'], 'max-requests', 1, 1e8),
  });
  process.stdout.write(JSON.stringify(r) + '\n');
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stdout.write(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }) + '\n');
      process.exit(1);
    },
  );
}
