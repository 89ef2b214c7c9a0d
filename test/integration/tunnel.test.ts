/**
 * Outbound → HBONE tunnel → inbound → app over 127.0.0.0/8 with real TLS 1.3 from a test CA,
 * through the real OutboundProxy, TunnelPool, InboundHbone and InboundPlaintext classes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { once } from 'node:events';
import { twoPodMesh, type TwoPodMesh } from '../helpers/loopback-net.js';
import { workloadIdentity } from '../../src/shared/state/workloads.js';
import { buildConnectHeaders } from '../../src/shared/hbone/tunnel.js';
import { isAmbitError } from '../../src/shared/errors.js';
import { flushCopyCounters } from '../../src/shared/hbone/copy.js';

const BASE = `127.${10 + (process.pid % 200)}.1.`;
const A_IP = BASE + '1';
const B_IP = BASE + '2';
const C_IP = BASE + '3';

const setup = (t: import('node:test').TestContext): Promise<TwoPodMesh> => twoPodMesh(t, BASE);

/** Writes `payload`, half-closes, resolves with all bytes read until the peer's FIN (or close). */
function exchange(s: net.Socket, payload: Buffer | string): Promise<{ data: Buffer; ended: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let ended = false;
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => {
      ended = true;
      s.end();
    });
    s.on('error', () => undefined);
    s.once('close', () => resolve({ data: Buffer.concat(chunks), ended }));
    const go = (): void => void s.end(payload);
    if (s.connecting) s.once('connect', go);
    else go();
  });
}

test('a connection from pod A reaches B through the tunnel with source IP, metrics and access log', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t);
  const s = mesh.appConnect(a, { address: B_IP, port: echo.port });
  const r = await exchange(s, 'hello through hbone');
  assert.equal(r.data.toString(), 'hello through hbone');
  assert.equal(r.ended, true, 'the echo server FIN reaches the client');
  assert.deepEqual(echo.peers, [A_IP], 'the server sees A\'s pod IP as source');

  // Both access-log lines are written at close: wait (bounded) for them.
  for (let i = 0; i < 100 && mesh.sink.access().length < 2; i++) await new Promise((r2) => setTimeout(r2, 20));
  const access = mesh.sink.access();
  const out = access.find((l) => l['direction'] === 'outbound');
  const inb = access.find((l) => l['direction'] === 'inbound');
  assert.ok(out && inb, `expected an outbound and an inbound access line, got ${JSON.stringify(access)}`);
  const aId = 'spiffe://cluster.local/ns/frontend/sa/fe';
  const bId = 'spiffe://cluster.local/ns/backend/sa/be';
  assert.deepEqual(out['src'], { addr: A_IP, workload: 'client', namespace: 'frontend', identity: aId });
  assert.equal((out['dst'] as Record<string, unknown>)['identity'], bId);
  assert.equal((out['dst'] as Record<string, unknown>)['hboneAddr'], `${B_IP}:${echo.port}`);
  assert.equal(out['bytesReceived'], 19);
  assert.equal(out['bytesSent'], 19);
  assert.equal(out['reason'], 'closed');
  assert.equal(typeof out['durationMs'], 'number');
  assert.equal((inb['src'] as Record<string, unknown>)['identity'], aId);
  assert.equal((inb['dst'] as Record<string, unknown>)['workload'], 'server');
  assert.equal(inb['bytesReceived'], 19);

  const opened = await mesh.registry.getSingleMetric('istio_tcp_connections_opened_total')!.get();
  const src = opened.values.find((v) => v.labels['reporter'] === 'source');
  const dst = opened.values.find((v) => v.labels['reporter'] === 'destination');
  assert.ok(src && dst);
  assert.equal(src.value, 1);
  assert.deepEqual(
    { ...src.labels },
    {
      reporter: 'source',
      source_workload: 'client',
      source_canonical_service: 'client',
      source_canonical_revision: 'v1',
      source_workload_namespace: 'frontend',
      source_principal: aId,
      source_app: 'client',
      source_version: 'v1',
      source_cluster: 'Kubernetes',
      destination_service: 'unknown',
      destination_service_namespace: 'unknown',
      destination_service_name: 'unknown',
      destination_workload: 'server',
      destination_canonical_service: 'server',
      destination_canonical_revision: 'v1',
      destination_workload_namespace: 'backend',
      destination_principal: bId,
      destination_app: 'server',
      destination_version: 'v1',
      destination_cluster: 'Kubernetes',
      request_protocol: 'tcp',
      response_flags: '-',
      connection_security_policy: 'mutual_tls',
    },
  );
  assert.equal(dst.labels['source_principal'], aId);
  flushCopyCounters(); // byte counters are handed over by batch, as a /metrics scrape does first
  const received = await mesh.registry.getSingleMetric('istio_tcp_received_bytes_total')!.get();
  assert.equal(received.values.find((v) => v.labels['reporter'] === 'destination')?.value, 19);
  const closed = await mesh.registry.getSingleMetric('istio_tcp_connections_closed_total')!.get();
  assert.equal(closed.values.reduce((n, v) => n + v.value, 0), 2);
});

