/**
 * Dead peers (issue 7, item 2): an HBONE session whose connection ended, or whose peer stopped
 * answering PINGs, is torn down with all its streams, and each stream's app socket is reset; an
 * idle server session is closed; the agent survives accept errors and reports fd exhaustion.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import { createLoopbackMesh, testWorkload, type LoopbackMesh, type MeshPod } from '../helpers/loopback-net.js';
import { startEchoServer, type EchoServer } from '../helpers/echo.js';
import { startRelay, type Relay } from '../helpers/relay.js';
import { hboneRequest, hboneSession, hboneTls } from '../helpers/hbone-client.js';
import { counterValue, eventually, fdCount } from '../helpers/process-usage.js';
import { h2Case, Rng } from '../helpers/fuzz.js';
import { deadPeerBoundMs, HBONE_HANDSHAKE_TIMEOUT_MS } from '../../src/shared/hbone/liveness.js';

const BASE = `127.${10 + (process.pid % 200)}.8.`;
const A_IP = BASE + '1';
const B_IP = BASE + '2';
/** Short keepalive for these tests; production uses 10 s / 10 s (liveness.ts). */
const LIVENESS = { keepaliveIntervalMs: 300, keepaliveTimeoutMs: 300 };

interface Fixture {
  mesh: LoopbackMesh;
  a: MeshPod;
  b: MeshPod;
  echo: EchoServer;
  relay: Relay;
}

/** A and B, with every tunnel from A to B through a relay that can fail on command. */
async function setup(t: import('node:test').TestContext, inbound: Record<string, unknown> = {}): Promise<Fixture> {
  const mesh = await createLoopbackMesh();
  const echo = await startEchoServer(B_IP);
  const relay = await startRelay(A_IP, () => ({ host: B_IP, port: mesh.net.realPort(B_IP, 15008), localAddress: A_IP }));
  const a = await mesh.addPod(testWorkload({ name: 'client', namespace: 'frontend', ip: A_IP, serviceAccount: 'fe' }), {
    pool: { connectTcp: () => net.connect({ host: A_IP, port: relay.port, allowHalfOpen: true }), liveness: LIVENESS },
  });
  const b = await mesh.addPod(testWorkload({ name: 'server', namespace: 'backend', ip: B_IP, serviceAccount: 'be' }), {
    inbound: { liveness: LIVENESS, ...inbound },
  });
  t.after(async () => {
    await relay.close();
    await mesh.close();
    await echo.close();
  });
  return { mesh, a, b, echo, relay };
}

/** An app connection from A to the echo server, proven by one echoed byte; its end is recorded. */
async function liveConnection(mesh: LoopbackMesh, a: MeshPod, echo: EchoServer): Promise<{ socket: net.Socket; ended: Promise<{ how: string; atMs: number }> }> {
  const socket = mesh.appConnect(a, { address: B_IP, port: echo.port });
  let how = 'eof';
  socket.on('error', (e: NodeJS.ErrnoException) => (how = e.code ?? 'error'));
  const ended = new Promise<{ how: string; atMs: number }>((resolve) => socket.once('close', () => resolve({ how, atMs: Date.now() })));
  await once(socket, 'connect');
  socket.write('x');
  await once(socket, 'data');
  return { socket, ended };
}

/** Resolves when the echo server's side of every connection is gone, with the time. */
async function appSideGone(echo: EchoServer, timeoutMs: number): Promise<number | undefined> {
  return (await eventually(() => echo.sockets.size === 0, timeoutMs)) ? Date.now() : undefined;
}

test('the client\'s connection ends (FIN) mid-stream: the destination app\'s connection is reset at once', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo, relay } = await setup(t);
  const { ended } = await liveConnection(mesh, a, echo);
  const [serverSide] = [...echo.sockets];
  let appSaw = 'open';
  serverSide!.on('error', (e: NodeJS.ErrnoException) => (appSaw = e.code ?? 'error'));
  serverSide!.once('end', () => (appSaw = appSaw === 'open' ? 'eof' : appSaw));
  const start = Date.now();
  relay.finServer();
  const gone = await appSideGone(echo, 5000);
  assert.ok(gone !== undefined, 'the destination app\'s connection ended');
  assert.equal(appSaw, 'ECONNRESET', 'the app sees a reset: the stream never ended properly');
  t.diagnostic(`destination app connection ended ${gone! - start} ms after the FIN`);
  const end = await ended;
  assert.equal(end.how, 'ECONNRESET', 'the source app is reset too');
  assert.ok(await eventually(async () => (await counterValue(mesh.registry, 'ambit_tunnel_sessions_ended_total', { direction: 'inbound', reason: 'peer_closed' })) === 1));
});

