import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import type { KubeObject } from '../../../src/controller/objects.js';
import { loadManifests } from '../../../src/controller/source/manifests.js';
import { resolveHost, translateRoutes } from '../../../src/controller/translate/routes.js';
import { validateGatewayServer, validateRouteConfig } from '../../../src/shared/validate-routes.js';
import { buildRouteTable, routeRequest } from '../../../src/waypoint/route/router.js';
import { selectL4Route } from '../../../src/waypoint/route/l4.js';
import { CertificateAuthority } from '../../../src/controller/ca/authority.js';

const fixture = (p: string): string => fileURLToPath(new URL(`../../../../test/fixtures/${p}`, import.meta.url));

function service(name: string, ns: string, ports: Array<{ name: string; port: number; appProtocol?: string }>): KubeObject {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { ports } };
}

const bookinfoServices = [
  service('reviews', 'bookinfo', [{ name: 'http', port: 9080 }]),
  service('ratings', 'bookinfo', [{ name: 'http', port: 9080 }]),
  service('httpbin', 'bookinfo', [{ name: 'http', port: 8000 }]),
];

test('resolveHost: short names are services in the rule namespace; dotted names are as written', () => {
  assert.equal(resolveHost('reviews', 'bookinfo', 'cluster.local'), 'reviews.bookinfo.svc.cluster.local');
  assert.equal(resolveHost('reviews.bookinfo.svc.cluster.local', 'x', 'cluster.local'), 'reviews.bookinfo.svc.cluster.local');
  assert.equal(resolveHost('Example.com', 'x', 'cluster.local'), 'example.com');
  assert.equal(resolveHost('*', 'x', 'cluster.local'), '*');
});

test('the istio.io 90/10 VirtualService + DestinationRule subsets v1/v2 translate unchanged', async () => {
  const { objects } = await loadManifests([fixture('manifests/valid/istio-docs/reviews-90-10.yaml')]);
  const out = translateRoutes([...objects, ...bookinfoServices]);
  assert.deepEqual(out.conditions, []);
  const reviews = out.routes.find((r) => r.hostname === 'reviews.bookinfo.svc.cluster.local')!;
  assert.equal(reviews.name, 'bookinfo/reviews.bookinfo.svc.cluster.local');
  assert.deepEqual(reviews.aliases.slice(0, 3), ['reviews', 'reviews.bookinfo', 'reviews.bookinfo.svc']);
  assert.deepEqual(reviews.ports, [{ port: 9080, protocol: 'http' }]);
  assert.equal(reviews.routes.length, 1);
  assert.deepEqual(reviews.routes[0]!.backends, [
    { host: 'reviews.bookinfo.svc.cluster.local', weight: 90, subset: 'v1', subsetLabels: { version: 'v1' } },
    { host: 'reviews.bookinfo.svc.cluster.local', weight: 10, subset: 'v2', subsetLabels: { version: 'v2' } },
  ]);
  assert.deepEqual(reviews.trafficPolicy, { subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] });
  for (const r of out.routes) assert.deepEqual(validateRouteConfig(r), [], `${r.name} is valid`);
  const d = routeRequest(buildRouteTable(out.routes), { authority: 'reviews:9080', path: '/reviews/0', method: 'GET', headers: {} });
  assert.equal(d.kind === 'route' && d.route.backends.length, 2, 'the router serves the translated config');
  assert.deepEqual(JSON.parse(JSON.stringify(out)), out, 'output is plain JSON');
});

test('the istio.io Gateway + VirtualService for example.com give an ingress config bound to the gateway', async () => {
  const { objects } = await loadManifests([fixture('manifests/valid/istio-docs/ingress-example-com.yaml')]);
  const out = translateRoutes([...objects, ...bookinfoServices]);
  assert.deepEqual(out.conditions, []);
  assert.deepEqual(out.gateways, [{ gateway: 'bookinfo/my-gateway', index: 0, port: 80, name: 'http', protocol: 'HTTP', hosts: ['example.com'], selector: { istio: 'ingressgateway' } }]);
  for (const g of out.gateways) assert.deepEqual(validateGatewayServer(g), []);
  const cfg = out.routes.find((r) => r.gateway === 'bookinfo/my-gateway')!;
  assert.equal(cfg.name, 'bookinfo/my-gateway/example.com');
  assert.equal(cfg.hostname, 'example.com');
  const route = cfg.routes[0]!;
  assert.deepEqual(route.match, [{ uri: { prefix: '/reviews' }, headers: [], queryParams: [] }]);
  assert.deepEqual(route.backends, [{ host: 'reviews.bookinfo.svc.cluster.local', port: 9080, weight: 1 }]);
  assert.equal(route.timeoutMs, 5000);
  assert.deepEqual(route.retries, { attempts: 3, perTryTimeoutMs: 2000, retryOn: ['gateway-error', 'connect-failure', 'refused-stream'], retriableStatusCodes: [], budget: { percent: 100, minConcurrency: 3 } });
  const gwTable = buildRouteTable(out.routes, 'bookinfo/my-gateway');
  const d = routeRequest(gwTable, { authority: 'example.com', path: '/reviews/1', method: 'GET', headers: {} });
  assert.equal(d.kind, 'route');
  assert.equal(routeRequest(buildRouteTable(out.routes), { authority: 'example.com', path: '/reviews/1', method: 'GET', headers: {} }).kind, 'no-route', 'gateway-only VirtualService is not a mesh route');
});

test('circuit breaker DestinationRule and fault VirtualService translate', async () => {
  const { objects } = await loadManifests([fixture('manifests/valid/istio-docs/circuit-breaker.yaml'), fixture('manifests/valid/istio-docs/reviews-90-10.yaml')]);
  const dr: KubeObject = { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'ratings', namespace: 'bookinfo' }, spec: { host: 'ratings', subsets: [{ name: 'v1', labels: { version: 'v1' } }] } };
  const out = translateRoutes([...objects, dr, ...bookinfoServices]);
  assert.deepEqual(out.conditions, []);
  const httpbin = out.routes.find((r) => r.hostname.startsWith('httpbin.'))!;
  assert.deepEqual(httpbin.trafficPolicy, {
    subsets: [],
    connectionPool: { maxConnections: 1, http1MaxPendingRequests: 1, maxRequestsPerConnection: 1 },
    outlierDetection: { intervalMs: 1000, baseEjectionTimeMs: 180_000, maxEjectionPercent: 100, consecutive5xxErrors: 1 },
  });
  const ratings = out.routes.find((r) => r.hostname.startsWith('ratings.'))!;
  assert.deepEqual(ratings.routes.map((r) => r.fault), [{ delay: { percent: 100, fixedDelayMs: 7000 } }, { abort: { percent: 10, httpStatus: 500 } }]);
  assert.deepEqual(ratings.routes[0]!.match[0]!.headers, [{ name: 'end-user', match: { exact: 'jason' } }]);
});

