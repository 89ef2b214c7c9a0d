/**
 * Certificates and pooled tunnels (issue 7, item 6): 15008 refuses expired and not-yet-valid
 * client certificates; a pooled tunnel is retired (drained, not reset) before its client
 * certificate expires and after a number of streams, while traffic on it loses nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import { createLoopbackMesh, testWorkload, type LoopbackMesh, type MeshPod } from '../helpers/loopback-net.js';
import { startEchoServer, type EchoServer } from '../helpers/echo.js';
import { hboneSession } from '../helpers/hbone-client.js';
import { counterValue, eventually } from '../helpers/process-usage.js';
import type { TunnelCertificate } from '../../src/shared/hbone/tunnel.js';
import type { TunnelPoolOptions } from '../../src/shared/hbone/pool.js';

const BASE = `127.${10 + (process.pid % 200)}.9.`;
const A_IP = BASE + '1';
const B_IP = BASE + '2';
const FE = 'spiffe://cluster.local/ns/frontend/sa/fe';

async function setup(t: import('node:test').TestContext, pool: (mesh: LoopbackMesh) => Partial<TunnelPoolOptions> = () => ({})): Promise<{ mesh: LoopbackMesh; a: MeshPod; echo: EchoServer }> {
  const mesh = await createLoopbackMesh();
  const echo = await startEchoServer(B_IP);
  const a = await mesh.addPod(testWorkload({ name: 'client', namespace: 'frontend', ip: A_IP, serviceAccount: 'fe' }), { pool: pool(mesh) });
  await mesh.addPod(testWorkload({ name: 'server', namespace: 'backend', ip: B_IP, serviceAccount: 'be' }));
  t.after(async () => {
    await mesh.close();
    await echo.close();
  });
  return { mesh, a, echo };
}

/** Sends `payload`, half-closes, and checks the echo; resolves with what went wrong, or undefined. */
function checksummedEcho(s: net.Socket, payload: Buffer, pauseMs = 0): Promise<string | undefined> {
  const want = crypto.createHash('sha256').update(payload).digest('hex');
  return new Promise((resolve) => {
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    let error: string | undefined;
    s.on('data', (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
    });
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.once('end', () => s.end());
    s.once('close', () => {
      const got = hash.digest('hex');
      resolve(error ?? (bytes !== payload.length ? `got ${bytes} of ${payload.length} bytes` : got !== want ? 'checksum mismatch' : undefined));
    });
    s.once('connect', () => {
      // A long connection sends half, waits, then the rest: it spans whatever happens meanwhile.
      const half = pauseMs > 0 ? payload.length >> 1 : payload.length;
      s.write(payload.subarray(0, half));
      setTimeout(() => s.end(payload.subarray(half)), pauseMs);
    });
  });
}

test('15008 refuses an expired and a not-yet-valid client certificate', { timeout: 30_000 }, async (t) => {
  const { mesh, echo } = await setup(t);
  const port = mesh.net.realPort(B_IP, 15008);
  const failures = () => counterValue(mesh.registry, 'ambit_mtls_handshake_failures_total', { direction: 'inbound' });
  const asCert = (c: { certChainPem: string[]; keyPem: string }): TunnelCertificate => ({ ...c, rootsPem: [mesh.ca.rootPem] });
  const expired = asCert(mesh.ca.issueAt(FE, Date.now() - 2 * 3_600_000, 3_600_000));
  const future = asCert(mesh.ca.issueAt(FE, Date.now() + 24 * 3_600_000, 3_600_000));
  for (const [name, cert] of [['expired', expired], ['not yet valid', future]] as const) {
    const before = await failures();
    await assert.rejects(hboneSession({ host: B_IP, port, cert }), `${name}: no session`);
    assert.ok(await eventually(async () => (await failures()) === before + 1), `${name}: counted as a failed handshake`);
  }
  const reasons = mesh.sink.lines.filter((l) => l['msg'] === 'mtls handshake failed').map((l) => l['authorizationError']);
  assert.deepEqual(reasons, ['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID'], 'the log names why each certificate was refused');
  // A valid certificate from the same CA still gets in.
  const ok = await hboneSession({ host: B_IP, port, cert: mesh.certFor(FE) });
  ok.destroy();
  void echo;
});

