/** The Agent wired end to end on loopback: snapshots enroll pods, traffic flows, admin endpoints answer. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { LoopbackNet, LogSink, testWorkload } from '../helpers/loopback-net.js';
import { startEchoServer } from '../helpers/echo.js';
import { createTestCa } from '../helpers/test-ca.js';
import { createLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import type { Authorization, Workload } from '../../src/shared/model.js';
import { Agent } from '../../src/agent/agent.js';
import type { ConfigSnapshot } from '../../src/shared/state/workloads.js';
import type { Address } from '../../src/shared/address.js';

const BASE = `127.${10 + (process.pid % 200)}.4.`;
const A_IP = BASE + '1';
const B_IP = BASE + '2';
const C_IP = BASE + '3';

function snapshot(workloads: Workload[], authorizations: Authorization[] = []): ConfigSnapshot {
  return {
    workloads: new Map(workloads.map((w) => [w.uid, w])),
    services: new Map(),
    authorizations: new Map(authorizations.map((a) => [`${a.namespace}/${a.name}`, a])),
  };
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

async function setup(t: import('node:test').TestContext, opts: { failPod?: string; failTimes?: number; sameNodeFastPath?: boolean; releaseEveryMs?: number } = {}) {
  let failures = 0;
  const loop = new LoopbackNet();
  const ca = createTestCa();
  const sink = new LogSink();
  const log = createLogger({ level: 'info', destination: sink as unknown as import('pino').DestinationStream });
  const registry = createRegistry();
  const issued = new Map<string, { certChainPem: string[]; keyPem: string; rootsPem: string[]; notAfter: Date }>();
  const waiting = new Map<string, { dst?: Address; resolve?: (a: Address) => void }>();
  let releases = 0;
  const agent = new Agent({
    nodeName: 'node1',
    log,
    registry,
    certs: {
      getCertificate: async (id) => {
        let c = issued.get(id);
        if (!c) issued.set(id, (c = ca.workloadCert(id)));
        return c;
      },
    },
    podSockets: (w) => {
      if (w.name === opts.failPod && (opts.failTimes === undefined || failures++ < opts.failTimes)) throw new Error('netns is gone');
      return loop.pod(w.addresses[0]!);
    },
    // Loopback pods listen on their own address (the netns sockets use 127.0.0.1 for 15001).
    listen: { outbound: '0.0.0.0' },
    releaseFreedMemory: () => releases++,
    releaseFreedMemoryDelayMs: 50,
    ...(opts.releaseEveryMs !== undefined ? { releaseFreedMemoryEveryMs: opts.releaseEveryMs } : {}),
    ...(opts.sameNodeFastPath !== undefined ? { sameNodeFastPath: opts.sameNodeFastPath } : {}),
    originalDestination: (s) => {
      const entry = waiting.get(`${s.remoteAddress}|${s.remotePort}`);
      if (!entry?.dst) throw new Error('test did not register the destination');
      return entry.dst;
    },
  });
  const addrs = await agent.startAdmin({ metrics: { host: '127.0.0.1', port: 0 }, ready: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
  const echo = await startEchoServer(B_IP);
  t.after(async () => {
    await agent.close(200);
    loop.closeAll();
    await echo.close();
  });
  /** An app in pod `ip` dialing `dst`: the destination is registered before the agent reads it. */
  const dial = (ip: string, dst: Address): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      // Bind first so the source port is known before the agent accepts.
      const probe = net.createServer().listen(0, ip, () => {
        const port = (probe.address() as net.AddressInfo).port;
        probe.close(() => {
          waiting.set(`${ip}|${port}`, { dst });
          const s = net.connect({ host: ip, port: loop.realPort(ip, 15001), localAddress: ip, localPort: port, allowHalfOpen: true });
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
      });
    });
  return { agent, loop, sink, registry, addrs, echo, dial, releases: () => releases };
}

function echoOnce(s: net.Socket, text: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    s.on('error', () => undefined);
    const onData = (d: Buffer): void => {
      s.off('close', onClose);
      resolve(d.toString());
    };
    const onClose = (): void => {
      s.off('data', onData);
      resolve(undefined);
    };
    s.once('data', onData);
    s.once('end', () => s.destroy());
    s.once('close', onClose);
    s.write(text);
  });
}

