/** copyBidirectional with upstreamReady: bytes flow up at once, nothing flows down until the go-ahead. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { copyBidirectional, type CopyResult } from '../../../src/shared/hbone/copy.js';

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

/** A backend that answers "reply" and a FIN as soon as it has read anything; a proxy in front with the given go-ahead. */
async function setup(t: import('node:test').TestContext, ready: Promise<boolean>): Promise<{ app: net.Socket; backendRead: Promise<string>; closed: Promise<CopyResult> }> {
  let gotBytes!: (s: string) => void;
  const backendRead = new Promise<string>((r) => (gotBytes = r));
  const backend = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.once('data', (d: Buffer) => {
      gotBytes(d.toString());
      s.end('reply');
    });
  });
  const proxy = net.createServer({ allowHalfOpen: true });
  const sockets: net.Socket[] = [];
  t.after(() => {
    for (const s of sockets) s.destroy();
    backend.close();
    proxy.close();
  });
  const backendPort = await listen(backend);
  const proxyPort = await listen(proxy);
  const closed = new Promise<CopyResult>((resolve) => {
    proxy.once('connection', (d: net.Socket) => {
      const u = net.connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true });
      sockets.push(d, u);
      copyBidirectional(d, u, { upstreamReady: ready, onClose: resolve });
    });
  });
  const app = net.connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true });
  sockets.push(app);
  app.on('error', () => undefined);
  await new Promise((r) => app.once('connect', r));
  return { app, backendRead, closed };
}

test('before the go-ahead the client\'s bytes reach the upstream and nothing comes back; after it the reply and FIN do', { timeout: 10_000 }, async (t) => {
  let go!: (ok: boolean) => void;
  const { app, backendRead, closed } = await setup(t, new Promise<boolean>((r) => (go = r)));
  const got: Buffer[] = [];
  let ended = false;
  app.on('data', (d: Buffer) => got.push(d));
  app.once('end', () => {
    ended = true;
    app.end();
  });
  app.write('early');
  assert.equal(await backendRead, 'early');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(Buffer.concat(got).length, 0, 'nothing flows down before the go-ahead');
  assert.equal(ended, false, 'the upstream\'s FIN is held too');
  go(true);
  const r = await closed;
  assert.equal(Buffer.concat(got).toString(), 'reply');
  assert.equal(ended, true);
  assert.equal(r.clean, true);
  assert.equal(r.bytesFromDownstream, 5);
  assert.equal(r.bytesFromUpstream, 5);
});

test('a refused go-ahead resets the client instead of passing the upstream\'s FIN on', { timeout: 10_000 }, async (t) => {
  let go!: (ok: boolean) => void;
  const { app, backendRead, closed } = await setup(t, new Promise<boolean>((r) => (go = r)));
  const got: Buffer[] = [];
  let ended = false;
  let error: NodeJS.ErrnoException | undefined;
  app.on('data', (d: Buffer) => got.push(d));
  app.once('end', () => (ended = true));
  app.on('error', (e: NodeJS.ErrnoException) => (error = e));
  const appClosed = new Promise((r) => app.once('close', r));
  app.write('early');
  assert.equal(await backendRead, 'early');
  go(false);
  const r = await closed;
  await appClosed;
  assert.equal(r.clean, false);
  assert.equal(Buffer.concat(got).length, 0);
  assert.equal(ended, false, 'no FIN reached the client');
  assert.equal(error?.code, 'ECONNRESET');
});
