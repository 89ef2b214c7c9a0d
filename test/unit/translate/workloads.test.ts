import { test } from 'node:test';
import assert from 'node:assert/strict';
import { translate } from '../../../src/controller/translate/translate.js';
import type { KubeObject } from '../../../src/controller/objects.js';
import type { Workload } from '../../../src/shared/model.js';
import { namespace, pod, service, type PodOptions } from './helpers.js';

function onlyWorkload(objects: KubeObject[]): Workload {
  const { workloads } = translate(objects);
  assert.equal(workloads.length, 1);
  return workloads[0]!;
}

const ENROLLMENT: Array<{ name: string; nsLabels: Record<string, string>; pod: PodOptions; want: 'HBONE' | 'NONE' }> = [
  { name: 'namespace ambient', nsLabels: { 'istio.io/dataplane-mode': 'ambient' }, pod: {}, want: 'HBONE' },
  { name: 'no labels anywhere', nsLabels: {}, pod: {}, want: 'NONE' },
  { name: 'pod ambient in plain namespace', nsLabels: {}, pod: { labels: { app: 'a', 'istio.io/dataplane-mode': 'ambient' } }, want: 'HBONE' },
  { name: 'pod opt-out none in ambient namespace', nsLabels: { 'istio.io/dataplane-mode': 'ambient' }, pod: { labels: { app: 'a', 'istio.io/dataplane-mode': 'none' } }, want: 'NONE' },
  { name: 'pod ambient wins over namespace none', nsLabels: { 'istio.io/dataplane-mode': 'none' }, pod: { labels: { 'istio.io/dataplane-mode': 'ambient' } }, want: 'HBONE' },
  { name: 'sidecar-injected pod', nsLabels: { 'istio.io/dataplane-mode': 'ambient' }, pod: { annotations: { 'sidecar.istio.io/status': '{}' } }, want: 'NONE' },
  { name: 'host-network pod', nsLabels: { 'istio.io/dataplane-mode': 'ambient' }, pod: { hostNetwork: true }, want: 'NONE' },
];

for (const c of ENROLLMENT) {
  test(`enrollment: ${c.name} → ${c.want}`, () => {
    const w = onlyWorkload([namespace('demo', c.nsLabels), pod('a', c.pod)]);
    assert.equal(w.tunnelProtocol, c.want);
  });
}

test('a pod becomes a Workload with uid, identity, node, addresses, netns and health', () => {
  const w = onlyWorkload([
    namespace('demo', { 'istio.io/dataplane-mode': 'ambient' }),
    pod('web-1', { sa: 'web', ip: ['10.0.0.7', 'fd00::7'], node: 'node-2', annotations: { 'ambit.dev/netns': '/var/run/netns/p7' }, labels: { app: 'web', 'topology.kubernetes.io/zone': 'z1' } }),
  ]);
  assert.equal(w.uid, 'local//v1/Pod/demo/web-1');
  assert.equal(w.serviceAccount, 'web');
  assert.equal(w.trustDomain, 'cluster.local');
  assert.equal(w.node, 'node-2');
  assert.deepEqual(w.addresses, ['10.0.0.7', 'fd00::7']);
  assert.equal(w.netns, '/var/run/netns/p7');
  assert.equal(w.status, 'Healthy');
  assert.deepEqual(w.locality, { region: '', zone: 'z1', subzone: '' });
  assert.equal(w.peerAuthentication, 'PERMISSIVE');
  assert.deepEqual(w.authorizationPolicies, []);
});

test('cluster id and trust domain come from the options', () => {
  const { workloads } = translate([pod('a')], { clusterId: 'c1', trustDomain: 'example.org' });
  assert.equal(workloads[0]!.uid, 'c1//v1/Pod/demo/a');
  assert.equal(workloads[0]!.trustDomain, 'example.org');
});

test('service account defaults to "default"; a pod without an IP has no addresses', () => {
  const w = onlyWorkload([pod('a', { ip: [], phase: 'Pending' })]);
  assert.equal(w.serviceAccount, 'default');
  assert.deepEqual(w.addresses, []);
  assert.equal(w.status, 'Unhealthy');
});

const HEALTH: Array<{ phase: string; ready: boolean; want: Workload['status'] }> = [
  { phase: 'Running', ready: true, want: 'Healthy' },
  { phase: 'Running', ready: false, want: 'Unhealthy' },
  { phase: 'Pending', ready: false, want: 'Unhealthy' },
];
for (const c of HEALTH) {
  test(`status: phase ${c.phase}, ready ${c.ready} → ${c.want}`, () => {
    assert.equal(onlyWorkload([pod('a', { phase: c.phase, ready: c.ready })]).status, c.want);
  });
}

