import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../../src/controller/objects.js';
import { ObjectStore, type ObjectRef } from '../../../src/controller/store.js';
import { IncrementalTranslator, mergeRuns, runEnd } from '../../../src/controller/translate/incremental.js';
import { jsonEqual, keepUnchanged } from '../../../src/controller/translate/stable.js';
import { translateAll, type MeshTranslation } from '../../../src/controller/translate/translate.js';
import { translateRoutes } from '../../../src/controller/translate/routes.js';
import { authorizationPolicy, namespace, peerAuthentication, pod, service, waypointGateway } from './helpers.js';

const ref = (o: KubeObject): ObjectRef => ({ apiVersion: o.apiVersion, kind: o.kind, metadata: { name: o.metadata.name, ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}) } });

const allow = (principal: string, port = '8080') => ({ action: 'ALLOW', rules: [{ from: [{ source: { principals: [principal] } }], to: [{ operation: { ports: [port] } }] }] });

function endpointSlice(name: string, ns: string, svc: string, pods: string[]): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 9090 }],
    endpoints: pods.map((p) => ({ addresses: ['10.1.0.9'], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: ns, name: p } })),
  } as unknown as KubeObject;
}

function node(name: string, zone: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'topology.kubernetes.io/zone': zone, 'topology.kubernetes.io/region': 'r1' } } };
}

function virtualService(name: string, ns: string, host: string, timeout: string): KubeObject {
  return { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name, namespace: ns }, spec: { hosts: [host], http: [{ route: [{ destination: { host } }], timeout }] } };
}

function serviceEntry(name: string, ns: string): KubeObject {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name, namespace: ns },
    spec: { hosts: ['api.example.com'], addresses: ['240.0.0.5'], ports: [{ number: 443, name: 'tls', protocol: 'TLS' }], resolution: 'STATIC', workloadSelector: { labels: { app: 'db' } } },
  };
}

function istioGateway(name: string, ns: string): KubeObject {
  return { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name, namespace: ns }, spec: { selector: { istio: 'ingress' }, servers: [{ port: { number: 9000, name: 'tcp', protocol: 'TCP' }, hosts: ['*'] }] } };
}

function destinationRule(name: string, ns: string, host: string, subsets: Array<{ name: string; labels: Record<string, string> }>): KubeObject {
  return { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name, namespace: ns }, spec: { host, subsets } };
}

/** A VirtualService whose rules read another host's DestinationRule (subset) and Service (mirror port). */
function subsetVirtualService(name: string, ns: string, host: string, subset: string, mirror: string): KubeObject {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name, namespace: ns },
    spec: { hosts: [host], http: [{ route: [{ destination: { host, subset } }], mirror: { host: mirror } }] },
  };
}

function telemetry(name: string, ns: string, spec: Record<string, unknown>): KubeObject {
  return { apiVersion: 'telemetry.istio.io/v1', kind: 'Telemetry', metadata: { name, namespace: ns }, spec };
}

/** An L7 policy attached to a Service (its mesh config carries it). */
const attachedPolicy = (name: string, ns: string, svc: string, method: string): KubeObject =>
  authorizationPolicy(name, ns, { targetRefs: [{ kind: 'Service', group: '', name: svc }], action: 'ALLOW', rules: [{ to: [{ operation: { methods: [method] } }] }] });

const ambient = { 'istio.io/dataplane-mode': 'ambient' };