test('Gateway API: HTTPRoute/GRPCRoute on Services, precedence, filters, and L7 AuthorizationPolicy via targetRefs', async () => {
  const { objects } = await loadManifests([fixture('waypoint/l7.yaml')]);
  const out = translateRoutes(objects);
  assert.deepEqual(out.conditions, []);
  const cart = out.routes.find((r) => r.hostname === 'cart.shop.svc.cluster.local')!;
  assert.equal(cart.waypoint, 'shop/waypoint', 'namespace label binds the service to the waypoint');
  assert.ok(cart.aliases.includes('10.96.1.10'), 'the cluster IP is an alias');
  assert.deepEqual(cart.routes.map((r) => r.name), ['shop/cart.2.0', 'shop/cart.1.0', 'shop/cart.0.0'], 'exact path first, then longer prefix, then the catch-all');
  const canary = cart.routes[1]!;
  assert.deepEqual(canary.match, [{ uri: { regex: '/api(/.*)?' }, headers: [{ name: 'x-canary', match: { exact: 'true' } }], queryParams: [] }]);
  assert.deepEqual(canary.rewrite, { uriPrefix: '/v2/api', matchPrefix: '/api' });
  assert.deepEqual(canary.headers.request, { set: { 'x-routed': 'canary' }, add: {}, remove: ['x-debug'] });
  assert.equal(canary.timeoutMs, 2000);
  assert.deepEqual(canary.retries?.retriableStatusCodes, [503]);
  assert.deepEqual(cart.routes[2]!.backends, [
    { host: 'cart.shop.svc.cluster.local', weight: 80, port: 8080 },
    { host: 'cart-v2.shop.svc.cluster.local', weight: 20, port: 8080 },
  ]);
  const table = buildRouteTable(out.routes);
  const pick = (path: string, headers: Record<string, string> = {}): string | undefined => {
    const d = routeRequest(table, { authority: 'cart:8080', path, method: 'GET', headers });
    return d.kind === 'route' ? d.route.name : undefined;
  };
  assert.equal(pick('/api/x', { 'x-canary': 'true' }), 'shop/cart.1.0');
  assert.equal(pick('/apix', { 'x-canary': 'true' }), 'shop/cart.0.0', 'Gateway API prefixes match whole path elements');
  assert.equal(pick('/health'), 'shop/cart.2.0');
  const pricing = out.routes.find((r) => r.hostname === 'pricing.shop.svc.cluster.local')!;
  assert.deepEqual(pricing.ports, [{ port: 9090, protocol: 'grpc' }]);
  assert.deepEqual(pricing.routes[0]!.match, [{ uri: { exact: '/shop.Pricing/Quote' }, method: 'POST', headers: [], queryParams: [] }]);
  assert.deepEqual(cart.authorization.map((a) => a.name), ['shop/cart-viewer'], 'Gateway targetRef applies to every service using the waypoint');
  assert.deepEqual(pricing.authorization.map((a) => `${a.name}:${a.action}`), ['shop/cart-viewer:ALLOW', 'shop/pricing-deny:DENY']);
  const allow = cart.authorization[0]!;
  assert.deepEqual(allow.rules[0]!.to[0]!.paths, [{ prefix: '/api/' }, { exact: '/health' }]);
  assert.deepEqual(allow.rules[0]!.from[0]!.namespaces, [{ exact: 'shop' }]);
  assert.deepEqual(allow.rules[0]!.when, [{ header: 'x-user', values: [{ presence: true }], notValues: [] }]);
  for (const r of out.routes) assert.deepEqual(validateRouteConfig(r), [], `${r.name} is valid`);
});

test('invalid objects get a clear condition and the rest still translate', () => {
  const vs = (name: string, spec: Record<string, unknown>, ts = '2024-01-01T00:00:00Z'): KubeObject => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name, namespace: 'bookinfo', creationTimestamp: ts }, spec });
  const good = vs('good', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' } }], timeout: '3s' }] });
  const badSubset = vs('bad-subset', { hosts: ['ratings'], http: [{ route: [{ destination: { host: 'ratings', subset: 'v9' } }] }] });
  const badDuration = vs('bad-duration', { hosts: ['httpbin'], http: [{ route: [{ destination: { host: 'httpbin' } }], timeout: 'soon' }] });
  const conflict = vs('later', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' } }] }] }, '2025-01-01T00:00:00Z');
  const custom: KubeObject = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'ext', namespace: 'bookinfo' }, spec: { action: 'CUSTOM', targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }] } };
  const badRetry = vs('bad-retry', { hosts: ['httpbin.bookinfo.svc.cluster.local'], http: [{ route: [{ destination: { host: 'httpbin' } }], retries: { attempts: 2, retryOn: 'whenever' } }] });
  const tcp = vs('tcp-too', { hosts: ['httpbin'], http: [{ route: [{ destination: { host: 'httpbin' } }] }], tcp: [{ match: [{ destinationSubnets: ['10.0.0.0/33'] }], route: [{ destination: { host: 'httpbin' } }] }] });
  const out = translateRoutes([good, badSubset, badDuration, conflict, custom, badRetry, tcp, ...bookinfoServices]);
  assert.match(out.conditions.find((c) => c.objectKey.endsWith('/tcp-too'))!.message, /spec\.tcp\[0\]\.match\[0\]\.destinationSubnets\[0\] "10\.0\.0\.0\/33"/);
  assert.equal(out.routes.find((r) => r.hostname.startsWith('httpbin.'))!.tcpRoutes, undefined);
  assert.equal(out.routes.find((r) => r.hostname.startsWith('httpbin.'))!.routes.length, 0, 'nothing of an invalid VirtualService applies');
  const byName = (n: string) => out.conditions.find((c) => c.objectKey.endsWith(`/${n}`));
  assert.equal(byName('bad-subset')?.reason, 'SubsetNotFound');
  assert.match(byName('bad-subset')!.message, /subset "v9" of host ratings\.bookinfo\.svc\.cluster\.local/);
  assert.equal(byName('bad-duration')?.reason, 'InvalidDuration');
  assert.match(byName('bad-duration')!.message, /spec\.http\[0\]\.timeout: invalid duration "soon"/);
  assert.equal(byName('later')?.reason, 'PartiallyApplied');
  assert.match(byName('later')!.message, /already routed by the older VirtualService bookinfo\/good/);
  assert.equal(byName('ext')?.reason, 'InvalidPolicy', 'a CUSTOM policy must name its provider');
  assert.equal(byName('bad-retry')?.reason, 'InvalidRetry');
  assert.ok(out.conditions.every((c) => c.status === 'False' && c.type === 'Accepted'));
  const reviews = out.routes.find((r) => r.hostname.startsWith('reviews.'))!;
  assert.equal(reviews.routes.length, 1);
  assert.equal(reviews.routes[0]!.timeoutMs, 3000, 'the valid VirtualService is applied');
  assert.deepEqual(out.routes.find((r) => r.hostname.startsWith('ratings.'))!.routes, [], 'the invalid one is not');
});

