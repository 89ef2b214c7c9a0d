/**
 * Waypoint → HBONE → destination agent's inbound → pod, over 127.0.0.0/8 with real mTLS from the
 * test CA: HttpUpstream runs HTTP/1.1 and HTTP/2 inside tunnel streams opened by the agent's
 * TunnelPool with the waypoint's identity.
 */
import { validateRouteConfig } from '../../src/shared/validate-routes.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import { createLoopbackMesh, testWorkload } from '../helpers/loopback-net.js';
import { workloadIdentity } from '../../src/shared/state/workloads.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { emptyHeaderOps, type RouteConfig } from '../../src/shared/routes.js';
import { hboneConnect } from '../../src/waypoint/endpoint/hbone.js';
import { WaypointServer } from '../../src/waypoint/server/server.js';
import { HttpUpstream, type Endpoint } from '../../src/waypoint/endpoint/upstream.js';
import { Waypoint } from '../../src/waypoint/waypoint.js';
import type { Service } from '../../src/shared/model.js';
import { hboneRequest, hboneSession } from '../helpers/hbone-client.js';
import { createTestCa } from '../helpers/test-ca.js';
import { startOkApp } from '../helpers/ok-app.js';

const BASE = `127.${10 + ((process.pid + 77) % 200)}.3.`;
const WP_IP = BASE + '1';
const POD_IP = BASE + '2';

test('waypoint requests reach the pod through HBONE with the waypoint identity (HTTP/1.1 and h2c inside the tunnel)', { timeout: 30_000 }, async (t) => {
  const mesh = await createLoopbackMesh();
  t.after(() => mesh.close());
  const wpWorkload = testWorkload({ name: 'waypoint', namespace: 'shop', ip: WP_IP, serviceAccount: 'waypoint' });
  const podWorkload = testWorkload({ name: 'cart', namespace: 'shop', ip: POD_IP, serviceAccount: 'cart' });
  const wp = await mesh.addPod(wpWorkload);
  await mesh.addPod(podWorkload);

  // The pod's app: HTTP/1.1 on 8080 and h2c on 9090, registered in the loopback net as POD_IP:port.
  const peers: string[] = [];
  const app1 = http.createServer((req, res) => {
    peers.push(req.socket.remoteAddress ?? '');
    req.resume();
    res.end(`h1 ${req.url}`);
  });
  const app2 = http2.createServer((req, res) => {
    res.end(`h2 ${req.url}`);
  });
  const l1 = await mesh.net.pod(POD_IP).listen(8080);
  const l2 = await mesh.net.pod(POD_IP).listen(9090);
  l1.on('connection', (s) => app1.emit('connection', s));
  l2.on('connection', (s) => app2.emit('connection', s));
  t.after(() => {
    l1.close();
    l2.close();
    app1.closeAllConnections();
  });

  const upstream = new HttpUpstream({ connect: hboneConnect({ pool: wp.pool, srcIdentity: workloadIdentity(wpWorkload), srcIp: WP_IP }) });
  const endpoint = (port: number): Endpoint => ({ key: `${POD_IP}:${port}`, address: POD_IP, port, principal: workloadIdentity(podWorkload), workload: 'cart', namespace: 'shop' });
  const cfg: RouteConfig = {
    name: 'shop/cart.shop.svc.cluster.local',
    namespace: 'shop',
    hostname: 'cart.shop.svc.cluster.local',
    aliases: ['cart'],
    ports: [{ port: 8080, protocol: 'http' }, { port: 9090, protocol: 'http2' }],
    routes: [
      { name: 'h2', match: [{ uri: { prefix: '/h2' }, headers: [], queryParams: [] }], backends: [{ host: 'cart.shop.svc.cluster.local', port: 9090, weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } },
      { name: 'h1', match: [], backends: [{ host: 'cart.shop.svc.cluster.local', port: 8080, weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } },
    ],
    authorization: [],
  };
  const registry = createRegistry();
  const server = new WaypointServer({ log: mesh.log, registry, dispatch: upstream.dispatch, resolveEndpoints: (target) => [endpoint(target.port)] });
  assert.deepEqual(validateRouteConfig(cfg), [], 'the test route config is valid');
  server.setRoutes([cfg]);
  const { port } = await server.listen(0, '127.0.0.1');
  t.after(async () => {
    await server.close(500);
    upstream.close();
  });

  const get = (path: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, headers: { host: 'cart:8080' } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.once('end', () => resolve({ status: res.statusCode ?? 0, body, ...(res.headers['x-route'] ? { route: String(res.headers['x-route']) } : {}) }));
        })
        .once('error', reject);
    });
  for (let i = 0; i < 3; i++) assert.deepEqual(await get(`/items/${i}`), { status: 200, body: `h1 /items/${i}` });
  assert.deepEqual(await get('/h2/x'), { status: 200, body: 'h2 /h2/x' });
  assert.ok(peers.every((p) => p === WP_IP), `the pod sees the waypoint as the source (${peers.join(',')})`);
  const opened = await mesh.registry.getSingleMetric('istio_tcp_connections_opened_total')!.get();
  const inbound = opened.values.filter((v) => v.labels['reporter'] === 'destination');
  assert.ok(inbound.length >= 1, 'the destination agent counted the tunnelled connections');
  assert.ok(
    inbound.every((v) => String(v.labels['source_principal']).includes('ns/shop/sa/waypoint')),
    `the destination agent saw the waypoint identity (${inbound.map((v) => v.labels['source_principal']).join(',')})`,
  );
});