test('terminated pods are not workloads and Deployments are not expanded here', () => {
  const deployment: KubeObject = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'd', namespace: 'demo' },
    spec: { selector: { matchLabels: { app: 'd' } }, template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c', command: ['x'] }] } } },
  };
  const { workloads } = translate([deployment, pod('done', { phase: 'Succeeded' }), pod('failed', { phase: 'Failed' }), pod('live')]);
  assert.deepEqual(workloads.map((w) => w.name), ['live']);
});

const NAMES: Array<{ name: string; labels: Record<string, string>; canonicalName: string; canonicalRevision: string }> = [
  { name: 'istio canonical labels win', labels: { 'service.istio.io/canonical-name': 'cn', 'service.istio.io/canonical-revision': 'r1', app: 'a', version: 'v' }, canonicalName: 'cn', canonicalRevision: 'r1' },
  { name: 'app.kubernetes.io labels next', labels: { 'app.kubernetes.io/name': 'kn', 'app.kubernetes.io/version': '1.2', app: 'a', version: 'v' }, canonicalName: 'kn', canonicalRevision: '1.2' },
  { name: 'app/version labels', labels: { app: 'a', version: 'v3' }, canonicalName: 'a', canonicalRevision: 'v3' },
  { name: 'no labels: workload name and latest', labels: {}, canonicalName: 'solo', canonicalRevision: 'latest' },
];
for (const c of NAMES) {
  test(`canonical names: ${c.name}`, () => {
    const w = onlyWorkload([pod('solo', { labels: c.labels })]);
    assert.equal(w.canonicalName, c.canonicalName);
    assert.equal(w.canonicalRevision, c.canonicalRevision);
  });
}

