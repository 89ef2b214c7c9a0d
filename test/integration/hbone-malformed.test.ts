/**
 * Malformed HBONE on 15008 from a peer with a valid mesh certificate (issue 7, "tests that must
 * exist"): other methods, bad :authority, the agent's own ports, garbage after the TLS handshake,
 * rapid resets. Meanwhile legitimate traffic runs through the same agent and must never fail;
 * afterwards the agent's sockets, fds and memory are back near where they started.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import type * as http2 from 'node:http2';
import { once } from 'node:events';
import { createLoopbackMesh, testWorkload } from '../helpers/loopback-net.js';
import { startEchoServer } from '../helpers/echo.js';
import { hboneRequest, hboneSession, hboneTls } from '../helpers/hbone-client.js';
import { counterValue, eventually, fdCount, settledRssBytes } from '../helpers/process-usage.js';

const BASE = `127.${10 + (process.pid % 200)}.10.`;
const A_IP = BASE + '1';
const B_IP = BASE + '2';

/** Resolves when the server closed `s` (or it errored); rejects after `ms`. */
function closedByServer(s: net.Socket, ms = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server kept a garbage connection open')), ms);
    s.on('error', () => undefined);
    s.on('data', () => undefined);
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

test('malformed HBONE with a valid certificate is refused; other traffic never fails; nothing leaks', { timeout: 120_000 }, async (t) => {
  const mesh = await createLoopbackMesh();
  const echo = await startEchoServer(B_IP);
  const a = await mesh.addPod(testWorkload({ name: 'client', namespace: 'frontend', ip: A_IP, serviceAccount: 'fe' }));
  await mesh.addPod(testWorkload({ name: 'server', namespace: 'backend', ip: B_IP, serviceAccount: 'be' }));
  t.after(async () => {
    await mesh.close();
    await echo.close();
  });
  const port = mesh.net.realPort(B_IP, 15008);
  const cert = mesh.certFor('spiffe://cluster.local/ns/frontend/sa/fe');

  // Warm up (TLS contexts, the pooled tunnel), then take the baseline.
  const payload = crypto.randomBytes(64 * 1024);
  const want = crypto.createHash('sha256').update(payload).digest('hex');
  const transfer = (): Promise<boolean> =>
    new Promise((resolve) => {
      const s = mesh.appConnect(a, { address: B_IP, port: echo.port });
      const h = crypto.createHash('sha256');
      s.on('data', (c: Buffer) => h.update(c));
      s.on('error', () => resolve(false));
      s.once('end', () => resolve(h.digest('hex') === want));
      s.once('connect', () => s.end(payload));
    });
  assert.equal(await transfer(), true);
  const fds = fdCount();
  const rss = settledRssBytes();

  // Legitimate traffic for the whole attack: every transfer must come back intact.
  let stop = false;
  let good = 0;
  let bad = 0;
  const legit = (async () => {
    while (!stop) (await transfer()) ? good++ : bad++;
  })();

  const session = await hboneSession({ host: B_IP, port, cert });
  t.after(() => session.destroy());
  const rejected = (reason: string) => counterValue(mesh.registry, 'ambit_connections_rejected_total', { direction: 'inbound', reason });

  await t.test('methods other than CONNECT get 400 not_connect', async () => {
    for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
      const r = await hboneRequest(session, { ':method': method, ':path': '/', ':scheme': 'https', ':authority': `${B_IP}:${echo.port}` });
      assert.deepEqual({ status: r.status, reason: r.reason }, { status: 400, reason: 'not_connect' }, method);
    }
    assert.equal(await rejected('not_connect'), 6);
  });

  await t.test('a bad :authority gets 400 and names why', async () => {
    const cases: Array<[string, string]> = [
      ['nonsense', 'bad_authority'],
      [B_IP, 'bad_authority'],
      [`${B_IP}:0`, 'bad_authority'],
      [`${B_IP}:65536`, 'bad_authority'],
      [`[${B_IP}]:80`, 'bad_authority'],
      ['[::1', 'bad_authority'],
      [`example.com:${echo.port}`, 'bad_authority'],
      ['x'.repeat(4096) + ':80', 'bad_authority'],
      [`999.1.1.1:${echo.port}`, 'bad_authority'],
      [`${A_IP}:${echo.port}`, 'ip_mismatch'],
      [`10.0.0.1:${echo.port}`, 'ip_mismatch'],
    ];
    for (const [authority, reason] of cases) {
      const r = await hboneRequest(session, { ':authority': authority });
      assert.deepEqual({ status: r.status, reason: r.reason }, { status: 400, reason }, authority.slice(0, 40));
    }
  });

  await t.test('CONNECT to the agent\'s own ports gets 400 self_call', async () => {
    for (const p of [15001, 15006, 15008]) {
      const r = await hboneRequest(session, { ':authority': `${B_IP}:${p}` });
      assert.deepEqual({ status: r.status, reason: r.reason }, { status: 400, reason: 'self_call' });
    }
  });

  await t.test('garbage after the TLS handshake, plaintext and HTTP/1 on 15008 are closed', async () => {
    const garbage = hboneTls({ host: B_IP, port, cert });
    await once(garbage, 'secureConnect');
    garbage.write(crypto.randomBytes(4096));
    await closedByServer(garbage);
    const h1 = hboneTls({ host: B_IP, port, cert });
    await once(h1, 'secureConnect');
    h1.write(`CONNECT ${B_IP}:${echo.port} HTTP/1.1\r\nhost: ${B_IP}:${echo.port}\r\n\r\n`);
    await closedByServer(h1);
    const plain = net.connect({ host: B_IP, port });
    plain.once('connect', () => plain.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + 'x'.repeat(100)));
    await closedByServer(plain);
    const preface = hboneTls({ host: B_IP, port, cert });
    await once(preface, 'secureConnect');
    // A valid preface followed by a frame header announcing 16 MiB of DATA on stream 0.
    preface.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0xff, 0xff, 0xff, 0x00, 0x00, 0, 0, 0, 0])]));
    await closedByServer(preface);
  });

  await t.test('1,000 CONNECTs cancelled at once (rapid reset) leave the agent serving', async () => {
    const rapid = await hboneSession({ host: B_IP, port, cert });
    for (let i = 0; i < 1000 && !rapid.destroyed; i++) {
      let s: http2.ClientHttp2Stream;
      try {
        s = rapid.request({ ':method': 'CONNECT', ':authority': `${B_IP}:${echo.port}` });
      } catch {
        break;
      }
      s.on('error', () => undefined);
      s.close(0x8);
    }
    await new Promise((r) => setTimeout(r, 500));
    rapid.destroy();
    const r = await hboneRequest(session, { ':authority': `${B_IP}:${echo.port}` });
    assert.equal(r.status, 200, 'the agent still serves CONNECT');
    r.stream.destroy();
  });

  session.destroy();
  stop = true;
  await legit;
  t.diagnostic(`${good} legitimate transfers during the attacks`);
  assert.equal(bad, 0, 'no legitimate transfer failed');
  assert.ok(good > 0);
  assert.ok(await eventually(() => echo.sockets.size === 0 && mesh.connections.size === 0, 20_000), `app sockets closed (${echo.sockets.size}), registry empty (${mesh.connections.size})`);
  assert.ok(await eventually(() => fdCount() - fds <= 10, 20_000), `fd count back near the start (${fds} → ${fdCount()})`);
  // Memory, once collected and trimmed (what a leak still holds): a leak of the size (130 MB) would show.
  const rssAfter = settledRssBytes();
  assert.ok(rssAfter - rss < 60 * 1024 * 1024, `RSS back near the start (${Math.round(rss / 1e6)} → ${Math.round(rssAfter / 1e6)} MB)`);
});