const wa = testWorkload({ name: 'client', namespace: 'frontend', ip: A_IP, serviceAccount: 'fe' });
const wb = testWorkload({ name: 'server', namespace: 'backend', ip: B_IP, serviceAccount: 'be' });
const wc = testWorkload({ name: 'legacy', namespace: 'backend', ip: C_IP, tunnelProtocol: 'NONE' });
const wRemote = testWorkload({ name: 'remote', namespace: 'backend', ip: BASE + '9', node: 'node2' });

test('agent hands freed native memory back periodically too, and stops at close', { timeout: 30_000 }, async (t) => {
  const { agent, releases } = await setup(t, { releaseEveryMs: 40 });
  for (let i = 0; i < 100 && releases() < 3; i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(releases() >= 3, `released on its period without any enrolment change (got ${releases()})`);
  await agent.close(100);
  const after = releases();
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(releases(), after, 'nothing after close');
});

test('agent enrolls local pods, proxies traffic and serves metrics, readiness and admin', { timeout: 30_000 }, async (t) => {
  // Both pods are on this agent: the fast path is off here so the connection takes a real tunnel
  // (its certificate and pool are checked below); test/integration/same-node.test.ts covers the fast path.
  const { agent, addrs, echo, dial, registry, releases } = await setup(t, { sameNodeFastPath: false });
  assert.equal((await get(addrs.ready.port, '/healthz/ready')).status, 503, 'not ready before the first snapshot');
  await agent.applyConfig(snapshot([wa, wb, wc, wRemote]));
  assert.equal(releases(), 0, 'freed native memory is handed back once enrolment changes are quiet, not at once');
  for (let i = 0; i < 100 && releases() === 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(releases(), 1, 'freed native memory is handed back after the pods were enrolled');
  await agent.applyConfig(snapshot([wa, wb, wc, wRemote]));
  // Not a race: a release that apply scheduled (50 ms timer, armed before applyConfig resolved)
  // expires before this later, longer timer, and Node runs expired timers in expiry order, so a
  // loaded machine delays both but cannot reorder them.
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(releases(), 1, 'and not again when nothing was enrolled or unenrolled');
  assert.deepEqual(
    agent.statusProvider().sort((x, y) => x.uid.localeCompare(y.uid)),
    [
      { uid: wa.uid, captured: true, mode: 'none', message: '' },
      { uid: wc.uid, captured: false, mode: 'none', message: 'not enrolled in the mesh' },
      { uid: wb.uid, captured: true, mode: 'none', message: '' },
    ].sort((x, y) => x.uid.localeCompare(y.uid)),
  );
  for (let i = 0; i < 100 && (await get(addrs.ready.port, '/healthz/ready')).status !== 200; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await get(addrs.ready.port, '/healthz/ready')).status, 200);

  const s = await dial(A_IP, { address: B_IP, port: echo.port });
  assert.equal(await echoOnce(s, 'via agent'), 'via agent');
  assert.deepEqual(echo.peers, [A_IP]);

  const conns = JSON.parse((await get(addrs.admin.port, '/debug/connections')).body) as { inbound: Array<{ src: { principal: string } }> };
  assert.equal(conns.inbound.length, 1);
  assert.equal(conns.inbound[0]!.src.principal, 'cluster.local/ns/frontend/sa/fe');

  const dumpText = (await get(addrs.admin.port, '/config_dump')).body;
  assert.doesNotMatch(dumpText, /PRIVATE KEY|keyPem/, 'no key material in config_dump');
  const dump = JSON.parse(dumpText) as { workloads: unknown[]; certificates: Array<{ identity: string; serial: string; notAfter: string }> };
  assert.equal(dump.workloads.length, 4);
  const ids = dump.certificates.map((c) => c.identity).sort();
  assert.deepEqual(ids, ['spiffe://cluster.local/ns/backend/sa/be', 'spiffe://cluster.local/ns/frontend/sa/fe']);
  for (const c of dump.certificates) {
    assert.match(c.serial, /^[0-9A-F]+$/i);
    assert.ok(!Number.isNaN(Date.parse(c.notAfter)));
  }
  // Each pooled tunnel shows the certificate it presents, not just the identity's current one.
  const pools = (dump as unknown as { pools: Record<string, Array<{ certificate?: { serial: string; notAfter: string }; streamsTotal: number; retireAt?: string }>> }).pools;
  const tunnel = pools[wa.uid]?.[0];
  const feCert = dump.certificates.find((c) => c.identity === 'spiffe://cluster.local/ns/frontend/sa/fe')!;
  assert.ok(tunnel?.certificate, `the tunnel shows its certificate: ${JSON.stringify(pools)}`);
  assert.deepEqual({ serial: tunnel.certificate.serial, notAfter: tunnel.certificate.notAfter }, { serial: feCert.serial, notAfter: feCert.notAfter });
  assert.equal(tunnel.streamsTotal, 1);
  assert.ok(Date.parse(tunnel.retireAt!) < Date.parse(tunnel.certificate.notAfter), 'retired before it expires');

  for (const path of ['/metrics', '/stats/prometheus']) {
    const m = await get(addrs.metrics.port, path);
    assert.equal(m.status, 200);
    assert.match(m.body, /istio_tcp_connections_opened_total\{reporter="source",source_workload="client"/);
  }
  assert.ok(registry.getSingleMetric('ambit_tunnel_pool_connections'));
  s.destroy();
});

test("a captured connection aimed at the pod's own agent ports is closed, never dialed back into the agent", { timeout: 30_000 }, async (t) => {
  const { agent, dial, registry } = await setup(t);
  await agent.applyConfig(snapshot([wa, wb]));
  const rejected = async (): Promise<number> =>
    ((await registry.getSingleMetric('ambit_connections_rejected_total')!.get()).values.find((v) => v.labels['reason'] === 'self_call' && v.labels['direction'] === 'outbound')?.value ?? 0);
  const before = await rejected();
  for (const port of [15001, 15006, 15008]) {
    // The agent resets at once: on loopback the reset can beat the client's own connect event.
    const answer = await dial(A_IP, { address: A_IP, port }).then(
      (s) => echoOnce(s, 'loop?'),
      (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : Promise.reject(e)),
    );
    assert.equal(answer, undefined, `the connection to its own :${port} is closed`);
  }
  assert.equal(await rejected(), before + 3, 'counted as self calls');
});

test('unenrolling a pod closes its listeners but keeps established connections', { timeout: 30_000 }, async (t) => {
  const { agent, loop, echo, dial } = await setup(t);
  await agent.applyConfig(snapshot([wa, wb]));
  const s = await dial(A_IP, { address: B_IP, port: echo.port });
  assert.equal(await echoOnce(s, 'one'), 'one');
  const outboundPort = loop.realPort(A_IP, 15001);
  await agent.applyConfig(snapshot([{ ...wa, tunnelProtocol: 'NONE' }, wb]));
  assert.equal(agent.statusProvider().find((x) => x.uid === wa.uid)?.mode, 'none');
  assert.equal(await echoOnce(s, 'two'), 'two', 'the established connection still works');
  await assert.rejects(
    new Promise((resolve, reject) => {
      const c = net.connect({ host: A_IP, port: outboundPort });
      c.once('connect', () => {
        c.destroy();
        resolve(undefined);
      });
      c.once('error', reject);
    }),
    /ECONNREFUSED/,
    'the outbound listener is closed',
  );
  s.destroy();
});

test('a policy in a new snapshot closes live connections it denies', { timeout: 30_000 }, async (t) => {
  const { agent, echo, dial, sink } = await setup(t);
  await agent.applyConfig(snapshot([wa, wb]));
  const s = await dial(A_IP, { address: B_IP, port: echo.port });
  assert.equal(await echoOnce(s, 'x'), 'x');
  // Only a reset closes this half-open-capable socket: the late deny must reset, not FIN.
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  const deny: Authorization = {
    name: 'deny-frontend',
    namespace: 'backend',
    scope: 'namespace',
    action: 'DENY',
    dryRun: false,
    rules: [{ clauses: [{ matches: [{ namespaces: [{ exact: 'frontend' }], notNamespaces: [], principals: [], notPrincipals: [], sourceIps: [], notSourceIps: [], destinationIps: [], notDestinationIps: [], destinationPorts: [], notDestinationPorts: [] }] }] }],
  };
  await agent.applyConfig(snapshot([wa, wb], [deny]));
  await closed;
  assert.ok(sink.lines.some((l) => l['msg'] === 'live connection closed by policy change'));
});

test('a pod that cannot be enrolled is reported as failed', { timeout: 30_000 }, async (t) => {
  const { agent } = await setup(t, { failPod: 'server' });
  await agent.applyConfig(snapshot([wa, wb]));
  const st = agent.statusProvider().find((x) => x.uid === wb.uid);
  assert.deepEqual(st, { uid: wb.uid, captured: false, mode: 'failed', message: 'netns is gone' });
  assert.equal(agent.statusProvider().find((x) => x.uid === wa.uid)?.captured, true);
});

test('a failed enrollment is retried with backoff until it succeeds', { timeout: 30_000 }, async (t) => {
  const { agent } = await setup(t, { failPod: 'server', failTimes: 2 });
  await agent.applyConfig(snapshot([wa, wb]));
  assert.equal(agent.statusProvider().find((x) => x.uid === wb.uid)?.mode, 'failed');
  const deadline = Date.now() + 10_000;
  while (!agent.statusProvider().find((x) => x.uid === wb.uid)?.captured) {
    assert.ok(Date.now() < deadline, 'the pod was enrolled by a retry within 10 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(agent.statusProvider().find((x) => x.uid === wb.uid), { uid: wb.uid, captured: true, mode: 'none', message: '' });
});

test('egress to a ServiceEntry: a connection to its address goes from the client\'s agent to the external endpoint in plain TCP', { timeout: 30_000 }, async (t) => {
  const { agent, dial, registry } = await setup(t);
  const external = await startEchoServer(C_IP);
  t.after(() => external.close());
  const { translate } = await import('../../src/controller/translate/translate.js');
  const { serviceResourceName } = await import('../../src/shared/resources.js');
  const model = translate([
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'frontend' } },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'partner-api', namespace: 'frontend' },
      spec: { hosts: ['api.partner.example'], addresses: ['240.0.0.50'], location: 'MESH_EXTERNAL', resolution: 'STATIC', ports: [{ number: 7000, name: 'tcp', protocol: 'TCP' }], endpoints: [{ address: C_IP, ports: { tcp: external.port } }] },
    },
  ]);
  const snap = snapshot([wa, wb, ...model.workloads]);
  snap.services = new Map(model.services.map((s) => [serviceResourceName(s), s]));
  await agent.applyConfig(snap);
  const s = await dial(A_IP, { address: '240.0.0.50', port: 7000 });
  assert.equal(await echoOnce(s, 'to the partner'), 'to the partner');
  assert.deepEqual(external.peers, [A_IP], 'the external endpoint sees the client pod, no tunnel in between');
  s.destroy();
  const opened = await registry.getSingleMetric('istio_tcp_connections_opened_total')!.get();
  assert.ok(opened.values.some((v) => v.labels['reporter'] === 'source' && String(v.labels['destination_service']).startsWith('api.partner.example')), JSON.stringify(opened.values.map((v) => v.labels)));
});