const OWNERS: Array<{ name: string; pod: string; o: PodOptions; workloadName: string; workloadType: Workload['workloadType'] }> = [
  {
    name: 'ReplicaSet of a Deployment',
    pod: 'reviews-v1-5f7d8c-0',
    o: { labels: { 'pod-template-hash': '5f7d8c' }, owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'reviews-v1-5f7d8c', controller: true } },
    workloadName: 'reviews-v1',
    workloadType: 'deployment',
  },
  { name: 'Deployment owner directly', pod: 'web-0', o: { owner: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' } }, workloadName: 'web', workloadType: 'deployment' },
  { name: 'Job', pod: 'migrate-abcde', o: { owner: { apiVersion: 'batch/v1', kind: 'Job', name: 'migrate' } }, workloadName: 'migrate', workloadType: 'job' },
  { name: 'Job of a CronJob', pod: 'backup-28391040-x', o: { owner: { apiVersion: 'batch/v1', kind: 'Job', name: 'backup-28391040' } }, workloadName: 'backup', workloadType: 'cronjob' },
  { name: 'StatefulSet', pod: 'db-0', o: { owner: { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db' } }, workloadName: 'db', workloadType: 'pod' },
  { name: 'no owner, pod-template-hash naming', pod: 'api-7c9f-xk2p', o: { labels: { 'pod-template-hash': '7c9f' } }, workloadName: 'api', workloadType: 'deployment' },
  { name: 'bare pod', pod: 'debug', o: {}, workloadName: 'debug', workloadType: 'pod' },
];
for (const c of OWNERS) {
  test(`workload name/type: ${c.name}`, () => {
    const w = onlyWorkload([pod(c.pod, c.o)]);
    assert.equal(w.workloadName, c.workloadName);
    assert.equal(w.workloadType, c.workloadType);
  });
}

test('Service: hostname, VIPs, endpoints are Running selected pods of the same namespace, SANs from their accounts', () => {
  const { services, workloads } = translate([
    service('reviews', { selector: { app: 'reviews' }, clusterIPs: ['10.96.0.10', 'fd00::10'] }),
    pod('r1', { labels: { app: 'reviews' }, sa: 'reviews', ip: '10.0.0.1' }),
    pod('r2', { labels: { app: 'reviews' }, sa: 'reviews-v2', ip: '10.0.0.2' }),
    pod('r3', { labels: { app: 'reviews' }, phase: 'Pending', ip: [] }),
    pod('other-ns', { ns: 'prod', labels: { app: 'reviews' } }),
    pod('unrelated', { labels: { app: 'ratings' } }),
  ]);
  assert.equal(services.length, 1);
  const s = services[0]!;
  assert.equal(s.hostname, 'reviews.demo.svc.cluster.local');
  assert.deepEqual(s.vips, ['10.96.0.10', 'fd00::10']);
  assert.deepEqual(s.endpoints, ['local//v1/Pod/demo/r1', 'local//v1/Pod/demo/r2']);
  assert.deepEqual(s.subjectAltNames, ['spiffe://cluster.local/ns/demo/sa/reviews', 'spiffe://cluster.local/ns/demo/sa/reviews-v2']);
  const byName = new Map(workloads.map((w) => [w.name, w]));
  assert.deepEqual(byName.get('r1')!.services, { 'demo/reviews.demo.svc.cluster.local': [{ servicePort: 80, targetPort: 8080 }] });
  assert.ok('demo/reviews.demo.svc.cluster.local' in byName.get('r3')!.services, 'selected-but-pending pods still get the port mapping');
  assert.deepEqual(byName.get('other-ns')!.services, {});
  assert.deepEqual(byName.get('unrelated')!.services, {});
});

test('Service: named targetPort resolves per pod; unresolvable pods get no mapping for that port', () => {
  const { services, workloads } = translate([
    service('api', { selector: { app: 'api' }, ports: [{ name: 'http', port: 80, targetPort: 'web' }, { name: 'tcp-admin', port: 9000 }] }),
    pod('a1', { labels: { app: 'api' }, ports: [{ name: 'web', containerPort: 8081 }] }),
    pod('a2', { labels: { app: 'api' }, ports: [{ name: 'other', containerPort: 8082 }] }),
  ]);
  assert.deepEqual(services[0]!.ports, [
    { name: 'http', port: 80, targetPort: 8081, protocol: 'http' },
    { name: 'tcp-admin', port: 9000, targetPort: 9000, protocol: 'tcp' },
  ]);
  const [a1, a2] = workloads;
  assert.deepEqual(a1!.services['demo/api.demo.svc.cluster.local'], [
    { servicePort: 80, targetPort: 8081 },
    { servicePort: 9000, targetPort: 9000 },
  ]);
  assert.deepEqual(a2!.services['demo/api.demo.svc.cluster.local'], [{ servicePort: 9000, targetPort: 9000 }]);
});

const PROTOCOLS: Array<{ port: Record<string, unknown>; want: string }> = [
  { port: { name: 'http', port: 80 }, want: 'http' },
  { port: { name: 'http-web', port: 80 }, want: 'http' },
  { port: { name: 'http2-x', port: 80 }, want: 'http2' },
  { port: { name: 'grpc', port: 80 }, want: 'grpc' },
  { port: { name: 'grpc-web', port: 80 }, want: 'grpc-web' },
  { port: { name: 'https-admin', port: 443 }, want: 'https' },
  { port: { name: 'tls', port: 443 }, want: 'tls' },
  { port: { name: 'mongo', port: 27017 }, want: 'mongo' },
  { port: { name: 'redis-main', port: 6379 }, want: 'redis' },
  { port: { name: 'web', port: 80 }, want: 'tcp' },
  { port: { name: 'httpx', port: 80 }, want: 'tcp' },
  { port: { name: 'web', port: 80, appProtocol: 'HTTP' }, want: 'http' },
  { port: { name: 'http', port: 80, appProtocol: 'grpc' }, want: 'grpc' },
  { port: { name: 'x', port: 80, appProtocol: 'kubernetes.io/h2c' }, want: 'http2' },
  { port: { name: 'x', port: 80, appProtocol: 'custom.io/thing' }, want: 'tcp' },
  { port: { name: 'dns', port: 53, protocol: 'UDP' }, want: 'udp' },
];
for (const c of PROTOCOLS) {
  test(`port protocol: ${JSON.stringify(c.port)} → ${c.want}`, () => {
    const { services } = translate([service('s', { ports: [c.port] })]);
    assert.equal(services[0]!.ports[0]!.protocol, c.want);
  });
}

test('Service: headless has no VIPs, no selector has no endpoints, ExternalName is skipped', () => {
  const { services } = translate([
    service('headless', { clusterIP: 'None', selector: { app: 'p' } }),
    service('manual', { selector: {} }),
    service('ext', { spec: { type: 'ExternalName', externalName: 'example.com' } }),
    pod('p'),
  ]);
  assert.deepEqual(services.map((s) => s.name), ['headless', 'manual']);
  assert.deepEqual(services[0]!.vips, []);
  assert.deepEqual(services[0]!.endpoints, ['local//v1/Pod/demo/p']);
  assert.deepEqual(services[1]!.endpoints, []);
});

const PREFERENCE: Array<{ name: string; svc: Parameters<typeof service>[1]; want: string[] }> = [
  { name: 'none', svc: {}, want: [] },
  { name: 'trafficDistribution PreferClose', svc: { spec: { trafficDistribution: 'PreferClose' } }, want: ['zone'] },
  { name: 'annotation PreferClose', svc: { annotations: { 'networking.istio.io/traffic-distribution': 'PreferClose' } }, want: ['zone'] },
  { name: 'PreferSameNode', svc: { spec: { trafficDistribution: 'PreferSameNode' } }, want: ['node', 'zone'] },
];
for (const c of PREFERENCE) {
  test(`routing preference: ${c.name}`, () => {
    assert.deepEqual(translate([service('s', c.svc)]).services[0]!.routingPreference, c.want);
  });
}

test('Service without a selector: endpoints are the ready pods its EndpointSlices name, ports by name', () => {
  const slice = (name: string, endpoints: Array<Record<string, unknown>>, ports: Array<Record<string, unknown>>): KubeObject => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'demo', labels: { 'kubernetes.io/service-name': 'manual' } },
    addressType: 'IPv4',
    endpoints,
    ports,
  });
  const { services, workloads } = translate([
    service('manual', { selector: {}, ports: [{ name: 'http', port: 80 }] }),
    pod('a', { ip: '10.0.0.1' }),
    pod('b', { ip: '10.0.0.2' }),
    pod('c', { ip: '10.0.0.3' }),
    slice('manual-1', [
      { addresses: ['10.0.0.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'a', namespace: 'demo' } },
      { addresses: ['10.0.0.2'], conditions: { ready: false }, targetRef: { kind: 'Pod', name: 'b', namespace: 'demo' } },
      { addresses: ['192.0.2.9'] },
    ], [{ name: 'http', port: 8081, protocol: 'TCP' }]),
    // A slice of another Service is not read.
    { ...slice('other', [{ addresses: ['10.0.0.3'], targetRef: { kind: 'Pod', name: 'c', namespace: 'demo' } }], []), metadata: { name: 'other', namespace: 'demo', labels: { 'kubernetes.io/service-name': 'else' } } },
  ]);
  assert.deepEqual(services[0]!.endpoints, ['local//v1/Pod/demo/a'], 'only the ready pod endpoint; the not-ready pod and the external address are left out');
  assert.equal(services[0]!.ports[0]!.targetPort, 8081, 'the slice says where port http goes');
  const a = workloads.find((w) => w.name === 'a')!;
  assert.deepEqual(a.services['demo/manual.demo.svc.cluster.local'], [{ servicePort: 80, targetPort: 8081 }]);
  assert.deepEqual(workloads.find((w) => w.name === 'c')!.services, {});
});

test('locality: the pod\'s own topology labels win, else its node\'s', () => {
  const node = (name: string, labels: Record<string, string>): KubeObject => ({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels } });
  const { workloads } = translate([
    node('n1', { 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': 'z1' }),
    pod('from-node', { node: 'n1' }),
    pod('own', { node: 'n1', labels: { app: 'own', 'topology.kubernetes.io/zone': 'z9' } }),
    pod('none', { node: 'n2' }),
  ]);
  const by = (n: string) => workloads.find((w) => w.name === n)!;
  assert.deepEqual(by('from-node').locality, { region: 'r1', zone: 'z1', subzone: '' });
  assert.deepEqual(by('own').locality, { region: '', zone: 'z9', subzone: '' });
  assert.equal(by('none').locality, undefined);
});

test('ambient.istio.io/dns-capture: "false" opts a pod out of DNS capture; other values leave it captured', () => {
  const ns = namespace('demo', { 'istio.io/dataplane-mode': 'ambient' });
  assert.equal(onlyWorkload([ns, pod('a', { annotations: { 'ambient.istio.io/dns-capture': 'false' } })]).dnsCapture, false);
  assert.equal(onlyWorkload([ns, pod('a', { annotations: { 'ambient.istio.io/dns-capture': 'False' } })]).dnsCapture, false);
  assert.equal(onlyWorkload([ns, pod('a', { annotations: { 'ambient.istio.io/dns-capture': 'true' } })]).dnsCapture, undefined);
  assert.equal(onlyWorkload([ns, pod('a', {})]).dnsCapture, undefined);
});