test('a busy pooled tunnel is retired before its client certificate expires; nothing is lost', { timeout: 90_000 }, async (t) => {
  // Certificates of 8 s, retired 3 s before expiry; a fresh one once the current has < 4 s left.
  const LIFETIME_MS = 8000;
  let current: (TunnelCertificate & { notAfterMs: number }) | undefined;
  const serials = new Set<string>();
  const { mesh, a, echo } = await setup(t, (m) => ({
    retireBeforeExpiryMs: 3000,
    getCertificate: async (id: string) => {
      if (!current || current.notAfterMs - Date.now() < 4000) {
        const c = m.ca.issue(id, LIFETIME_MS);
        const x = new crypto.X509Certificate(c.certChainPem[0]!);
        serials.add(x.serialNumber);
        current = { ...c, rootsPem: [m.ca.rootPem], notAfterMs: Date.parse(x.validTo) };
      }
      return current;
    },
  }));
  const firstNotAfter = await (async () => {
    const r = await checksummedEcho(mesh.appConnect(a, { address: B_IP, port: echo.port }), crypto.randomBytes(1024));
    assert.equal(r, undefined);
    return current!.notAfterMs;
  })();
  const payload = crypto.randomBytes(256 * 1024);
  let done = 0;
  const failures: string[] = [];
  // Long connections opened now, on the first tunnel, that carry data across its expiry.
  const long = Array.from({ length: 4 }, () => checksummedEcho(mesh.appConnect(a, { address: B_IP, port: echo.port }), payload, firstNotAfter - Date.now() + 1500));
  // New connections keep coming, four at a time, until well past the first certificate's expiry.
  const until = firstNotAfter + 3000;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (Date.now() < until) {
        const r = await checksummedEcho(mesh.appConnect(a, { address: B_IP, port: echo.port }), payload);
        if (r) failures.push(r);
        else done++;
      }
    }),
  );
  const longResults = await Promise.all(long);
  assert.deepEqual(failures, [], 'no short transfer failed');
  assert.deepEqual(longResults, [undefined, undefined, undefined, undefined], 'the long transfers on the retired tunnel finished intact (drained, not reset)');
  t.diagnostic(`${done} checksummed transfers, ${serials.size} certificates`);
  assert.ok(serials.size >= 2, 'a fresh certificate was used after the first one neared expiry');
  const retired = mesh.sink.lines.filter((l) => l['msg'] === 'tunnel connection retired' && l['reason'] === 'cert_expiry');
  assert.ok(retired.length >= 1, 'the first tunnel was retired for its certificate');
  const first = retired[0]!;
  const notAfter = Date.parse((first['certificate'] as { notAfter: string }).notAfter);
  assert.equal(notAfter, Math.floor(firstNotAfter / 1000) * 1000);
  const retiredAt = typeof first['time'] === 'number' ? first['time'] : Date.parse(String(first['time']));
  assert.ok(retiredAt < notAfter, `retired at ${new Date(retiredAt).toISOString()}, before it expired at ${new Date(notAfter).toISOString()}`);
  assert.ok((await counterValue(mesh.registry, 'ambit_tunnel_sessions_ended_total', { direction: 'outbound', reason: 'retired_cert_expiry' })) >= 1);
  for (const s of a.pool.stats()) assert.ok(s.certificate && Date.parse(s.certificate.notAfter) > Date.now() - 1000 || s.state === 'draining', `no ready tunnel presents an expired certificate: ${JSON.stringify(s)}`);
});

test('a pooled tunnel is retired after its maximum number of streams', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t, () => ({ maxStreamsTotal: 5 }));
  const payload = crypto.randomBytes(4096);
  for (let i = 0; i < 12; i++) assert.equal(await checksummedEcho(mesh.appConnect(a, { address: B_IP, port: echo.port }), payload), undefined, `transfer ${i}`);
  assert.ok(await eventually(async () => (await counterValue(mesh.registry, 'ambit_tunnel_sessions_ended_total', { direction: 'outbound', reason: 'retired_max_streams' })) === 2), 'retired after streams 5 and 10');
  const live = a.pool.stats();
  assert.equal(live.filter((s) => s.state === 'ready').length, 1);
  assert.equal(live.find((s) => s.state === 'ready')!.streamsTotal, 2, 'the third connection carries streams 11 and 12');
});
