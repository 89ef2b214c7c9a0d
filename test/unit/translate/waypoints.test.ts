import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { translate } from '../../../src/controller/translate/translate.js';
import { loadManifests } from '../../../src/controller/source/manifests.js';
import type { KubeObject } from '../../../src/controller/objects.js';
import { authorizationPolicy, namespace, peerAuthentication, pod, service, waypointGateway } from './helpers.js';

const AMBIENT = { 'istio.io/dataplane-mode': 'ambient' };
const wpPod = (name: string, gateway: string, ip: string, sa = gateway, ns = 'demo'): KubeObject =>
  pod(name, { ns, ip, sa, labels: { 'gateway.networking.k8s.io/gateway-name': gateway } });

test('namespace use-waypoint binds its Services to the waypoint: pod addresses and identity', () => {
  const { services, workloads, conditions } = translate([
    namespace('demo', { ...AMBIENT, 'istio.io/use-waypoint': 'waypoint' }),
    waypointGateway('waypoint'),
    wpPod('waypoint-abc', 'waypoint', '10.0.0.50', 'waypoint-sa'),
    wpPod('waypoint-def', 'waypoint', '10.0.0.51', 'waypoint-sa'),
    service('reviews'),
    pod('reviews', { ip: '10.0.0.2' }),
  ]);
  const reviews = services.find((s) => s.name === 'reviews')!;
  assert.deepEqual(reviews.waypoint, {
    name: 'demo/waypoint',
    namespace: 'demo',
    addresses: ['10.0.0.50', '10.0.0.51'],
    identity: 'spiffe://cluster.local/ns/demo/sa/waypoint-sa',
  });
  assert.equal(workloads.find((w) => w.name === 'reviews')!.waypoint, undefined, 'waypoint-for service (default) leaves workloads alone');
  assert.equal(workloads.find((w) => w.name === 'waypoint-abc')!.waypoint, undefined);
  assert.deepEqual(conditions.find((c) => c.objectKey === 'Service/demo/reviews'), {
    objectKey: 'Service/demo/reviews',
    type: 'istio.io/WaypointBound',
    status: 'True',
    reason: 'Bound',
    message: 'bound to waypoint demo/waypoint',
  });
});

test('a waypoint without pods has no addresses and the default identity <gateway name>', () => {
  const { services } = translate([waypointGateway('wp', { className: 'istio-waypoint' }), service('s', { labels: { 'istio.io/use-waypoint': 'wp' } })]);
  assert.deepEqual(services[0]!.waypoint, { name: 'demo/wp', namespace: 'demo', addresses: [], identity: 'spiffe://cluster.local/ns/demo/sa/wp' });
});

test('service label wins over the namespace; none and #none opt out', () => {
  const { services } = translate([
    namespace('demo', { 'istio.io/use-waypoint': 'ns-wp' }),
    waypointGateway('ns-wp'),
    waypointGateway('svc-wp'),
    service('a', { labels: { 'istio.io/use-waypoint': 'svc-wp' } }),
    service('b', { labels: { 'istio.io/use-waypoint': 'none' } }),
    service('c', { labels: { 'istio.io/use-waypoint': '#none' } }),
    service('d'),
  ]);
  assert.deepEqual(services.map((s) => [s.name, s.waypoint?.name]), [
    ['a', 'demo/svc-wp'],
    ['b', undefined],
    ['c', undefined],
    ['d', 'demo/ns-wp'],
  ]);
});

test('use-waypoint-namespace points at a waypoint in another namespace', () => {
  const { services } = translate([
    waypointGateway('shared', { ns: 'infra' }),
    wpPod('shared-1', 'shared', '10.0.9.1', 'shared', 'infra'),
    service('s', { labels: { 'istio.io/use-waypoint': 'shared', 'istio.io/use-waypoint-namespace': 'infra' } }),
  ]);
  assert.equal(services[0]!.waypoint?.name, 'infra/shared');
  assert.deepEqual(services[0]!.waypoint?.addresses, ['10.0.9.1']);
  assert.equal(services[0]!.waypoint?.identity, 'spiffe://cluster.local/ns/infra/sa/shared');
});

test('a missing waypoint or one of another class binds nothing and the Service gets a False condition', () => {
  const { services, conditions } = translate([
    waypointGateway('ingress', { className: 'istio' }),
    service('a', { labels: { 'istio.io/use-waypoint': 'ingress' } }),
    service('b', { labels: { 'istio.io/use-waypoint': 'ghost' } }),
  ]);
  assert.ok(services.every((s) => s.waypoint === undefined));
  assert.deepEqual(conditions.map((c) => [c.objectKey, c.status, c.reason]), [
    ['Service/demo/a', 'False', 'WaypointNotFound'],
    ['Service/demo/b', 'False', 'WaypointNotFound'],
  ]);
});

test('waypoint-for workload binds enrolled Workloads (pod label wins over namespace), not Services', () => {
  const { services, workloads, conditions } = translate([
    namespace('demo', { ...AMBIENT, 'istio.io/use-waypoint': 'wl' }),
    waypointGateway('wl', { waypointFor: 'workload' }),
    service('s', { selector: { app: 'a' } }),
    pod('a', { labels: { app: 'a' } }),
    pod('optout', { labels: { app: 'o', 'istio.io/use-waypoint': 'none' } }),
    pod('plain', { labels: { app: 'p', 'istio.io/dataplane-mode': 'none' } }),
  ]);
  const byName = new Map(workloads.map((w) => [w.name, w]));
  assert.equal(byName.get('a')!.waypoint?.name, 'demo/wl');
  assert.equal(byName.get('optout')!.waypoint, undefined);
  assert.equal(byName.get('plain')!.waypoint, undefined, 'only enrolled workloads use a waypoint');
  assert.equal(services[0]!.waypoint, undefined);
  assert.equal(conditions.find((c) => c.objectKey === 'Service/demo/s')!.reason, 'WaypointNotForServices');
});

