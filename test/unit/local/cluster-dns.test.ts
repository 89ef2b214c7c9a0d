/** Local mode's cluster DNS, pure: which names in cluster.local get which answer, and what is forwarded. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildClusterDnsIndex, CLUSTER_DNS_TTL_SECONDS, decideClusterDnsQuery } from '../../../src/local/cluster-dns-records.js';
import { usableUpstreams } from '../../../src/local/cluster-dns.js';
import {
  CLASS_IN,
  OPCODE_UPDATE,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NOTIMP,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
  TYPE_NS,
  TYPE_OPT,
  TYPE_SOA,
  TYPE_SRV,
  TYPE_TXT,
  encodeName,
  parseMessage,
  serializeMessage,
  type DnsMessage,
} from '../../../src/shared/dns/message.js';
import type { KubeObject } from '../../../src/controller/objects.js';
import { questionMessage } from '../../helpers/dns-query.js';

const service = (name: string, ns: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec });
const slice = (svc: string, ns: string, endpoints: Array<{ ip: string; ready?: boolean }>, addressType = 'IPv4'): KubeObject => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: `${svc}-${endpoints.length}`, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
  addressType,
  endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: e.ready === undefined ? {} : { ready: e.ready } })),
  ports: [],
});

const index = buildClusterDnsIndex(
  'cluster.local',
  [
    service('web', 'shop', { clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20'] }),
    service('dual', 'shop', { clusterIP: '10.96.0.21', clusterIPs: ['10.96.0.21', 'fd00::21'] }),
    service('db', 'shop', { clusterIP: 'None' }),
    service('empty', 'shop', { clusterIP: 'None' }),
    service('sts', 'shop', { clusterIP: 'None', publishNotReadyAddresses: true }),
    service('ext', 'shop', { type: 'ExternalName', externalName: 'Api.Example.COM.' }),
    service('kube-dns', 'kube-system', { clusterIP: '10.96.0.10' }),
  ],
  [
    slice('db', 'shop', [{ ip: '10.244.1.7' }, { ip: '10.244.2.3', ready: true }, { ip: '10.244.2.4', ready: false }]),
    slice('db', 'shop', [{ ip: '10.244.1.7' }]),
    slice('db', 'other', [{ ip: '10.244.9.9' }]),
    slice('sts', 'shop', [{ ip: '10.244.3.3', ready: false }]),
    slice('empty', 'shop', [{ ip: '10.244.4.4', ready: false }]),
  ],
);

function query(name: string, type = TYPE_A, extra: Partial<DnsMessage> = {}): DnsMessage {
  return questionMessage(name, type, 4242, extra);
}

/** The decision as it goes on the wire and comes back (proves the answer serializes). */
function ask(name: string, type = TYPE_A, extra: Partial<DnsMessage> = {}): DnsMessage | 'forward' {
  const d = decideClusterDnsQuery(query(name, type, extra), index);
  if (d.kind === 'forward') return 'forward';
  const m = parseMessage(serializeMessage(d.response));
  assert.equal(m.header.id, 4242);
  assert.equal(m.header.qr, true);
  assert.equal(m.header.rd, true, 'RD is echoed');
  return m;
}

function rcodeOf(r: DnsMessage | 'forward'): number | 'forward' {
  return r === 'forward' ? r : r.header.rcode;
}

function data(r: DnsMessage | 'forward'): unknown[] {
  assert.notEqual(r, 'forward');
  return (r as DnsMessage).answers.map((a) => a.data);
}

test('a ClusterIP Service answers A with its ClusterIP, authoritatively, with TTL 30 s', () => {
  const r = ask('web.shop.svc.cluster.local') as DnsMessage;
  assert.equal(r.header.rcode, RCODE_NOERROR);
  assert.equal(r.header.aa, true);
  assert.deepEqual(r.answers.map((a) => [a.name, a.type, a.ttl, a.data]), [['web.shop.svc.cluster.local', TYPE_A, CLUSTER_DNS_TTL_SECONDS, '10.96.0.20']]);
  assert.deepEqual(data(ask('dual.shop.svc.cluster.local', TYPE_AAAA)), ['fd00::21'], 'a dual-stack Service answers AAAA with its IPv6 ClusterIP');
  assert.deepEqual(data(ask('WEB.Shop.svc.Cluster.Local')), ['10.96.0.20'], 'names are case-insensitive');
});

test('a name with no record of the asked type is NOERROR with no answer and the SOA (NODATA), never NXDOMAIN', () => {
  for (const [name, type] of [
    ['web.shop.svc.cluster.local', TYPE_AAAA],
    ['web.shop.svc.cluster.local', TYPE_SRV],
    ['web.shop.svc.cluster.local', TYPE_TXT],
    ['cluster.local', TYPE_A],
    ['svc.cluster.local', TYPE_A],
    ['shop.svc.cluster.local', TYPE_A],
  ] as const) {
    const r = ask(name, type) as DnsMessage;
    assert.equal(r.header.rcode, RCODE_NOERROR, `${name} type ${type}`);
    assert.deepEqual(r.answers, [], `${name} type ${type}`);
    assert.deepEqual(r.authorities.map((a) => [a.name, a.type]), [['cluster.local', TYPE_SOA]]);
  }
});

