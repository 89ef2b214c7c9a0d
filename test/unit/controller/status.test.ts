/** Status building (pure): Istio's conditions and analyzer messages, Gateway API statuses, what others own is kept, idempotence. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../../src/controller/objects.js';
import { CONTROLLER_NAME, desiredStatus, type StatusInputs } from '../../../src/controller/status/build.js';
import { cleanReason, mergeFindings, toConditions } from '../../../src/controller/status/conditions.js';

const NOW = '2026-12-02T10:00:00Z';
const LATER = '2026-12-02T11:00:00Z';

function inputs(o: Partial<StatusInputs> = {}): StatusInputs {
  return { conditions: new Map(), invalid: new Map(), gatewayState: () => undefined, gateways: new Map(), services: new Set(), routes: [], now: NOW, ...o };
}

const policy = (status?: Record<string, unknown>): KubeObject => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'p', namespace: 'demo', generation: 3 },
  spec: {},
  ...(status ? { status } : {}),
});
const KEY = 'AuthorizationPolicy/demo/p';

test('findings of one type merge: False wins with its reason, messages joined; reasons are CamelCase', () => {
  assert.deepEqual(
    mergeFindings([
      { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok' },
      { type: 'Accepted', status: 'False', reason: 'Unsupported', message: 'a' },
      { type: 'Accepted', status: 'False', reason: 'Other', message: 'b' },
      { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'p' },
    ]),
    [
      { type: 'Accepted', status: 'False', reason: 'Unsupported', message: 'a; b' },
      { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'p' },
    ],
  );
  assert.equal(cleanReason('no such thing!'), 'NoSuchThing');
  assert.equal(cleanReason('BackendNotFound'), 'BackendNotFound');
});

test('a condition keeps its transition time while its status stays', () => {
  const first = toConditions([{ type: 'A', status: 'False', reason: 'X', message: 'm' }], [], NOW, 1);
  assert.equal(first[0]!.lastTransitionTime, NOW);
  const same = toConditions([{ type: 'A', status: 'False', reason: 'Y', message: 'other' }], first, LATER, 2);
  assert.equal(same[0]!.lastTransitionTime, NOW, 'reason and message changed, status did not');
  assert.equal(same[0]!.observedGeneration, 2);
  const flipped = toConditions([{ type: 'A', status: 'True', reason: 'A', message: '' }], first, LATER, 2);
  assert.equal(flipped[0]!.lastTransitionTime, LATER);
});

test('AuthorizationPolicy: what the agents apply is ZtunnelAccepted, what waypoints apply WaypointAccepted; IST0171 for a negative one', () => {
  const conditions = new Map([[KEY, [
    { objectKey: KEY, type: 'Accepted', status: 'True' as const, reason: 'Accepted', message: 'applied by the node agents', origin: 'model' as const },
    { objectKey: KEY, type: 'Accepted', status: 'False' as const, reason: 'Unsupported', message: 'rule 0 uses requestPrincipals', origin: 'routes' as const },
  ]]]);
  const foreign = { type: 'Reconciled', status: 'True', reason: 'Done', message: 'someone else' };
  const foreignMessage = { type: { code: 'IST0102', name: 'NamespaceNotInjected' }, level: 'INFO' };
  const st = desiredStatus(policy({ conditions: [foreign], validationMessages: [foreignMessage] }), inputs({ conditions }))!;
  const conds = st['conditions'] as Array<Record<string, unknown>>;
  assert.deepEqual(conds.map((c) => `${c['type']}=${c['status']}`), ['Reconciled=True', 'ZtunnelAccepted=True', 'WaypointAccepted=False'], 'the condition another writer owns is kept');
  assert.equal(conds[1]!['observedGeneration'], 3);
  assert.deepEqual(st['validationMessages'], [foreignMessage, { type: { code: 'IST0171', name: 'NegativeConditionStatus' }, level: 'WARNING' }]);
  assert.equal(st['observedGeneration'], 3);
  // Written once, the same inputs want exactly that status again: nothing to write.
  assert.deepEqual(desiredStatus(policy(st), inputs({ conditions, now: LATER })), st);
});

test('an invalid object: Accepted=False Invalid and IST0106; once fixed, only what the controller wrote goes', () => {
  const invalid = new Map([[KEY, { issues: [{ path: 'kubernetes: AuthorizationPolicy demo/p: spec.action', problem: 'must be one of ALLOW, DENY', value: 'MAYBE' }], kept: true }]]);
  const st = desiredStatus(policy({ conditions: [{ type: 'Reconciled', status: 'True' }] }), inputs({ invalid }))!;
  const accepted = (st['conditions'] as Array<Record<string, unknown>>).find((c) => c['type'] === 'Accepted')!;
  assert.equal(accepted['status'], 'False');
  assert.equal(accepted['reason'], 'Invalid');
  assert.equal(accepted['message'], 'spec.action: must be one of ALLOW, DENY (got "MAYBE"); the previous version stays in force');
  assert.deepEqual(st['validationMessages'], [{ type: { code: 'IST0106', name: 'SchemaValidationError' }, level: 'ERROR' }]);
  const fixed = desiredStatus(policy(st), inputs())!;
  assert.deepEqual(fixed['conditions'], [{ type: 'Reconciled', status: 'True' }]);
  assert.equal(fixed['validationMessages'], undefined);
  assert.deepEqual(desiredStatus(policy(), inputs()), {}, 'nothing said, nothing to write');
});

test('Gateway API: another controller\'s class is not written; route parents of other controllers are kept', () => {
  const gw = (cls: string): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'g', namespace: 'demo', generation: 1 }, spec: { gatewayClassName: cls, listeners: [] } });
  assert.equal(desiredStatus(gw('nginx'), inputs()), undefined);
  const other = { parentRef: { name: 'edge' }, controllerName: 'example.com/edge', conditions: [{ type: 'Accepted', status: 'True' }] };
  const route: KubeObject = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'r', namespace: 'demo', generation: 2 },
    spec: { parentRefs: [{ name: 'edge' }, { group: '', kind: 'Service', name: 'web' }, { group: '', kind: 'Service', name: 'gone' }] },
    status: { parents: [other] },
  };
  const st = desiredStatus(route, inputs({ services: new Set(['demo/web']), gateways: new Map([['demo/edge', gw('nginx')]]) }))!;
  const parents = st['parents'] as Array<Record<string, any>>;
  assert.deepEqual(parents[0], other);
  assert.deepEqual(parents.slice(1).map((p) => [p['controllerName'], p['parentRef']['name'], p['conditions'].map((c: any) => `${c.type}=${c.status}:${c.reason}`).join(',')]), [
    [CONTROLLER_NAME, 'web', 'Accepted=True:Accepted,ResolvedRefs=True:ResolvedRefs'],
    [CONTROLLER_NAME, 'gone', 'Accepted=False:NoMatchingParent,ResolvedRefs=True:ResolvedRefs'],
  ]);
});

test('ServiceEntry: its condition and the addresses allocated to its hosts (status.addresses, as Istio writes them)', async () => {
  const { allocatedEntryAddresses } = await import('../../../src/controller/translate/address-allocation.js');
  const se: KubeObject = { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'api', namespace: 'demo', generation: 1 }, spec: { hosts: ['API.example.com', '*.wild.example.com'], resolution: 'DNS', ports: [{ number: 443, name: 'tls', protocol: 'TLS' }] } };
  const entryAddresses = allocatedEntryAddresses([se]);
  const [v4, v6] = entryAddresses.get('demo/api.example.com')!;
  assert.match(v4!, /^240\.240\./);
  assert.match(v6!, /^2001:2::[0-9a-f]{1,4}(:[0-9a-f]{1,4})?$/, 'an IPv6 address of 2001:2::/48 as well');
  const conditions = new Map([['ServiceEntry/demo/api', [{ objectKey: 'ServiceEntry/demo/api', type: 'Accepted', status: 'True' as const, reason: 'Accepted', message: 'served by the node agents', origin: 'model' as const }]]]);
  const out = desiredStatus(se, inputs({ conditions, entryAddresses }))!;
  assert.deepEqual(out['addresses'], [{ value: v4, host: 'API.example.com' }, { value: v6, host: 'API.example.com' }], 'both addresses of the host, IPv4 first; the wildcard host gets none');
  assert.equal((out['conditions'] as Array<{ type: string }>)[0]!.type, 'Accepted');
  const given = desiredStatus({ ...se, spec: { ...se.spec, addresses: ['192.0.2.1'] }, status: out }, inputs({ conditions, entryAddresses: allocatedEntryAddresses([{ ...se, spec: { ...se.spec, addresses: ['192.0.2.1'] } }]) }))!;
  assert.equal(given['addresses'], undefined, 'an entry that names its addresses has none allocated, and an old allocation is removed');
});

test('Gateway API ingress: TCP and TLS listeners take TCPRoutes and TLSRoutes (supportedKinds, attachedRoutes by kind); those routes get parents', () => {
  const gw: KubeObject = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'edge', namespace: 'demo', generation: 1 },
    spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }, { name: 'tcp', port: 9000, protocol: 'TCP' }, { name: 'tls', port: 9443, protocol: 'TLS', tls: { mode: 'Passthrough' } }] },
  };
  const route = (kind: string, name: string, parent: Record<string, unknown>): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind, metadata: { name, namespace: 'demo', generation: 1 }, spec: { parentRefs: [parent] } });
  const routes = [route('HTTPRoute', 'web', { name: 'edge' }), route('TCPRoute', 'db', { name: 'edge', sectionName: 'tcp' }), route('TLSRoute', 'site', { name: 'edge' })];
  const ins = inputs({ routes, gateways: new Map([['demo/edge', gw]]) });
  const listeners = desiredStatus(gw, ins)!['listeners'] as Array<Record<string, any>>;
  assert.deepEqual(
    listeners.map((l) => `${l['name']} ${l['supportedKinds'].map((k: any) => k.kind).join('|')} ${l['attachedRoutes']}`),
    ['http HTTPRoute|GRPCRoute 1', 'tcp TCPRoute 1', 'tls TLSRoute 1'],
  );
  const parents = desiredStatus(routes[1]!, ins)!['parents'] as Array<Record<string, any>>;
  assert.deepEqual(parents.map((p) => p['conditions'].map((c: any) => `${c.type}=${c.status}`).join(',')), ['Accepted=True,ResolvedRefs=True']);
  const accepted = (r: KubeObject) => (desiredStatus(r, ins)!['parents'] as Array<Record<string, any>>)[0]!['conditions'].find((c: any) => c.type === 'Accepted');
  assert.equal(accepted(route('TCPRoute', 'wrong', { name: 'edge', sectionName: 'http' })).reason, 'NotAllowedByListeners', 'an HTTP listener takes no TCPRoute');
  assert.equal(accepted(route('TCPRoute', 'none', { name: 'edge', sectionName: 'nope' })).reason, 'NoMatchingParent');
  assert.equal(accepted(route('HTTPRoute', 'port', { name: 'edge', port: 9000 })).reason, 'NotAllowedByListeners', 'the TCP listener on that port takes no HTTPRoute');
});

test('Gateway API allowedRoutes: attachedRoutes counts only routes a listener allows; a route every listener refuses is NotAllowedByListeners; bad kinds are InvalidRouteKinds', () => {
  const gw: KubeObject = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'edge', namespace: 'infra', generation: 1 },
    spec: {
      gatewayClassName: 'istio',
      listeners: [
        { name: 'same', port: 80, protocol: 'HTTP' },
        { name: 'teams', port: 8080, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { team: 'shop' } } }, kinds: [{ kind: 'HTTPRoute' }, { kind: 'TCPRoute' }] } },
        { name: 'tcp', port: 9000, protocol: 'TCP', allowedRoutes: { namespaces: { from: 'All' } } },
      ],
    },
  };
  const namespaces = new Map<string, KubeObject>([
    ['shop', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { team: 'shop' } } }],
    ['other', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } }],
  ]);
  const route = (kind: string, name: string, ns: string, parent: Record<string, unknown> = {}): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind, metadata: { name, namespace: ns, generation: 1 }, spec: { parentRefs: [{ name: 'edge', namespace: 'infra', ...parent }] } });
  const routes = [route('HTTPRoute', 'home', 'infra'), route('HTTPRoute', 'shop', 'shop'), route('HTTPRoute', 'other', 'other'), route('GRPCRoute', 'grpc', 'shop'), route('TCPRoute', 'db', 'other')];
  const ins = inputs({ routes, namespaces, gateways: new Map([['infra/edge', gw]]) });
  const listeners = desiredStatus(gw, ins)!['listeners'] as Array<Record<string, any>>;
  assert.deepEqual(
    listeners.map((l) => `${l['name']} ${l['supportedKinds'].map((k: any) => k.kind).join('|')} ${l['attachedRoutes']}`),
    ['same HTTPRoute|GRPCRoute 1', 'teams HTTPRoute 1', 'tcp TCPRoute 1'],
    'home on same; shop on teams (its GRPCRoute is not a kind teams takes); other nowhere; the TCPRoute from anywhere on tcp',
  );
  const resolved = listeners[1]!['conditions'].find((c: any) => c.type === 'ResolvedRefs');
  assert.equal(resolved.reason, 'InvalidRouteKinds', 'an HTTP listener cannot take the TCPRoute kind it lists');
  assert.equal(listeners[0]!['conditions'].find((c: any) => c.type === 'ResolvedRefs').status, 'True');
  const accepted = (r: KubeObject) => (desiredStatus(r, ins)!['parents'] as Array<Record<string, any>>)[0]!['conditions'].find((c: any) => c.type === 'Accepted');
  assert.equal(accepted(routes[1]!).status, 'True');
  const refused = accepted(routes[2]!);
  assert.deepEqual([refused.status, refused.reason], ['False', 'NotAllowedByListeners']);
  assert.match(refused.message, /namespace "other" is not allowed by the parent/);
  assert.equal(accepted(route('HTTPRoute', 'pinned', 'shop', { sectionName: 'same' })).reason, 'NotAllowedByListeners', 'the listener it names allows only the Gateway namespace');
  assert.equal(accepted(routes[3]!).reason, 'NotAllowedByListeners', 'no listener takes a GRPCRoute from shop: same is Same, teams lists only HTTPRoute');
});
