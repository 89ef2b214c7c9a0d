import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptyHeaderOps, type HttpRoute, type RouteConfig, type RouteMatch } from '../../../src/shared/routes.js';
import { rewritePath } from '../../../src/waypoint/route/rewrite.js';
import { buildRouteTable, hostOfAuthority, matchRequest, routeRequest, type RouteRequest } from '../../../src/waypoint/route/router.js';

const ops = () => ({ request: emptyHeaderOps(), response: emptyHeaderOps() });
const m = (p: Partial<RouteMatch>): RouteMatch => ({ headers: [], queryParams: [], ...p });
const r = (name: string, match: RouteMatch[], extra: Partial<HttpRoute> = {}): HttpRoute => ({ name, match, backends: [{ host: 'svc', weight: 1 }], headers: ops(), ...extra });
const req = (p: Partial<RouteRequest>): RouteRequest => ({ authority: 'reviews.bookinfo.svc.cluster.local', path: '/', method: 'GET', headers: {}, ...p });

const reviews: RouteConfig = {
  name: 'bookinfo/reviews.bookinfo.svc.cluster.local',
  namespace: 'bookinfo',
  hostname: 'reviews.bookinfo.svc.cluster.local',
  aliases: ['reviews', 'reviews.bookinfo', '10.96.0.10'],
  ports: [{ port: 9080, protocol: 'http' }],
  routes: [
    r('exact', [m({ uri: { exact: '/health' } })]),
    r('jason', [m({ headers: [{ name: 'end-user', match: { exact: 'jason' } }] })]),
    r('api-post', [m({ uri: { prefix: '/api/' }, method: 'POST' })]),
    r('regex', [m({ uri: { regex: '/items/[0-9]+' } })]),
    r('query', [m({ queryParams: [{ name: 'debug', match: { exact: '1' } }] })]),
    r('present', [m({ headers: [{ name: 'x-canary', match: { present: true } }] })]),
    r('not-beta', [m({ uri: { prefix: '/beta' }, headers: [{ name: 'x-beta', match: { exact: 'yes' }, invert: true }] })]),
    r('anyof', [m({ uri: { prefix: '/aa/' } }), m({ uri: { prefix: '/bb/' } })]),
    r('ci', [m({ uri: { exact: '/case' }, ignoreUriCase: true })]),
  ],
  authorization: [],
};
const plain: RouteConfig = { name: 'bookinfo/ratings.bookinfo.svc.cluster.local', namespace: 'bookinfo', hostname: 'ratings.bookinfo.svc.cluster.local', aliases: ['ratings'], ports: [], routes: [], authorization: [] };
const ingress: RouteConfig = { name: 'bookinfo/gw/*.example.com', namespace: 'bookinfo', hostname: '*.example.com', aliases: [], gateway: 'bookinfo/gw', ports: [], routes: [r('all', [])], authorization: [] };
const ingressExact: RouteConfig = { ...ingress, name: 'bookinfo/gw/api.example.com', hostname: 'api.example.com', routes: [r('api', [])] };

test('hostOfAuthority strips ports and brackets', () => {
  for (const [input, want] of [
    ['reviews:9080', 'reviews'],
    ['Reviews.Bookinfo', 'reviews.bookinfo'],
    ['[::1]:80', '::1'],
    ['::1', '::1'],
    ['10.0.0.1', '10.0.0.1'],
  ] as const)
    assert.equal(hostOfAuthority(input), want, input);
});

test('routeRequest picks the first matching route (table)', () => {
  const table = buildRouteTable([reviews, plain, ingress]);
  const cases: Array<[string, Partial<RouteRequest>, string | undefined]> = [
    ['exact uri', { path: '/health' }, 'exact'],
    ['exact uri ignores the query', { path: '/health?x=1' }, 'exact'],
    ['exact uri is not a prefix', { path: '/healthz' }, undefined],
    ['header exact', { headers: { 'end-user': 'jason' } }, 'jason'],
    ['header exact is case-sensitive', { headers: { 'end-user': 'Jason' } }, undefined],
    ['prefix + method', { path: '/api/v1', method: 'POST' }, 'api-post'],
    ['prefix without the method', { path: '/api/v1', method: 'GET' }, undefined],
    ['regex matches the whole path', { path: '/items/42' }, 'regex'],
    ['regex does not match a longer path', { path: '/items/42/x' }, undefined],
    ['query param', { path: '/x?debug=1' }, 'query'],
    ['header present', { headers: { 'x-canary': '' } }, 'present'],
    ['withoutHeaders: header absent', { path: '/beta/1' }, 'not-beta'],
    ['withoutHeaders: header present', { path: '/beta/1', headers: { 'x-beta': 'yes' } }, undefined],
    ['any of several matches (second)', { path: '/bb/1' }, 'anyof'],
    ['ignoreUriCase', { path: '/CASE' }, 'ci'],
    ['alias with port', { authority: 'reviews:9080', path: '/health' }, 'exact'],
    ['VIP alias', { authority: '10.96.0.10:9080', path: '/health' }, 'exact'],
    ['earlier route wins over a later one', { path: '/health', headers: { 'end-user': 'jason' } }, 'exact'],
  ];
  for (const [what, input, want] of cases) {
    const d = routeRequest(table, req(input));
    if (want === undefined) {
      assert.equal(d.kind, 'no-route', what);
      if (d.kind === 'no-route') assert.equal(d.reason, 'no-match', what);
    } else {
      assert.equal(d.kind, 'route', what);
      if (d.kind === 'route') assert.equal(d.route.name, want, what);
    }
  }
});