test('unknown names inside cluster.local are NXDOMAIN with the SOA', () => {
  for (const name of ['nope.shop.svc.cluster.local', 'web.other.svc.cluster.local', 'nons.svc.cluster.local', 'x.web.shop.svc.cluster.local', '10-244-1-7.shop.pod.cluster.local', 'web.shop.cluster.local', 'foo.cluster.local']) {
    const r = ask(name) as DnsMessage;
    assert.equal(r.header.rcode, RCODE_NXDOMAIN, name);
    assert.equal(r.authorities[0]?.type, TYPE_SOA, name);
  }
});

test('a headless Service answers its ready endpoint addresses, deduplicated and sorted, from its own namespace only', () => {
  assert.deepEqual(data(ask('db.shop.svc.cluster.local')), ['10.244.1.7', '10.244.2.3']);
  assert.deepEqual(data(ask('sts.shop.svc.cluster.local')), ['10.244.3.3'], 'publishNotReadyAddresses publishes not-ready endpoints');
  assert.equal(rcodeOf(ask('empty.shop.svc.cluster.local')), RCODE_NXDOMAIN, 'a headless Service without a ready endpoint has no name (as CoreDNS)');
});

test('an ExternalName Service answers a CNAME to its external name', () => {
  const r = ask('ext.shop.svc.cluster.local') as DnsMessage;
  assert.deepEqual(r.answers.map((a) => [a.type, a.data]), [[TYPE_CNAME, 'api.example.com']]);
});

test('the zone apex answers SOA and NS', () => {
  assert.equal((ask('cluster.local', TYPE_SOA) as DnsMessage).answers[0]?.type, TYPE_SOA);
  assert.deepEqual(data(ask('cluster.local', TYPE_NS)), [encodeName('ns.dns.cluster.local')]);
});

test('names outside the zone are forwarded, whatever their type', () => {
  for (const name of ['example.com', 'cluster.local.example.com', 'xcluster.local', '']) assert.equal(ask(name), 'forward', name);
  assert.equal(ask('example.com', TYPE_SRV), 'forward');
});

test('odd queries get a clear error: several questions FORMERR, other opcodes NOTIMP, other classes REFUSED', () => {
  const two = query('web.shop.svc.cluster.local');
  two.questions.push({ name: 'db.shop.svc.cluster.local', type: TYPE_A, class: CLASS_IN });
  assert.equal((decideClusterDnsQuery(two, index) as { response: DnsMessage }).response.header.rcode, RCODE_FORMERR);
  assert.equal(rcodeOf(ask('web.shop.svc.cluster.local', TYPE_A, { header: { id: 4242, qr: false, opcode: OPCODE_UPDATE, aa: false, tc: false, rd: true, ra: false, z: 0, rcode: 0 } })), RCODE_NOTIMP);
  const chaos = query('web.shop.svc.cluster.local');
  chaos.questions[0]!.class = 3;
  assert.equal((decideClusterDnsQuery(chaos, index) as { response: DnsMessage }).response.header.rcode, RCODE_REFUSED);
  const none = query('x');
  none.questions = [];
  assert.equal((decideClusterDnsQuery(none, index) as { response: DnsMessage }).response.header.rcode, RCODE_FORMERR);
});

test('an EDNS query gets an OPT record back', () => {
  const r = ask('web.shop.svc.cluster.local', TYPE_A, { additionals: [{ name: '', type: TYPE_OPT, class: 4096, ttl: 0, data: Buffer.alloc(0) }] }) as DnsMessage;
  assert.equal(r.additionals[0]?.type, TYPE_OPT);
  assert.equal(r.additionals[0]?.class, 1232);
});

test('the index follows another cluster domain', () => {
  const other = buildClusterDnsIndex('corp.internal.', [service('web', 'a', { clusterIP: '10.0.0.5' })], []);
  assert.equal(other.domain, 'corp.internal');
  const d = decideClusterDnsQuery(query('web.a.svc.corp.internal'), other);
  assert.deepEqual(d.kind === 'answer' ? d.response.answers.map((a) => a.data) : d.kind, ['10.0.0.5']);
  assert.equal(decideClusterDnsQuery(query('web.a.svc.cluster.local'), other).kind, 'forward');
});

test('upstreams: the cluster DNS never forwards to itself', () => {
  const self = { host: '10.240.3.1', port: 53 };
  assert.deepEqual(usableUpstreams([{ host: '10.240.3.1', port: 53 }, { host: '10.255.255.53', port: 53 }], self), [{ host: '10.255.255.53', port: 53 }]);
  assert.deepEqual(usableUpstreams([self], self), []);
});