test('byte counters move while a long connection is still open', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t);
  const s = mesh.appConnect(a, { address: B_IP, port: echo.port });
  s.write(Buffer.alloc(1000, 1));
  let got = 0;
  for await (const c of s) {
    got += (c as Buffer).length;
    if (got >= 1000) break;
  }
  flushCopyCounters(); // byte counters are handed over by batch, as a /metrics scrape does first
  const received = await mesh.registry.getSingleMetric('istio_tcp_received_bytes_total')!.get();
  const src = received.values.find((v) => v.labels['reporter'] === 'source');
  assert.equal(src?.value, 1000, 'bytes counted before close');
  const closed = await mesh.registry.getSingleMetric('istio_tcp_connections_closed_total')!.get();
  assert.equal(closed.values.length, 0, 'nothing closed yet');
  s.destroy();
});

test('half-close carries a FIN each way independently', { timeout: 30_000 }, async (t) => {
  const { mesh, a } = await setup(t);
  // A server that speaks first, half-closes, and still reads what the client sends afterwards.
  const serverGot: Buffer[] = [];
  let serverSawEnd = false;
  let onServerEnd: () => void = () => undefined;
  const server = net.createServer({ allowHalfOpen: true }, (c) => {
    c.on('data', (d: Buffer) => serverGot.push(d));
    c.once('end', () => {
      serverSawEnd = true;
      onServerEnd();
      c.end();
    });
    c.end('banner then FIN');
  });
  server.listen(0, B_IP);
  await once(server, 'listening');
  t.after(() => server.close());
  const port = (server.address() as net.AddressInfo).port;

  const s = mesh.appConnect(a, { address: B_IP, port });
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  await once(s, 'end');
  assert.equal(Buffer.concat(chunks).toString(), 'banner then FIN');
  assert.equal(s.writable, true, 'the client can still write after the server FIN');
  const serverEnded = new Promise<void>((resolve) => (onServerEnd = resolve));
  s.end('written after server FIN');
  await once(s, 'close');
  await serverEnded;
  assert.equal(Buffer.concat(serverGot).toString(), 'written after server FIN');
  assert.equal(serverSawEnd, true);

  // The other direction: client FIN first, server replies after it.
  const s2 = mesh.appConnect(a, { address: B_IP, port });
  const r = await exchange(s2, 'client first');
  assert.equal(r.ended, true);
  assert.equal(r.data.toString(), 'banner then FIN');
});

test('a server presenting an unexpected identity is refused and counted', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t);
  await assert.rejects(
    a.pool.open({
      srcIdentity: workloadIdentity(a.workload),
      expectedIdentities: ['spiffe://cluster.local/ns/backend/sa/somebody-else'],
      tunnelAddress: { address: B_IP, port: 15008 },
      target: { address: B_IP, port: echo.port },
      headers: buildConnectHeaders({ target: { address: B_IP, port: echo.port }, srcIp: A_IP }),
    }),
    (e: unknown) => isAmbitError(e, 'AMBIT_ERR_TUNNEL_IDENTITY'),
  );
  const failures = await mesh.registry.getSingleMetric('ambit_mtls_handshake_failures_total')!.get();
  assert.equal(failures.values.find((v) => v.labels['direction'] === 'outbound')?.value, 1);
  assert.equal(a.pool.stats().length, 0, 'the refused connection is not pooled');
});