test('L7 ALLOW rules with attributes the waypoint cannot check match nothing (fail closed); DENY ignores them', () => {
  const ap = (name: string, action: string): KubeObject => ({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: 'bookinfo' },
    spec: { action, targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], rules: [{ from: [{ source: { serviceAccounts: ['bookinfo/sa'] } }], to: [{ operation: { methods: ['GET'] } }] }] },
  });
  const out = translateRoutes([ap('a-allow', 'ALLOW'), ap('b-deny', 'DENY'), ...bookinfoServices]);
  const reviews = out.routes.find((r) => r.hostname.startsWith('reviews.'))!;
  const allow = reviews.authorization.find((a) => a.name === 'bookinfo/a-allow')!;
  const deny = reviews.authorization.find((a) => a.name === 'bookinfo/b-deny')!;
  assert.deepEqual(allow.rules, [], 'the ALLOW rule is dropped, so it allows nothing');
  assert.equal(deny.rules.length, 1, 'the DENY rule stays and matches more');
  assert.equal(out.conditions.filter((c) => c.reason === 'PartiallyApplied').length, 2);
});

test('waypoint policies serve ipBlocks, remoteIpBlocks and source.ip / remote.ip conditions (the client the source agent forwarded); bad CIDRs are rejected', () => {
  const ap = (name: string, action: string, rule: Record<string, unknown>): KubeObject => ({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: 'bookinfo' },
    spec: { action, targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], rules: [rule] },
  });
  const out = translateRoutes([
    ap('a-allow', 'ALLOW', { from: [{ source: { ipBlocks: ['10.0.0.0/8'], notRemoteIpBlocks: ['10.9.0.0/16'] } }] }),
    ap('b-deny', 'DENY', { from: [{ source: { notIpBlocks: ['10.1.2.3'] } }], when: [{ key: 'remote.ip', values: ['10.0.0.0/8'] }, { key: 'source.ip', notValues: ['2001:db8::/64'] }] }),
    ap('c-bad', 'ALLOW', { from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }] }),
    ...bookinfoServices,
  ]);
  const reviews = out.routes.find((r) => r.hostname.startsWith('reviews.'))!;
  const allow = reviews.authorization.find((a) => a.name === 'bookinfo/a-allow')!;
  assert.deepEqual(allow.rules[0]!.from[0]!.ipBlocks, ['10.0.0.0/8']);
  assert.deepEqual(allow.rules[0]!.from[0]!.notRemoteIpBlocks, ['10.9.0.0/16']);
  const deny = reviews.authorization.find((a) => a.name === 'bookinfo/b-deny')!;
  assert.deepEqual(deny.rules[0]!.from[0]!.notIpBlocks, ['10.1.2.3']);
  assert.deepEqual(deny.rules[0]!.fromAll, [
    { principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], remoteIpBlocks: ['10.0.0.0/8'] },
    { principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], notIpBlocks: ['2001:db8::/64'] },
  ]);
  const cond = (n: string) => out.conditions.find((c) => c.objectKey.endsWith(`/${n}`));
  assert.equal(cond('a-allow'), undefined, 'served in full: no PartiallyApplied condition');
  assert.equal(cond('b-deny'), undefined);
  assert.equal(cond('c-bad')?.reason, 'InvalidPolicy');
  assert.match(cond('c-bad')!.message, /spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks: "10\.0\.0\.0\/33"/);
  assert.equal(reviews.authorization.find((a) => a.name === 'bookinfo/c-bad'), undefined, 'nothing of the invalid policy is applied');
});

test('translateRoutes is pure and deterministic', async () => {
  const { objects } = await loadManifests([fixture('waypoint/l7.yaml'), fixture('manifests/valid/istio-docs/reviews-90-10.yaml')]);
  const input = [...objects, ...bookinfoServices];
  const before = JSON.stringify(input);
  const a = translateRoutes(input);
  assert.equal(JSON.stringify(input), before, 'input objects are not modified');
  assert.equal(JSON.stringify(translateRoutes([...input].reverse())), JSON.stringify(a), 'input order does not matter');
});