test('waypoint-for all binds both', () => {
  const { services, workloads } = translate([
    namespace('demo', { ...AMBIENT, 'istio.io/use-waypoint': 'wp' }),
    waypointGateway('wp', { waypointFor: 'all' }),
    service('s', { selector: { app: 'a' } }),
    pod('a', { labels: { app: 'a' } }),
  ]);
  assert.equal(services[0]!.waypoint?.name, 'demo/wp');
  assert.equal(workloads[0]!.waypoint?.name, 'demo/wp');
});

function mixedObjects(): KubeObject[] {
  return [
    namespace('demo', { ...AMBIENT, 'istio.io/use-waypoint': 'wp' }),
    namespace('prod', AMBIENT),
    waypointGateway('wp', { waypointFor: 'all' }),
    wpPod('wp-1', 'wp', '10.0.0.90'),
    service('a', { selector: { app: 'a' } }),
    service('b', { ns: 'prod', selector: { app: 'b' } }),
    pod('a-2', { labels: { app: 'a' }, ip: '10.0.0.3' }),
    pod('a-1', { labels: { app: 'a' }, ip: '10.0.0.2' }),
    pod('b-1', { ns: 'prod', labels: { app: 'b' }, ip: '10.0.1.2' }),
    peerAuthentication('default', 'istio-system', { mtls: { mode: 'STRICT' } }),
    authorizationPolicy('z', 'demo', { selector: { matchLabels: { app: 'a' } }, rules: [{ from: [{ source: { namespaces: ['prod'] } }] }] }),
    authorizationPolicy('y', 'demo', { selector: { matchLabels: { app: 'a' } }, action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'] } }] }] }),
    authorizationPolicy('x', 'prod', {}),
  ];
}

test('output is deterministic and sorted whatever the input order', () => {
  const objects = mixedObjects();
  const first = translate(objects);
  const reversed = translate([...objects].reverse());
  const rotated = translate([...objects.slice(5), ...objects.slice(0, 5)]);
  assert.equal(JSON.stringify(reversed), JSON.stringify(first));
  assert.equal(JSON.stringify(rotated), JSON.stringify(first));
  assert.deepEqual(first.workloads.map((w) => w.name), ['a-1', 'a-2', 'wp-1', 'b-1']);
  assert.deepEqual(first.services.map((s) => `${s.namespace}/${s.name}`), ['demo/a', 'prod/b']);
  assert.deepEqual(first.authorizations.map((a) => `${a.namespace}/${a.name}`), ['demo/y', 'demo/z', 'prod/x']);
  assert.deepEqual(first.workloads[0]!.authorizationPolicies, ['demo/y', 'demo/z']);
  assert.ok(first.workloads.every((w) => w.peerAuthentication === 'STRICT'));
});

test('translate does not modify its input and accepts a store snapshot', () => {
  const objects = mixedObjects();
  const before = JSON.stringify(objects);
  const a = translate({ objects });
  assert.equal(JSON.stringify(objects), before);
  assert.equal(JSON.stringify(translate(objects)), JSON.stringify(a));
});

test('the bookinfo fixtures translate: enrolled reviews pods behind a waypoint-bound Service with STRICT mTLS', async () => {
  const fixtures = fileURLToPath(new URL('../../../../test/fixtures/manifests/valid', import.meta.url));
  const { objects } = await loadManifests([fixtures]);
  const running = (name: string, version: string, ip: string): KubeObject => {
    const p = pod(name, { ns: 'bookinfo', sa: 'bookinfo-reviews', ip, labels: { app: 'reviews', version, 'pod-template-hash': 'h1' }, ports: [{ name: 'http-api', containerPort: 9080 }] });
    return { ...p, metadata: { ...p.metadata, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `reviews-${version}-h1`, controller: true }] } };
  };
  const out = translate([...objects, running('reviews-v1-h1-0', 'v1', '10.0.0.11'), running('reviews-v2-h1-0', 'v2', '10.0.0.12'), wpPod('waypoint-0', 'waypoint', '10.0.0.99', 'waypoint', 'bookinfo')]);
  const reviews = out.services.find((s) => s.name === 'reviews')!;
  assert.equal(reviews.waypoint?.name, 'bookinfo/waypoint');
  assert.deepEqual(reviews.ports, [{ name: 'http', port: 9080, targetPort: 9080, protocol: 'http' }]);
  assert.deepEqual(reviews.endpoints, ['local//v1/Pod/bookinfo/reviews-v1-h1-0', 'local//v1/Pod/bookinfo/reviews-v2-h1-0']);
  const v1 = out.workloads.find((w) => w.name === 'reviews-v1-h1-0')!;
  assert.equal(v1.tunnelProtocol, 'HBONE');
  assert.equal(v1.peerAuthentication, 'STRICT');
  assert.equal(v1.workloadName, 'reviews-v1');
  assert.equal(v1.canonicalRevision, 'v1');
  assert.deepEqual(v1.authorizationPolicies, ['bookinfo/reviews-viewer']);
  assert.deepEqual(out.authorizations.map((a) => `${a.namespace}/${a.name}`), ['bookinfo/reviews-viewer']);
});