test('the outbound proxy closes the app connection when the destination identity does not match', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t);
  // The config claims B runs as another service account than the certificate it presents.
  const idx = mesh.index();
  const b = idx.workloadByIp(B_IP)!;
  mesh.setConfig({ workloads: [idx.workloadByIp(A_IP)!, { ...b, serviceAccount: 'impostor-check' }] });
  const s = mesh.appConnect(a, { address: B_IP, port: echo.port });
  const r = await exchange(s, 'x');
  assert.equal(r.data.length, 0);
  assert.equal(echo.peers.length, 0, 'nothing reached the server');
  for (let i = 0; i < 100 && mesh.sink.access().length < 1; i++) await new Promise((r2) => setTimeout(r2, 20));
  assert.equal(mesh.sink.access()[0]?.['reason'], 'identity_mismatch');
});

test('a client without a mesh certificate is refused at the TLS handshake', { timeout: 30_000 }, async (t) => {
  const { mesh, b } = await setup(t);
  const port = mesh.net.realPort(B_IP, 15008);
  void b;
  const attempt = (opts: tls.ConnectionOptions): Promise<string> =>
    new Promise((resolve) => {
      const s = tls.connect({ host: B_IP, port, ca: [mesh.ca.rootPem], ALPNProtocols: ['h2'], checkServerIdentity: () => undefined, ...opts });
      s.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
      s.once('secureConnect', () => {
        // TLS 1.3: the server's verdict on our certificate arrives after our handshake completes.
        s.once('data', () => resolve('data'));
        s.once('close', () => resolve('closed'));
      });
    });
  const noCert = await attempt({});
  assert.notEqual(noCert, 'data', `no-cert client must not get a session (${noCert})`);
  const other = (await import('../helpers/test-ca.js')).createTestCa();
  const foreign = other.issue('spiffe://cluster.local/ns/frontend/sa/fe');
  const foreignResult = await attempt({ cert: foreign.certChainPem.join('\n'), key: foreign.keyPem });
  assert.notEqual(foreignResult, 'data', `foreign-CA client must not get a session (${foreignResult})`);
  for (let i = 0; i < 100; i++) {
    const v = (await mesh.registry.getSingleMetric('ambit_mtls_handshake_failures_total')!.get()).values;
    if ((v.find((x) => x.labels['direction'] === 'inbound')?.value ?? 0) >= 2) break;
    await new Promise((r2) => setTimeout(r2, 20));
  }
  const failures = await mesh.registry.getSingleMetric('ambit_mtls_handshake_failures_total')!.get();
  assert.equal(failures.values.find((v) => v.labels['direction'] === 'inbound')?.value, 2);
});

test('the client sends no SNI and the CONNECT carries forwarded, baggage and traceparent', { timeout: 30_000 }, async (t) => {
  const { mesh, a, b, echo } = await setup(t);
  let servername: unknown = 'unset';
  const headersSeen: Array<Record<string, unknown>> = [];
  const h2 = (b.inbound as unknown as { h2: import('node:http2').Http2SecureServer }).h2;
  h2.prependListener('secureConnection', (s: tls.TLSSocket) => (servername = (s as unknown as { servername: unknown }).servername));
  h2.prependListener('stream', (_s, h) => headersSeen.push({ ...h }));
  const app = mesh.appConnect(a, { address: B_IP, port: echo.port });
  let appPort: number | undefined;
  app.once('connect', () => (appPort = app.localPort));
  const r = await exchange(app, 'x');
  assert.equal(r.data.toString(), 'x');
  assert.equal(servername, false, 'no SNI');
  const h = headersSeen[0]!;
  assert.equal(h[':method'], 'CONNECT');
  assert.equal(h[':authority'], `${B_IP}:${echo.port}`);
  assert.equal(h['forwarded'], `for="${A_IP}:${appPort}"`, "the client's address and port, as ztunnel writes them");
  assert.match(String(h['traceparent']), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  assert.match(String(h['baggage']), /k8s\.namespace\.name=frontend/);
});

test('a CONNECT naming another pod gets 400 and a failed upstream gets 503', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t);
  const open = (target: { address: string; port: number }) =>
    a.pool.open({
      srcIdentity: workloadIdentity(a.workload),
      expectedIdentities: [workloadIdentity(mesh.index().workloadByIp(B_IP)!)],
      tunnelAddress: { address: B_IP, port: 15008 },
      target,
      headers: buildConnectHeaders({ target, srcIp: A_IP }),
    });
  await assert.rejects(open({ address: C_IP, port: echo.port }), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_TUNNEL_CONNECT') && e.details?.['status'] === 400 && e.details?.['reason'] === 'ip_mismatch');
  // A port nothing listens on (the echo server's port + a closed one) → 503.
  const closedPort = await new Promise<number>((resolve) => {
    const tmp = net.createServer().listen(0, B_IP, () => {
      const p = (tmp.address() as net.AddressInfo).port;
      tmp.close(() => resolve(p));
    });
  });
  await assert.rejects(open({ address: B_IP, port: closedPort }), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_UPSTREAM_CONNECT'));
  const ok = await open({ address: B_IP, port: echo.port });
  ok.stream.end('y');
  const chunks: Buffer[] = [];
  for await (const c of ok.stream) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), 'y');
  assert.equal(a.pool.stats().length, 1, 'all three streams shared one pooled connection');
});

