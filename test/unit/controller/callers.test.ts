import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import {
  bearerToken, callerFromTokenReview, callerKey, EXTRA_NODE_NAME, EXTRA_POD_NAME, generateToken, refuseIdentity, refuseSubscription, StaticTokenAuthenticator,
  type AccessView, type Caller, type PodRecord,
} from '../../../src/controller/callers.js';
import type { NodeInfo } from '../../../src/shared/xds/node.js';

const TD = 'cluster.local';
const pods: PodRecord[] = [
  { namespace: 'shop', name: 'web-1', serviceAccount: 'web', node: 'node-a', labels: {} },
  { namespace: 'shop', name: 'db-1', serviceAccount: 'db', node: 'node-b', labels: {} },
  { namespace: 'shop', name: 'waypoint-abc-0', serviceAccount: 'waypoint', node: 'node-b', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } },
  { namespace: 'istio-system', name: 'gw-0', serviceAccount: 'istio-ingressgateway', node: 'node-a', labels: { istio: 'ingressgateway' } },
];
const view: AccessView = {
  trustDomain: TD,
  podsOnNode: (node) => pods.filter((p) => p.node === node),
  pod: (ns, name) => pods.find((p) => p.namespace === ns && p.name === name),
};
const nodeA: Caller = { kind: 'node', node: 'node-a' };
const waypointPod: Caller = { kind: 'pod', namespace: 'shop', pod: 'waypoint-abc-0', serviceAccount: 'waypoint' };
const gatewayPod: Caller = { kind: 'pod', namespace: 'istio-system', pod: 'gw-0', serviceAccount: 'istio-ingressgateway' };
const webPod: Caller = { kind: 'pod', namespace: 'shop', pod: 'web-1', serviceAccount: 'web' };
const spiffe = (ns: string, sa: string) => `spiffe://${TD}/ns/${ns}/sa/${sa}`;
const node = (role: NodeInfo['role'], nodeName: string, metadata: Record<string, string> = {}): NodeInfo => ({ id: `${role}~x`, nodeName, role, metadata });

test('certificates: a node gets identities of pods on it, a pod only its own', () => {
  const cases: Array<[string, Caller, string, boolean]> = [
    ['node, pod of that SA on the node', nodeA, spiffe('shop', 'web'), true],
    ['node, SA whose pod is on another node', nodeA, spiffe('shop', 'db'), false],
    ['node, same SA name in another namespace', nodeA, spiffe('other', 'web'), false],
    ['node, foreign trust domain', nodeA, 'spiffe://evil.example/ns/shop/sa/web', false],
    ['node, not a SPIFFE id', nodeA, 'garbage', false],
    ['pod, its own identity', waypointPod, spiffe('shop', 'waypoint'), true],
    ['pod, a neighbour on its node', waypointPod, spiffe('shop', 'db'), false],
    ['pod, the identity of another pod', webPod, spiffe('shop', 'waypoint'), false],
    ['pod unknown to the controller', { kind: 'pod', namespace: 'shop', pod: 'ghost', serviceAccount: 'web' }, spiffe('shop', 'web'), false],
    ['pod claiming another SA than it runs as', { kind: 'pod', namespace: 'shop', pod: 'web-1', serviceAccount: 'db' }, spiffe('shop', 'db'), false],
  ];
  for (const [what, caller, id, allowed] of cases) {
    const why = refuseIdentity(caller, id, view);
    assert.equal(why === undefined, allowed, `${what}: ${why ?? 'allowed'}`);
  }
});

test('subscriptions: each credential gets only its own view', () => {
  const cases: Array<[string, Caller, NodeInfo, boolean]> = [
    ['node as agent of its node', nodeA, node('agent', 'node-a'), true],
    ['node as agent of another node', nodeA, node('agent', 'node-b'), false],
    ['node token as a gateway (the keys of every gateway)', nodeA, node('gateway', 'node-a', { pod: 'istio-system/gw-0' }), false],
    ['node token as a waypoint', nodeA, node('waypoint', 'node-a', { waypoint: 'shop/waypoint' }), false],
    ['waypoint pod for its waypoint', waypointPod, node('waypoint', 'node-b', { waypoint: 'shop/waypoint' }), true],
    ['waypoint pod naming another waypoint', waypointPod, node('waypoint', 'node-b', { waypoint: 'shop/other' }), false],
    ['waypoint pod naming no waypoint (all routes)', waypointPod, node('waypoint', 'node-b'), false],
    ['waypoint pod as an agent', waypointPod, node('agent', 'node-b'), false],
    ['app pod as a waypoint', webPod, node('waypoint', 'node-a', { waypoint: 'shop/waypoint' }), false],
    ['gateway pod for itself', gatewayPod, node('gateway', 'node-a', { pod: 'istio-system/gw-0' }), true],
    ['gateway pod for another pod', gatewayPod, node('gateway', 'node-a', { pod: 'istio-system/gw-1' }), false],
    ['gateway pod without a pod (every gateway)', gatewayPod, node('gateway', 'node-a'), false],
    ['app pod as a gateway of itself is fine (gets only its own listeners: none)', webPod, node('gateway', 'node-a', { pod: 'shop/web-1' }), true],
  ];
  for (const [what, caller, n, allowed] of cases) {
    const why = refuseSubscription(caller, n, view);
    assert.equal(why === undefined, allowed, `${what}: ${why ?? 'allowed'}`);
  }
});