/** A cluster over three namespaces and the root namespace, with every kind the model reads. */
function cluster(): KubeObject[] {
  return [
    namespace('istio-system'),
    namespace('a', ambient),
    namespace('b', ambient),
    namespace('c'),
    node('node-1', 'z1'),
    node('node-2', 'z2'),
    pod('web-1', { ns: 'a', labels: { app: 'web', version: 'v1' }, ip: '10.1.0.1', sa: 'web' }),
    pod('web-2', { ns: 'a', labels: { app: 'web', version: 'v2' }, ip: '10.1.0.2', sa: 'web', node: 'node-2' }),
    pod('db-1', { ns: 'a', labels: { app: 'db' }, ip: '10.1.0.3', sa: 'db', ports: [{ name: 'sql', containerPort: 5432 }] }),
    pod('api-1', { ns: 'b', labels: { app: 'api' }, ip: '10.1.0.4', sa: 'api' }),
    pod('api-2', { ns: 'b', labels: { app: 'api' }, ip: '10.1.0.5', sa: 'api', phase: 'Pending', ready: false }),
    pod('plain', { ns: 'c', ip: '10.1.0.6' }),
    pod('ingress-1', { ns: 'istio-system', labels: { istio: 'ingress' }, ip: '10.1.0.7' }),
    service('web', { ns: 'a', clusterIP: '10.96.0.1' }),
    service('db', { ns: 'a', clusterIP: '10.96.0.2', ports: [{ name: 'tcp-sql', port: 5432, targetPort: 'sql' }] }),
    service('api', { ns: 'b', clusterIP: '10.96.0.3' }),
    service('manual', { ns: 'b', clusterIP: '10.96.0.4', selector: {} }),
    endpointSlice('manual-1', 'b', 'manual', ['api-1']),
    authorizationPolicy('web-allow', 'a', { selector: { matchLabels: { app: 'web' } }, ...allow('cluster.local/ns/b/sa/api') }),
    authorizationPolicy('ns-deny', 'b', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['c'] } }] }] }),
    authorizationPolicy('l7', 'b', { selector: { matchLabels: { app: 'api' } }, action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }),
    authorizationPolicy('mesh-audit', 'istio-system', { selector: { matchLabels: { app: 'api' } }, action: 'AUDIT', rules: [{}] }),
    authorizationPolicy('custom', 'a', { action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] }),
    peerAuthentication('default', 'istio-system', { mtls: { mode: 'STRICT' } }, '2026-01-01T00:00:00Z'),
    peerAuthentication('ns', 'a', { mtls: { mode: 'PERMISSIVE' } }, '2026-01-02T00:00:00Z'),
    peerAuthentication('ns-later', 'a', { mtls: { mode: 'STRICT' } }, '2026-01-03T00:00:00Z'),
    peerAuthentication('db-port', 'a', { selector: { matchLabels: { app: 'db' } }, portLevelMtls: { '5432': { mode: 'DISABLE' } } }, '2026-01-04T00:00:00Z'),
    virtualService('web', 'a', 'web', '2s'),
  ];
}

interface Step {
  name: string;
  apply?: KubeObject[];
  remove?: KubeObject[];
}