test('HTTPRoute on an ingress Gateway API Gateway binds by hostnames; waypoint parents and missing backends are reported', () => {
  const gw = (name: string, cls: string): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: 'bookinfo' }, spec: { gatewayClassName: cls, listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } });
  const route = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: 'bookinfo' }, spec });
  const out = translateRoutes([
    gw('public', 'ambit'),
    gw('waypoint', 'ambit-waypoint'),
    route('web', { parentRefs: [{ name: 'public' }], hostnames: ['shop.example.com'], rules: [{ backendRefs: [{ name: 'reviews', port: 9080 }] }] }),
    route('wp', { parentRefs: [{ name: 'waypoint' }], rules: [{ backendRefs: [{ name: 'reviews', port: 9080 }] }] }),
    route('ghost', { parentRefs: [{ kind: 'Service', group: '', name: 'reviews' }], rules: [{ backendRefs: [{ name: 'nope', port: 1 }] }] }),
    ...bookinfoServices,
  ]);
  const ingress = out.routes.find((r) => r.name === 'bookinfo/public/shop.example.com')!;
  assert.equal(ingress.gateway, 'bookinfo/public');
  assert.deepEqual(ingress.routes[0]!.backends, [{ host: 'reviews.bookinfo.svc.cluster.local', weight: 1, port: 9080 }]);
  const d = routeRequest(buildRouteTable(out.routes, 'bookinfo/public'), { authority: 'shop.example.com', path: '/', method: 'GET', headers: {} });
  assert.equal(d.kind, 'route');
  const cond = (n: string) => out.conditions.find((c) => c.objectKey.endsWith(`/${n}`));
  assert.match(cond('wp')!.message, /is a waypoint; attach routes to a Service instead/);
  assert.equal(cond('ghost')!.reason, 'BackendNotFound');
  assert.match(cond('ghost')!.message, /Service nope\.bookinfo\.svc\.cluster\.local does not exist/);
  assert.deepEqual(out.routes.find((r) => r.hostname.startsWith('reviews.'))!.routes, [], 'the rejected route adds nothing');
});

test('VirtualService redirect and corsPolicy translate into valid route configs, with Istio defaults', () => {
  const vs: KubeObject = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'web', namespace: 'bookinfo' },
    spec: {
      hosts: ['httpbin'],
      http: [
        { name: 'moved', match: [{ uri: { prefix: '/old' } }], redirect: { uri: '/new', authority: 'httpbin.example.com' } },
        { name: 'tls', match: [{ uri: { prefix: '/secure' } }], redirect: { scheme: 'https', derivePort: 'FROM_PROTOCOL_DEFAULT', redirectCode: 308 } },
        {
          name: 'api',
          route: [{ destination: { host: 'httpbin' } }],
          corsPolicy: { allowOrigins: [{ exact: 'https://a.example.com' }, { regex: 'https://.*\\.b\\.com' }], allowOrigin: ['https://old.example.com'], allowMethods: ['GET'], allowHeaders: ['x-a'], exposeHeaders: ['x-b'], maxAge: '1m', allowCredentials: false },
        },
      ],
    },
  };
  const out = translateRoutes([vs, ...bookinfoServices]);
  assert.deepEqual(out.conditions.filter((c) => c.status === 'False'), []);
  const cfg = out.routes.find((r) => r.hostname.startsWith('httpbin.'))!;
  assert.deepEqual(validateRouteConfig(cfg), []);
  const [moved, tls, api] = cfg.routes;
  assert.deepEqual(moved!.redirect, { code: 301, uri: '/new', authority: 'httpbin.example.com' });
  assert.deepEqual(moved!.backends, []);
  assert.deepEqual(tls!.redirect, { code: 308, scheme: 'https', derivePort: 'FROM_PROTOCOL_DEFAULT' });
  assert.deepEqual(api!.cors, {
    allowOrigins: [{ exact: 'https://a.example.com' }, { regex: 'https://.*\\.b\\.com' }, { exact: 'https://old.example.com' }],
    allowMethods: ['GET'],
    allowHeaders: ['x-a'],
    exposeHeaders: ['x-b'],
    maxAgeSeconds: 60,
    allowCredentials: false,
    unmatchedPreflights: 'FORWARD',
  });
  assert.deepEqual(validateRouteConfig({ ...cfg, routes: [{ ...moved!, redirect: { code: 200 } }] }).map((i) => i.path), ['routeConfig.routes[0].redirect.code']);
});

test('ReferenceGrant: a backendRef to another namespace needs a grant there; without one its share of requests gets a 500', () => {
  const route = (name: string, backendRefs: unknown[]): KubeObject => ({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name, namespace: 'front' },
    spec: { parentRefs: [{ kind: 'Service', group: '', name: 'web' }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: `/${name}` } }], backendRefs }] },
  });
  const grant = (to: Record<string, unknown>, from = 'front'): KubeObject => ({
    apiVersion: 'gateway.networking.k8s.io/v1beta1',
    kind: 'ReferenceGrant',
    metadata: { name: `g-${from}`, namespace: 'bookinfo' },
    spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: from }], to: [{ group: '', kind: 'Service', ...to }] },
  });
  const web = service('web', 'front', [{ name: 'http', port: 80 }]);
  const objects = [web, ...bookinfoServices, route('split', [{ name: 'web', port: 80, weight: 50 }, { name: 'reviews', namespace: 'bookinfo', port: 9080, weight: 50 }])];
  const backendsOf = (out: ReturnType<typeof translateRoutes>) => out.routes.find((r) => r.hostname === 'web.front.svc.cluster.local')!.routes[0]!.backends;

  const denied = translateRoutes(objects);
  assert.deepEqual(backendsOf(denied), [
    { host: 'web.front.svc.cluster.local', weight: 50, port: 80 },
    { host: 'reviews.bookinfo.svc.cluster.local', weight: 50, port: 9080, refused: true },
  ]);
  const cond = denied.conditions.find((c) => c.objectKey.endsWith('/split'))!;
  assert.equal(cond.reason, 'PartiallyApplied');
  assert.match(cond.message, /RefNotPermitted: backendRef to Service bookinfo\/reviews is not allowed: no ReferenceGrant in namespace bookinfo allows HTTPRoute from namespace front/);
  for (const r of denied.routes) assert.deepEqual(validateRouteConfig(r), []);

  for (const g of [grant({}), grant({ name: 'reviews' })]) {
    const ok = translateRoutes([...objects, g]);
    assert.deepEqual(backendsOf(ok)[1], { host: 'reviews.bookinfo.svc.cluster.local', weight: 50, port: 9080 });
    assert.deepEqual(ok.conditions.filter((c) => c.objectKey.endsWith('/split')), []);
  }
  for (const g of [grant({ name: 'ratings' }), grant({}, 'other')]) assert.equal(backendsOf(translateRoutes([...objects, g]))[1]!.refused, true, 'a grant for another Service or namespace does not count');
});

