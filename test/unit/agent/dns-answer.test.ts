/** The DNS proxy's decision: which names are answered from the mesh config, and what is forwarded. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDnsTable, decideDnsQuery, LOCAL_TTL_SECONDS, lookupHost } from '../../../src/agent/dns/answer.js';
import { OPCODE_UPDATE, RCODE_NOERROR, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_OPT, TYPE_SRV, type DnsMessage } from '../../../src/shared/dns/message.js';
import type { Service } from '../../../src/shared/model.js';
import { questionMessage } from '../../helpers/dns-query.js';

function svc(name: string, namespace: string, hostname: string, vips: string[], extra: Partial<Service> = {}): Service {
  return { name, namespace, hostname, vips, ports: [], subjectAltNames: [], routingPreference: [], endpoints: [], ...extra };
}

const table = buildDnsTable([
  svc('reviews', 'bookinfo', 'reviews.bookinfo.svc.cluster.local', ['10.96.0.10', 'fd00::10']),
  svc('headless', 'bookinfo', 'headless.bookinfo.svc.cluster.local', []),
  svc('v4only', 'other', 'v4only.other.svc.cluster.local', ['10.96.0.11']),
  svc('private', 'other', 'private.other.svc.cluster.local', ['10.96.0.12'], { exportTo: ['other'] }),
  svc('httpbin-ext', 'egress', 'httpbin.example.com', ['240.240.7.9']),
  svc('wild', 'egress', '*.wild.example.org', ['240.240.3.3']),
  svc('deeper', 'egress', '*.a.wild.example.org', ['240.240.4.4']),
  svc('nodns', 'egress', '*.nodns.example.net', []),
]);

function q(name: string, type = TYPE_A, extra: Partial<DnsMessage> = {}): DnsMessage {
  return questionMessage(name, type, 99, extra);
}

function answered(name: string, type = TYPE_A, ns = 'bookinfo'): string[] | 'forward' {
  const d = decideDnsQuery(q(name, type), table, { namespace: ns });
  if (d.kind === 'forward') return 'forward';
  assert.equal(d.response.header.rcode, RCODE_NOERROR);
  assert.equal(d.response.header.id, 99);
  assert.equal(d.response.header.qr, true);
  assert.equal(d.response.header.rd, true);
  return d.response.answers.map((a) => `${a.name} ${a.type === TYPE_CNAME ? 'CNAME' : a.type === TYPE_A ? 'A' : 'AAAA'} ${String(a.data)}`);
}

test('a Service answers by its FQDN and by the short forms a pod of its namespace asks', () => {
  for (const name of ['reviews.bookinfo.svc.cluster.local', 'reviews', 'reviews.bookinfo', 'reviews.bookinfo.svc']) {
    assert.deepEqual(answered(name), [`${name} A 10.96.0.10`], name);
  }
  assert.deepEqual(answered('reviews', TYPE_AAAA), ['reviews AAAA fd00::10']);
});

test('the short name is the asking pod namespace only; other namespaces use svc.ns', () => {
  assert.equal(answered('reviews', TYPE_A, 'other'), 'forward');
  assert.deepEqual(answered('reviews.bookinfo', TYPE_A, 'other'), ['reviews.bookinfo A 10.96.0.10']);
});

test('only the other family: NODATA (NOERROR, no answers), never NXDOMAIN', () => {
  assert.deepEqual(answered('v4only.other', TYPE_AAAA), []);
});

test('hosts without addresses (headless, wildcard with none) and unknown names are forwarded', () => {
  assert.equal(answered('headless'), 'forward');
  assert.equal(answered('x.nodns.example.net'), 'forward');
  assert.equal(answered('www.google.com'), 'forward');
  assert.equal(answered('nope.bookinfo.svc.cluster.local'), 'forward');
});

test('exportTo hides a Service from other namespaces', () => {
  assert.equal(answered('private.other', TYPE_A, 'bookinfo'), 'forward');
  assert.deepEqual(answered('private', TYPE_A, 'other'), ['private A 10.96.0.12']);
});

test('a ServiceEntry host answers with its allocated address; with a search suffix through a CNAME', () => {
  assert.deepEqual(answered('httpbin.example.com'), ['httpbin.example.com A 240.240.7.9']);
  for (const suffix of ['bookinfo.svc.cluster.local', 'svc.cluster.local', 'cluster.local']) {
    assert.deepEqual(answered(`httpbin.example.com.${suffix}`), [`httpbin.example.com.${suffix} CNAME httpbin.example.com`, 'httpbin.example.com A 240.240.7.9']);
  }
  assert.equal(answered('httpbin.example.com.other.svc.cluster.local'), 'forward', "another namespace's search domain is not the pod's");
});

test('wildcard hosts match names below them, the longest suffix first', () => {
  assert.deepEqual(answered('api.wild.example.org'), ['api.wild.example.org A 240.240.3.3']);
  assert.deepEqual(answered('x.y.wild.example.org'), ['x.y.wild.example.org A 240.240.3.3']);
  assert.deepEqual(answered('b.a.wild.example.org'), ['b.a.wild.example.org A 240.240.4.4']);
  assert.equal(answered('wild.example.org'), 'forward', 'the wildcard does not cover its own suffix');
  assert.deepEqual(lookupHost(table, 'api.wild.example.org.svc.cluster.local', 'bookinfo')?.cname, 'api.wild.example.org');
});

test('other types, classes, opcodes and multi-question messages are forwarded', () => {
  const ns = { namespace: 'bookinfo' };
  assert.equal(decideDnsQuery(q('reviews', TYPE_SRV), table, ns).kind, 'forward');
  assert.equal(decideDnsQuery({ ...q('reviews'), questions: [{ name: 'reviews', type: TYPE_A, class: 3 }] }, table, ns).kind, 'forward');
  const update = q('reviews');
  update.header.opcode = OPCODE_UPDATE;
  assert.equal(decideDnsQuery(update, table, ns).kind, 'forward', 'DNS UPDATE goes upstream unchanged');
  assert.equal(decideDnsQuery({ ...q('reviews'), questions: [...q('reviews').questions, ...q('x').questions] }, table, ns).kind, 'forward');
  assert.equal(decideDnsQuery({ ...q('reviews'), questions: [] }, table, ns).kind, 'forward');
});

test('answers carry the short TTL and an OPT record when the query had one', () => {
  const d = decideDnsQuery(q('reviews', TYPE_A, { additionals: [{ name: '', type: TYPE_OPT, class: 4096, ttl: 0, data: Buffer.alloc(0) }] }), table, { namespace: 'bookinfo' });
  assert.equal(d.kind, 'answer');
  if (d.kind !== 'answer') return;
  assert.equal(d.response.answers[0]!.ttl, LOCAL_TTL_SECONDS);
  assert.equal(d.response.additionals[0]!.type, TYPE_OPT);
  assert.equal(d.response.header.aa, true);
});

test('the cluster domain comes from the Services', () => {
  const t = buildDnsTable([svc('a', 'n', 'a.n.svc.corp.internal', ['10.0.0.1']), svc('e', 'n', 'ext.example.com', ['240.240.0.1'])]);
  assert.deepEqual(t.domains, ['corp.internal']);
  assert.equal(lookupHost(t, 'ext.example.com.n.svc.corp.internal', 'n')?.host.name, 'ext.example.com');
  assert.equal(lookupHost(t, 'ext.example.com.n.svc.cluster.local', 'n'), undefined);
});