test('a pooled connection whose peer went silent is probed and replaced', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t);
  // A relay between A and B's 15008 that can freeze existing connections (peer gone, no FIN).
  const pairs: Array<[net.Socket, net.Socket]> = [];
  const relay = net.createServer((c) => {
    const u = net.connect({ host: B_IP, port: mesh.net.realPort(B_IP, 15008) });
    c.pipe(u).pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
    pairs.push([c, u]);
  });
  relay.listen(0, A_IP);
  await once(relay, 'listening');
  t.after(() => {
    for (const [c, u] of pairs) {
      c.destroy();
      u.destroy();
    }
    relay.close();
  });
  const relayPort = (relay.address() as net.AddressInfo).port;
  const { TunnelPool } = await import('../../src/shared/hbone/pool.js');
  const pool = new TunnelPool({
    log: mesh.log,
    metrics: mesh.metrics,
    connectTcp: () => net.connect({ host: A_IP, port: relayPort }),
    getCertificate: async (id) => mesh.certFor(id),
    replyTimeoutMs: 300,
  });
  t.after(() => pool.destroy());
  const target = { address: B_IP, port: echo.port };
  const req = {
    srcIdentity: workloadIdentity(a.workload),
    expectedIdentities: ['spiffe://cluster.local/ns/backend/sa/be'],
    tunnelAddress: { address: B_IP, port: 15008 },
    target,
    headers: buildConnectHeaders({ target, srcIp: A_IP }),
  };
  const first = await pool.open(req);
  first.stream.close();
  assert.equal(pool.stats().length, 1);
  for (const [c, u] of pairs) {
    c.unpipe();
    u.unpipe();
    c.pause();
    u.pause();
  }
  await assert.rejects(pool.open({ ...req, headers: buildConnectHeaders({ target, srcIp: A_IP }) }), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_TUNNEL_CONNECT'));
  for (let i = 0; i < 200 && pool.stats().length > 0; i++) await new Promise((r) => setTimeout(r, 25));
  assert.equal(pool.stats().length, 0, 'the silent connection was dropped after the failed PING');
  const third = await pool.open({ ...req, headers: buildConnectHeaders({ target, srcIp: A_IP }) });
  assert.equal(pool.stats().length, 1, 'a fresh connection replaced it');
  third.stream.destroy();
});

test('a connection redirected through loopback (as capture does) is attributed to the pod address', { timeout: 30_000 }, async (t) => {
  const { mesh, a, b, echo } = await setup(t);
  const headersSeen: Array<Record<string, unknown>> = [];
  const h2 = (b.inbound as unknown as { h2: import('node:http2').Http2SecureServer }).h2;
  h2.prependListener('stream', (_s, h) => headersSeen.push({ ...h }));
  const app = mesh.appConnect(a, { address: B_IP, port: echo.port }, '127.0.0.1');
  let appPort: number | undefined;
  app.once('connect', () => (appPort = app.localPort));
  const r = await exchange(app, 'lo');
  assert.equal(r.data.toString(), 'lo');
  assert.equal(headersSeen[0]?.['forwarded'], `for="${A_IP}:${appPort}"`);
  for (let i = 0; i < 100 && !mesh.sink.access().some((l) => l['direction'] === 'outbound'); i++) await new Promise((r2) => setTimeout(r2, 20));
  const out = mesh.sink.access().find((l) => l['direction'] === 'outbound')!;
  assert.equal((out['src'] as Record<string, unknown>)['addr'], A_IP);
});