test('the waypoint\'s real HBONE front: the mTLS peer identity and the CONNECT target port feed routing, authz and metrics', { timeout: 30_000 }, async (t) => {
  const mesh = await createLoopbackMesh();
  t.after(() => mesh.close());
  const APP_IP = BASE + '3';
  const FRONTEND_IP = BASE + '4';
  await startOkApp(t, APP_IP, 8080);
  const registry = createRegistry();
  const waypoint = new Waypoint({
    name: 'shop/waypoint',
    podIp: WP_IP,
    identity: 'spiffe://cluster.local/ns/shop/sa/waypoint',
    trustDomain: 'cluster.local',
    log: mesh.log,
    registry,
    getCertificate: async (id) => mesh.certFor(id),
  });
  const hbone = await waypoint.listenHbone(0, WP_IP);
  t.after(() => waypoint.close(500));
  const SVC = 'cart.shop.svc.cluster.local';
  const cart = testWorkload({ name: 'cart', namespace: 'shop', ip: APP_IP, serviceAccount: 'cart', tunnelProtocol: 'NONE', services: { [`shop/${SVC}`]: [{ servicePort: 8080, targetPort: 8080 }, { servicePort: 8081, targetPort: 8080 }] } });
  const frontend = testWorkload({ name: 'frontend', namespace: 'shop', ip: FRONTEND_IP, serviceAccount: 'frontend' });
  const service: Service = {
    name: 'cart',
    namespace: 'shop',
    hostname: SVC,
    vips: ['10.96.0.5'],
    ports: [
      { name: 'http', port: 8080, targetPort: 8080, protocol: 'http' },
      { name: 'http-alt', port: 8081, targetPort: 8080, protocol: 'http' },
    ],
    subjectAltNames: [],
    routingPreference: [],
    endpoints: [cart.uid],
  };
  const cfg: RouteConfig = {
    name: `shop/${SVC}`,
    namespace: 'shop',
    hostname: SVC,
    aliases: ['cart'],
    ports: [{ port: 8080, protocol: 'http' }, { port: 8081, protocol: 'http' }],
    routes: [
      { name: 'all', match: [{ port: 8080, headers: [], queryParams: [] }], backends: [{ host: SVC, weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } },
      // Istio match.sourceLabels: only the frontend pods (address and identity both theirs), answered with a marker.
      { name: 'from-frontend-pods', match: [{ port: 8081, sourceLabels: { app: 'frontend' }, headers: [], queryParams: [] }], backends: [{ host: SVC, weight: 1 }], headers: { request: emptyHeaderOps(), response: { ...emptyHeaderOps(), set: { 'x-route': 'labels' } } } },
      // Istio match.sourceNamespace: only callers whose identity is of namespace shop.
      { name: 'from-shop', match: [{ port: 8081, sourceNamespace: 'shop', headers: [], queryParams: [] }], backends: [{ host: SVC, weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } },
    ],
    authorization: [
      { name: 'shop/only-frontend', action: 'ALLOW', dryRun: false, rules: [{ from: [{ principals: [{ exact: 'cluster.local/ns/shop/sa/frontend' }, { exact: 'cluster.local/ns/other/sa/frontend' }], notPrincipals: [], namespaces: [], notNamespaces: [] }], to: [], when: [] }] },
      // remote.ip: with one trusted proxy, the X-Forwarded-For entry the caller's proxy appended.
      { name: 'shop/no-blocked-clients', action: 'DENY', dryRun: false, rules: [{ from: [{ principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], remoteIpBlocks: ['203.0.113.7/32'] }], to: [], when: [] }] },
    ],
    numTrustedProxies: 1,
  };
  assert.deepEqual(validateRouteConfig(cfg), [], 'the test route config is valid');
  waypoint.applyConfig({
    workloads: new Map([cart, frontend].map((w) => [w.uid, w])),
    services: new Map([[`shop/${SVC}`, service]]),
    authorizations: new Map(),
    routes: new Map([[cfg.name, cfg]]),
    versions: new Map(),
    systemVersions: new Map(),
  });
  /** An HTTP/1.1 request inside a CONNECT stream of an mTLS session presenting `sa`'s certificate. */
  const viaTunnel = async (sa: string, port: number, ns = 'shop', headers: Record<string, string> = {}): Promise<{ status: number; body: string; route?: string }> => {
    const session = await hboneSession({ host: WP_IP, port: hbone.port, cert: mesh.certFor(`spiffe://cluster.local/ns/${ns}/sa/${sa}`), localAddress: FRONTEND_IP });
    try {
      const { status, stream } = await hboneRequest(session, { ':authority': `10.96.0.5:${port}` });
      assert.equal(status, 200, 'the waypoint accepts the CONNECT');
      return await new Promise((resolve, reject) => {
        const req = http.request({ createConnection: () => stream as unknown as import('node:net').Socket, path: '/items', headers: { host: 'cart', connection: 'close', ...headers } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.once('end', () => resolve({ status: res.statusCode ?? 0, body, ...(res.headers['x-route'] ? { route: String(res.headers['x-route']) } : {}) }));
        });
        req.once('error', reject);
        req.end();
      });
    } finally {
      session.destroy();
    }
  };
  assert.deepEqual(await viaTunnel('frontend', 8080), { status: 200, body: 'ok /items' });
  assert.equal((await viaTunnel('intruder', 8080)).status, 403, 'the certificate\'s identity feeds L7 authz');
  assert.equal((await viaTunnel('frontend', 8080, 'shop', { 'x-forwarded-for': '203.0.113.7' })).status, 403, 'numTrustedProxies 1: the X-Forwarded-For client is remote.ip, and it is denied');
  assert.equal((await viaTunnel('frontend', 8080, 'shop', { 'x-forwarded-for': '203.0.113.7, 198.51.100.2' })).status, 200, '... only the entry one trusted proxy names counts');
  assert.deepEqual(await viaTunnel('frontend', 8081), { status: 200, body: 'ok /items', route: 'labels' }, 'the CONNECT target port feeds route matching; the frontend pod (its address and identity) matches sourceLabels');
  assert.deepEqual(await viaTunnel('cart', 8081), { status: 403, body: 'RBAC: access denied' }, 'another identity from the frontend address is not the frontend pod (and authz refuses it)');
  assert.equal((await viaTunnel('frontend', 8081, 'other')).status, 404, 'a caller of another namespace does not match sourceNamespace (and no other route serves 8081)');
  assert.equal((await viaTunnel('frontend', 8080, 'other')).status, 200, '... while the route without it serves that caller');
  // A tunnel to the waypoint's own address (its HBONE port, its metrics) is refused, never dialled.
  const self = await hboneSession({ host: WP_IP, port: hbone.port, cert: mesh.certFor('spiffe://cluster.local/ns/shop/sa/frontend') });
  for (const p of [hbone.port, 15008, 15020]) {
    const r = await hboneRequest(self, { ':authority': `${WP_IP}:${p}` });
    assert.deepEqual({ status: r.status, reason: r.reason }, { status: 400, reason: 'self_call' }, `CONNECT to the waypoint's own :${p}`);
  }
  self.destroy();
  // A certificate from another CA never gets a session, so it never reaches authz.
  const foreign = createTestCa().issue('spiffe://cluster.local/ns/shop/sa/frontend');
  await assert.rejects(hboneSession({ host: WP_IP, port: hbone.port, cert: { ...foreign, rootsPem: [mesh.ca.rootPem] } }));
  const m = await registry.getSingleMetric('istio_requests_total')!.get();
  const ok = m.values.find((v) => v.labels['response_code'] === '200')!;
  assert.equal(ok.labels['source_principal'], 'spiffe://cluster.local/ns/shop/sa/frontend');
  assert.equal(ok.labels['source_workload'], 'frontend', 'the caller\'s workload is found by its address and identity');
  assert.equal(ok.labels['connection_security_policy'], 'mutual_tls');
});
