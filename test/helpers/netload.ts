/**
 * A traffic generator the mesh tests run INSIDE a pod (`ambit local exec ns/pod -- node netload.js ...`).
 * Prints one JSON line with what happened; bounded in count and time.
 *   bulk <host> <port> <conns> <mib>   each connection sends <mib> MiB of seeded random bytes to an echo
 *                                      server, reads the echo, compares SHA-256 both ways
 *   hold <host> <port> <conns> <ms>    opens <conns> connections, 1-byte round trip each, holds, closes
 *   halfclose <host> <port>            sends, ends its side, still reads the whole echo
 *   send <host> <port> <text>          one connection: write text, read the echo until close
 *   wait <host> <port> <ms>            one connection held up to <ms>: reports whether the peer closed it
 *   traffic <host> <port> <ms> <workers> <kib> <long>
 *                                      for <ms>: <workers> loops of new connections, each echoing <kib> KiB
 *                                      checked by SHA-256, plus <long> connections echoing 8 KiB every
 *                                      100 ms for the whole run; prints {"started":true}, then counts of
 *                                      intact transfers and of failures by reason (reset, refused,
 *                                      truncated, corrupt, hang) with when each happened
 *   serve <port> <ms>                  an echo server for <ms>; one line per ended connection telling
 *                                      how the peer ended it (eof or reset)
 *   probe <host> <port>                one connection, one line sent: how it ended (data, eof, reset, refused)
 */
import { connect, type Socket } from 'node:net';
import { createHash } from 'node:crypto';

const [mode, host, portText, a, b] = process.argv.slice(2);
const port = Number(portText);
const HARD_LIMIT_MS = 120_000;
/** Per-connection progress of a bulk run, reported if the run fails or stalls (for diagnosis). */
const progress: Array<{ sent: number; received: number; state: string }> = [];
/** Counters of a hold run, reported the same way. */
const holdProgress = { opened: 0, failed: 0, echoed: 0, phase: 'opening' };
setTimeout(() => finish({ error: 'hard time limit reached', progress, hold: holdProgress }, 2), HARD_LIMIT_MS).unref();

function finish(result: Record<string, unknown>, code = 0): never {
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(code);
}

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: host!, port, allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Deterministic pseudo-random bytes (xorshift), so both ends could regenerate them. */
function fillRandom(buf: Buffer, seed: number): number {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < buf.length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  return x;
}

async function bulkOne(index: number, bytes: number): Promise<{ ok: boolean; sent: string; received: string; bytes: number }> {
  const p = { sent: 0, received: 0, state: 'connecting' };
  progress[index] = p;
  const s = await open();
  p.state = 'sending';
  const sentHash = createHash('sha256');
  const recvHash = createHash('sha256');
  let received = 0;
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      recvHash.update(d);
      received += d.length;
      p.received = received;
    });
    s.on('end', () => resolve());
    s.on('error', (err: Error) => {
      p.state = `error ${err.message}`;
      reject(err);
    });
  });
  // A reset while still sending must not become an unhandled rejection: the run reports it.
  done.catch(() => undefined);
  const chunk = Buffer.allocUnsafe(256 * 1024);
  let seed = 0x9e3779b9 ^ (index * 7919);
  let left = bytes;
  while (left > 0) {
    const n = Math.min(left, chunk.length);
    seed = fillRandom(chunk, seed);
    const piece = Buffer.from(chunk.subarray(0, n));
    sentHash.update(piece);
    left -= n;
    p.sent += n;
    if (s.destroyed) break;
    if (!s.write(piece)) await Promise.race([new Promise((r) => s.once('drain', r)), done]);
  }
  s.end();
  p.state = 'half-closed, reading';
  await done;
  p.state = 'done';
  const sent = sentHash.digest('hex');
  const recv = recvHash.digest('hex');
  return { ok: sent === recv && received === bytes, sent, received: recv, bytes: received };
}

/** A transfer that takes longer than this counts as hung. */
const HANG_MS = 20_000;

/** How a failed transfer ended, as a bounded reason. */
function failureReason(err: unknown): string {
  const code = (err as { code?: string } | undefined)?.code;
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'reset';
  if (code === 'ECONNREFUSED') return 'refused';
  return code ?? (err instanceof Error ? err.message : String(err));
}

