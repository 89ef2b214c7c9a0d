/**
 * Selector-attached AuthorizationPolicies and RequestAuthentications on ingress gateway pods:
 * translated for the pods they select (Istio: the gateway's namespace and the root namespace),
 * limited to those pods, with one consistent set of conditions; the gateway keeps only its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { objectKey, type KubeObject } from '../../../src/controller/objects.js';
import { translateAll } from '../../../src/controller/translate/translate.js';
import { validateRouteConfig } from '../../../src/shared/validate-routes.js';
import { gatewayRoutes } from '../../../src/waypoint/server/gateway.js';
import { authorizeConnection, authorizeRequest, connectionCustom } from '../../../src/waypoint/filters/authz.js';
import type { GatewayListener, RouteConfig } from '../../../src/shared/routes.js';
import { pod, service } from './helpers.js';

const INGRESS_LABELS = { istio: 'ingressgateway' };

function istioGateway(): KubeObject {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'Gateway',
    metadata: { name: 'public', namespace: 'istio-ingress' },
    spec: { selector: INGRESS_LABELS, servers: [{ port: { number: 8080, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }] },
  };
}

function virtualService(): KubeObject {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'shop', namespace: 'demo' },
    spec: { hosts: ['shop.example.com'], gateways: ['istio-ingress/public'], http: [{ route: [{ destination: { host: 'web.demo.svc.cluster.local', port: { number: 80 } } }] }] },
  };
}

function policy(name: string, ns: string, spec: Record<string, unknown>): KubeObject {
  return { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec };
}

function requestAuthentication(name: string, ns: string, spec: Record<string, unknown>): KubeObject {
  return { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name, namespace: ns }, spec };
}

function objects(extra: KubeObject[]): KubeObject[] {
  return [
    istioGateway(),
    virtualService(),
    service('web'),
    pod('web-1', { labels: { app: 'web' }, ip: '10.0.0.5' }),
    pod('gw-a', { ns: 'istio-ingress', labels: INGRESS_LABELS, ip: '10.0.0.7' }),
    pod('gw-b', { ns: 'istio-ingress', labels: { ...INGRESS_LABELS, canary: 'yes' }, ip: '10.0.0.8' }),
    ...extra,
  ];
}

test('selector policies of the gateway namespace and the root namespace reach the ingress configs, limited to the pods they select', () => {
  const out = translateAll(
    objects([
      policy('allow-office', 'istio-ingress', {
        selector: { matchLabels: INGRESS_LABELS },
        action: 'ALLOW',
        rules: [{ from: [{ source: { remoteIpBlocks: ['192.0.2.0/24'] } }], to: [{ operation: { paths: ['/public/*'] } }] }],
      }),
      policy('canary-only', 'istio-ingress', { selector: { matchLabels: { canary: 'yes' } }, action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] }),
      policy('mesh-wide', 'istio-system', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-evil]', values: ['1'] }] }] }),
      policy('other-namespace', 'demo', { selector: { matchLabels: INGRESS_LABELS }, action: 'DENY', rules: [{}] }),
      policy('ext', 'istio-ingress', { selector: { matchLabels: INGRESS_LABELS }, action: 'CUSTOM', provider: { name: 'nowhere' }, rules: [{}] }),
      requestAuthentication('jwt', 'istio-ingress', { selector: { matchLabels: INGRESS_LABELS }, jwtRules: [{ issuer: 'https://issuer.example.com', jwks: '{"keys":[]}' }] }),
      requestAuthentication('web-jwt', 'demo', { selector: { matchLabels: { app: 'web' } }, jwtRules: [{ issuer: 'x', jwks: '{"keys":[]}' }] }),
    ]),
  );
  const cfg = out.routes.routes.find((r) => r.gateway === 'istio-ingress/public')!;
  assert.deepEqual(validateRouteConfig(cfg), []);
  const byName = new Map(cfg.authorization.map((p) => [p.name, p]));
  assert.deepEqual([...byName.keys()].sort(), ['istio-ingress/allow-office', 'istio-ingress/canary-only', 'istio-ingress/ext', 'istio-system/mesh-wide'], 'a policy of another namespace does not select the gateway');
  assert.equal(byName.get('istio-ingress/ext')!.provider, undefined, 'an undeclared provider: the gateway denies what the CUSTOM policy matches');
  assert.deepEqual(byName.get('istio-ingress/allow-office')!.pods, ['istio-ingress/gw-a', 'istio-ingress/gw-b']);
  assert.deepEqual(byName.get('istio-ingress/canary-only')!.pods, ['istio-ingress/gw-b']);
  assert.deepEqual(byName.get('istio-ingress/allow-office')!.rules[0]!.from[0]!.remoteIpBlocks, ['192.0.2.0/24'], 'remoteIpBlocks is checked at the gateway');
  assert.deepEqual(cfg.jwtRules?.map((r) => `${r.issuer} ${r.pods?.join(',')}`), ['https://issuer.example.com istio-ingress/gw-a,istio-ingress/gw-b']);
  assert.equal(out.routes.routes.some((r) => r.gateway === undefined && r.authorization.some((p) => p.pods !== undefined)), false, 'mesh configs never carry gateway policies');

  const all = [...out.model.conditions, ...out.routes.conditions];
  const of = (key: string) => all.filter((c) => c.objectKey === objectKey({ apiVersion: 'security.istio.io/v1', kind: key.split('.')[0]!, metadata: { name: key.split('/')[2]!, namespace: key.split('/')[1]! } })).map((c) => `${c.type} ${c.status} ${c.reason}`);
  assert.deepEqual(of('AuthorizationPolicy.security.istio.io/istio-ingress/allow-office'), ['Accepted True Accepted'], 'one condition, from the gateway side: no node-agent verdict on HTTP attributes');
  assert.match(out.routes.conditions.find((c) => c.objectKey.endsWith('/allow-office'))!.message, /enforced by the ingress gateway pods it selects \(Gateway istio-ingress\/public\)/);
  assert.deepEqual(of('AuthorizationPolicy.security.istio.io/istio-system/mesh-wide').sort(), ['Accepted True Accepted', 'Accepted True PartiallyApplied'], 'mesh-wide: node agents (their part) and gateways');
  assert.deepEqual(of('RequestAuthentication.security.istio.io/istio-ingress/jwt'), ['Accepted True Accepted']);
  assert.deepEqual(of('AuthorizationPolicy.security.istio.io/istio-ingress/ext'), ['Accepted False InvalidProvider'], 'CUSTOM on gateway pods is the gateway\'s: no node-agent refusal beside the provider problem');
  assert.deepEqual(of('RequestAuthentication.security.istio.io/demo/web-jwt'), ['Accepted False NotEnforced'], 'a selector on mesh pods stays not enforced');
});

test('a gateway keeps the selector policies and JWT rules of its own pod only; targetRef ones always', () => {
  const base: RouteConfig = { name: 'istio-ingress/public/shop.example.com', namespace: 'istio-ingress', hostname: 'shop.example.com', aliases: [], gateway: 'istio-ingress/public', ports: [], routes: [], authorization: [] };
  const rule = { issuer: 'i', audiences: [], fromHeaders: [], fromParams: [], forwardOriginalToken: false, jwks: '{"keys":[]}' };
  const cfg: RouteConfig = {
    ...base,
    authorization: [
      { name: 'istio-ingress/a', action: 'DENY', rules: [{ from: [], to: [], when: [] }], dryRun: false, pods: ['istio-ingress/gw-a'] },
      { name: 'istio-ingress/b', action: 'DENY', rules: [{ from: [], to: [], when: [] }], dryRun: false, pods: ['istio-ingress/gw-b'] },
      { name: 'istio-ingress/targeted', action: 'ALLOW', rules: [], dryRun: false },
    ],
    jwtRules: [{ ...rule, pods: ['istio-ingress/gw-b'] }, { ...rule, issuer: 'targeted' }],
  };
  const listener = (podKey: string): GatewayListener => ({ pod: podKey, port: 8080, protocol: 'HTTP', gateways: ['istio-ingress/public'], hosts: ['*'], certificates: [] });
  const forA = gatewayRoutes([cfg], [listener('istio-ingress/gw-a')], 'istio-ingress/gw')[0]!;
  assert.deepEqual(forA.authorization.map((p) => p.name), ['istio-ingress/a', 'istio-ingress/targeted']);
  assert.deepEqual(forA.jwtRules?.map((r) => r.issuer), ['targeted']);
  const forB = gatewayRoutes([cfg, { ...cfg, name: 'other', gateway: 'istio-ingress/second' }], [{ ...listener('istio-ingress/gw-b'), gateways: ['istio-ingress/public', 'istio-ingress/second'] }], 'istio-ingress/gw')[0]!;
  assert.deepEqual(forB.authorization.map((p) => p.name), ['istio-ingress/b', 'istio-ingress/targeted'], 'a policy on two Gateways of the pod counts once');
  assert.deepEqual(forB.jwtRules?.map((r) => r.issuer), ['i', 'targeted'], 'JWT rules of every Gateway of a host are kept, once each');
});

test('gateway authorization: ipBlocks match the peer address; source conditions of `when` are ANDed with `from`', () => {
  const req = { method: 'GET', path: '/', authority: 'shop.example.com', headers: {} };
  const byIp = [{ name: 'ns/office', action: 'ALLOW' as const, dryRun: false, rules: [{ from: [{ principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], ipBlocks: ['192.0.2.0/24', '2001:db8::/32'] }], to: [], when: [] }] }];
  assert.equal(authorizeRequest(byIp, { ...req, sourceIp: '192.0.2.9' }).allowed, true);
  assert.equal(authorizeRequest(byIp, { ...req, sourceIp: '::ffff:192.0.2.9' }).allowed, true, 'a v4-mapped peer address is its v4 address');
  assert.equal(authorizeRequest(byIp, { ...req, sourceIp: '198.51.100.1' }).allowed, false);
  assert.equal(authorizeRequest(byIp, req).allowed, false, 'no peer address: an ipBlocks rule cannot match');
  const notIp = [{ name: 'ns/block', action: 'DENY' as const, dryRun: false, rules: [{ from: [{ principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], notIpBlocks: ['10.0.0.0/8'] }], to: [], when: [] }] }];
  assert.equal(authorizeRequest(notIp, { ...req, sourceIp: '10.1.2.3' }).allowed, true);
  assert.equal(authorizeRequest(notIp, { ...req, sourceIp: '192.0.2.1' }).allowed, false);
  const both = [
    {
      name: 'ns/both',
      action: 'ALLOW' as const,
      dryRun: false,
      rules: [{ from: [{ principals: [{ exact: 'td/ns/a/sa/x' }], notPrincipals: [], namespaces: [], notNamespaces: [] }], to: [], when: [], fromAll: [{ principals: [], notPrincipals: [], namespaces: [{ exact: 'b' }], notNamespaces: [] }] }],
    },
  ];
  assert.equal(authorizeRequest(both, { ...req, principal: 'spiffe://td/ns/a/sa/x' }).allowed, false, 'from matches but the source.namespace condition does not');
});

test('gateway TCP connections: ALLOW rules with HTTP attributes are left out, DENY rules lose them; CUSTOM: a bad provider denies, an HTTP provider is ignored, a gRPC one is asked', () => {
  const src = { principals: [], notPrincipals: [], namespaces: [], notNamespaces: [] };
  const op = { hosts: [], notHosts: [], paths: [], notPaths: [], methods: [], notMethods: [], ports: [], notPorts: [] };
  const allowPaths = [{ name: 'ns/paths', action: 'ALLOW' as const, dryRun: false, rules: [{ from: [], to: [{ ...op, paths: [{ exact: '/' }] }], when: [] }] }];
  assert.equal(authorizeConnection(allowPaths, { port: 9000 }).allowed, false, 'the only ALLOW rule needs a path: a TCP connection matches nothing');
  assert.equal(authorizeRequest(allowPaths, { method: 'GET', path: '/', authority: 'x', headers: {} }).allowed, true, 'while an HTTP request to / is allowed');
  const denyIpAndPath = [{ name: 'ns/deny', action: 'DENY' as const, dryRun: false, rules: [{ from: [{ ...src, ipBlocks: ['192.0.2.0/24'] }], to: [{ ...op, paths: [{ exact: '/admin' }] }], when: [] }] }];
  assert.equal(authorizeConnection(denyIpAndPath, { port: 9000, sourceIp: '192.0.2.1' }).allowed, false, 'the path is dropped: the address alone denies');
  assert.equal(authorizeConnection(denyIpAndPath, { port: 9000, sourceIp: '198.51.100.1' }).allowed, true);
  const custom = [{ name: 'ns/ext', action: 'CUSTOM' as const, providerName: 'p', dryRun: false, rules: [{ from: [], to: [{ ...op, ports: [9000], paths: [{ exact: '/x' }] }], when: [] }] }];
  assert.deepEqual(connectionCustom(custom, { port: 9000 }), { kind: 'deny', policy: 'ns/ext', reason: 'extension provider "p" is not usable' }, 'no usable provider: what it matches (the path dropped) is denied');
  assert.deepEqual(connectionCustom(custom, { port: 9001 }), { kind: 'none' });
  assert.equal(authorizeConnection(custom, { port: 9000 }).allowed, true, 'DENY and ALLOW leave CUSTOM to connectionCustom');
  const provider = { name: 'p', service: 'authz.ns.svc.cluster.local', port: 9000, timeoutMs: 100, failOpen: false };
  assert.deepEqual(connectionCustom([{ ...custom[0]!, provider: { ...provider, protocol: 'http' as const } }], { port: 9000 }), { kind: 'none' }, 'an envoyExtAuthzHttp provider is ignored on TCP (Istio builds no network filter for it)');
  assert.deepEqual(connectionCustom([{ ...custom[0]!, provider: { ...provider, protocol: 'grpc' as const } }], { port: 9000 }), { kind: 'check', provider: { ...provider, protocol: 'grpc' }, policy: 'ns/ext' });
});

test('remoteIpBlocks: the client address trusted proxies name (X-Forwarded-For, numTrustedProxies from proxy.istio.io/config); ipBlocks: the peer', async () => {
  const { clientAddress } = await import('../../../src/waypoint/server/request.js');
  const { trustedProxies } = await import('../../../src/controller/translate/gateway-listeners.js');
  assert.equal(clientAddress('192.0.2.1', 0, '203.0.113.5'), '192.0.2.1', 'no trusted proxy: the peer');
  assert.equal(clientAddress('192.0.2.1', 1, '198.51.100.9, 203.0.113.5'), '203.0.113.5', 'one: the entry it appended');
  assert.equal(clientAddress('192.0.2.1', 2, ['198.51.100.9', '203.0.113.5']), '198.51.100.9', 'two: one more to the left (headers repeated count as one list)');
  assert.equal(clientAddress('192.0.2.1', 3, '198.51.100.9, 203.0.113.5'), '192.0.2.1', 'fewer entries than trusted proxies: the peer');
  assert.equal(clientAddress('192.0.2.1', 1, 'unknown'), '192.0.2.1', 'an entry that is no address: the peer');
  const annotated = (v: string): KubeObject => ({ ...pod('gw', { ns: 'istio-ingress', labels: INGRESS_LABELS }), metadata: { name: 'gw', namespace: 'istio-ingress', labels: INGRESS_LABELS, annotations: { 'proxy.istio.io/config': v } } });
  assert.equal(trustedProxies(annotated('gatewayTopology:\n  numTrustedProxies: 2\n')), 2);
  assert.equal(trustedProxies(annotated('{"gatewayTopology": {"numTrustedProxies": 1}}')), 1);
  assert.equal(trustedProxies(annotated('{not yaml')), 0);
  assert.equal(trustedProxies(pod('plain')), 0);
  const out = translateAll([...objects([]).map((o) => (o.metadata.name === 'gw-a' ? annotated('{"gatewayTopology": {"numTrustedProxies": 1}}') : o))]);
  assert.equal(out.listeners.byPod.get('istio-ingress/gw')?.[0]?.numTrustedProxies, 1, 'the pod\'s listeners carry it');
  // The mesh config's defaultConfig is every gateway's default; a pod's annotation overrides it.
  const meshConfig: KubeObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: 'defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 2\n' } } as KubeObject;
  assert.equal(trustedProxies(pod('plain'), 2), 2, 'no annotation: the mesh default');
  assert.equal(trustedProxies(annotated('{"gatewayTopology": {"numTrustedProxies": 1}}'), 2), 1, 'the annotation overrides it');
  assert.equal(trustedProxies(annotated('{"concurrency": 2}'), 2), 2, 'an annotation without the field keeps the mesh default');
  const withMesh = translateAll([...objects([]), meshConfig]);
  assert.equal(withMesh.listeners.byPod.get('istio-ingress/gw-a')?.[0]?.numTrustedProxies, 2, 'an unannotated gateway pod gets the mesh default');
  const both = translateAll([...objects([]).map((o) => (o.metadata.name === 'gw-a' ? annotated('{"gatewayTopology": {"numTrustedProxies": 1}}') : o)), meshConfig]);
  assert.equal(both.listeners.byPod.get('istio-ingress/gw')?.[0]?.numTrustedProxies, 1, 'the pod annotation wins over the mesh default');
  const src = { principals: [], notPrincipals: [], namespaces: [], notNamespaces: [] };
  const remote = [{ name: 'ns/r', action: 'ALLOW' as const, dryRun: false, rules: [{ from: [{ ...src, remoteIpBlocks: ['203.0.113.0/24'] }], to: [], when: [] }] }];
  const base = { method: 'GET', path: '/', authority: 'x', headers: {}, sourceIp: '192.0.2.1' };
  assert.equal(authorizeRequest(remote, { ...base, remoteIp: '203.0.113.5' }).allowed, true);
  assert.equal(authorizeRequest(remote, base).allowed, false, 'without a remote address the peer counts');
  const peer = [{ name: 'ns/p', action: 'ALLOW' as const, dryRun: false, rules: [{ from: [{ ...src, ipBlocks: ['203.0.113.0/24'] }], to: [], when: [] }] }];
  assert.equal(authorizeRequest(peer, { ...base, remoteIp: '203.0.113.5' }).allowed, false, 'ipBlocks is the peer, whatever the header says');
});
