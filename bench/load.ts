/**
 * Load generator, run inside the client pod (`ambit local exec <ns>/<pod> -- node dist/bench/load.js ...`).
 * Prints exactly one JSON line on stdout per run (hold: one line once the connections are open).
 *   throughput <host> <port> [--max-bytes N] [--max-seconds S] [--streams K]  K streams (default 1) to the sink server
 *   rr         <host> <port> [--count N] [--warmup N] [--max-seconds S]   1-byte ping-pong on one connection
 *   cps        <host> <port> [--parallel P] [--seconds S] [--max-count N] connect, 1-byte exchange, close
 *   hold       <host> <port> [--count N] [--max-seconds S]        open N echo connections, hold until stdin ends
 * Every loop is bounded in count and in time.
 */
import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

export interface ThroughputResult {
  mode: 'throughput';
  /** Parallel connections (flows), each sending its share of the bytes. */
  streams: number;
  sentBytes: number;
  serverBytes: number;
  seconds: number;
  mibPerSec: number;
}

export interface RrResult {
  mode: 'rr';
  count: number;
  /** Duration of all round trips, warm-up included. */
  seconds: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  meanUs: number;
  maxUs: number;
}

export interface CpsResult {
  mode: 'cps';
  connections: number;
  errors: number;
  seconds: number;
  perSec: number;
  p50Us: number;
  p99Us: number;
  firstError?: string;
}

export interface HoldResult {
  mode: 'hold';
  held: number;
  failed: number;
  openSeconds: number;
  firstError?: string;
}

export type LoadResult = ThroughputResult | RrResult | CpsResult | HoldResult;

const CHUNK = Buffer.alloc(256 * 1024, 0x61);
const ONE = Buffer.from('x');

/** Value at quantile q (0..1) of an ascending array (nearest rank). */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function open(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, noDelay: true, allowHalfOpen: true });
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