/** One connection: send `bytes` of seeded random data, half-close, check the echo. Resolves with undefined or the failure reason. */
function echoTransfer(bytes: number, seed: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = connect({ host: host!, port, allowHalfOpen: true });
    const sentHash = createHash('sha256');
    const recvHash = createHash('sha256');
    let received = 0;
    let settled = false;
    const settle = (r: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => settle('hang'), HANG_MS);
    s.on('data', (d: Buffer) => {
      recvHash.update(d);
      received += d.length;
    });
    s.once('error', (e) => settle(failureReason(e)));
    s.once('end', () => {
      if (received < bytes) return settle('truncated');
      settle(recvHash.digest('hex') === sentHash.digest('hex') && received === bytes ? undefined : 'corrupt');
    });
    s.once('connect', () => {
      const data = Buffer.allocUnsafe(bytes);
      fillRandom(data, seed);
      sentHash.update(data);
      s.end(data);
    });
  });
}

/** A connection echoing 8 KiB every 100 ms until `untilMs`, then half-closing; resolves with its outcome. */
function longConnection(untilMs: number, seed: number, t0: number): Promise<{ outcome: string; atMs: number; bytes: number }> {
  return new Promise((resolve) => {
    const s = connect({ host: host!, port, allowHalfOpen: true });
    const sentHash = createHash('sha256');
    const recvHash = createHash('sha256');
    let sent = 0;
    let received = 0;
    let settled = false;
    let x = seed;
    let tick: NodeJS.Timeout | undefined;
    const settle = (outcome: string): void => {
      if (settled) return;
      settled = true;
      clearInterval(tick);
      clearTimeout(hang);
      s.destroy();
      resolve({ outcome, atMs: Date.now() - t0, bytes: received });
    };
    const hang = setTimeout(() => settle('hang'), untilMs - Date.now() + HANG_MS);
    s.on('data', (d: Buffer) => {
      recvHash.update(d);
      received += d.length;
    });
    s.once('error', (e) => settle(failureReason(e)));
    s.once('end', () => {
      if (Date.now() < untilMs || received < sent) return settle('truncated');
      settle(recvHash.digest('hex') === sentHash.digest('hex') ? 'ok' : 'corrupt');
    });
    s.once('connect', () => {
      tick = setInterval(() => {
        if (Date.now() >= untilMs) {
          clearInterval(tick);
          s.end();
          return;
        }
        const chunk = Buffer.allocUnsafe(8192);
        x = fillRandom(chunk, x);
        sentHash.update(chunk);
        sent += chunk.length;
        s.write(chunk);
      }, 100);
    });
  });
}

