import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../../src/controller/objects.js';
import { translate } from '../../../src/controller/translate/translate.js';
import { serviceEntryDnsNames } from '../../../src/controller/translate/service-entries.js';
import { DnsAnswers } from '../../../src/controller/dns-answers.js';
import { silentLogger } from '../../../src/shared/log.js';
import { serviceResourceName, TYPE_SERVICE, TYPE_WORKLOAD } from '../../../src/shared/resources.js';
import { validateResource } from '../../../src/shared/validate-resource.js';
import { namespace, pod, service } from './helpers.js';

const se = (name: string, spec: Record<string, unknown>, ts = '2024-01-01T00:00:00Z'): KubeObject => ({ apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name, namespace: 'demo', creationTimestamp: ts }, spec });

function valid(r: ReturnType<typeof translate>): void {
  for (const w of r.workloads) assert.deepEqual(validateResource(TYPE_WORKLOAD, w.uid, w).issues, [], w.uid);
  for (const s of r.services) assert.deepEqual(validateResource(TYPE_SERVICE, serviceResourceName(s), s).issues, [], s.hostname);
}

test('a STATIC ServiceEntry is a Service on its addresses with one plain-TCP workload per endpoint (named ports mapped)', () => {
  const r = translate([
    namespace('demo'),
    se('db', { hosts: ['db.example.com'], addresses: ['240.0.0.10'], location: 'MESH_EXTERNAL', resolution: 'STATIC', ports: [{ number: 5432, name: 'tcp-pg', protocol: 'TCP' }, { number: 80, name: 'http', protocol: 'HTTP', targetPort: 8080 }], endpoints: [{ address: '192.0.2.10', ports: { 'tcp-pg': 15432 }, labels: { app: 'pg', version: 'v9' } }, { address: '192.0.2.11' }] }),
  ]);
  valid(r);
  const svc = r.services.find((s) => s.hostname === 'db.example.com')!;
  assert.deepEqual({ vips: svc.vips, ports: svc.ports }, { vips: ['240.0.0.10'], ports: [{ name: 'tcp-pg', port: 5432, targetPort: 5432, protocol: 'tcp' }, { name: 'http', port: 80, targetPort: 8080, protocol: 'http' }] });
  const eps = r.workloads.filter((w) => svc.endpoints.includes(w.uid));
  assert.deepEqual(
    eps.map((w) => ({ addresses: w.addresses, tunnel: w.tunnelProtocol, name: w.canonicalName, rev: w.canonicalRevision, ports: w.services['demo/db.example.com'] })),
    [
      { addresses: ['192.0.2.10'], tunnel: 'NONE', name: 'pg', rev: 'v9', ports: [{ servicePort: 5432, targetPort: 15432 }, { servicePort: 80, targetPort: 8080 }] },
      { addresses: ['192.0.2.11'], tunnel: 'NONE', name: 'db', rev: 'latest', ports: [{ servicePort: 5432, targetPort: 5432 }, { servicePort: 80, targetPort: 8080 }] },
    ],
  );
  assert.equal(r.conditions.find((c) => c.objectKey === 'ServiceEntry/demo/db')?.reason, 'Accepted');
});

test('a DNS ServiceEntry takes the controller\'s answers: every address for DNS, the first for DNS_ROUND_ROBIN; unresolved names are noted', () => {
  const dnsAnswers = new Map([
    ['api.example.com', ['203.0.113.1', '203.0.113.2']],
    ['b.example.net', ['203.0.113.9', '203.0.113.8']],
  ]);
  const objects = [
    namespace('demo'),
    se('api', { hosts: ['api.example.com'], addresses: ['240.0.0.20'], resolution: 'DNS', ports: [{ number: 443, name: 'tls', protocol: 'TLS' }] }),
    se('rr', { hosts: ['rr.example.com'], addresses: ['240.0.0.21'], resolution: 'DNS_ROUND_ROBIN', ports: [{ number: 80, name: 'http' }], endpoints: [{ address: 'b.example.net' }, { address: 'c.example.net' }] }),
  ];
  assert.deepEqual(serviceEntryDnsNames(objects.filter((o) => o.kind === 'ServiceEntry')), ['api.example.com', 'b.example.net', 'c.example.net']);
  const r = translate(objects, { dnsAnswers });
  valid(r);
  const addrs = (host: string) => r.workloads.filter((w) => r.services.find((s) => s.hostname === host)!.endpoints.includes(w.uid)).map((w) => w.addresses[0]);
  assert.deepEqual(addrs('api.example.com'), ['203.0.113.1', '203.0.113.2']);
  assert.deepEqual(addrs('rr.example.com'), ['203.0.113.9']);
  assert.match(r.conditions.find((c) => c.objectKey === 'ServiceEntry/demo/rr')!.message, /c\.example\.net has not resolved \(yet\); it has no endpoints/);
});

