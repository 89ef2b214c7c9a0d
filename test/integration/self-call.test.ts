/**
 * Loops to the agent's own ports (issue 7, item 1): a connection to a pod's 15001, 15006 or 15008,
 * by plaintext, by HBONE CONNECT or from the pod's own outbound capture, is refused with the
 * reason `self_call` and never makes the agent dial itself (its fd count stays flat).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { createLoopbackMesh, testWorkload, type LoopbackMesh, type MeshPod } from '../helpers/loopback-net.js';
import { startEchoServer, type EchoServer } from '../helpers/echo.js';
import { hboneRequest, hboneSession } from '../helpers/hbone-client.js';
import { counterValue, eventually, fdCount, rssBytes } from '../helpers/process-usage.js';

const BASE = `127.${10 + (process.pid % 200)}.7.`;
const A_IP = BASE + '1';
const B_IP = BASE + '2';

interface Fixture {
  mesh: LoopbackMesh;
  a: MeshPod;
  b: MeshPod;
  echo: EchoServer;
}

/** B's plaintext listener believes every connection was addressed to `plainPort` (as sk_lookup would report a connection to B:15006). */
async function setup(t: import('node:test').TestContext, plainPort: () => number): Promise<Fixture> {
  const mesh = await createLoopbackMesh();
  const echo = await startEchoServer(B_IP);
  const a = await mesh.addPod(testWorkload({ name: 'client', namespace: 'frontend', ip: A_IP, serviceAccount: 'fe' }));
  const b = await mesh.addPod(testWorkload({ name: 'server', namespace: 'backend', ip: B_IP, serviceAccount: 'be' }), {
    plaintextOriginalDst: () => ({ address: B_IP, port: plainPort() }),
  });
  t.after(async () => {
    await mesh.close();
    await echo.close();
  });
  return { mesh, a, b, echo };
}

/** Connects, waits for the connection to end; resolves with how (data is not expected). */
function outcome(s: net.Socket): Promise<{ error?: string; bytes: number }> {
  return new Promise((resolve) => {
    let bytes = 0;
    let error: string | undefined;
    s.on('data', (c: Buffer) => (bytes += c.length));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.once('end', () => s.end());
    s.once('close', () => resolve({ ...(error ? { error } : {}), bytes }));
    s.once('connect', () => s.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
  });
}

const rejected = (mesh: LoopbackMesh, direction: string): Promise<number> =>
  counterValue(mesh.registry, 'ambit_connections_rejected_total', { direction, reason: 'self_call' });

test('plaintext to a pod\'s 15006 is refused once and the agent never dials itself', { timeout: 30_000 }, async (t) => {
  const { mesh, echo } = await setup(t, () => 15006);
  const fds = fdCount();
  const rss = rssBytes();
  const r = await outcome(net.connect({ host: B_IP, port: mesh.net.realPort(B_IP, 15006), localAddress: A_IP }));
  assert.deepEqual(r, { error: 'ECONNRESET', bytes: 0 }, 'the client sees a reset');
  assert.ok(await eventually(async () => (await rejected(mesh, 'inbound')) === 1), 'one self_call rejection is counted');
  // A loop would keep accepting its own dials: give it time to show, then count again.
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(await rejected(mesh, 'inbound'), 1, 'no further connections reached the listener');
  assert.equal(echo.sockets.size, 0);
  assert.ok(fdCount() - fds <= 5, `fd count stays flat (${fds} → ${fdCount()})`);
  assert.ok(rssBytes() - rss < 50 * 1024 * 1024, `RSS stays flat (${rss} → ${rssBytes()})`);
  const lines = mesh.sink.lines.filter((l) => l['msg'] === 'plaintext connection to an agent port refused');
  assert.equal(lines.length, 1, 'logged once at warn');
});

test('an HBONE CONNECT to the pod\'s own 15001, 15006 or 15008 gets 400 self_call', { timeout: 30_000 }, async (t) => {
  const { mesh, echo } = await setup(t, () => echo.port);
  const fds = fdCount();
  const session = await hboneSession({ host: B_IP, port: mesh.net.realPort(B_IP, 15008), cert: mesh.certFor('spiffe://cluster.local/ns/frontend/sa/fe') });
  t.after(() => session.destroy());
  for (const port of [15001, 15006, 15008]) {
    const r = await hboneRequest(session, { ':authority': `${B_IP}:${port}` });
    assert.deepEqual({ status: r.status, reason: r.reason }, { status: 400, reason: 'self_call' }, `CONNECT ${B_IP}:${port}`);
  }
  assert.equal(await rejected(mesh, 'inbound'), 3);
  // The session still serves legitimate streams afterwards.
  const ok = await hboneRequest(session, { ':authority': `${B_IP}:${echo.port}` });
  assert.equal(ok.status, 200);
  ok.stream.end('still works');
  const chunks: Buffer[] = [];
  for await (const c of ok.stream) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), 'still works');
  session.destroy();
  assert.ok(await eventually(() => fdCount() - fds <= 5), `fd count back (${fds} → ${fdCount()})`);
});

test('outbound to the agent\'s ports (own pod, loopback, another mesh pod) is refused before any tunnel', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t, () => echo.port);
  const targets = [
    { address: B_IP, port: 15006 },
    { address: B_IP, port: 15008 },
    { address: A_IP, port: 15001 },
    { address: '127.0.0.1', port: 15006 },
  ];
  for (const dst of targets) {
    const r = await outcome(mesh.appConnect(a, dst));
    assert.deepEqual(r, { error: 'ECONNRESET', bytes: 0 }, `${dst.address}:${dst.port} is reset`);
  }
  assert.ok(await eventually(async () => (await rejected(mesh, 'outbound')) === targets.length), 'each is counted as self_call at the source');
  assert.equal(a.pool.stats().length, 0, 'no tunnel was opened');
  assert.equal(await rejected(mesh, 'inbound'), 0);
});
