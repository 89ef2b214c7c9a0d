/**
 * The waypoint's wiring pieces: its environment, endpoint resolution from the config stream state
 * (subset labels, target ports, health), the route-config resource on the wire, the local-mode
 * waypoint pod, and the destination agent's "through the waypoint only" rule.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testWorkload } from '../../helpers/loopback-net.js';
import { requiredWaypoint } from '../../../src/agent/proxy/inbound.js';
import { WorkloadIndex } from '../../../src/shared/state/workloads.js';
import { silentLogger } from '../../../src/shared/log.js';
import { createRegistry } from '../../../src/shared/metrics.js';
import { TYPE_ROUTE_CONFIG } from '../../../src/shared/resources.js';
import { type Service, type WaypointRef, type Workload } from '../../../src/shared/model.js';
import { emptyHeaderOps, type RouteConfig } from '../../../src/shared/routes.js';
import { validateResource } from '../../../src/shared/validate-resource.js';
import type { ConfigState } from '../../../src/shared/xds/client.js';
import { loadWaypointConfig } from '../../../src/waypoint/config.js';
import { Waypoint } from '../../../src/waypoint/waypoint.js';
import { defaultWorkerCount } from '../../../src/waypoint/workers.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

const HOST = 'reviews.bookinfo.svc.cluster.local';
const WAYPOINT: WaypointRef = { name: 'bookinfo/waypoint', namespace: 'bookinfo', addresses: ['10.0.0.9'], identity: 'spiffe://cluster.local/ns/bookinfo/sa/waypoint' };

function reviews(version: string, ip: string, status: Workload['status'] = 'Healthy'): Workload {
  return testWorkload({
    name: `reviews-${version}`,
    namespace: 'bookinfo',
    ip,
    serviceAccount: 'reviews',
    labels: { app: 'reviews', version },
    canonicalRevision: version,
    status,
    services: { [`bookinfo/${HOST}`]: [{ servicePort: 9080, targetPort: 19080 }] },
  });
}

function service(endpoints: Workload[], waypoint?: WaypointRef): Service {
  return {
    name: 'reviews',
    namespace: 'bookinfo',
    hostname: HOST,
    vips: ['10.96.0.10'],
    ports: [{ name: 'http', port: 9080, targetPort: 19080, protocol: 'http' }],
    subjectAltNames: [],
    routingPreference: [],
    endpoints: endpoints.map((w) => w.uid),
    ...(waypoint ? { waypoint } : {}),
  };
}

function routeConfig(name = `bookinfo/${HOST}`): RouteConfig {
  return {
    name,
    namespace: 'bookinfo',
    hostname: HOST,
    aliases: ['reviews'],
    waypoint: 'bookinfo/waypoint',
    ports: [{ port: 9080, protocol: 'http' }],
    routes: [{ name: 'default', match: [], backends: [{ host: HOST, subset: 'v2', subsetLabels: { version: 'v2' }, weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } }],
    authorization: [],
  };
}

function state(workloads: Workload[], services: Service[], routes: RouteConfig[]): ConfigState {
  return {
    workloads: new Map(workloads.map((w) => [w.uid, w])),
    services: new Map(services.map((s) => [`${s.namespace}/${s.hostname}`, s])),
    authorizations: new Map(),
    routes: new Map(routes.map((r) => [r.name, r])),
    versions: new Map(),
    systemVersions: new Map(),
  };
}

function newWaypoint(): Waypoint {
  return new Waypoint({
    name: 'bookinfo/waypoint',
    podIp: '10.0.0.9',
    identity: WAYPOINT.identity,
    trustDomain: 'cluster.local',
    log: silentLogger(),
    registry: createRegistry(),
    getCertificate: () => Promise.reject(new Error('no certificates in this test')),
  });
}

test('waypoint environment: required variables are named together; defaults derive from the pod', () => {
  assert.throws(() => loadWaypointConfig({}), (e: Error) => ['AMBIT_NODE_NAME', 'AMBIT_CONTROLLER_ADDR', 'AMBIT_TOKEN_FILE', 'POD_IP', 'AMBIT_WAYPOINT_NAME'].every((v) => e.message.includes(v)));
  const c = loadWaypointConfig({
    AMBIT_NODE_NAME: 'node1',
    AMBIT_CONTROLLER_ADDR: '10.0.0.1:15012',
    AMBIT_CA_ROOT_FILE: '/run/root.pem',
    AMBIT_TOKEN_FILE: '/run/token',
    POD_NAME: 'waypoint-abc-0',
    POD_NAMESPACE: 'bookinfo',
    POD_IP: '10.0.1.5',
    AMBIT_WAYPOINT_NAME: 'waypoint',
  });
  assert.deepEqual(
    { sa: c.serviceAccount, hbone: c.hboneAddr, metrics: c.metricsAddr, td: c.trustDomain },
    { sa: 'waypoint', hbone: { host: '0.0.0.0', port: 15008 }, metrics: { host: '10.0.1.5', port: 15020 }, td: 'cluster.local' },
  );
  assert.throws(() => loadWaypointConfig({ AMBIT_NODE_NAME: 'node1', AMBIT_CONTROLLER_ADDR: 'x:1', AMBIT_CA_ROOT_FILE: 'rel.pem', AMBIT_TOKEN_FILE: '/t', POD_NAME: 'p', POD_NAMESPACE: 'ns', POD_IP: 'nope', AMBIT_WAYPOINT_NAME: 'w' }), /AMBIT_CA_ROOT_FILE[\s\S]*POD_IP|POD_IP[\s\S]*AMBIT_CA_ROOT_FILE/);
});

test('waypoint workers: AMBIT_WAYPOINT_WORKERS is 1..64 or auto (the cgroup CPU limit rounded up), unset is 1', () => {
  const env = { AMBIT_NODE_NAME: 'node1', AMBIT_CONTROLLER_ADDR: '10.0.0.1:15012', AMBIT_CA_ROOT_FILE: '/run/root.pem', AMBIT_TOKEN_FILE: '/run/token', POD_NAME: 'w-0', POD_NAMESPACE: 'ns', POD_IP: '10.0.1.5', AMBIT_WAYPOINT_NAME: 'w' };
  assert.equal(loadWaypointConfig({ ...env, AMBIT_WAYPOINT_WORKERS: '3' }).workers, 3);
  assert.equal(loadWaypointConfig(env).workers, 1);
  assert.equal(loadWaypointConfig({ ...env, AMBIT_WAYPOINT_WORKERS: 'auto' }).workers, defaultWorkerCount());
  for (const bad of ['0', '65', 'two', '1.5']) assert.throws(() => loadWaypointConfig({ ...env, AMBIT_WAYPOINT_WORKERS: bad }), new RegExp(`AMBIT_WAYPOINT_WORKERS[\\s\\S]*${bad.replace('.', '\\.')}`), bad);
  const dir = mkdtempSync(join(tmpdir(), 'ambit-cpumax-'));
  try {
    const file = join(dir, 'cpu.max');
    writeFileSync(file, '150000 100000\n');
    assert.equal(defaultWorkerCount([file]), Math.min(2, availableParallelism()), '1.5 CPUs: 2 workers (never more than the CPUs)');
    const parent = join(dir, 'parent.max');
    writeFileSync(parent, '50000 100000\n');
    assert.equal(defaultWorkerCount([file, parent]), 1, 'a smaller quota above the own cgroup wins');
    writeFileSync(file, 'max 100000\n');
    assert.equal(defaultWorkerCount([file]), availableParallelism(), 'no quota: the CPUs it may run on');
    assert.equal(defaultWorkerCount([join(dir, 'missing')]), availableParallelism());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('waypoint endpoints: subset labels select pods, service port maps to target port, unhealthy pods are skipped', () => {
  const v1 = reviews('v1', '10.0.1.1');
  const v2 = reviews('v2', '10.0.1.2');
  const v2down = reviews('v2', '10.0.1.3', 'Unhealthy');
  const wp = newWaypoint();
  wp.applyConfig(state([v1, v2, { ...v2down, uid: `${v2down.uid}x`, name: 'reviews-v2x' }], [service([v1, v2, { ...v2down, uid: `${v2down.uid}x` }])], [routeConfig()]));
  const eps = wp.resolveEndpoints({ host: HOST, port: 9080, subset: 'v2', subsetLabels: { version: 'v2' } });
  assert.deepEqual(eps.map((e) => [e.address, e.port, e.principal, e.canonicalRevision]), [['10.0.1.2', 19080, 'spiffe://cluster.local/ns/bookinfo/sa/reviews', 'v2']]);
  assert.equal(wp.resolveEndpoints({ host: HOST, port: 9080 }).length, 2);
  assert.deepEqual(wp.resolveEndpoints({ host: 'other.bookinfo.svc.cluster.local', port: 9080 }), []);
  assert.equal(wp.server.routes.length, 1, 'the route config bound to this waypoint is in force');
});

test('waypoint config: only mesh routes of this waypoint apply (an invalid one never gets here: the config client NACKs it)', () => {
  const wp = newWaypoint();
  const other = { ...routeConfig('bookinfo/x.bookinfo.svc.cluster.local'), hostname: 'x.bookinfo.svc.cluster.local', waypoint: 'bookinfo/other' };
  const ingress = { ...routeConfig('istio-system/gw/example.com'), gateway: 'istio-system/gw', hostname: 'example.com' };
  wp.applyConfig(state([], [], [routeConfig(), other, ingress]));
  assert.deepEqual(wp.server.routes.map((r) => r.name), [`bookinfo/${HOST}`]);
  const bad = { ...routeConfig(), routes: [{ ...routeConfig().routes[0]!, backends: [{ host: HOST, weight: -1 }] }] };
  assert.ok(validateResource(TYPE_ROUTE_CONFIG, `bookinfo/${HOST}`, bad).issues.some((i) => i.path.endsWith('.weight')), 'the receipt check names the bad weight');
});

test('route config travels as a config-stream resource: validated, name must match', () => {
  const ok = validateResource(TYPE_ROUTE_CONFIG, `bookinfo/${HOST}`, routeConfig());
  assert.deepEqual(ok.issues, []);
  assert.equal((ok.value as RouteConfig).hostname, HOST);
  const renamed = validateResource(TYPE_ROUTE_CONFIG, 'bookinfo/other', routeConfig());
  assert.ok(renamed.issues.some((i) => i.path.endsWith('.name')), JSON.stringify(renamed.issues));
  const broken = validateResource(TYPE_ROUTE_CONFIG, `bookinfo/${HOST}`, { ...routeConfig(), routes: 'no' });
  assert.ok(broken.issues.some((i) => i.path.endsWith('.routes')), JSON.stringify(broken.issues));
});

test('destination agent: a port of a waypoint-bound service requires the waypoint; other ports and services do not', () => {
  const v1 = reviews('v1', '10.0.1.1');
  const bound = new WorkloadIndex({ workloads: new Map([[v1.uid, v1]]), services: new Map([[`bookinfo/${HOST}`, service([v1], WAYPOINT)]]), authorizations: new Map() }, 'node1');
  assert.deepEqual(requiredWaypoint(bound, v1, 19080), WAYPOINT);
  assert.equal(requiredWaypoint(bound, v1, 7070), undefined, 'a port no waypoint-bound service maps to');
  const free = new WorkloadIndex({ workloads: new Map([[v1.uid, v1]]), services: new Map([[`bookinfo/${HOST}`, service([v1])]]), authorizations: new Map() }, 'node1');
  assert.equal(requiredWaypoint(free, v1, 19080), undefined);
  assert.deepEqual(requiredWaypoint(free, { ...v1, waypoint: WAYPOINT }, 7070), WAYPOINT, 'a workload-bound waypoint covers every port');
});

test('waypoint tunnels: HTTP ports are served as HTTP, other ports are piped as TCP to an endpoint', () => {
  const v1 = reviews('v1', '10.0.1.1');
  const db = testWorkload({ name: 'db', namespace: 'bookinfo', ip: '10.0.1.7', serviceAccount: 'db', services: { 'bookinfo/db.bookinfo.svc.cluster.local': [{ servicePort: 5432, targetPort: 15432 }] } });
  const dbService: Service = { ...service([db]), name: 'db', hostname: 'db.bookinfo.svc.cluster.local', vips: ['10.96.0.11'], ports: [{ name: 'tcp', port: 5432, targetPort: 15432, protocol: 'tcp' }] };
  const empty: Service = { ...dbService, name: 'cache', hostname: 'cache.bookinfo.svc.cluster.local', vips: ['10.96.0.12'], endpoints: [] };
  const wp = newWaypoint();
  wp.applyConfig(state([v1, db], [service([v1]), dbService, empty], [routeConfig()]));
  assert.equal(wp.tcpEndpoint({ address: '10.96.0.10', port: 9080 }), undefined, 'the http service port');
  assert.deepEqual(
    (({ address, port, principal }) => ({ address, port, principal }))(wp.tcpEndpoint({ address: '10.96.0.11', port: 5432 })!),
    { address: '10.0.1.7', port: 15432, principal: 'spiffe://cluster.local/ns/bookinfo/sa/db' },
  );
  assert.equal(wp.tcpEndpoint({ address: '10.96.0.12', port: 5432 }), null, 'a tcp service without endpoints');
  assert.equal(wp.tcpEndpoint({ address: '10.0.1.1', port: 19080 }), undefined, 'a pod port an http service maps to');
  assert.equal(wp.tcpEndpoint({ address: '10.0.1.1', port: 7000 })?.key, '10.0.1.1:7000', 'any other pod port is tcp');
  assert.equal(wp.tcpEndpoint({ address: '192.0.2.1', port: 80 }), undefined, 'unknown destinations default to http');
});

test('waypoint tunnels: a service whose endpoint is the original destination (ServiceEntry NONE) goes to the address dialed', () => {
  const pod = testWorkload({ name: 'pg', namespace: 'bookinfo', ip: '10.0.5.7', serviceAccount: 'pg' });
  const none: Service = { ...service([]), name: 'db-net', hostname: 'db.example.net', vips: [], vipRanges: ['10.0.5.0/24'], originalDestination: true, ports: [{ name: 'tcp', port: 5432, targetPort: 5432, protocol: 'tcp' }, { name: 'http', port: 80, targetPort: 80, protocol: 'http' }] };
  const wp = newWaypoint();
  wp.applyConfig(state([pod], [none], []));
  const short = (e: { key: string; address: string; port: number; principal?: string } | null | undefined) => (e ? { key: e.key, address: e.address, port: e.port, principal: e.principal } : e);
  assert.deepEqual(short(wp.tcpEndpoint({ address: '10.0.5.7', port: 5432 })), { key: '10.0.5.7:5432', address: '10.0.5.7', port: 5432, principal: 'spiffe://cluster.local/ns/bookinfo/sa/pg' }, 'a pod in the range: itself, tunnelled with its identity');
  assert.deepEqual(short(wp.tcpEndpoint({ address: '10.0.5.200', port: 5432 })), { key: '10.0.5.200:5432', address: '10.0.5.200', port: 5432, principal: undefined }, 'an address the mesh does not know: itself, plain TCP');
  assert.equal(wp.tcpEndpoint({ address: '10.0.5.200', port: 80 }), undefined, 'the http port is served as HTTP');
  // HTTP requests to it are routed as pod-addressed ones: the backend is the address dialed.
  assert.deepEqual(wp.resolveEndpoints({ host: '10.0.5.200', port: 80 }).map((e) => e.key), ['10.0.5.200:80']);
  assert.deepEqual(wp.resolveEndpoints({ host: '10.0.5.7', port: 80 }).map((e) => e.principal), ['spiffe://cluster.local/ns/bookinfo/sa/pg']);
  assert.deepEqual(wp.resolveEndpoints({ host: '10.0.6.1', port: 80 }), [], 'an address outside every range and no workload is nobody');
  assert.deepEqual(wp.resolveEndpoints({ host: '10.0.5.200', port: 81 }), [], 'nor one on a port the service does not declare');
  // A TCP route of the host: a backend naming the host itself is the address dialed; another host is its endpoints.
  const other = testWorkload({ name: 'cache', namespace: 'bookinfo', ip: '10.0.1.9', serviceAccount: 'cache', services: { 'bookinfo/cache.bookinfo.svc.cluster.local': [{ servicePort: 5432, targetPort: 6379 }] } });
  const cache: Service = { ...service([other]), name: 'cache', hostname: 'cache.bookinfo.svc.cluster.local', vips: ['10.96.0.13'], ports: [{ name: 'tcp', port: 5432, targetPort: 6379, protocol: 'tcp' }] };
  const cfg: RouteConfig = { ...routeConfig('bookinfo/db.example.net'), hostname: 'db.example.net', aliases: [], ports: [{ port: 5432, protocol: 'tcp' }], routes: [], tcpRoutes: [{ name: 'split', match: [], backends: [{ host: 'db.example.net', weight: 50 }, { host: cache.hostname, weight: 50 }] }] };
  wp.applyConfig(state([pod, other], [none, cache], [cfg]));
  const picks = new Set([0, 0.99].map((x) => wp.tcpEndpoint({ address: '10.0.5.200', port: 5432 }, () => x)?.key));
  assert.deepEqual([...picks].sort(), ['10.0.1.9:6379', '10.0.5.200:5432']);
});

test('waypoint tunnels: TCP routes split connections by weight; TLS routes pick by SNI, non-TLS falls back to the TCP routes', () => {
  const db = (name: string, ip: string, version: string): Workload =>
    testWorkload({ name, namespace: 'bookinfo', ip, serviceAccount: 'db', labels: { app: 'db', version }, services: { 'bookinfo/db.bookinfo.svc.cluster.local': [{ servicePort: 5432, targetPort: 15432 }] } });
  const d1 = db('db-v1', '10.0.1.7', 'v1');
  const d2 = db('db-v2', '10.0.1.8', 'v2');
  const dbHost = 'db.bookinfo.svc.cluster.local';
  const dbService: Service = { ...service([d1, d2]), name: 'db', hostname: dbHost, vips: ['10.96.0.11'], ports: [{ name: 'tcp', port: 5432, targetPort: 15432, protocol: 'tcp' }] };
  const cfg: RouteConfig = {
    ...routeConfig(`bookinfo/${dbHost}`),
    hostname: dbHost,
    aliases: [],
    ports: [{ port: 5432, protocol: 'tcp' }],
    routes: [],
    tcpRoutes: [{ name: 'split', match: [], backends: [{ host: dbHost, subset: 'v1', subsetLabels: { version: 'v1' }, weight: 80 }, { host: dbHost, subset: 'v2', subsetLabels: { version: 'v2' }, weight: 20 }] }],
  };
  assert.deepEqual(validateResource(TYPE_ROUTE_CONFIG, cfg.name, cfg).issues, []);
  const wp = newWaypoint();
  wp.applyConfig(state([d1, d2], [dbService], [cfg]));
  let seq = 0;
  const random = (): number => ((seq++ * 37) % 100) / 100;
  const picks = Array.from({ length: 100 }, () => wp.tcpEndpoint({ address: '10.96.0.11', port: 5432 }, random)!.address);
  const v1 = picks.filter((a) => a === '10.0.1.7').length;
  assert.ok(v1 >= 70 && v1 <= 90, `about 80 of 100 connections go to v1 (${v1})`);
  assert.equal(wp.sniChooser({ address: '10.96.0.11', port: 5432 }), undefined, 'no TLS routes: chosen at once');

  const tlsCfg: RouteConfig = { ...cfg, tlsRoutes: [{ name: 'v2-by-sni', match: [{ sniHosts: ['v2.db.example.com'] }], backends: [{ host: dbHost, subsetLabels: { version: 'v2' }, weight: 1 }] }], tcpRoutes: [{ name: 'v1', match: [], backends: [{ host: dbHost, subsetLabels: { version: 'v1' }, weight: 1 }] }] };
  wp.applyConfig(state([d1, d2], [dbService], [tlsCfg]));
  const choose = wp.sniChooser({ address: '10.96.0.11', port: 5432 })!;
  assert.equal(choose({ tls: true, sni: 'v2.db.example.com' })?.address, '10.0.1.8');
  assert.equal(choose({ tls: true, sni: 'other.example.com' })?.address, '10.0.1.7', 'no TLS route matches: the TCP routes apply');
  assert.equal(choose({ tls: false })?.address, '10.0.1.7');
  const refused: RouteConfig = { ...cfg, tcpRoutes: [{ name: 'x', match: [], backends: [{ host: 'gone.other.svc.cluster.local', weight: 1, refused: true }] }] };
  wp.applyConfig(state([d1, d2], [dbService], [refused]));
  assert.equal(wp.tcpEndpoint({ address: '10.96.0.11', port: 5432 }), null, 'a refused backend refuses the tunnel');
});