test('VirtualService tcp/tls routes and TCPRoute/TLSRoute on a Service become its L4 routes; Gateway API ones come first', () => {
  const db = service('db', 'bookinfo', [{ name: 'tcp', port: 5432 }]);
  const dr: KubeObject = { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'db', namespace: 'bookinfo' }, spec: { host: 'db', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] } };
  const vs: KubeObject = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'db', namespace: 'bookinfo' },
    spec: {
      hosts: ['db'],
      tcp: [{ match: [{ port: 5432 }], route: [{ destination: { host: 'db', subset: 'v1' }, weight: 90 }, { destination: { host: 'db', subset: 'v2' }, weight: 10 }] }],
      tls: [{ match: [{ sniHosts: ['DB.example.com'] }], route: [{ destination: { host: 'db', subset: 'v2', port: { number: 5432 } } }] }],
    },
  };
  const tcpRoute: KubeObject = { apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind: 'TCPRoute', metadata: { name: 'db', namespace: 'bookinfo', creationTimestamp: '2024-01-01T00:00:00Z' }, spec: { parentRefs: [{ kind: 'Service', group: '', name: 'db', port: 5432 }], rules: [{ backendRefs: [{ name: 'db', port: 5432, weight: 3 }, { name: 'ratings', port: 9080, weight: 1 }] }, { backendRefs: [{ name: 'db', port: 5432 }] }] } };
  const tlsRoute: KubeObject = { apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind: 'TLSRoute', metadata: { name: 'db-tls', namespace: 'bookinfo' }, spec: { parentRefs: [{ kind: 'Service', group: '', name: 'db' }, { name: 'public' }], hostnames: ['*.db.example.com'], rules: [{ backendRefs: [{ name: 'db', port: 5432 }] }] } };
  const out = translateRoutes([db, dr, vs, tcpRoute, tlsRoute, ...bookinfoServices]);
  const cfg = out.routes.find((r) => r.hostname === 'db.bookinfo.svc.cluster.local')!;
  assert.deepEqual(validateRouteConfig(cfg), []);
  const dbHost = 'db.bookinfo.svc.cluster.local';
  assert.deepEqual(cfg.tcpRoutes, [
    { name: 'bookinfo/db.0', match: [{ port: 5432 }], backends: [{ host: dbHost, weight: 3, port: 5432 }, { host: 'ratings.bookinfo.svc.cluster.local', weight: 1, port: 9080 }] },
    { name: 'bookinfo/db.1', match: [{ port: 5432 }], backends: [{ host: dbHost, weight: 1, port: 5432 }] },
    { name: 'bookinfo/db.tcp[0]', match: [{ port: 5432 }], backends: [{ host: dbHost, weight: 90, subset: 'v1', subsetLabels: { version: 'v1' } }, { host: dbHost, weight: 10, subset: 'v2', subsetLabels: { version: 'v2' } }] },
  ]);
  assert.deepEqual(cfg.tlsRoutes, [
    { name: 'bookinfo/db-tls.0', match: [{ sniHosts: ['*.db.example.com'] }], backends: [{ host: dbHost, weight: 1, port: 5432 }] },
    { name: 'bookinfo/db.tls[0]', match: [{ sniHosts: ['db.example.com'] }], backends: [{ host: dbHost, weight: 1, port: 5432, subset: 'v2', subsetLabels: { version: 'v2' } }] },
  ]);
  const notes = (n: string) => out.conditions.filter((c) => c.objectKey.endsWith(`/${n}`)).map((c) => c.message).join(' | ');
  assert.match(notes('db'), /only spec\.rules\[0\] is used/);
  assert.match(notes('db-tls'), /parent Gateway bookinfo\/public does not exist/);
  assert.equal(out.conditions.filter((c) => c.objectKey.startsWith('VirtualService/')).length, 0, 'the VirtualService applies whole');
});

/** A kubernetes.io/tls Secret holding a real certificate and its key. */
function tlsSecret(name: string, namespace: string): KubeObject {
  const serving = CertificateAuthority.generate({ trustDomain: 'example.test', ttlDays: 1 }).issueServingCert({ dnsNames: ['shop.example.com'], ttlMs: 3_600_000 });
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(serving.certChainPem.join('\n')), 'tls.key': b64(serving.keyPem) } } as KubeObject;
}

test('Gateway API ingress Gateway: listeners become servers of its own pods only; unsupported listeners get a condition', async () => {
  const { translateAll } = await import('../../../src/controller/translate/translate.js');
  const { gatewayApiServers } = await import('../../../src/controller/translate/gateway-api-listeners.js');
  const gw: KubeObject = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'public', namespace: 'bookinfo' },
    spec: {
      gatewayClassName: 'istio',
      listeners: [
        { name: 'http', port: 80, protocol: 'HTTP' },
        { name: 'https', port: 443, protocol: 'HTTPS', hostname: 'shop.example.com', tls: { certificateRefs: [{ name: 'shop-cert' }] } },
        { name: 'tcp', port: 9000, protocol: 'TCP' },
        { name: 'far', port: 8443, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'x', namespace: 'other' }] } },
      ],
    },
  };
  const secret = tlsSecret('shop-cert', 'bookinfo');
  const { servers, conditions } = gatewayApiServers({ gateways: [gw], of: (ref) => (ref === 'Secret' ? [secret] : []) });
  assert.deepEqual(servers.map((s) => `${s.listener}:${s.port}/${s.protocol}${s.tls ? `:${s.tls.credentialName}` : ''}`), ['http:80/HTTP', 'https:443/HTTPS:shop-cert', 'tcp:9000/TCP']);
  assert.deepEqual(servers[1]!.hosts, ['shop.example.com']);
  assert.deepEqual(conditions.map((c) => `${c.section} ${c.type} ${c.reason}`), ['far ResolvedRefs RefNotPermitted']);
  const noSecret = gatewayApiServers({ gateways: [gw], of: () => [] });
  assert.match(noSecret.conditions.find((c) => c.section === 'https')!.message, /listener https: Secret bookinfo\/shop-cert not found/, 'a missing Secret is reported even before any gateway pod runs');

  const gwPod = (name: string, ns: string): KubeObject => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels: { 'gateway.networking.k8s.io/gateway-name': 'public' } },
    spec: { nodeName: 'n1', containers: [{ name: 'c' }] },
    status: { phase: 'Running', podIP: '10.0.0.9' },
  });
  const route: KubeObject = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: 'bookinfo' }, spec: { parentRefs: [{ name: 'public' }], rules: [{ backendRefs: [{ name: 'reviews', port: 9080 }] }] } };
  const out = translateAll([gw, route, gwPod('public-istio-abc', 'bookinfo'), gwPod('same-label-elsewhere', 'other'), ...bookinfoServices]);
  assert.deepEqual([...out.listeners.byPod.keys()], ['bookinfo/public-istio-abc'], 'a pod of another namespace with the same label does not serve it');
  const listeners = out.listeners.byPod.get('bookinfo/public-istio-abc')!;
  assert.deepEqual(listeners.map((l) => `${l.port}/${l.protocol}`), ['80/HTTP', '9000/TCP']);
  const missing = out.routes.conditions.find((c) => c.section === 'https')!;
  assert.equal(missing.objectKey, 'Gateway.gateway.networking.k8s.io/bookinfo/public', 'the missing Secret is reported on the Gateway API Gateway');
  assert.equal(missing.reason, 'InvalidCertificateRef');
  const cfg = out.routes.routes.find((r) => r.gateway === 'bookinfo/public')!;
  assert.deepEqual(cfg.ports.map((p) => p.port), [80, 443, 9000, 8443], 'ingress configs take their ports from the listeners');
});

