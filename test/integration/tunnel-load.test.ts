/** Data integrity and scale through the real tunnel on loopback: bulk bytes both ways, many connections. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import type * as net from 'node:net';
import { createLoopbackMesh, testWorkload } from '../helpers/loopback-net.js';
import { startEchoServer } from '../helpers/echo.js';
import { flushCopyCounters } from '../../src/shared/hbone/copy.js';

const BASE = `127.${10 + (process.pid % 200)}.2.`;
const A_IP = BASE + '1';
const B_IP = BASE + '2';
const MiB = 1024 * 1024;

async function setup(t: import('node:test').TestContext) {
  const mesh = await createLoopbackMesh();
  const echo = await startEchoServer(B_IP);
  const a = await mesh.addPod(testWorkload({ name: 'client', namespace: 'frontend', ip: A_IP }));
  await mesh.addPod(testWorkload({ name: 'server', namespace: 'backend', ip: B_IP }));
  t.after(async () => {
    await mesh.close();
    await echo.close();
  });
  return { mesh, a, echo };
}

/** Streams `payload` in 1 MiB writes (honouring backpressure) and hashes everything echoed back. */
function pumpAndHash(s: net.Socket, payload: Buffer): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    s.on('data', (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
    });
    s.once('end', () => s.end());
    s.once('error', reject);
    s.once('close', () => resolve({ sha256: hash.digest('hex'), bytes }));
    let off = 0;
    const write = (): void => {
      while (off < payload.length) {
        const chunk = payload.subarray(off, off + MiB);
        off += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', write);
      }
      s.end();
    };
    s.once('connect', write);
  });
}

/**
 * `npm test` sends 4 MiB each way per connection (a whole HTTP/2 window, enough to fill every
 * buffer on the path); the 64 MiB soak (~2 minutes on a 2-core machine) runs on demand:
 * `npm run soak` (AMBIT_SOAK=1), or any size with AMBIT_TEST_BULK_MIB.
 */
const BULK_MIB = Number(process.env['AMBIT_TEST_BULK_MIB'] ?? (process.env['AMBIT_SOAK'] ? 64 : 4));

test(`${BULK_MIB} MiB of random bytes each way arrive intact on 20 parallel connections`, { timeout: process.env['AMBIT_SOAK'] ? 600_000 : 120_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t);
  const size = BULK_MIB * MiB;
  const payload = crypto.randomBytes(size);
  const want = crypto.createHash('sha256').update(payload).digest('hex');
  const results = await Promise.all(Array.from({ length: 20 }, () => pumpAndHash(mesh.appConnect(a, { address: B_IP, port: echo.port }), payload)));
  for (const r of results) {
    assert.equal(r.bytes, size);
    assert.equal(r.sha256, want);
  }
  flushCopyCounters(); // byte counters are handed over by batch, as a /metrics scrape does first
  const sent = await mesh.registry.getSingleMetric('istio_tcp_sent_bytes_total')!.get();
  assert.equal(sent.values.find((v) => v.labels['reporter'] === 'source')?.value, 20 * size);
  assert.equal(a.pool.stats().length, 1, '20 streams share one pooled connection');
});

test('1000 concurrent connections are held open, then all close cleanly', { timeout: 120_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t);
  const N = 1000;
  const sockets: net.Socket[] = [];
  // Open in batches so the accept backlog is never the bottleneck; each proves itself with one echo.
  for (let batch = 0; batch < N / 100; batch++) {
    const opened = await Promise.all(
      Array.from({ length: 100 }, () => {
        const s = mesh.appConnect(a, { address: B_IP, port: echo.port });
        s.on('error', () => undefined);
        return new Promise<net.Socket>((resolve, reject) => {
          s.once('connect', () => s.write('p'));
          s.once('data', () => resolve(s));
          s.once('close', () => reject(new Error('closed before echo')));
        });
      }),
    );
    sockets.push(...opened);
  }
  assert.equal(sockets.length, N);
  assert.equal(echo.sockets.size, N, 'every connection is open at the server');
  assert.equal(mesh.connections.size, N, 'every inbound connection is tracked');
  const stats = a.pool.stats();
  assert.equal(stats.reduce((n, s) => n + s.streams, 0), N);
  assert.equal(stats.length, N / 100, 'streams are packed 100 per pooled connection');

  await Promise.all(
    sockets.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.once('close', () => resolve());
          s.once('end', () => s.end());
          s.end();
        }),
    ),
  );
  for (let i = 0; i < 200 && (echo.sockets.size > 0 || mesh.connections.size > 0); i++) await new Promise((r) => setTimeout(r, 25));
  assert.equal(echo.sockets.size, 0);
  assert.equal(mesh.connections.size, 0);
  for (let i = 0; i < 200 && mesh.sink.access().length < 2 * N; i++) await new Promise((r) => setTimeout(r, 25));
  const reasons = new Set(mesh.sink.access().map((l) => l['reason']));
  assert.deepEqual([...reasons], ['closed'], 'every connection closed cleanly on both sides');
  assert.equal(a.pool.stats().reduce((n, s) => n + s.streams, 0), 0);
});