test('a workloadSelector ServiceEntry selects the namespace\'s pods; hosts of Services or older entries are refused; NONE adds nothing', () => {
  const r = translate([
    namespace('demo'),
    pod('web-1', { labels: { app: 'web' }, ip: '10.0.0.5' }),
    service('web', { ports: [{ name: 'http', port: 80 }] }),
    se('internal', { hosts: ['web.internal', 'web.demo.svc.cluster.local'], addresses: ['240.0.0.30'], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 8080, name: 'http', targetPort: 80 }], workloadSelector: { labels: { app: 'web' } } }),
    se('later', { hosts: ['web.internal'], addresses: ['240.0.0.31'], resolution: 'STATIC', endpoints: [{ address: '192.0.2.1' }], ports: [{ number: 1, name: 'tcp' }] }, '2025-01-01T00:00:00Z'),
    se('none', { hosts: ['*.example.org'], resolution: 'NONE' }),
  ]);
  valid(r);
  const svc = r.services.find((s) => s.hostname === 'web.internal')!;
  const web = r.workloads.find((w) => w.name === 'web-1')!;
  assert.deepEqual(svc.endpoints, [web.uid]);
  assert.deepEqual(web.services['demo/web.internal'], [{ servicePort: 8080, targetPort: 80 }]);
  const msg = (n: string) => r.conditions.find((c) => c.objectKey === `ServiceEntry/demo/${n}`)!.message;
  assert.match(msg('internal'), /host web\.demo\.svc\.cluster\.local is already Service demo\/web's/);
  assert.match(msg('later'), /host web\.internal is already ServiceEntry demo\/internal's/);
  assert.match(msg('none'), /resolution NONE: connections go to the address the client asked for/);
  assert.equal(r.services.filter((s) => s.name === 'later' || s.name === 'none').length, 0);
});

test('DnsAnswers resolves wanted names, re-resolves, reports changes, keeps the last answer on failure and drops unwanted names', async () => {
  const table = new Map<string, string[] | Error>([['a.example', ['203.0.113.2', '203.0.113.1']]]);
  let changes = 0;
  const d = new DnsAnswers({ log: silentLogger(), onChange: () => changes++, refreshMs: 3_600_000, resolve: async (n) => {
    const v = table.get(n);
    if (v instanceof Error || v === undefined) throw v ?? new Error('NXDOMAIN');
    return v;
  } });
  d.want(['a.example', 'b.example']);
  await d.refresh('a.example');
  await d.refresh('b.example');
  assert.deepEqual(Object.fromEntries(d.current()), { 'a.example': ['203.0.113.1', '203.0.113.2'] });
  const before = changes;
  await d.refresh('a.example');
  assert.equal(changes, before, 'the same answer is no change');
  table.set('a.example', new Error('SERVFAIL'));
  await d.refresh('a.example');
  assert.deepEqual(d.current().get('a.example'), ['203.0.113.1', '203.0.113.2'], 'a failure keeps the last answer');
  table.set('a.example', ['203.0.113.3']);
  await d.refresh('a.example');
  assert.equal(changes, before + 1);
  d.want(['b.example']);
  assert.equal(d.current().has('a.example'), false);
  d.close();
});

test('exportTo: "." is the entry\'s namespace, "*" everyone, "~" no one; a Service says it with networking.istio.io/exportTo', () => {
  const entry = (name: string, exportTo?: string[]): KubeObject => se(name, { hosts: [`${name}.example.com`], addresses: ['240.0.0.20'], resolution: 'STATIC', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: '192.0.2.20' }], ...(exportTo ? { exportTo } : {}) });
  const annotated = service('web', { ns: 'demo', annotations: { 'networking.istio.io/exportTo': ' ., shop ' } });
  const r = translate([namespace('demo'), entry('a', ['.', 'shop']), entry('b', ['*', '.']), entry('c', ['~']), entry('d'), annotated]);
  valid(r);
  const exports = Object.fromEntries(r.services.map((s) => [s.name, s.exportTo]));
  assert.deepEqual(exports, { a: ['demo', 'shop'], b: undefined, c: [], d: undefined, web: ['demo', 'shop'] });
});