/**
 * Replaces B's HBONE listener with an HTTP/2 server that answers a CONNECT only after it has read
 * the stream's first bytes, with `status` (and, when not 200, the reason header); on 200 it echoes.
 */
async function replyAfterFirstBytes(t: import('node:test').TestContext, m: TwoPodMesh, status: number): Promise<{ seen: string[] }> {
  const http2 = await import('node:http2');
  const { REASON_HEADER } = await import('../../src/shared/hbone/tunnel.js');
  await m.b.inbound.close(0);
  const cert = m.mesh.certFor(workloadIdentity(m.wb));
  const h2 = http2.createSecureServer({ cert: cert.certChainPem.join('\n'), key: cert.keyPem, ca: cert.rootsPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] });
  const seen: string[] = [];
  h2.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.once('data', (first: Buffer) => {
      seen.push(first.toString());
      if (status !== 200) return void stream.respond({ ':status': status, [REASON_HEADER]: 'policy_denied' }, { endStream: true });
      stream.respond({ ':status': 200 });
      stream.end(first);
    });
  });
  const server = await m.mesh.net.pod(B_IP).listen(15008);
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    h2.emit('connection', s);
  });
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
    h2.close();
  });
  return { seen };
}

test('the client\'s first bytes travel behind the CONNECT, before its reply', { timeout: 30_000 }, async (t) => {
  const m = await setup(t);
  const peer = await replyAfterFirstBytes(t, m, 200);
  const s = m.mesh.appConnect(m.a, { address: B_IP, port: m.echo.port });
  const r = await exchange(s, 'early bytes');
  assert.deepEqual(peer.seen, ['early bytes'], 'the peer read the bytes before it replied');
  assert.equal(r.data.toString(), 'early bytes');
  for (let i = 0; i < 100 && !m.mesh.sink.access().some((l) => l['direction'] === 'outbound'); i++) await new Promise((r2) => setTimeout(r2, 20));
  const out = m.mesh.sink.access().find((l) => l['direction'] === 'outbound');
  assert.equal(out?.['reason'], 'closed');
  assert.equal(out?.['bytesReceived'], 11);
  flushCopyCounters();
  const received = await m.mesh.registry.getSingleMetric('istio_tcp_received_bytes_total')!.get();
  assert.equal(received.values.find((v) => v.labels['reporter'] === 'source')?.value, 11, 'bytes sent before the reply are counted once it came');
});

test('bytes sent behind a CONNECT the peer refuses go nowhere; the client is reset and nothing counts as opened', { timeout: 30_000 }, async (t) => {
  const m = await setup(t);
  const peer = await replyAfterFirstBytes(t, m, 401);
  const s = m.mesh.appConnect(m.a, { address: B_IP, port: m.echo.port });
  const r = await exchange(s, 'refused bytes');
  assert.deepEqual(peer.seen, ['refused bytes']);
  assert.equal(r.data.length, 0);
  assert.equal(r.ended, false, 'the client sees a reset, not a FIN');
  assert.equal(m.echo.peers.length, 0, 'nothing reached the app');
  for (let i = 0; i < 100 && !m.mesh.sink.access().some((l) => l['direction'] === 'outbound'); i++) await new Promise((r2) => setTimeout(r2, 20));
  const out = m.mesh.sink.access().find((l) => l['direction'] === 'outbound');
  assert.equal(out?.['reason'], 'policy_denied');
  assert.equal(out?.['responseFlags'], 'DENY');
  flushCopyCounters();
  const opened = await m.mesh.registry.getSingleMetric('istio_tcp_connections_opened_total')!.get();
  assert.equal(opened.values.find((v) => v.labels['reporter'] === 'source' && v.labels['response_flags'] !== 'DENY')?.value, undefined, 'no connection counted as opened without DENY');
  const received = await m.mesh.registry.getSingleMetric('istio_tcp_received_bytes_total')!.get();
  assert.equal(received.values.filter((v) => v.labels['reporter'] === 'source').reduce((a, v) => a + v.value, 0), 0, 'no bytes counted for a refused connection');
});