test('the destination\'s connection ends (FIN): the source app\'s connection is reset, not left hanging', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo, relay } = await setup(t);
  const { ended } = await liveConnection(mesh, a, echo);
  const start = Date.now();
  relay.finClient();
  const end = await Promise.race([ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000))]);
  assert.ok(end, 'the source app\'s connection ended');
  assert.equal(end.how, 'ECONNRESET');
  t.diagnostic(`source app connection ended ${end.atMs - start} ms after the FIN`);
  assert.ok(await eventually(async () => (await counterValue(mesh.registry, 'ambit_tunnel_sessions_ended_total', { direction: 'outbound', reason: 'peer_closed' })) === 1));
  assert.equal(a.pool.stats().length, 0, 'the dead connection left the pool');
});

test('an app that had sent all its data (half-closed) is reset, not shown a clean EOF, when the tunnel dies', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo, relay } = await setup(t);
  // The echo server holds its reply: the app half-closes and waits for the whole echo.
  for (const s of echo.sockets) s.pause();
  echo.server.removeAllListeners('connection');
  echo.server.on('connection', (s) => {
    echo.sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => echo.sockets.delete(s));
  });
  const socket = mesh.appConnect(a, { address: B_IP, port: echo.port });
  let how = 'open';
  socket.on('error', (e: NodeJS.ErrnoException) => (how = e.code ?? 'error'));
  socket.once('end', () => (how = how === 'open' ? 'eof' : how));
  const closed = new Promise((r) => socket.once('close', r));
  await once(socket, 'connect');
  socket.end('all my data');
  assert.ok(await eventually(() => echo.sockets.size === 1), 'the app connection reached the server');
  await new Promise((r) => setTimeout(r, 100));
  relay.finClient();
  await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
  assert.equal(how, 'ECONNRESET', 'a reset: the reply never came, and a FIN would say it was empty');
});

test('a peer that vanishes without a FIN is found by PING within the stated bound; both apps are reset', { timeout: 60_000 }, async (t) => {
  const { mesh, a, echo, relay } = await setup(t);
  const { ended } = await liveConnection(mesh, a, echo);
  // Alive and idle for longer than the bound: PINGs are answered, nothing is torn down.
  await new Promise((r) => setTimeout(r, 2 * deadPeerBoundMs(LIVENESS)));
  assert.equal(echo.sockets.size, 1, 'an idle but answering peer is kept');
  const start = Date.now();
  relay.freeze();
  // Stated bound: 2 × interval + timeout (liveness.ts deadPeerBoundMs); timers may run late on a
  // loaded machine, so the wait is generous and the measured time is reported.
  const gone = await appSideGone(echo, deadPeerBoundMs(LIVENESS) + 10_000);
  assert.ok(gone !== undefined, 'the destination app\'s connection ended');
  const end = await ended;
  assert.equal(end.how, 'ECONNRESET');
  t.diagnostic(`bound ${deadPeerBoundMs(LIVENESS)} ms; destination app ended after ${gone! - start} ms, source app after ${end.atMs - start} ms`);
  assert.ok(await eventually(async () => (await counterValue(mesh.registry, 'ambit_tunnel_sessions_ended_total', { reason: 'keepalive_timeout' })) === 2), 'both ends gave up on the silent peer');
});

test('a server session without streams is closed after its idle timeout (GOAWAY)', { timeout: 30_000 }, async (t) => {
  const { mesh } = await setup(t, { liveness: { ...LIVENESS, idleTimeoutMs: 400 } });
  const session = await hboneSession({ host: B_IP, port: mesh.net.realPort(B_IP, 15008), cert: mesh.certFor('spiffe://cluster.local/ns/frontend/sa/fe') });
  t.after(() => session.destroy());
  const r = await hboneRequest(session, { ':authority': `${B_IP}:1` });
  assert.equal(r.status, 503);
  const goaway = await Promise.race([once(session, 'goaway').then(() => true), new Promise<boolean>((res) => setTimeout(() => res(false), 10_000))]);
  assert.ok(goaway, 'the idle session got GOAWAY');
  assert.ok(await eventually(async () => (await counterValue(mesh.registry, 'ambit_tunnel_sessions_ended_total', { direction: 'inbound', reason: 'idle' })) === 1));
});