async function main(): Promise<void> {
  if (mode === 'traffic') {
    const [, , , , , , , kibText, longText] = process.argv;
    const t0 = Date.now();
    const until = t0 + Number(a);
    const workers = Number(b);
    const bytes = Number(kibText) * 1024;
    let ok = 0;
    const failed: Record<string, number> = {};
    const failures: Array<{ reason: string; atMs: number }> = [];
    process.stdout.write(JSON.stringify({ started: true }) + '\n');
    const long = Promise.all(Array.from({ length: Number(longText) }, (_, i) => longConnection(until, 0x51ed ^ (i * 104729), t0)));
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        for (let n = 0; Date.now() < until; n++) {
          const started = Date.now();
          const r = await echoTransfer(bytes, (w * 1_000_003) ^ n);
          if (r === undefined) ok++;
          else {
            failed[r] = (failed[r] ?? 0) + 1;
            if (failures.length < 200) failures.push({ reason: r, atMs: started - t0 });
            // A refused connect fails at once: do not spin while nothing listens.
            await new Promise((res) => setTimeout(res, 50));
          }
        }
      }),
    );
    finish({ ok, failed, failures, long: await long, durationMs: Date.now() - t0 });
  }
  if (mode === 'probe') {
    const outcome = await new Promise<string>((resolve) => {
      const s = connect({ host: host!, port, allowHalfOpen: true });
      const timer = setTimeout(() => resolve('hang'), HANG_MS);
      s.once('data', () => resolve('data'));
      s.once('end', () => resolve('eof'));
      s.once('error', (e) => resolve(failureReason(e)));
      s.once('close', () => clearTimeout(timer));
      s.once('connect', () => s.write('GET / HTTP/1.1\r\nhost: probe\r\n\r\n'));
    });
    finish({ outcome });
  }
  if (mode === 'serve') {
    const { createServer } = await import('node:net');
    let conns = 0;
    const server = createServer({ allowHalfOpen: true }, (c) => {
      conns++;
      let how = 'open';
      let bytes = 0;
      c.on('data', (d: Buffer) => (bytes += d.length));
      c.pipe(c);
      c.once('end', () => (how = how === 'open' ? 'eof' : how));
      c.on('error', (e) => (how = failureReason(e)));
      c.once('close', () => process.stdout.write(JSON.stringify({ conn: { end: how, bytes } }) + '\n'));
    });
    server.listen(Number(host), '0.0.0.0', () => process.stdout.write(JSON.stringify({ listening: true }) + '\n'));
    await new Promise((r) => setTimeout(r, Number(portText)));
    finish({ done: true, conns });
  }

  if (mode === 'bulk') {
    const conns = Number(a);
    const bytes = Number(b) * 1024 * 1024;
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: conns }, (_, i) => bulkOne(i, bytes)));
    finish({ ok: results.every((r) => r.ok), intact: results.filter((r) => r.ok).length, conns, bytesEachWay: bytes, ms: Date.now() - started });
  }
  if (mode === 'hold') {
    const conns = Number(a);
    const holdMs = Number(b);
    const sockets: Socket[] = [];
    let failed = 0;
    let echoed = 0;
    for (let i = 0; i < conns; i += 50) {
      const batch = await Promise.allSettled(Array.from({ length: Math.min(50, conns - i) }, () => open()));
      for (const r of batch) if (r.status === 'fulfilled') sockets.push(r.value);
      else failed++;
      Object.assign(holdProgress, { opened: sockets.length, failed });
    }
    holdProgress.phase = 'echoing';
    await Promise.all(
      sockets.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.once('data', () => {
              echoed++;
              holdProgress.echoed = echoed;
              resolve();
            });
            s.once('error', () => resolve());
            s.write('x');
          }),
      ),
    );
    holdProgress.phase = 'holding';
    await new Promise((r) => setTimeout(r, holdMs));
    holdProgress.phase = 'closing';
    const stillOpen = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
    let closedCleanly = 0;
    await Promise.all(
      sockets.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.once('close', (hadError: boolean) => {
              if (!hadError) closedCleanly++;
              resolve();
            });
            s.on('data', () => undefined);
            s.end();
          }),
      ),
    );
    finish({ opened: sockets.length, failed, echoed, stillOpen, closedCleanly });
  }
  if (mode === 'halfclose') {
    const s = await open();
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    const payload = Buffer.alloc(300_000, 'h');
    s.end(payload);
    await new Promise<void>((resolve) => s.on('end', () => resolve()));
    finish({ ok: Buffer.concat(chunks).equals(payload), received: Buffer.concat(chunks).length });
  }
  if (mode === 'send') {
    const s = await open();
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.end(a ?? '');
    await new Promise<void>((resolve) => {
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    finish({ reply: Buffer.concat(chunks).toString('utf8') });
  }
  if (mode === 'wait') {
    const s = await open();
    s.write('ping');
    const started = Date.now();
    const outcome = await new Promise<string>((resolve) => {
      const t = setTimeout(() => resolve('still-open'), Number(a));
      s.on('data', () => undefined);
      s.on('close', () => {
        clearTimeout(t);
        resolve('closed');
      });
      s.on('error', () => undefined);
      process.stdout.write(JSON.stringify({ connected: true }) + '\n');
    });
    finish({ outcome, afterMs: Date.now() - started });
  }
  finish({ error: `unknown mode ${mode}` }, 2);
}

main().catch((err: Error & { code?: string }) => finish({ error: err.message, code: err.code, progress }, 1));