test('a service without routes gets the default route to itself; unknown hosts get no route', () => {
  const table = buildRouteTable([reviews, plain]);
  const d = routeRequest(table, req({ authority: 'ratings:9080' }));
  assert.equal(d.kind, 'route');
  if (d.kind === 'route') assert.deepEqual(d.route.backends, [{ host: 'ratings.bookinfo.svc.cluster.local', weight: 1 }]);
  const u = routeRequest(table, req({ authority: 'nobody' }));
  assert.deepEqual(u, { kind: 'no-route', reason: 'unknown-host' });
});

test('gateway tables see only their configs; exact hosts beat wildcards', () => {
  const mesh = buildRouteTable([reviews, ingress, ingressExact]);
  assert.equal(routeRequest(mesh, req({ authority: 'www.example.com' })).kind, 'no-route', 'mesh does not serve ingress hosts');
  const gw = buildRouteTable([reviews, ingress, ingressExact], 'bookinfo/gw');
  const a = routeRequest(gw, req({ authority: 'api.example.com' }));
  const w = routeRequest(gw, req({ authority: 'www.example.com:80' }));
  assert.equal(a.kind === 'route' && a.route.name, 'api');
  assert.equal(w.kind === 'route' && w.route.name, 'all');
  assert.equal(routeRequest(gw, req({ authority: 'reviews' })).kind, 'no-route', 'the gateway does not serve mesh hosts');
});

test('matchRequest: empty match matches everything', () => {
  assert.equal(matchRequest(m({}), req({ path: '/anything', method: 'DELETE' })), true);
});

test('rewritePath replaces the matched prefix and keeps the query', () => {
  const route = r('rw', [m({ uri: { prefix: '/reviews' } })], { rewrite: { uriPrefix: '/v2/reviews' } });
  assert.equal(rewritePath(route, req({ path: '/reviews/1?x=y' })), '/v2/reviews/1?x=y');
  const exact = r('rw', [m({ uri: { exact: '/old' } })], { rewrite: { uriPrefix: '/new' } });
  assert.equal(rewritePath(exact, req({ path: '/old' })), '/new');
  const none = r('rw', [], { rewrite: { uriPrefix: '/base/' } });
  assert.equal(rewritePath(none, req({ path: '/x' })), '/base/x');
  assert.equal(rewritePath(r('n', []), req({ path: '/same' })), '/same');
  const gw = r('gw', [m({ uri: { regex: '/api(/.*)?' } })], { rewrite: { uriPrefix: '/', matchPrefix: '/api' } });
  assert.equal(rewritePath(gw, req({ path: '/api/x?q=1' })), '/x?q=1', 'Gateway API ReplacePrefixMatch to /');
  assert.equal(rewritePath(gw, req({ path: '/api' })), '/');
  const full = r('full', [m({ uri: { prefix: '/old' } })], { rewrite: { fullPath: '/fixed' } });
  assert.equal(rewritePath(full, req({ path: '/old/deep?a=1' })), '/fixed?a=1');
});

test('routeRequest: the addressed Service wins over a foreign Host header; the Host decides without one', () => {
  const table = buildRouteTable([reviews, plain]);
  const foreign = routeRequest(table, req({ authority: 'something-else.example', path: '/health', service: 'reviews.bookinfo.svc.cluster.local' }));
  assert.equal(foreign.kind, 'route');
  assert.equal(foreign.kind === 'route' && foreign.route.name, 'exact');
  const other = routeRequest(table, req({ authority: 'ratings:9080', path: '/health', service: 'reviews.bookinfo.svc.cluster.local' }));
  assert.equal(other.kind === 'route' && other.config.hostname, 'reviews.bookinfo.svc.cluster.local', 'the VIP decides, not another service named in Host');
  const unknown = routeRequest(table, req({ authority: 'ratings:9080', service: 'nobody.bookinfo.svc.cluster.local' }));
  assert.equal(unknown.kind === 'route' && unknown.config.hostname, 'ratings.bookinfo.svc.cluster.local', 'an unknown service falls back to the Host');
  assert.deepEqual(routeRequest(table, req({ authority: 'something-else.example' })), { kind: 'no-route', reason: 'unknown-host' });
});

test('routeRequest: a pod-addressed request goes to that pod (original destination) under its Service config, never by Host', () => {
  const table = buildRouteTable([reviews, plain]);
  const d = routeRequest(table, req({ authority: 'ratings:9080', path: '/health', port: 9080, workload: '10.244.1.3', service: 'reviews.bookinfo.svc.cluster.local' }));
  assert.equal(d.kind, 'route');
  if (d.kind !== 'route') return;
  assert.equal(d.config.hostname, 'reviews.bookinfo.svc.cluster.local', 'the pod\'s own Service config (its policy)');
  assert.deepEqual([d.route.name, d.route.backends], ['original-destination', [{ host: '10.244.1.3', port: 9080, weight: 1 }]], 'no Service route: the pod itself');
  const bare = routeRequest(table, req({ authority: 'reviews:9080', port: 8080, workload: '10.244.1.9' }));
  assert.equal(bare.kind === 'route' && bare.config.hostname, '10.244.1.9', 'without a Service, a config of its own, not the Host\'s');
  assert.deepEqual(bare.kind === 'route' && [bare.config.authorization, bare.route.backends], [[], [{ host: '10.244.1.9', port: 8080, weight: 1 }]]);
});
