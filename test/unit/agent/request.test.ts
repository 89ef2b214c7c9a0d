/** buildOutboundRequest, WorkloadIndex and LoadBalancer: pure decisions, table-driven. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Service, Workload, WaypointRef } from '../../../src/shared/model.js';
import { WorkloadIndex, type Endpoint } from '../../../src/shared/state/workloads.js';
import { buildOutboundRequest } from '../../../src/agent/proxy/request.js';
import { LoadBalancer, preferLocality } from '../../../src/shared/balancer.js';

function wl(name: string, ip: string, extra: Partial<Workload> = {}): Workload {
  return {
    uid: `c1//v1/Pod/ns/${name}`,
    name,
    namespace: 'ns',
    serviceAccount: name,
    trustDomain: 'cluster.local',
    node: 'node1',
    addresses: [ip],
    tunnelProtocol: 'HBONE',
    canonicalName: name,
    canonicalRevision: 'v1',
    workloadName: name,
    workloadType: 'deployment',
    labels: {},
    services: {},
    status: 'Healthy',
    authorizationPolicies: [],
    peerAuthentication: 'PERMISSIVE',
    portPeerAuthentication: {},
    ...extra,
  };
}
function svc(name: string, vip: string, endpoints: string[], extra: Partial<Service> = {}): Service {
  return {
    name,
    namespace: 'ns',
    hostname: `${name}.ns.svc.cluster.local`,
    vips: [vip],
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'http' }],
    subjectAltNames: [],
    routingPreference: [],
    endpoints,
    ...extra,
  };
}
const WP: WaypointRef = { name: 'ns/waypoint', namespace: 'ns', addresses: ['10.0.0.99'], identity: 'spiffe://cluster.local/ns/ns/sa/waypoint' };

function index(workloads: Workload[], services: Service[]): WorkloadIndex {
  return new WorkloadIndex(
    {
      workloads: new Map(workloads.map((w) => [w.uid, w])),
      services: new Map(services.map((s) => [`${s.namespace}/${s.hostname}`, s])),
      authorizations: new Map(),
    },
    'node1',
  );
}

const src = wl('client', '10.0.0.1');
const first = (_s: Service, _p: unknown, c: readonly Endpoint[]): Endpoint | undefined => c[0];

test('request: enrolled pod IP → tunnel to its 15008 with its identity', () => {
  const dst = wl('server', '10.0.0.2');
  const r = buildOutboundRequest({ src, origDst: { address: '10.0.0.2', port: 9000 }, index: index([src, dst], []), nodeName: 'node1', pickEndpoint: first });
  assert.deepEqual(r, {
    kind: 'tunnel',
    target: { address: '10.0.0.2', port: 9000 },
    tunnelAddress: { address: '10.0.0.2', port: 15008 },
    expectedIdentities: ['spiffe://cluster.local/ns/ns/sa/server'],
    viaWaypoint: false,
    dstWorkload: dst,
  });
});

test('request: service VIP → endpoint target port, identities include subjectAltNames', () => {
  const dst = wl('server', '10.0.0.2', { services: { 'ns/web.ns.svc.cluster.local': [{ servicePort: 80, targetPort: 8081 }] } });
  const s = svc('web', '10.96.0.10', [dst.uid], { subjectAltNames: ['spiffe://cluster.local/ns/ns/sa/alt'] });
  const r = buildOutboundRequest({ src, origDst: { address: '10.96.0.10', port: 80 }, index: index([src, dst], [s]), nodeName: 'node1', pickEndpoint: first });
  assert.equal(r.kind, 'tunnel');
  if (r.kind !== 'tunnel') return;
  assert.deepEqual(r.target, { address: '10.0.0.2', port: 8081 }, 'workload port mapping wins over service targetPort');
  assert.deepEqual(r.tunnelAddress, { address: '10.0.0.2', port: 15008 });
  assert.deepEqual(r.expectedIdentities, ['spiffe://cluster.local/ns/ns/sa/server', 'spiffe://cluster.local/ns/ns/sa/alt']);
  assert.equal(r.service, s);
});

test('request: service VIP with a non-enrolled endpoint → plaintext passthrough to the endpoint', () => {
  const dst = wl('legacy', '10.0.0.3', { tunnelProtocol: 'NONE' });
  const s = svc('legacy', '10.96.0.11', [dst.uid]);
  const r = buildOutboundRequest({ src, origDst: { address: '10.96.0.11', port: 80 }, index: index([src, dst], [s]), nodeName: 'node1', pickEndpoint: first });
  assert.equal(r.kind, 'passthrough');
  if (r.kind !== 'passthrough') return;
  assert.deepEqual([r.address, r.port, r.reason], ['10.0.0.3', 8080, 'not_enrolled']);
});

test('request: non-enrolled pod IP → passthrough; unknown IP → passthrough unknown_destination', () => {
  const dst = wl('legacy', '10.0.0.3', { tunnelProtocol: 'NONE' });
  const ix = index([src, dst], []);
  const a = buildOutboundRequest({ src, origDst: { address: '10.0.0.3', port: 5432 }, index: ix, nodeName: 'node1', pickEndpoint: first });
  assert.deepEqual([a.kind, a.kind === 'passthrough' && a.reason], ['passthrough', 'not_enrolled']);
  const b = buildOutboundRequest({ src, origDst: { address: '93.184.216.34', port: 443 }, index: ix, nodeName: 'node1', pickEndpoint: first });
  assert.deepEqual(b, { kind: 'passthrough', address: '93.184.216.34', port: 443, reason: 'unknown_destination' });
});

test('request: an address inside a service\'s range (ServiceEntry CIDR) is that service on its ports; an exact VIP and a narrower range win', () => {
  const dst = wl('server', '10.0.0.2');
  const narrow = wl('narrow', '10.0.0.4');
  const exact = wl('exact', '10.0.0.5');
  const wide = svc('wide', '240.0.0.1', [dst.uid], { hostname: 'wide.example.com', vipRanges: ['192.0.0.0/16', '2001:db8::/48'] });
  const nar = svc('narrow', '240.0.0.2', [narrow.uid], { hostname: 'narrow.example.com', vipRanges: ['192.0.2.0/24'] });
  const ex = svc('exact', '192.0.2.9', [exact.uid], { hostname: 'exact.example.com' });
  const ix = index([src, dst, narrow, exact], [wide, nar, ex]);
  const to = (address: string, port = 80) => buildOutboundRequest({ src, origDst: { address, port }, index: ix, nodeName: 'node1', pickEndpoint: first });
  const svcOf = (r: ReturnType<typeof to>) => (r.kind === 'tunnel' ? r.dstWorkload?.name : r.kind);
  assert.equal(svcOf(to('192.0.7.7')), 'server');
  assert.equal(svcOf(to('2001:db8::7')), 'server');
  assert.equal(svcOf(to('192.0.2.7')), 'narrow');
  assert.equal(svcOf(to('192.0.2.9')), 'exact');
  assert.equal(ix.serviceByVip('192.0.7.7', 80)?.service.hostname, 'wide.example.com');
  assert.equal(ix.serviceByVip('192.0.7.7', 81), undefined, 'only the declared ports');
  assert.deepEqual(to('192.1.0.1'), { kind: 'passthrough', address: '192.1.0.1', port: 80, reason: 'unknown_destination' });
});

test('request: a service whose endpoint is the original destination (ServiceEntry NONE): the dialed address, named as the service', () => {
  const pod = wl('db', '10.0.5.7');
  const plain = wl('legacy', '10.0.5.8', { tunnelProtocol: 'NONE' });
  const none = svc('db-net', '240.0.0.50', [], { hostname: 'db.example.net', vips: ['10.0.6.1'], vipRanges: ['10.0.5.0/24'], originalDestination: true, ports: [{ name: 'pg', port: 5432, targetPort: 5432, protocol: 'tcp' }], subjectAltNames: ['spiffe://cluster.local/ns/ns/sa/dbs'] });
  const ix = index([src, pod, plain], [none]);
  const to = (address: string, port = 5432, s: Service = none) => buildOutboundRequest({ src, origDst: { address, port }, index: s === none ? ix : index([src, pod, plain], [s]), nodeName: 'node1', pickEndpoint: () => assert.fail('no endpoint is picked') });
  // An address the mesh does not know, in the range or the exact address: plain TCP to it, the service named.
  assert.deepEqual(to('10.0.5.200'), { kind: 'passthrough', address: '10.0.5.200', port: 5432, reason: 'unknown_destination', service: none });
  assert.deepEqual(to('10.0.6.1'), { kind: 'passthrough', address: '10.0.6.1', port: 5432, reason: 'unknown_destination', service: none });
  // An enrolled pod inside the range: tunnelled to it (its address, the port dialed), the service named.
  const t = to('10.0.5.7');
  assert.equal(t.kind, 'tunnel');
  if (t.kind === 'tunnel') {
    assert.deepEqual([t.target, t.tunnelAddress, t.viaWaypoint, t.service?.hostname, t.dstWorkload?.name, t.endpoint], [{ address: '10.0.5.7', port: 5432 }, { address: '10.0.5.7', port: 15008 }, false, 'db.example.net', 'db', undefined]);
    assert.deepEqual(t.expectedIdentities, ['spiffe://cluster.local/ns/ns/sa/db', 'spiffe://cluster.local/ns/ns/sa/dbs']);
  }
  const p = to('10.0.5.8');
  assert.deepEqual(p.kind === 'passthrough' ? [p.address, p.reason, p.dstWorkload?.name, p.service?.hostname] : p, ['10.0.5.8', 'not_enrolled', 'legacy', 'db.example.net']);
  // Not a declared port: no service, as before.
  assert.deepEqual(to('10.0.5.200', 80), { kind: 'passthrough', address: '10.0.5.200', port: 80, reason: 'unknown_destination' });
  // Bound to a waypoint: tunnelled to it, the dialed address as the target.
  const w = to('10.0.5.200', 5432, { ...none, waypoint: WP });
  assert.deepEqual(w.kind === 'tunnel' ? [w.viaWaypoint, w.target, w.tunnelAddress.address, w.service?.hostname] : w, [true, { address: '10.0.5.200', port: 5432 }, '10.0.0.99', 'db.example.net']);
  // The agent's own ports on an enrolled pod are refused as without the service.
  assert.deepEqual(to('10.0.5.7', 15008, { ...none, ports: [{ name: 'x', port: 15008, targetPort: 15008, protocol: 'tcp' }] }), { kind: 'deny', reason: 'self_call', service: { ...none, ports: [{ name: 'x', port: 15008, targetPort: 15008, protocol: 'tcp' }] } });
});

test('request: service without healthy endpoints → deny', () => {
  const dst = wl('server', '10.0.0.2', { status: 'Unhealthy' });
  const s = svc('web', '10.96.0.10', [dst.uid]);
  const r = buildOutboundRequest({ src, origDst: { address: '10.96.0.10', port: 80 }, index: index([src, dst], [s]), nodeName: 'node1', pickEndpoint: first });
  assert.deepEqual(r, { kind: 'deny', reason: 'no_healthy_upstream', service: s });
});

test('request: service waypoint → tunnel to the waypoint, authority = original destination', () => {
  const dst = wl('server', '10.0.0.2');
  const s = svc('web', '10.96.0.10', [dst.uid], { waypoint: WP });
  const r = buildOutboundRequest({ src, origDst: { address: '10.96.0.10', port: 80 }, index: index([src, dst], [s]), nodeName: 'node1', pickEndpoint: first });
  assert.equal(r.kind, 'tunnel');
  if (r.kind !== 'tunnel') return;
  assert.deepEqual(r.target, { address: '10.96.0.10', port: 80 });
  assert.deepEqual(r.tunnelAddress, { address: '10.0.0.99', port: 15008 });
  assert.deepEqual(r.expectedIdentities, [WP.identity]);
  assert.equal(r.viaWaypoint, true);
});

test('request: workload waypoint applies to pod-IP traffic; the waypoint itself goes direct', () => {
  const dst = wl('server', '10.0.0.2', { waypoint: WP });
  const wp = wl('waypoint', '10.0.0.99');
  const ix = index([src, dst, wp], []);
  const viaWp = buildOutboundRequest({ src, origDst: { address: '10.0.0.2', port: 9000 }, index: ix, nodeName: 'node1', pickEndpoint: first });
  assert.equal(viaWp.kind === 'tunnel' && viaWp.viaWaypoint, true);
  const fromWp = buildOutboundRequest({ src: wp, origDst: { address: '10.0.0.2', port: 9000 }, index: ix, nodeName: 'node1', pickEndpoint: first });
  assert.equal(fromWp.kind === 'tunnel' && fromWp.viaWaypoint, false);
});

test('request: service VIP whose chosen endpoint has a workload waypoint → tunnel to that waypoint, target = the endpoint', () => {
  const dst = wl('server', '10.0.0.2', { waypoint: WP, services: { 'ns/web.ns.svc.cluster.local': [{ servicePort: 80, targetPort: 8081 }] } });
  const wp = wl('waypoint', '10.0.0.99');
  const s = svc('web', '10.96.0.10', [dst.uid]);
  const ix = index([src, dst, wp], [s]);
  const r = buildOutboundRequest({ src, origDst: { address: '10.96.0.10', port: 80 }, index: ix, nodeName: 'node1', pickEndpoint: first });
  assert.equal(r.kind, 'tunnel');
  if (r.kind !== 'tunnel') return;
  assert.deepEqual([r.target, r.tunnelAddress, r.expectedIdentities, r.viaWaypoint], [{ address: '10.0.0.2', port: 8081 }, { address: '10.0.0.99', port: 15008 }, [WP.identity], true]);
  assert.equal(r.service, s);
  const fromWp = buildOutboundRequest({ src: wp, origDst: { address: '10.96.0.10', port: 80 }, index: ix, nodeName: 'node1', pickEndpoint: first });
  assert.equal(fromWp.kind === 'tunnel' && fromWp.viaWaypoint, false, 'the waypoint itself goes to the endpoint');
});

test('request: waypoint without addresses fails closed', () => {
  const dst = wl('server', '10.0.0.2');
  const s = svc('web', '10.96.0.10', [dst.uid], { waypoint: { ...WP, addresses: [] } });
  const r = buildOutboundRequest({ src, origDst: { address: '10.96.0.10', port: 80 }, index: index([src, dst], [s]), nodeName: 'node1', pickEndpoint: first });
  assert.equal(r.kind === 'deny' && r.reason, 'no_waypoint');
});

test('index: lookups, local workloads, policies by scope', () => {
  const a = wl('a', '10.0.0.1', { authorizationPolicies: ['ns/sel'] });
  const b = wl('b', '10.0.0.2', { node: 'node2', namespace: 'other' });
  const ix = new WorkloadIndex(
    {
      workloads: new Map([
        [a.uid, a],
        [b.uid, b],
      ]),
      services: new Map([['ns/web.ns.svc.cluster.local', svc('web', '10.96.0.10', [a.uid])]]),
      authorizations: new Map([
        ['istio-system/g', { name: 'g', namespace: 'istio-system', scope: 'global', action: 'DENY', rules: [], dryRun: false }],
        ['ns/n', { name: 'n', namespace: 'ns', scope: 'namespace', action: 'DENY', rules: [], dryRun: false }],
        ['ns/sel', { name: 'sel', namespace: 'ns', scope: 'workload', action: 'DENY', rules: [], dryRun: false }],
        ['ns/unsel', { name: 'unsel', namespace: 'ns', scope: 'workload', action: 'DENY', rules: [], dryRun: false }],
      ]),
    },
    'node1',
  );
  assert.equal(ix.workloadByIp('::ffff:10.0.0.1'), a);
  assert.equal(ix.workloadByUid(b.uid), b);
  assert.equal(ix.serviceByVip('10.96.0.10', 80)?.service.name, 'web');
  assert.equal(ix.serviceByVip('10.96.0.10', 81), undefined);
  assert.equal(ix.serviceByHostname('web.ns.svc.cluster.local')?.name, 'web');
  assert.deepEqual(ix.localWorkloads().map((w) => w.name), ['a']);
  assert.deepEqual(ix.policiesFor(a).map((p) => p.name).sort(), ['g', 'n', 'sel']);
  assert.deepEqual(ix.policiesFor(b).map((p) => p.name), ['g']);
  assert.equal(ix.peerAuthenticationFor({ ...a, peerAuthentication: 'STRICT', portPeerAuthentication: { '80': 'PERMISSIVE' } }, 80), 'PERMISSIVE');
});

test('balancer: round robin over endpoints', () => {
  const lb = new LoadBalancer({ random: () => 0 });
  const s = svc('web', '10.96.0.10', []);
  const eps: Endpoint[] = ['10.0.0.1', '10.0.0.2', '10.0.0.3'].map((ip) => ({ workload: wl(ip, ip), address: ip, port: 80 }));
  const picks = Array.from({ length: 6 }, () => lb.pick(s, eps)!.address);
  assert.deepEqual(picks, ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1', '10.0.0.2', '10.0.0.3']);
});

test('balancer: failed endpoints are ejected with growing backoff, then return', () => {
  let now = 1000;
  const lb = new LoadBalancer({ now: () => now, random: () => 0.999, baseEjectMs: 1000, maxEjectMs: 8000 });
  const s = svc('web', '10.96.0.10', []);
  const eps: Endpoint[] = ['10.0.0.1', '10.0.0.2'].map((ip) => ({ workload: wl(ip, ip), address: ip, port: 80 }));
  lb.reportFailure(eps[0]!);
  for (let i = 0; i < 4; i++) assert.equal(lb.pick(s, eps)!.address, '10.0.0.2', 'ejected endpoint skipped');
  now += 1000;
  assert.equal(lb.isEjected('10.0.0.1|80'), false, 'first ejection ~1 s');
  lb.reportFailure(eps[0]!);
  now += 1500;
  assert.equal(lb.isEjected('10.0.0.1|80'), true, 'second ejection ~2 s');
  now += 600;
  assert.equal(lb.isEjected('10.0.0.1|80'), false);
  lb.reportSuccess(eps[0]!);
  lb.reportFailure(eps[0]!);
  now += 1000;
  assert.equal(lb.isEjected('10.0.0.1|80'), false, 'success reset the backoff');
  // Everything ejected: still pick something.
  lb.reportFailure(eps[0]!);
  lb.reportFailure(eps[1]!);
  assert.ok(lb.pick(s, eps));
});

test('balancer: routingPreference narrows to the best locality tier', () => {
  const me = wl('me', '10.0.0.1', { node: 'n1', locality: { region: 'r1', zone: 'z1', subzone: '' } });
  const sameNode: Endpoint = { workload: wl('a', '10.0.1.1', { node: 'n1', locality: { region: 'r1', zone: 'z1', subzone: '' } }), address: '10.0.1.1', port: 80 };
  const sameZone: Endpoint = { workload: wl('b', '10.0.1.2', { node: 'n2', locality: { region: 'r1', zone: 'z1', subzone: '' } }), address: '10.0.1.2', port: 80 };
  const other: Endpoint = { workload: wl('c', '10.0.1.3', { node: 'n3', locality: { region: 'r2', zone: 'z9', subzone: '' } }), address: '10.0.1.3', port: 80 };
  assert.deepEqual(preferLocality([sameNode, sameZone, other], ['node', 'zone'], me), [sameNode]);
  assert.deepEqual(preferLocality([sameZone, other], ['node', 'zone'], me), [sameZone], 'no same-node endpoint: same zone next');
  assert.deepEqual(preferLocality([other], ['node', 'zone'], me), [other], 'nothing local: anything');
  assert.deepEqual(preferLocality([sameZone, other], ['zone'], me), [sameZone]);
  assert.deepEqual(preferLocality([sameNode, other], [], me), [sameNode, other]);
});

test('request: the agent\'s own ports are refused as self_call on every outbound path', () => {
  const dst = wl('server', '10.0.0.2');
  const plain = wl('legacy', '10.0.0.3', { tunnelProtocol: 'NONE' });
  const s = svc('server', '10.96.0.10', [dst.uid], { ports: [{ name: 'tcp', port: 80, targetPort: 15006, protocol: 'tcp' }] });
  const ix = index([src, dst, plain], [s]);
  const decide = (address: string, port: number, agentPorts?: ReadonlySet<number>) =>
    buildOutboundRequest({ src, origDst: { address, port }, index: ix, nodeName: 'node1', pickEndpoint: first, ...(agentPorts ? { agentPorts } : {}) });
  const cases: Array<[string, number, string]> = [
    ['10.0.0.2', 15001, 'self_call'],
    ['10.0.0.2', 15006, 'self_call'],
    ['10.0.0.2', 15008, 'self_call'],
    ['10.0.0.1', 15001, 'self_call'],
    ['127.0.0.1', 15006, 'self_call'],
    ['::1', 15008, 'self_call'],
    ['::ffff:127.0.0.1', 15001, 'self_call'],
    ['10.96.0.10', 80, 'self_call'],
    // Not the agent: a port-15008 server outside the mesh, or a pod that is not enrolled.
    ['93.184.216.34', 15008, 'passthrough'],
    ['10.0.0.3', 15006, 'passthrough'],
    ['10.0.0.2', 9000, 'tunnel'],
  ];
  for (const [address, port, want] of cases) {
    const r = decide(address, port);
    assert.equal(r.kind === 'deny' ? r.reason : r.kind, want, `${address}:${port}`);
  }
  const custom = new Set([15001, 15006, 15008, 25006]);
  assert.equal(decide('10.0.0.2', 25006, custom).kind, 'deny', 'a configured agent port counts too');
  assert.equal(decide('10.0.0.2', 25006).kind, 'tunnel');
});

test('request: a service exported only to other namespaces is no service to this client (Istio exportTo)', () => {
  const dst = wl('server', '10.0.0.2', { services: { 'ns/web.ns.svc.cluster.local': [{ servicePort: 80, targetPort: 8081 }] } });
  const run = (exportTo: string[] | undefined, from: Workload) =>
    buildOutboundRequest({ src: from, origDst: { address: '10.96.0.10', port: 80 }, index: index([from, dst], [svc('web', '10.96.0.10', [dst.uid], exportTo ? { exportTo } : {})]), nodeName: 'node1', pickEndpoint: first });
  const other = wl('other', '10.0.0.3', { namespace: 'web' });
  assert.equal(run(undefined, other).kind, 'tunnel', 'exported everywhere by default');
  assert.equal(run(['*'], other).kind, 'tunnel');
  assert.equal(run(['ns', 'web'], other).kind, 'tunnel', 'exported to the client namespace');
  assert.deepEqual(run(['ns'], other), { kind: 'passthrough', address: '10.96.0.10', port: 80, reason: 'unknown_destination' }, 'not exported: the address is no service, the connection goes as addressed');
  assert.equal(run(['ns'], src).kind, 'tunnel', 'its own namespace still sees it');
  assert.equal(run([], src).kind, 'passthrough', 'exported nowhere ("~")');
});