test('a ServiceEntry labelled istio.io/use-waypoint is bound like a Service: agents send it to the waypoint, which gets its route config and VirtualService', async () => {
  const { translateAll } = await import('../../../src/controller/translate/translate.js');
  const { waypointGateway } = await import('./helpers.js');
  const entry = se('partner', { hosts: ['api.partner.example'], addresses: ['240.0.0.30'], resolution: 'STATIC', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: '192.0.2.30' }] });
  entry.metadata.labels = { 'istio.io/use-waypoint': 'waypoint' };
  const vs: KubeObject = { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'partner', namespace: 'demo' }, spec: { hosts: ['api.partner.example'], http: [{ timeout: '2s', route: [{ destination: { host: 'api.partner.example' } }] }] } };
  const out = translateAll([namespace('demo'), waypointGateway('waypoint', { ns: 'demo' }), entry, vs]);
  const svc = out.model.services.find((s) => s.hostname === 'api.partner.example')!;
  assert.equal(svc.waypoint?.name, 'demo/waypoint', 'the agents send connections to the entry through the waypoint');
  assert.equal(out.model.conditions.find((c) => c.objectKey === 'ServiceEntry/demo/partner' && c.type === 'istio.io/WaypointBound')?.status, 'True');
  const cfg = out.routes.routes.find((r) => r.hostname === 'api.partner.example')!;
  assert.deepEqual({ waypoint: cfg.waypoint, aliases: cfg.aliases, ports: cfg.ports }, { waypoint: 'demo/waypoint', aliases: ['240.0.0.30'], ports: [{ port: 80, protocol: 'http' }] });
  assert.equal(cfg.routes[0]?.timeoutMs, 2000, 'the VirtualService on the entry host is the waypoint\'s route');
  // Unlabelled: no waypoint, still a config (VirtualServices for the host are translated).
  const plain = translateAll([namespace('demo'), waypointGateway('waypoint', { ns: 'demo' }), se('p2', { hosts: ['b.example'], addresses: ['240.0.0.31'], resolution: 'STATIC', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: '192.0.2.31' }] })]);
  assert.equal(plain.model.services[0]?.waypoint, undefined);
  assert.equal(plain.routes.routes.find((r) => r.hostname === 'b.example')?.waypoint, undefined);
});

test('hosts of entries without spec.addresses get stable addresses of 240.240.0.0/16 (Istio auto-allocation); wildcard and NONE hosts get none', async () => {
  const { allocateEntryAddresses } = await import('../../../src/controller/translate/address-allocation.js');
  const { translateRoutes } = await import('../../../src/controller/translate/routes.js');
  const endpoints = [{ address: '192.0.2.10' }];
  const a = se('a', { hosts: ['a.example.com', 'b.example.com'], resolution: 'STATIC', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }], endpoints });
  const fixed = se('fixed', { hosts: ['fixed.example.com'], addresses: ['240.240.0.10'], resolution: 'STATIC', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }], endpoints });
  const wild = se('wild', { hosts: ['*.wild.example.com'], resolution: 'NONE', ports: [{ number: 443, name: 'tls', protocol: 'TLS' }] });
  const r = translate([namespace('demo'), a, fixed, wild]);
  valid(r);
  const vip = (h: string) => r.services.find((s) => s.hostname === h)?.vips;
  const [va, vb] = [vip('a.example.com')![0]!, vip('b.example.com')![0]!];
  for (const v of [va, vb]) assert.match(v, /^240\.240\.\d{1,3}\.\d{1,3}$/);
  assert.notEqual(va, vb, 'one address per host');
  assert.deepEqual(vip('fixed.example.com'), ['240.240.0.10'], 'written addresses stay');
  assert.equal(r.services.some((s) => s.hostname.includes('wild')), false, 'a NONE entry (wildcards included) makes no Service');
  assert.match(r.conditions.find((c) => c.objectKey === 'ServiceEntry/demo/a')!.message, new RegExp(`allocated .*a\\.example\\.com=${va.replaceAll('.', '\\.')} and 2001:2::[0-9a-f:]+, b\\.example\\.com=${vb.replaceAll('.', '\\.')} and 2001:2::`));
  assert.match(r.conditions.find((c) => c.objectKey === 'ServiceEntry/demo/wild')!.message, /wildcard hosts included: any name they match is passed through/);
  // Stable: other entries coming and going do not move an address (barring a collision).
  const more = Array.from({ length: 50 }, (_, i) => se(`x${i}`, { hosts: [`x${i}.example.com`], resolution: 'DNS', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }] }));
  const again = allocateEntryAddresses([a, fixed, wild, ...more]);
  assert.equal(again.get('demo/a.example.com'), va);
  assert.equal(again.get('demo/b.example.com'), vb);
  assert.equal(new Set(again.values()).size, again.size, 'never one address twice');
  assert.equal([...again.values()].includes('240.240.0.10'), false, 'never an address an entry names');
  // The route config of the host knows its address (a waypoint bound to the entry).
  const cfg = translateRoutes([namespace('demo'), a]).routes.find((c) => c.hostname === 'a.example.com')!;
  assert.deepEqual(cfg.aliases, vip('a.example.com'), 'both allocated addresses');
});

