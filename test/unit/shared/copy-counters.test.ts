/** copyBidirectional reports byte counts by batch: per flush, on demand and at close, never per chunk. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { COUNTER_FLUSH_MS, copyBidirectional, flushCopyCounters, type CopyHandle, type CopyResult } from '../../../src/shared/hbone/copy.js';

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

test('byte callbacks get batched sums: none per chunk, all by flush and close, before onClose', { timeout: 20_000 }, async (t) => {
  const backend = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d: Buffer) => s.write(d)); // echo
    s.once('end', () => s.end());
  });
  const proxy = net.createServer({ allowHalfOpen: true });
  t.after(() => {
    backend.close();
    proxy.close();
  });
  const backendPort = await listen(backend);
  const proxyPort = await listen(proxy);
  const down: number[] = [];
  const up: number[] = [];
  const order: string[] = [];
  let chunksSeen = 0;
  let handle: CopyHandle | undefined;
  const closed = new Promise<CopyResult>((resolve) => {
    proxy.once('connection', (d: net.Socket) => {
      d.on('data', () => chunksSeen++);
      const u = net.connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true });
      handle = copyBidirectional(d, u, {
        onDownstreamBytes: (n) => {
          down.push(n);
          order.push('bytes');
        },
        onUpstreamBytes: (n) => {
          up.push(n);
          order.push('bytes');
        },
        onClose: (r) => {
          order.push('close');
          resolve(r);
        },
      });
    });
  });

  const started = Date.now();
  const app = net.connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true });
  await new Promise((r) => app.once('connect', r));
  let echoed = 0;
  app.on('data', (d: Buffer) => (echoed += d.length));
  const CHUNKS = 100;
  const SIZE = 1000;
  // One chunk per round trip, so the proxy sees CHUNKS separate reads each way.
  for (let i = 0; i < CHUNKS; i++) {
    app.write(Buffer.alloc(SIZE, i));
    while (echoed < (i + 1) * SIZE) await new Promise((r) => app.once('data', r));
  }
  const elapsed = Date.now() - started;
  assert.ok(chunksSeen >= CHUNKS, `the proxy read ${chunksSeen} chunks`);
  const timerFlushes = Math.floor(elapsed / COUNTER_FLUSH_MS);
  assert.ok(down.length <= timerFlushes, `downstream callbacks only from the ${COUNTER_FLUSH_MS} ms flush (${down.length} calls in ${elapsed} ms)`);
  assert.equal(handle!.bytesFromDownstream, CHUNKS * SIZE, 'the live count is exact');

  flushCopyCounters();
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  assert.equal(sum(down), CHUNKS * SIZE, 'a flush hands over everything read so far');
  assert.equal(sum(up), CHUNKS * SIZE);
  assert.ok(down.every((n) => n > 0) && up.every((n) => n > 0), 'no empty batches');
  const callsAfterFlush = down.length;
  flushCopyCounters();
  assert.equal(down.length, callsAfterFlush, 'nothing new, no call');

  app.write('tail');
  app.end();
  await new Promise((r) => app.once('end', r));
  app.destroy();
  const r = await closed;
  assert.equal(sum(down), CHUNKS * SIZE + 4, 'the close flushes the rest');
  assert.equal(sum(up), r.bytesFromUpstream);
  assert.equal(order.at(-1), 'close', 'onClose comes after the last batch');
  assert.equal(order.filter((x) => x === 'close').length, 1);
});