/** One byte out, one byte back, within `timeoutMs`. */
function exchange(s: Socket, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no echo within ${timeoutMs} ms`)), timeoutMs);
    const onData = (): void => done();
    const onEnd = (): void => done(new Error('connection closed before the echo'));
    const onError = (err: Error): void => done(err);
    function done(err?: Error): void {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('error', onError);
      if (err) reject(err);
      else resolve();
    }
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('error', onError);
    s.write(ONE);
  });
}

/** `streams` connections sending at once (maxBytes shared between them); the figure is their sum over the longest one's time. */
export async function runThroughput(host: string, port: number, maxBytes: number, maxSeconds: number, streams = 1): Promise<ThroughputResult> {
  const start = performance.now();
  const flows = await Promise.all(Array.from({ length: streams }, () => oneStream(host, port, Math.ceil(maxBytes / streams), start + maxSeconds * 1000)));
  const seconds = (performance.now() - start) / 1000;
  const sent = flows.reduce((n, f) => n + f.sent, 0);
  const serverBytes = flows.reduce((n, f) => n + f.serverBytes, 0);
  return { mode: 'throughput', streams, sentBytes: sent, serverBytes, seconds, mibPerSec: serverBytes / 1048576 / seconds };
}

async function oneStream(host: string, port: number, maxBytes: number, deadline: number): Promise<{ sent: number; serverBytes: number }> {
  const s = await open(host, port, 5000);
  const reply = new Promise<string>((resolve, reject) => {
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (text += d));
    s.once('end', () => resolve(text));
    s.once('error', reject);
  });
  let sent = 0;
  // Bounded: stops at maxBytes or the deadline, whichever comes first.
  while (sent < maxBytes && performance.now() < deadline) {
    const ok = s.write(CHUNK);
    sent += CHUNK.length;
    if (!ok) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('write stalled for 10 s')), 10_000);
        s.once('drain', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
  s.end();
  const text = await Promise.race([
    reply,
    new Promise<string>((_, reject) => setTimeout(() => reject(new Error('sink did not report its byte count within 20 s')), 20_000)),
  ]);
  s.destroy();
  const serverBytes = Number(text.trim());
  if (!Number.isFinite(serverBytes)) throw new Error(`sink answered ${JSON.stringify(text)} instead of a byte count`);
  return { sent, serverBytes };
}

export async function runRr(host: string, port: number, count: number, warmup: number, maxSeconds: number): Promise<RrResult> {
  const s = await open(host, port, 5000);
  const samples: number[] = [];
  const total = warmup + count;
  const deadline = performance.now() + maxSeconds * 1000;
  const measuredFrom = performance.now();
  await new Promise<void>((resolve, reject) => {
    let i = 0;
    let t0 = 0;
    const timer = setTimeout(() => reject(new Error(`rr: ${i} of ${total} round trips in ${maxSeconds} s`)), maxSeconds * 1000 + 5000);
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on('data', (d: Buffer) => {
      // One byte per round trip; a coalesced read would mean two were in flight, which cannot happen here.
      const t1 = nowUs();
      if (d.length !== 1) {
        clearTimeout(timer);
        reject(new Error(`rr: read ${d.length} bytes, expected 1`));
        return;
      }
      if (i >= warmup) samples.push(t1 - t0);
      i++;
      if (i >= total || performance.now() > deadline) {
        clearTimeout(timer);
        resolve();
        return;
      }
      t0 = nowUs();
      s.write(ONE);
    });
    t0 = nowUs();
    s.write(ONE);
  });
  const seconds = (performance.now() - measuredFrom) / 1000;
  s.destroy();
  samples.sort((a, b) => a - b);
  const sum = samples.reduce((a, b) => a + b, 0);
  return {
    mode: 'rr',
    count: samples.length,
    seconds,
    p50Us: quantile(samples, 0.5),
    p90Us: quantile(samples, 0.9),
    p99Us: quantile(samples, 0.99),
    meanUs: samples.length ? sum / samples.length : Number.NaN,
    maxUs: samples.length ? samples[samples.length - 1]! : Number.NaN,
  };
}

export async function runCps(host: string, port: number, parallel: number, seconds: number, maxCount: number): Promise<CpsResult> {
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const maxErrors = 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline && latencies.length < maxCount && errors < maxErrors) {
      const t0 = nowUs();
      let s: Socket | undefined;
      try {
        s = await open(host, port, 5000);
        await exchange(s, 5000);
        latencies.push(nowUs() - t0);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      } finally {
        s?.destroy();
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, () => worker()));
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    mode: 'cps',
    connections: latencies.length,
    errors,
    seconds: elapsed,
    perSec: latencies.length / elapsed,
    p50Us: quantile(latencies, 0.5),
    p99Us: quantile(latencies, 0.99),
    ...(firstError !== undefined ? { firstError } : {}),
  };
}

/** Opens `count` echo connections (64 at a time), checks each with a 1-byte exchange, prints, holds. */
export async function runHold(host: string, port: number, count: number, maxSeconds: number, print: (r: HoldResult) => void): Promise<void> {
  const start = performance.now();
  const sockets: Socket[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count && performance.now() - start < maxSeconds * 1000) {
      next++;
      let s: Socket | undefined;
      try {
        s = await open(host, port, 10_000);
        s.on('error', () => undefined);
        await exchange(s, 10_000);
        sockets.push(s);
      } catch (err) {
        s?.destroy();
        failed++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: 64 }, () => worker()));
  print({ mode: 'hold', held: sockets.length, failed, openSeconds: (performance.now() - start) / 1000, ...(firstError !== undefined ? { firstError } : {}) });
  // Hold until the driver closes our stdin, or the time bound.
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, maxSeconds * 1000);
    process.stdin.resume();
    process.stdin.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
    process.stdin.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  for (const s of sockets) s.destroy();
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
      'max-bytes': { type: 'string', default: String(512 * 1048576) },
      'max-seconds': { type: 'string', default: '5' },
      count: { type: 'string', default: '5000' },
      warmup: { type: 'string', default: '500' },
      parallel: { type: 'string', default: '4' },
      seconds: { type: 'string', default: '3' },
      'max-count': { type: 'string', default: '200000' },
      streams: { type: 'string', default: '1' },
    },
  });
  const [mode, host, portText] = positionals;
  if (!mode || !host || !portText) throw new Error('usage: load.js <throughput|rr|cps|hold> <host> <port> [options]');
  const port = num(portText, 'port', 1, 65535);
  const maxSeconds = num(values['max-seconds'], 'max-seconds', 0.1, 600);
  const print = (r: LoadResult): void => void process.stdout.write(JSON.stringify(r) + '\n');
  switch (mode) {
    case 'throughput':
      print(await runThroughput(host, port, num(values['max-bytes'], 'max-bytes', 1, 2 ** 40), maxSeconds, num(values.streams, 'streams', 1, 64)));
      break;
    case 'rr':
      print(await runRr(host, port, num(values.count, 'count', 1, 1e6), num(values.warmup, 'warmup', 0, 1e6), maxSeconds));
      break;
    case 'cps':
      print(await runCps(host, port, num(values.parallel, 'parallel', 1, 256), num(values.seconds, 'seconds', 0.1, 60), num(values['max-count'], 'max-count', 1, 1e7)));
      break;
    case 'hold':
      await runHold(host, port, num(values.count, 'count', 1, 100_000), maxSeconds, print);
      break;
    default:
      throw new Error(`unknown mode ${JSON.stringify(mode)}; use throughput, rr, cps or hold`);
  }
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