test('auto-allocation gives each host an IPv6 address of 2001:2::/48 too (as istiod does); the agents\' index finds the Service by either', async () => {
  const { WorkloadIndex } = await import('../../../src/shared/state/workloads.js');
  const { allocateEntryAddresses6 } = await import('../../../src/controller/translate/address-allocation.js');
  const a = se('a', { hosts: ['a.example.com', 'b.example.com'], resolution: 'STATIC', ports: [{ number: 5432, name: 'tcp', protocol: 'TCP' }], endpoints: [{ address: '192.0.2.10' }] });
  const taken = se('taken', { hosts: ['t.example.com'], addresses: ['2001:2::1'], resolution: 'STATIC', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: '192.0.2.11' }] });
  const r = translate([namespace('demo', { 'istio.io/dataplane-mode': 'ambient' }), pod('client', { ns: 'demo', ip: '10.0.0.7' }), a, taken]);
  valid(r);
  const svc = r.services.find((s) => s.hostname === 'a.example.com')!;
  assert.equal(svc.vips.length, 2);
  const [v4, v6] = svc.vips as [string, string];
  assert.match(v4, /^240\.240\./);
  assert.match(v6, /^2001:2::/);
  assert.notEqual(v6, r.services.find((s) => s.hostname === 'b.example.com')!.vips[1], 'one IPv6 address per host');
  assert.match(r.conditions.find((c) => c.objectKey === 'ServiceEntry/demo/a')!.message, /240\.240\.0\.0\/16 and 2001:2::\/48/);
  // Stable and never an address an entry writes.
  const many = Array.from({ length: 200 }, (_, i) => se(`x${i}`, { hosts: [`x${i}.example.com`], resolution: 'DNS', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }] }));
  const v6s = allocateEntryAddresses6([a, taken, ...many]);
  assert.equal(v6s.get('demo/a.example.com'), v6);
  assert.equal(new Set(v6s.values()).size, v6s.size);
  assert.equal([...v6s.values()].includes('2001:2::1'), false);
  // The node agent's service lookup: a connection to the IPv6 address is the entry's Service.
  const index = new WorkloadIndex({ workloads: new Map(r.workloads.map((w) => [w.uid, w])), services: new Map(r.services.map((s) => [`${s.namespace}/${s.hostname}`, s])), authorizations: new Map() });
  assert.equal(index.serviceByVip(v6, 5432)?.service.hostname, 'a.example.com');
  assert.equal(index.serviceByVip(v4, 5432)?.service.hostname, 'a.example.com');
  // And the agent's decision for a connection a pod makes to it: the entry's endpoint, as for the IPv4 address.
  const { buildOutboundRequest } = await import('../../../src/agent/proxy/request.js');
  const client = r.workloads.find((w) => w.name === 'client')!;
  const decide = (address: string) => buildOutboundRequest({ src: client, origDst: { address, port: 5432 }, index, nodeName: 'node1', pickEndpoint: (_s, _p, c) => c[0] });
  for (const address of [v6, v4]) {
    const d = decide(address);
    assert.equal(d.kind, 'passthrough', `${address}: ${JSON.stringify(d)}`);
    assert.deepEqual(d.kind === 'passthrough' ? [d.address, d.port, d.service?.hostname] : [], ['192.0.2.10', 5432, 'a.example.com']);
  }
});