test('RequestAuthentication on a waypoint gives its Services JWT rules; requestPrincipals and claims conditions reach L7 authorization', () => {
  const ra = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name, namespace: 'bookinfo' }, spec });
  const waypoint: KubeObject = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: 'bookinfo' }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } };
  const ap: KubeObject = {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'jwt', namespace: 'bookinfo' },
    spec: { targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], rules: [{ from: [{ source: { requestPrincipals: ['testing@secure.istio.io/*'] } }], when: [{ key: 'request.auth.claims[groups]', values: ['group1'] }, { key: 'request.auth.claims[org][tier]', notValues: ['free'] }, { key: 'request.auth.principal', values: ['*'] }] }] },
  };
  const out = translateRoutes([
    ...bookinfoServices,
    ra('by-service', { targetRef: { kind: 'Service', group: '', name: 'reviews' }, jwtRules: [{ issuer: 'testing@secure.istio.io', jwksUri: 'https://keys.example.com/jwks.json', audiences: ['shop'], fromHeaders: [{ name: 'X-Jwt', prefix: '' }], outputPayloadToHeader: 'x-payload' }] }),
    ra('no-keys', { targetRef: { kind: 'Service', group: '', name: 'ratings' }, jwtRules: [{ issuer: 'https://discovered.example.com' }] }),
    ra('selector', { selector: { matchLabels: { app: 'reviews' } }, jwtRules: [{ issuer: 'x', jwks: '{"keys":[]}' }] }),
    waypoint,
    ap,
  ]);
  const reviews = out.routes.find((r) => r.hostname.startsWith('reviews.'))!;
  assert.deepEqual(validateRouteConfig(reviews), []);
  assert.deepEqual(reviews.jwtRules, [{ issuer: 'testing@secure.istio.io', audiences: ['shop'], fromHeaders: [{ name: 'x-jwt', prefix: '' }], fromParams: [], forwardOriginalToken: false, jwksUri: 'https://keys.example.com/jwks.json', outputPayloadToHeader: 'x-payload' }]);
  assert.deepEqual(out.routes.find((r) => r.hostname.startsWith('ratings.'))!.jwtRules?.map((r) => r.jwks), ['{"keys":[]}'], 'no keys: every token of that issuer fails');
  const rule = reviews.authorization[0]!.rules[0]!;
  assert.deepEqual(rule.from[0]!.requestPrincipals, [{ prefix: 'testing@secure.istio.io/' }]);
  assert.deepEqual(rule.when, [
    { header: '', claim: ['groups'], values: [{ exact: 'group1' }], notValues: [] },
    { header: '', claim: ['org', 'tier'], values: [], notValues: [{ exact: 'free' }] },
  ]);
  assert.equal(rule.from.length, 1);
  assert.deepEqual(rule.fromAll?.[0]!.requestPrincipals, [{ presence: true }], 'request.auth.principal is a request principal condition, ANDed with from');
  const cond = (n: string) => out.conditions.find((c) => c.objectKey.endsWith(`/${n}`));
  assert.match(cond('no-keys')!.message, /names no jwks or jwksUri/);
  assert.equal(cond('selector')!.reason, 'NotEnforced');
  assert.equal(cond('jwt'), undefined, 'the AuthorizationPolicy applies whole');
});