test('callerKey names the caller without any token', () => {
  assert.equal(callerKey(nodeA), 'node/node-a');
  assert.equal(callerKey(waypointPod), 'pod/shop/waypoint-abc-0');
});

test('bearer tokens are read from authorization metadata', () => {
  const md = (auth?: string) => {
    const m = new grpc.Metadata();
    if (auth !== undefined) m.set('authorization', auth);
    return m;
  };
  assert.equal(bearerToken(md('Bearer abc')), 'abc');
  assert.equal(bearerToken(md('bearer abc')), 'abc');
  assert.equal(bearerToken(md('Basic abc')), undefined);
  assert.equal(bearerToken(md()), undefined);
});

test('StaticTokenAuthenticator maps tokens to callers, refuses unknown and short tokens', async () => {
  const t1 = generateToken();
  const t2 = generateToken();
  assert.notEqual(t1, t2);
  const auth = new StaticTokenAuthenticator({ [t1]: 'node-a' });
  auth.set(t2, waypointPod);
  assert.deepEqual(await auth.authenticate(t1), nodeA);
  assert.deepEqual(await auth.authenticate(t2), waypointPod);
  assert.equal(await auth.authenticate('nope'), undefined);
  auth.delete(t1);
  assert.equal(await auth.authenticate(t1), undefined);
  assert.throws(() => auth.set('short', nodeA), /shorter than 16/);
});

describeTokenReviewMapping();

function describeTokenReviewMapping(): void {
  const policy = { agent: { namespace: 'istio-system', serviceAccount: 'ambit-agent' }, audience: 'istio-ca' };
  const review = (username: string, extra: Record<string, string[]> = {}, audiences = ['istio-ca'], authenticated = true) => ({ authenticated, audiences, user: { username, extra } });
  const CASES: Array<{ name: string; status: Parameters<typeof callerFromTokenReview>[0]; want: Caller | string }> = [
    {
      name: 'the agent service account bound to a pod on a node is that node',
      status: review('system:serviceaccount:istio-system:ambit-agent', { [EXTRA_NODE_NAME]: ['node-1'], [EXTRA_POD_NAME]: ['ambit-agent-x7'] }),
      want: { kind: 'node', node: 'node-1' },
    },
    { name: 'the agent service account without a node binding', status: review('system:serviceaccount:istio-system:ambit-agent'), want: 'agent_not_node_bound' },
    {
      name: 'the agent service account name in another namespace is just a pod',
      status: review('system:serviceaccount:demo:ambit-agent', { [EXTRA_NODE_NAME]: ['node-1'], [EXTRA_POD_NAME]: ['fake-agent'] }),
      want: { kind: 'pod', namespace: 'demo', serviceAccount: 'ambit-agent', pod: 'fake-agent' },
    },
    {
      name: 'a waypoint pod token is that pod',
      status: review('system:serviceaccount:demo:waypoint', { [EXTRA_POD_NAME]: ['waypoint-5c9-0'], [EXTRA_NODE_NAME]: ['node-2'] }),
      want: { kind: 'pod', namespace: 'demo', serviceAccount: 'waypoint', pod: 'waypoint-5c9-0' },
    },
    { name: 'a service-account token bound to no pod', status: review('system:serviceaccount:demo:web'), want: 'not_pod_bound' },
    { name: 'two pod names', status: review('system:serviceaccount:demo:web', { [EXTRA_POD_NAME]: ['a', 'b'] }), want: 'not_pod_bound' },
    { name: 'a user, not a service account', status: review('alice', { [EXTRA_POD_NAME]: ['a'] }), want: 'not_service_account' },
    { name: 'another audience', status: review('system:serviceaccount:demo:web', { [EXTRA_POD_NAME]: ['a'] }, ['https://kubernetes.default.svc']), want: 'audience' },
    { name: 'not authenticated', status: review('system:serviceaccount:demo:web', { [EXTRA_POD_NAME]: ['a'] }, ['istio-ca'], false), want: 'unauthenticated' },
  ];
  for (const c of CASES) {
    test(`token review mapping: ${c.name}`, () => {
      const got = callerFromTokenReview(c.status, policy);
      if (typeof c.want === 'string') assert.equal('refused' in got ? got.refused : 'accepted', c.want);
      else assert.deepEqual('caller' in got ? got.caller : got, c.want);
    });
  }
}