test('wildcard hosts with resolution STATIC (or DNS with endpoints): served on the entry\'s addresses; without addresses not served and the condition says why', () => {
  const ports = [{ number: 443, name: 'tls', protocol: 'TLS' }];
  const withAddresses = se('wild', { hosts: ['*.internal.example.com'], addresses: ['240.0.0.20'], resolution: 'STATIC', ports, endpoints: [{ address: '192.0.2.20' }] });
  const dns = se('wild-dns', { hosts: ['*.dns.example.com'], addresses: ['240.0.0.21'], resolution: 'DNS', ports, endpoints: [{ address: 'lb.example.com' }] }, '2024-01-02T00:00:00Z');
  const bare = se('bare', { hosts: ['*.bare.example.com', 'named.example.com'], resolution: 'STATIC', ports, endpoints: [{ address: '192.0.2.22' }] }, '2024-01-03T00:00:00Z');
  const r = translate([namespace('demo'), withAddresses, dns, bare], { dnsAnswers: new Map([['lb.example.com', ['203.0.113.9']]]) });
  valid(r);
  const svc = r.services.find((s) => s.hostname === '*.internal.example.com')!;
  assert.deepEqual(svc.vips, ['240.0.0.20']);
  assert.deepEqual(r.workloads.filter((w) => svc.endpoints.includes(w.uid)).map((w) => w.addresses), [['192.0.2.20']]);
  const dnsSvc = r.services.find((s) => s.hostname === '*.dns.example.com')!;
  assert.deepEqual(r.workloads.filter((w) => dnsSvc.endpoints.includes(w.uid)).map((w) => w.addresses), [['203.0.113.9']], 'a DNS wildcard entry resolves its endpoints, not the host');
  assert.equal(r.services.some((s) => s.hostname === '*.bare.example.com'), false);
  assert.equal(r.services.find((s) => s.hostname === 'named.example.com')!.vips.length, 2, 'the entry\'s other host is served on its allocated addresses');
  const cond = r.conditions.find((c) => c.objectKey === 'ServiceEntry/demo/bare')!;
  assert.equal(cond.reason, 'PartiallyApplied');
  assert.match(cond.message, /host \*\.bare\.example\.com: not served: a wildcard host gets no auto-allocated address \(Istio allocates none for wildcard hosts unless resolution is DYNAMIC_DNS\)/);
  assert.equal(r.conditions.find((c) => c.objectKey === 'ServiceEntry/demo/wild')!.reason, 'Accepted');
});

test('a STATIC ServiceEntry with CIDR addresses serves every address in its ranges on its ports; bad ranges are noted', () => {
  const r = translate([
    namespace('demo'),
    se('nets', { hosts: ['nets.example.com'], addresses: ['192.0.2.0/24', '2001:db8::/64', '192.0.2.200', '10.0.0.0/33'], resolution: 'STATIC', ports: [{ number: 5432, name: 'tcp', protocol: 'TCP' }], endpoints: [{ address: '198.51.100.1' }] }),
    se('dns', { hosts: ['dns.example.com'], addresses: ['198.18.0.0/15'], resolution: 'DNS', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }] }),
  ]);
  valid(r);
  const svc = r.services.find((s) => s.hostname === 'nets.example.com')!;
  assert.deepEqual({ vips: svc.vips, vipRanges: svc.vipRanges }, { vips: ['192.0.2.200'], vipRanges: ['192.0.2.0/24', '2001:db8::/64'] }, 'no address is allocated for an entry with ranges');
  const cond = r.conditions.find((c) => c.objectKey === 'ServiceEntry/demo/nets')!;
  assert.equal(cond.reason, 'PartiallyApplied');
  assert.match(cond.message, /spec\.addresses: "10\.0\.0\.0\/33" .*; ignored/);
  assert.equal(r.services.find((s) => s.hostname === 'dns.example.com')?.vipRanges, undefined);
  assert.match(r.conditions.find((c) => c.objectKey === 'ServiceEntry/demo/dns')!.message, /address ranges 198\.18\.0\.0\/15 are not served with resolution DNS \(Istio refuses CIDR addresses unless resolution is NONE or STATIC\); it names no other address/);
});