const STEPS: Step[] = [
  { name: 'pod update (label: joins/leaves service and policy)', apply: [pod('web-2', { ns: 'a', labels: { app: 'other', version: 'v2' }, ip: '10.1.0.2', sa: 'web', node: 'node-2' })] },
  { name: 'pod add', apply: [pod('web-3', { ns: 'a', labels: { app: 'web' }, ip: '10.1.0.8', sa: 'web' })] },
  { name: 'pod becomes ready', apply: [pod('api-2', { ns: 'b', labels: { app: 'api' }, ip: '10.1.0.5', sa: 'api' })] },
  { name: 'pod delete', remove: [pod('web-1', { ns: 'a' })] },
  { name: 'service update (port added)', apply: [service('web', { ns: 'a', clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'grpc', port: 81, targetPort: 9090 }] })] },
  { name: 'service add', apply: [service('plain', { ns: 'c', clusterIP: '10.96.0.5' })] },
  { name: 'service delete', remove: [service('api', { ns: 'b' })] },
  { name: 'endpoint slice update', apply: [endpointSlice('manual-1', 'b', 'manual', ['api-1', 'api-2'])] },
  { name: 'endpoint slice delete', remove: [endpointSlice('manual-1', 'b', 'manual', [])] },
  { name: 'policy update', apply: [authorizationPolicy('web-allow', 'a', { selector: { matchLabels: { app: 'web' } }, ...allow('cluster.local/ns/c/sa/default', '80') })] },
  { name: 'policy add', apply: [authorizationPolicy('db-allow', 'a', { selector: { matchLabels: { app: 'db' } }, ...allow('cluster.local/ns/a/sa/web') })] },
  { name: 'policy delete', remove: [authorizationPolicy('ns-deny', 'b', {})] },
  { name: 'root policy update', apply: [authorizationPolicy('mesh-audit', 'istio-system', { selector: { matchLabels: { app: 'web' } }, action: 'AUDIT', rules: [{}] })] },
  { name: 'root policy add (namespace-less scope)', apply: [authorizationPolicy('mesh-deny', 'istio-system', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['c'] } }] }] })] },
  { name: 'peer authentication update', apply: [peerAuthentication('ns', 'a', { mtls: { mode: 'STRICT' } }, '2026-01-02T00:00:00Z')] },
  { name: 'peer authentication delete (the later one takes over)', remove: [peerAuthentication('ns', 'a', {})] },
  { name: 'mesh-wide peer authentication update', apply: [peerAuthentication('default', 'istio-system', { mtls: { mode: 'PERMISSIVE' } }, '2026-01-01T00:00:00Z')] },
  { name: 'namespace enrolled', apply: [namespace('c', ambient)] },
  { name: 'node zone changes', apply: [node('node-2', 'z3')] },
  { name: 'virtual service update', apply: [virtualService('web', 'a', 'web', '5s')] },
  { name: 'subset virtual service and its destination rule added', apply: [destinationRule('api', 'b', 'api', [{ name: 'v1', labels: { version: 'v1' } }]), subsetVirtualService('api', 'b', 'api', 'v1', 'web.a.svc.cluster.local')] },
  { name: 'destination rule subset labels change (the virtual service reads them)', apply: [destinationRule('api', 'b', 'api', [{ name: 'v1', labels: { version: 'v9' } }])] },
  { name: 'mirrored service port change (the virtual service reads it)', apply: [service('web', { ns: 'a', clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 8081, targetPort: 8080 }] })] },
  { name: 'destination rule deleted (the subset is no longer defined)', remove: [destinationRule('api', 'b', 'api', [])] },
  { name: 'attached L7 policy added', apply: [attachedPolicy('api-l7', 'b', 'api', 'GET')] },
  { name: 'attached L7 policy update', apply: [attachedPolicy('api-l7', 'b', 'api', 'POST')] },
  { name: 'attached L7 policy retargeted', apply: [attachedPolicy('api-l7', 'b', 'manual', 'POST')] },
  { name: 'telemetry added', apply: [telemetry('logs', 'b', { accessLogging: [{ disabled: true }] })] },
  { name: 'telemetry update', apply: [telemetry('logs', 'b', { tracing: [{ randomSamplingPercentage: 5 }] })] },
  { name: 'attached L7 policy deleted', remove: [attachedPolicy('api-l7', 'b', 'manual', '')] },
  { name: 'istio gateway added (listeners)', apply: [istioGateway('ingress', 'istio-system')] },
  { name: 'gateway pod changes', apply: [pod('ingress-1', { ns: 'istio-system', labels: { istio: 'ingress', v: '2' }, ip: '10.1.0.7' })] },
  { name: 'service entry added (whole model)', apply: [serviceEntry('ext', 'a')] },
  { name: 'pod change with a service entry', apply: [pod('db-1', { ns: 'a', labels: { app: 'db', v: '2' }, ip: '10.1.0.3', sa: 'db', ports: [{ name: 'sql', containerPort: 5432 }] })] },
  { name: 'service entry deleted', remove: [serviceEntry('ext', 'a')] },
  { name: 'a pod in the root namespace changed', apply: [pod('ingress-1', { ns: 'istio-system', labels: { istio: 'ingress', v: '3' }, ip: '10.1.0.7' })] },
  {
    name: 'waypoint added and used from its own and another namespace',
    apply: [
      waypointGateway('wp', { ns: 'b', className: 'istio-waypoint', waypointFor: 'all' }),
      pod('wp-1', { ns: 'b', labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' }, ip: '10.1.0.20' }),
      namespace('b', { ...ambient, 'istio.io/use-waypoint': 'wp' }),
      namespace('a', { ...ambient, 'istio.io/use-waypoint': 'wp', 'istio.io/use-waypoint-namespace': 'b' }),
    ],
  },
  { name: 'waypoint pod changes', apply: [pod('wp-1', { ns: 'b', labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' }, ip: '10.1.0.21' })] },
  { name: 'waypoint deleted', remove: [waypointGateway('wp', { ns: 'b' })] },
  { name: 'namespace deleted with its objects', remove: [namespace('b')] },
  { name: 'everything of a namespace re-added', apply: [namespace('b', ambient), pod('api-1', { ns: 'b', labels: { app: 'api' }, ip: '10.1.0.4', sa: 'api' }), service('api', { ns: 'b', clusterIP: '10.96.0.3' })] },
];

const OPTS = { trustDomain: 'cluster.local', clusterId: 'c1', rootNamespace: 'istio-system' };

test('incremental translation equals a full translate after every add, update and delete of each kind', () => {
  const store = new ObjectStore();
  store.apply(cluster());
  const inc = new IncrementalTranslator();
  // The controller's way: the store's groups by kind given along.
  const grouped = new IncrementalTranslator();
  let kept: MeshTranslation | undefined;
  const check = (label: string): void => {
    const { objects, byKind } = store.snapshot();
    // The reference is built from unfrozen copies: nothing kept by object (translation's caches of
    // frozen objects) can make it agree with a stale incremental result.
    const full = translateAll(objects.map((o) => structuredClone(o)), OPTS);
    const got = inc.translate(objects, OPTS);
    assert.deepStrictEqual(got, full, `after ${label}`);
    assert.deepStrictEqual(grouped.translate(objects, OPTS, byKind), full, `with the store's groups, after ${label}`);
    // What the controller serves: the incremental result with unchanged parts of the previous one.
    kept = kept ? keepUnchanged(kept, got) : got;
    assert.deepStrictEqual(kept, full, `kept, after ${label}`);
  };
  check('the initial apply');
  for (const step of STEPS) {
    if (step.apply) store.apply(step.apply);
    if (step.remove) store.delete(step.remove.map(ref));
    check(step.name);
  }
});

test('incremental translation re-derives only the namespace a pod or policy change touches', () => {
  const store = new ObjectStore();
  store.apply(cluster());
  const plain = new IncrementalTranslator();
  // As the controller calls it: with the store's groups by kind.
  const inc = { translate: (objects: readonly KubeObject[], o: typeof OPTS) => plain.translate(objects, o, store.snapshot().byKind), get rebuilt() { return plain.rebuilt; } };
  const first = inc.translate(store.snapshot().objects, OPTS);
  assert.ok(inc.rebuilt >= 4, `the first translate builds every part (rebuilt ${inc.rebuilt})`);
  store.apply([pod('api-1', { ns: 'b', labels: { app: 'api', version: 'v9' }, ip: '10.1.0.4', sa: 'api' })]);
  const second = inc.translate(store.snapshot().objects, OPTS);
  assert.equal(inc.rebuilt, 1, 'a pod change rebuilds its namespace only');
  assert.equal(second.routes, first.routes, 'route translation does not read pods: reused');
  const webBefore = first.model.workloads.find((w) => w.name === 'web-1');
  assert.ok(webBefore);
  assert.equal(second.model.workloads.find((w) => w.name === 'web-1'), webBefore, 'another namespace keeps its objects');
  store.apply([authorizationPolicy('web-allow', 'a', { selector: { matchLabels: { app: 'web' } }, ...allow('cluster.local/ns/b/sa/other') })]);
  inc.translate(store.snapshot().objects, OPTS);
  assert.equal(inc.rebuilt, 1, 'a policy change rebuilds its namespace only');
  // Global kinds the model does not read rebuild no part: a VirtualService, a ServiceAccount.
  const full = (): MeshTranslation => translateAll(store.snapshot().objects.map((o) => structuredClone(o)), OPTS);
  const beforeVs = inc.translate(store.snapshot().objects, OPTS);
  store.apply([virtualService('web', 'a', 'web', '9s')]);
  const afterVs = inc.translate(store.snapshot().objects, OPTS);
  assert.equal(inc.rebuilt, 0, 'a VirtualService change rebuilds no model part');
  assert.equal(afterVs.model.workloads, beforeVs.model.workloads);
  assert.notEqual(afterVs.routes, beforeVs.routes, 'its routes are translated again');
  assert.deepStrictEqual(afterVs, full());
  store.apply([{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: 'a' } }]);
  assert.deepStrictEqual(inc.translate(store.snapshot().objects, OPTS), full());
  assert.equal(inc.rebuilt, 0, 'a ServiceAccount rebuilds no model part');
  store.apply([namespace('c', ambient)]);
  inc.translate(store.snapshot().objects, OPTS);
  assert.ok(inc.rebuilt >= 4, `a global change rebuilds every part (rebuilt ${inc.rebuilt})`);
  inc.translate(store.snapshot().objects, OPTS);
  assert.equal(inc.rebuilt, 0, 'nothing changed: nothing rebuilt');
  // Conditions written on a policy (a status the model does not read) rebuild nothing...
  const routesBefore = inc.translate(store.snapshot().objects, OPTS).routes;
  assert.ok(store.setStatus('AuthorizationPolicy', 'a', 'web-allow', { conditions: [{ type: 'Accepted', status: 'True' }] }));
  const afterStatus = inc.translate(store.snapshot().objects, OPTS);
  assert.equal(inc.rebuilt, 0, 'a status write on a policy rebuilds nothing');
  assert.equal(afterStatus.routes, routesBefore, 'nor the route configs');
  assert.deepStrictEqual(afterStatus, translateAll(store.snapshot().objects, OPTS));
  // ...while a pod's status is an input.
  assert.ok(store.setStatus('Pod', 'a', 'web-1', { phase: 'Failed' }));
  const afterPod = inc.translate(store.snapshot().objects, OPTS);
  assert.equal(inc.rebuilt, 1, 'a pod status write rebuilds its namespace');
  assert.deepStrictEqual(afterPod, translateAll(store.snapshot().objects, OPTS));
});

test('route configs: a policy change finishes the same base again; a Service change re-parses only the VirtualServices that read it', () => {
  const store = new ObjectStore();
  store.apply([...cluster(), destinationRule('api', 'b', 'api', [{ name: 'v1', labels: { version: 'v1' } }]), subsetVirtualService('api', 'b', 'api', 'v1', 'db.a.svc.cluster.local'), attachedPolicy('api-l7', 'b', 'api', 'GET')]);
  const inc = new IncrementalTranslator();
  const run = (): MeshTranslation => {
    const { objects, byKind } = store.snapshot();
    const got = inc.translate(objects, OPTS, byKind);
    assert.deepStrictEqual(got, translateAll(objects.map((o) => structuredClone(o)), OPTS));
    return got;
  };
  const config = (t: MeshTranslation, host: string) => t.routes.routes.find((r) => r.hostname === `${host}.svc.cluster.local`)!;
  const first = run();
  assert.deepEqual(config(first, 'api.b').authorization.map((a) => a.rules[0]?.to[0]?.methods), [['GET']]);

  store.apply([attachedPolicy('api-l7', 'b', 'api', 'POST')]);
  const second = run();
  assert.deepEqual(config(second, 'api.b').authorization.map((a) => a.rules[0]?.to[0]?.methods), [['POST']]);
  const kept = second.routes.routes.filter((r) => first.routes.routes.includes(r)).map((r) => r.hostname);
  assert.deepEqual(kept.sort(), first.routes.routes.map((r) => r.hostname).filter((h) => h !== 'api.b.svc.cluster.local').sort(), 'every config the policy does not target is the previous object');
  // The routes of the api config are the base's: the policy change did not translate them again.
  assert.equal(config(second, 'api.b').routes[0], config(first, 'api.b').routes[0]);

  // A Service no VirtualService reads: the api VirtualService's rules are the ones parsed before
  // (a whole route translation, which keeps no previous config, shares their parts).
  const backendsNow = (): unknown => config({ ...first, routes: translateRoutes(store.snapshot().objects, OPTS) }, 'api.b').routes[0]!.backends;
  const before = backendsNow();
  assert.equal(backendsNow(), before, 'the same objects: rules reused');
  store.apply([service('manual', { ns: 'b', clusterIP: '10.96.0.4', selector: {}, ports: [{ name: 'http', port: 81, targetPort: 8080 }] })]);
  const third = run();
  assert.equal(backendsNow(), before, 'an unread Service changed: rules reused');
  assert.notEqual(config(third, 'manual.b'), config(second, 'manual.b'));
  assert.equal(config(third, 'web.a'), config(second, 'web.a'), 'an unrelated config stays the previous object');
  // The Service its mirror reads: parsed again (the mirror port follows it).
  store.apply([service('db', { ns: 'a', clusterIP: '10.96.0.2', ports: [{ name: 'tcp-sql', port: 5433, targetPort: 'sql' }] })]);
  const fourth = run();
  assert.equal(config(fourth, 'api.b').routes[0]!.mirror?.port, 5433);
  assert.notEqual(backendsNow(), before, 'the mirrored Service changed: rules parsed again');
});

test('mergeRuns: sorted runs end to end when they do not overlap, else one stable sort', () => {
  const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  assert.deepEqual(mergeRuns([['m', 'n'], [], ['a', 'b'], ['x']], cmp), ['a', 'b', 'm', 'n', 'x']);
  assert.deepEqual(mergeRuns([['a', 'x'], ['b', 'c']], cmp), ['a', 'b', 'c', 'x']);
  assert.deepEqual(mergeRuns([['a', 'b'], ['b', 'c']], cmp), ['a', 'b', 'b', 'c'], 'a shared key counts as overlap');
  // Stability: equal keys keep the order of the runs as given.
  const byKey = (a: { k: string }, b: { k: string }): number => cmp(a.k, b.k);
  const x = { k: 'b', from: 1 };
  const y = { k: 'b', from: 2 };
  assert.deepEqual(mergeRuns([[{ k: 'c', from: 1 }, x].sort(byKey), [{ k: 'a', from: 2 }, y]], byKey).map((o) => o.from), [2, 1, 2, 1]);
  assert.deepEqual(mergeRuns<string>([], cmp), []);
});

test('keepUnchanged keeps the previous objects where the content is equal, and only there', () => {
  const store = new ObjectStore();
  store.apply(cluster());
  const a = translateAll(store.snapshot().objects, OPTS);
  const b = translateAll(store.snapshot().objects, OPTS);
  assert.notEqual(a.model.workloads[0], b.model.workloads[0]);
  assert.equal(keepUnchanged(a, b).model, a.model, 'an equal model is the previous one');
  store.apply([pod('web-1', { ns: 'a', labels: { app: 'web', version: 'v7' }, ip: '10.1.0.1', sa: 'web' })]);
  const c = keepUnchanged(a, translateAll(store.snapshot().objects, OPTS));
  const changed = c.model.workloads.filter((w) => !a.model.workloads.includes(w)).map((w) => w.name);
  assert.deepEqual(changed, ['web-1']);
  assert.equal(c.routes, a.routes);
});

test('jsonEqual compares JSON values structurally and refuses what it cannot compare', () => {
  assert.ok(jsonEqual({ a: [1, { b: 'x' }], c: null }, { c: null, a: [1, { b: 'x' }] }));
  assert.ok(!jsonEqual({ a: [1, 2] }, { a: [2, 1] }));
  assert.ok(!jsonEqual({ a: 1 }, { a: 1, b: 2 }));
  assert.ok(!jsonEqual({ a: undefined }, { b: undefined }));
  assert.ok(!jsonEqual([1], { 0: 1 }));
  assert.ok(!jsonEqual(new Map([[1, 2]]), new Map([[1, 3]])));
  assert.ok(!jsonEqual('1', 1));
});

test('runEnd finds where a namespace run ends in a sorted group, for every run length and position', () => {
  for (const lengths of [[1], [1, 1, 1], [2, 5, 1], [17, 3, 64, 1, 9], [100]]) {
    const group: KubeObject[] = [];
    lengths.forEach((n, i) => {
      for (let j = 0; j < n; j++) group.push({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `p${String(j).padStart(3, '0')}`, namespace: `ns${i}` } });
    });
    let start = 0;
    lengths.forEach((n, i) => {
      assert.equal(runEnd(group, start, `ns${i}`), start + n, `run ${i} of ${JSON.stringify(lengths)}`);
      start += n;
    });
  }
});