test('thousands of streams on sessions that then vanish leave no sockets behind', { timeout: 120_000 }, async (t) => {
  const { mesh, echo } = await setup(t);
  const fds = fdCount();
  const cert = mesh.certFor('spiffe://cluster.local/ns/frontend/sa/fe');
  const sessions = await Promise.all(Array.from({ length: 10 }, () => hboneSession({ host: B_IP, port: mesh.net.realPort(B_IP, 15008), cert })));
  // 10 sessions × 200 streams (the server's concurrent-stream limit), each piped to the echo app.
  await Promise.all(
    sessions.flatMap((s) =>
      Array.from({ length: 200 }, async () => {
        const r = await hboneRequest(s, { ':authority': `${B_IP}:${echo.port}` });
        assert.equal(r.status, 200);
        r.stream.on('error', () => undefined);
        r.stream.write('y');
        await new Promise<void>((resolve, reject) => {
          r.stream.once('data', () => resolve());
          r.stream.once('close', () => reject(new Error(`stream closed before its echo (code ${r.stream.rstCode})`)));
        });
      }),
    ),
  );
  assert.equal(echo.sockets.size, 2000);
  // The clients vanish: their TCP connections close without any stream ending.
  for (const s of sessions) s.destroy();
  assert.ok(await eventually(() => echo.sockets.size === 0 && mesh.connections.size === 0, 20_000), `every app socket closed (${echo.sockets.size} left)`);
  assert.ok(await eventually(() => fdCount() - fds <= 10, 10_000), `fd count back near the start (${fds} → ${fdCount()})`);
});

test('an accept error (EMFILE) on a listener is logged, not fatal', { timeout: 30_000 }, async (t) => {
  const { mesh, b } = await setup(t);
  for (const server of [b.inbound.listener(), b.plaintext.listener(), b.outbound.listener()]) {
    assert.doesNotThrow(() => server!.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' })));
  }
  assert.equal(mesh.sink.lines.filter((l) => l['msg'] === 'accept failed').length, 3);
});

test('clients that vanish right after the TLS handshake leave no socket behind', { timeout: 120_000 }, async (t) => {
  // Production keepalive: only the socket cleanup, not a fast PING, may bring the fds back.
  const { mesh } = await setup(t, { liveness: {} });
  const fds = fdCount();
  const port = mesh.net.realPort(B_IP, 15008);
  const cert = mesh.certFor('spiffe://cluster.local/ns/frontend/sa/fe');
  const r = new Rng(20261202);
  // node:http2 left the socket of a session destroyed mid-write open, and half-done handshakes
  // waited for Node's 2-minute handshake timeout: such clients leaked descriptors (found by the
  // fuzz test: 27 → 125 fds after 1,500 cases).
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = 0; i < 150; i++) {
        await new Promise<void>((resolve) => {
          const bytes = h2Case(r, `${B_IP}:1`);
          const s = hboneTls({ host: B_IP, port, cert });
          s.on('error', () => undefined);
          s.on('data', () => undefined);
          // Gone 50 ms after connecting, and the next one starts at once.
          const timer = setTimeout(() => {
            s.destroy();
            resolve();
          }, 50);
          s.once('secureConnect', () => {
            s.write(bytes.subarray(0, bytes.length >> 1));
            setImmediate(() => !s.destroyed && s.write(bytes.subarray(bytes.length >> 1)));
          });
          s.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    }),
  );
  // Well under Node's own 2-minute handshake timeout (the leak this guards against), yet wide
  // enough for a 2-core machine under a load of 15, where 15 s was seen to be too short.
  const bound = 4 * HBONE_HANDSHAKE_TIMEOUT_MS;
  assert.ok(await eventually(() => fdCount() - fds <= 5, bound), `fds back within ${bound} ms (${fds} → ${fdCount()})`);
});