test('a NONE or DYNAMIC_DNS ServiceEntry with addresses is a Service whose endpoint is the original destination; bound to its waypoint; without addresses still no Service', async () => {
  const { translateAll } = await import('../../../src/controller/translate/translate.js');
  const { waypointGateway } = await import('./helpers.js');
  const ports = [{ number: 5432, name: 'tcp-pg', protocol: 'TCP' }, { number: 80, name: 'http', protocol: 'HTTP' }];
  const db = se('db-net', { hosts: ['db.example.net'], addresses: ['10.20.0.0/24', '10.30.0.9', '2001:db8:5::/64', 'nope/8'], location: 'MESH_EXTERNAL', resolution: 'NONE', ports, workloadSelector: { labels: { app: 'web' } } });
  db.metadata.labels = { 'istio.io/use-waypoint': 'waypoint' };
  const dyn = se('dyn', { hosts: ['*.dyn.example.net'], addresses: ['10.40.0.0/16'], resolution: 'DYNAMIC_DNS', ports }, '2024-01-02T00:00:00Z');
  const bare = se('bare', { hosts: ['bare.example.net'], resolution: 'NONE', ports }, '2024-01-03T00:00:00Z');
  const out = translateAll([namespace('demo'), waypointGateway('waypoint', { ns: 'demo' }), pod('web-1', { labels: { app: 'web' }, ip: '10.20.0.5' }), db, dyn, bare]);
  valid(out.model);
  const svc = out.model.services.find((s) => s.hostname === 'db.example.net')!;
  assert.deepEqual(
    { vips: svc.vips, vipRanges: svc.vipRanges, originalDestination: svc.originalDestination, endpoints: svc.endpoints, waypoint: svc.waypoint?.name },
    { vips: ['10.30.0.9'], vipRanges: ['10.20.0.0/24', '2001:db8:5::/64'], originalDestination: true, endpoints: [], waypoint: 'demo/waypoint' },
    'no address is allocated; no endpoint (the selector is not used); the waypoint label binds it',
  );
  assert.deepEqual(out.model.workloads.find((w) => w.name === 'web-1')?.services, {}, 'a NONE entry maps no pod port');
  const cond = (n: string) => out.model.conditions.find((c) => c.objectKey === `ServiceEntry/demo/${n}` && c.type === 'Accepted')!;
  assert.equal(cond('db-net').reason, 'PartiallyApplied');
  assert.match(cond('db-net').message, /spec\.addresses: "nope\/8" .*; ignored/);
  const d = out.model.services.find((s) => s.hostname === '*.dyn.example.net')!;
  assert.deepEqual([d.vipRanges, d.originalDestination], [['10.40.0.0/16'], true]);
  assert.match(cond('dyn').message, /^resolution DYNAMIC_DNS: connections to its addresses on its ports are its host's and go to the address the client asked for; DYNAMIC_DNS is served as NONE/);
  assert.equal(out.model.services.some((s) => s.hostname === 'bare.example.net'), false);
  assert.match(cond('bare').message, /^resolution NONE: connections go to the address the client asked for$/);
  // Route configs: the entries with addresses (the wildcard one included) get one, bound as the Service is.
  const cfg = out.routes.routes.find((r) => r.hostname === 'db.example.net')!;
  assert.deepEqual({ waypoint: cfg.waypoint, aliases: cfg.aliases }, { waypoint: 'demo/waypoint', aliases: ['10.30.0.9'] });
  assert.ok(out.routes.routes.some((r) => r.hostname === '*.dyn.example.net'));
  assert.equal(out.routes.routes.some((r) => r.hostname === 'bare.example.net'), false);
  // The agent's lookup: any address of the range on a declared port is the host; an exact address too.
  const { WorkloadIndex } = await import('../../../src/shared/state/workloads.js');
  const index = new WorkloadIndex({ workloads: new Map(out.model.workloads.map((w) => [w.uid, w])), services: new Map(out.model.services.map((s) => [serviceResourceName(s), s])), authorizations: new Map() });
  assert.equal(index.serviceByVip('10.20.0.77', 5432)?.service.hostname, 'db.example.net');
  assert.equal(index.serviceByVip('10.30.0.9', 80)?.service.hostname, 'db.example.net');
  assert.equal(index.serviceByVip('10.40.3.3', 80)?.service.hostname, '*.dyn.example.net');
  assert.equal(index.serviceByVip('10.20.0.77', 81), undefined);
  assert.equal(index.serviceByVip('10.21.0.1', 5432), undefined);
});