test('Gateway API listener allowedRoutes: a route attaches only through listeners that allow its namespace (Same, All, Selector) and kind', () => {
  const ns = (name: string, labels: Record<string, string> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
  const gw: KubeObject = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'edge', namespace: 'infra' },
    spec: {
      gatewayClassName: 'istio',
      listeners: [
        { name: 'same', port: 80, protocol: 'HTTP' },
        { name: 'teams', port: 8080, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'Selector', selector: { matchExpressions: [{ key: 'team', operator: 'In', values: ['shop'] }] } } } },
        { name: 'grpc-only', port: 8081, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'All' }, kinds: [{ kind: 'GRPCRoute' }] } },
        { name: 'tcp', port: 9000, protocol: 'TCP', allowedRoutes: { namespaces: { from: 'All' } } },
        { name: 'tcp-same', port: 9001, protocol: 'TCP' },
      ],
    },
  };
  const httpRoute = (name: string, namespace: string, parent: Record<string, unknown>): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace }, spec: { parentRefs: [{ name: 'edge', namespace: 'infra', ...parent }], hostnames: [`${name}.example.com`], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } });
  const tcpRoute = (name: string, namespace: string): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind: 'TCPRoute', metadata: { name, namespace }, spec: { parentRefs: [{ name: 'edge', namespace: 'infra' }], rules: [{ backendRefs: [{ name: 'db', port: 5432 }] }] } });
  const out = translateRoutes([
    ns('infra'),
    ns('shop', { team: 'shop' }),
    ns('other'),
    gw,
    service('web', 'shop', [{ name: 'http', port: 80 }]),
    service('web', 'other', [{ name: 'http', port: 80 }]),
    service('web', 'infra', [{ name: 'http', port: 80 }]),
    service('db', 'shop', [{ name: 'tcp', port: 5432 }]),
    httpRoute('shop', 'shop', {}),
    httpRoute('other', 'other', {}),
    httpRoute('home', 'infra', {}),
    httpRoute('pinned', 'shop', { sectionName: 'same' }),
    tcpRoute('db', 'shop'),
  ]);
  const cfg = (host: string) => out.routes.find((r) => r.name === `infra/edge/${host}`);
  // shop (labelled team=shop): only the Selector listener on 8080 takes it, so its rules match that port only.
  assert.deepEqual(cfg('shop.example.com')!.routes.map((r) => r.match.map((m) => m.port)), [[8080]]);
  const table = buildRouteTable(out.routes, 'infra/edge');
  assert.equal(routeRequest(table, { authority: 'shop.example.com', path: '/', method: 'GET', headers: {}, port: 8080 }).kind, 'route');
  assert.notEqual(routeRequest(table, { authority: 'shop.example.com', path: '/', method: 'GET', headers: {}, port: 80 }).kind, 'route', 'the Same listener on 80 refuses the shop namespace');
  // The Gateway's own namespace: the Same listener (80); not the Selector one (infra has no team label); not the GRPCRoute-only one.
  assert.deepEqual(cfg('home.example.com')!.routes.map((r) => r.match.map((m) => m.port)), [[80]]);
  // other: no listener allows it; not attached, and the condition says why in Istio's words.
  assert.equal(cfg('other.example.com'), undefined);
  const cond = (n: string) => out.conditions.find((c) => c.objectKey.endsWith(`/${n}`))?.message ?? '';
  assert.match(cond('other'), /not allowed by its listeners \(namespace "other" is not allowed by the parent/);
  assert.match(cond('other'), /kind gateway\.networking\.k8s\.io\/HTTPRoute is not allowed/);
  assert.match(cond('pinned'), /namespace "shop" is not allowed by the parent \(listener same: allowedRoutes\.namespaces\.from Same\)/);
  assert.equal(cfg('pinned.example.com'), undefined);
  // TCPRoute from shop: the All listener (9000) takes it; the Same one (9001) does not.
  assert.deepEqual(cfg('*')!.tcpRoutes!.map((r) => r.match.map((m) => m.port)), [[9000]]);
});

test('VirtualService match.gateways: a rule applies only where its matches name (mesh or a gateway), as in Istio', () => {
  const gateway: KubeObject = { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'bookinfo-gateway', namespace: 'bookinfo' }, spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }, { port: { number: 9000, name: 'tcp', protocol: 'TCP' }, hosts: ['*'] }] } };
  const vs: KubeObject = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'reviews', namespace: 'bookinfo' },
    spec: {
      hosts: ['reviews'],
      gateways: ['bookinfo-gateway', 'mesh'],
      http: [
        { name: 'edge-only', match: [{ uri: { prefix: '/public' }, gateways: ['bookinfo-gateway'] }], route: [{ destination: { host: 'ratings' } }] },
        { name: 'mesh-only', match: [{ headers: { 'end-user': { exact: 'jason' } }, gateways: ['mesh'] }], route: [{ destination: { host: 'httpbin' } }] },
        { name: 'both', match: [{ uri: { prefix: '/a' }, gateways: ['mesh'] }, { uri: { prefix: '/b' } }], route: [{ destination: { host: 'reviews' } }] },
        { name: 'default', route: [{ destination: { host: 'reviews' } }] },
      ],
      tcp: [{ match: [{ port: 9000, gateways: ['bookinfo/bookinfo-gateway'] }], route: [{ destination: { host: 'reviews', port: { number: 9080 } } }] }],
    },
  };
  const out = translateRoutes([vs, gateway, ...bookinfoServices]);
  assert.deepEqual(out.conditions, [], 'match.gateways is served');
  for (const r of out.routes) assert.deepEqual(validateRouteConfig(r), [], `${r.name} is valid (no gateways field goes out)`);
  const mesh = out.routes.find((r) => r.hostname === 'reviews.bookinfo.svc.cluster.local' && !r.gateway)!;
  const edge = out.routes.find((r) => r.gateway === 'bookinfo/bookinfo-gateway')!;
  const summary = (rs: typeof mesh.routes) => rs.map((r) => [r.name, r.match.map((m) => m.uri ?? m.headers.map((h) => h.name).join())]);
  assert.deepEqual(summary(mesh.routes), [['mesh-only', ['end-user']], ['both', [{ prefix: '/a' }, { prefix: '/b' }]], ['default', []]]);
  assert.deepEqual(summary(edge.routes), [['edge-only', [{ prefix: '/public' }]], ['both', [{ prefix: '/b' }]], ['default', []]]);
  assert.equal(mesh.tcpRoutes, undefined, 'the gateway-only tcp rule is not a mesh rule');
  assert.deepEqual(edge.tcpRoutes?.map((r) => r.match), [[{ port: 9000 }]]);
  const table = buildRouteTable(out.routes, 'bookinfo/bookinfo-gateway');
  const d = routeRequest(table, { authority: 'reviews.bookinfo.svc.cluster.local', path: '/public/x', method: 'GET', headers: {} });
  assert.equal(d.kind === 'route' ? d.route.name : d.kind, 'edge-only');
});