test('exportTo: a ServiceEntry not exported to the client\'s namespace is no service to it; its connection goes as addressed', { timeout: 30_000 }, async (t) => {
  const { agent, dial } = await setup(t);
  const endpoint = await startEchoServer(C_IP);
  // What the entry's address itself serves (where a client outside the entry's audience lands).
  const address = BASE + '5';
  const direct = await startEchoServer(address);
  t.after(async () => {
    await endpoint.close();
    await direct.close();
  });
  const { translate } = await import('../../src/controller/translate/translate.js');
  const { serviceResourceName } = await import('../../src/shared/resources.js');
  const apply = async (exportTo: string[]): Promise<void> => {
    const model = translate([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'backend' } },
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'ServiceEntry',
        metadata: { name: 'partner-api', namespace: 'backend' },
        spec: { hosts: ['api.partner.example'], addresses: [address], resolution: 'STATIC', ports: [{ number: direct.port, name: 'tcp', protocol: 'TCP' }], endpoints: [{ address: C_IP, ports: { tcp: endpoint.port } }], exportTo },
      },
    ]);
    const snap = snapshot([wa, wb, ...model.workloads]);
    snap.services = new Map(model.services.map((s) => [serviceResourceName(s), s]));
    await agent.applyConfig(snap);
  };
  const once = async (): Promise<void> => {
    const s = await dial(A_IP, { address, port: direct.port });
    assert.equal(await echoOnce(s, 'hello'), 'hello');
    s.destroy();
  };
  await apply(['.']);
  await once();
  assert.deepEqual([endpoint.peers.length, direct.peers.length], [0, 1], 'exported to backend only: the frontend client reaches the address itself');
  await apply(['.', 'frontend']);
  await once();
  assert.deepEqual([endpoint.peers.length, direct.peers.length], [1, 1], 'exported to frontend: the entry sends it to its endpoint');
});