test('VirtualService match.sourceNamespace and sourceLabels go to the proxies (http, tcp and tls); bad values are named', () => {
  const vs = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name, namespace: 'bookinfo' }, spec });
  const out = translateRoutes([
    vs('reviews', { hosts: ['reviews'], http: [{ match: [{ sourceNamespace: 'frontend' }], route: [{ destination: { host: 'ratings' } }] }, { route: [{ destination: { host: 'reviews' } }] }] }),
    vs('httpbin', { hosts: ['httpbin'], tcp: [{ match: [{ port: 8000, sourceNamespace: 'ops' }], route: [{ destination: { host: 'httpbin' } }] }] }),
    vs('labels', { hosts: ['ratings'], http: [{ match: [{ sourceLabels: { app: 7 } }], route: [{ destination: { host: 'ratings' } }] }] }),
    vs('by-labels', { hosts: ['ratings'], http: [{ match: [{ sourceLabels: { app: 'canary' } }], route: [{ destination: { host: 'reviews' } }] }, { route: [{ destination: { host: 'ratings' } }] }] }),
    vs('bad-ns', { hosts: ['ratings'], http: [{ match: [{ sourceNamespace: 'Not_A_Namespace' }], route: [{ destination: { host: 'ratings' } }] }] }),
    ...bookinfoServices,
  ]);
  for (const r of out.routes) assert.deepEqual(validateRouteConfig(r), [], r.name);
  const reviews = out.routes.find((r) => r.hostname.startsWith('reviews.'))!;
  assert.equal(reviews.routes[0]!.match[0]!.sourceNamespace, 'frontend');
  const httpbin = out.routes.find((r) => r.hostname.startsWith('httpbin.'))!;
  assert.deepEqual(httpbin.tcpRoutes?.[0]?.match, [{ port: 8000, sourceNamespace: 'ops' }]);
  const msg = (name: string) => out.conditions.find((c) => c.objectKey === `VirtualService/bookinfo/${name}`)?.message ?? '';
  assert.match(msg('labels'), /spec\.http\[0\]\.match\[0\]\.sourceLabels\.app must be a string, found 7/);
  assert.match(msg('bad-ns'), /spec\.http\[0\]\.match\[0\]\.sourceNamespace "Not_A_Namespace" is not a namespace name/);
  const d = (ns: string | undefined) => routeRequest(buildRouteTable(out.routes), { authority: 'reviews', path: '/', method: 'GET', headers: {}, ...(ns ? { caller: { namespace: ns } } : {}) });
  const name = (x: ReturnType<typeof d>) => (x.kind === 'route' ? x.route.backends[0]!.host : x.kind);
  assert.equal(name(d('frontend')), 'ratings.bookinfo.svc.cluster.local', 'a caller of that namespace takes the first rule');
  assert.equal(name(d('other')), 'reviews.bookinfo.svc.cluster.local');
  assert.equal(name(d(undefined)), 'reviews.bookinfo.svc.cluster.local', 'a caller without an identity never matches sourceNamespace');
  const byLabels = (labels: Record<string, string> | undefined) => {
    const x = routeRequest(buildRouteTable(out.routes), { authority: 'ratings', path: '/', method: 'GET', headers: {}, ...(labels ? { caller: { namespace: 'bookinfo', labels } } : {}) });
    return x.kind === 'route' ? x.route.backends[0]!.host : x.kind;
  };
  assert.equal(byLabels({ app: 'canary', version: 'v2' }), 'reviews.bookinfo.svc.cluster.local', 'a caller carrying the labels takes the sourceLabels rule');
  assert.equal(byLabels({ app: 'web' }), 'ratings.bookinfo.svc.cluster.local');
  assert.equal(byLabels(undefined), 'ratings.bookinfo.svc.cluster.local', 'a caller whose workload is not known never matches sourceLabels');
});

test('VirtualService tcp/tls match.destinationSubnets: the route holds only for destinations in the subnets', () => {
  const vs: KubeObject = { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'db', namespace: 'bookinfo' }, spec: { hosts: ['httpbin'], tcp: [{ match: [{ port: 8000, destinationSubnets: ['10.96.0.0/16', '192.0.2.7'] }], route: [{ destination: { host: 'reviews', port: { number: 9080 } } }] }, { route: [{ destination: { host: 'httpbin' } }] }] } };
  const out = translateRoutes([vs, ...bookinfoServices]);
  assert.deepEqual(out.conditions, []);
  const cfg = out.routes.find((r) => r.hostname.startsWith('httpbin.'))!;
  assert.deepEqual(validateRouteConfig(cfg), []);
  assert.deepEqual(cfg.tcpRoutes?.[0]?.match, [{ port: 8000, destinationSubnets: ['10.96.0.0/16', '192.0.2.7/32'] }], 'a single address is a /32');
  const pick = (dst: string | undefined) => selectL4Route(cfg.tcpRoutes, 8000, undefined, undefined, dst)?.backends[0]?.host;
  assert.equal(pick('10.96.3.4'), 'reviews.bookinfo.svc.cluster.local');
  assert.equal(pick('192.0.2.7'), 'reviews.bookinfo.svc.cluster.local');
  assert.equal(pick('192.0.2.8'), 'httpbin.bookinfo.svc.cluster.local');
  assert.equal(pick(undefined), 'httpbin.bookinfo.svc.cluster.local', 'an unknown destination never matches destinationSubnets');
});

test("a waypoint's numTrustedProxies comes from its Gateway's proxy.istio.io/config, else the mesh defaultConfig", () => {
  const ns = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'istio.io/use-waypoint': 'waypoint' } } });
  const wp = (namespace: string, annotations?: Record<string, string>): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace, ...(annotations ? { annotations } : {}) }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } });
  const meshCm: KubeObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: 'defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 2\n' } };
  const objects = [ns('a'), ns('b'), wp('a', { 'proxy.istio.io/config': 'gatewayTopology:\n  numTrustedProxies: 1\n' }), wp('b'), service('svc', 'a', [{ name: 'http', port: 80 }]), service('svc', 'b', [{ name: 'http', port: 80 }]), service('plain', 'bookinfo', [{ name: 'http', port: 80 }])];
  const of = (out: ReturnType<typeof translateRoutes>, host: string) => out.routes.find((r) => r.hostname === host)?.numTrustedProxies;
  const withDefault = translateRoutes([...objects, meshCm]);
  for (const r of withDefault.routes) assert.deepEqual(validateRouteConfig(r), [], r.name);
  assert.equal(of(withDefault, 'svc.a.svc.cluster.local'), 1, "the waypoint Gateway's annotation");
  assert.equal(of(withDefault, 'svc.b.svc.cluster.local'), 2, 'the mesh default');
  assert.equal(of(withDefault, 'plain.bookinfo.svc.cluster.local'), undefined, 'no waypoint, nothing');
  assert.equal(of(translateRoutes(objects), 'svc.b.svc.cluster.local'), undefined, 'no default: none');
});
