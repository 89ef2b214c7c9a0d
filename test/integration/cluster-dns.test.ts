/**
 * Local mode's cluster DNS server (src/local/cluster-dns.ts) on 127.0.0.1 against a real local API
 * server and a real upstream resolver of the test's: zone answers follow the API (watch), other
 * names are forwarded byte for byte over UDP and TCP, failures are SERVFAIL in bounded time, the
 * in-flight bound holds, malformed input is dropped or FORMERR; and the API server never hands out
 * the DNS ClusterIP.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { ClusterDns } from '../../src/local/cluster-dns.js';
import { KubeClient } from '../../src/local/kube-client.js';
import { CLASS_IN, RCODE_FORMERR, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_SERVFAIL, TYPE_A, parseMessage, serializeMessage } from '../../src/shared/dns/message.js';
import type { HostPort } from '../../src/shared/address.js';
import { dnsQuery, questionMessage } from '../helpers/dns-query.js';
import { silentLog, startTestServer, waitUntil, type TestServer } from './apiserver/helpers.js';

/** A resolver of the test's on 127.0.0.1 (UDP and TCP, one port): answers every query with A 192.0.2.1, or stays silent. */
async function startUpstream(t: { after(fn: () => unknown): void }, silent = false): Promise<{ server: HostPort; received: Buffer[] }> {
  const received: Buffer[] = [];
  const reply = (q: Buffer): Buffer => {
    const m = parseMessage(q);
    return serializeMessage({ ...m, header: { ...m.header, qr: true, ra: true }, answers: [{ name: m.questions[0]!.name, type: TYPE_A, class: CLASS_IN, ttl: 60, data: '192.0.2.1' }] });
  };
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, r) => {
    received.push(msg);
    if (!silent) udp.send(reply(msg), r.port, r.address);
  });
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', () => resolve()));
  const port = udp.address().port;
  const tcp = net.createServer((s) => {
    s.on('data', (d: Buffer) => {
      const q = d.subarray(2, 2 + d.readUInt16BE(0));
      received.push(Buffer.from(q));
      if (silent) return;
      const a = reply(q);
      const head = Buffer.alloc(2);
      head.writeUInt16BE(a.length);
      s.end(Buffer.concat([head, a]));
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => tcp.listen(port, '127.0.0.1', () => resolve()));
  t.after(() => {
    udp.close();
    tcp.close();
  });
  return { server: { host: '127.0.0.1', port }, received };
}

async function startDns(t: { after(fn: () => unknown): void }, api: TestServer, upstreams: HostPort[], extra: { maxInFlight?: number; upstreamTimeoutMs?: number } = {}): Promise<ClusterDns> {
  const client = new KubeClient({ server: api.server.url, caPem: api.server.caCertPem, token: () => api.server.adminToken });
  const dns = new ClusterDns({ client, host: '127.0.0.1', port: 0, domain: 'cluster.local', upstreams, log: silentLog, ...extra });
  await dns.start();
  t.after(() => dns.stop());
  return dns;
}

/** One UDP exchange of raw bytes with the server; undefined when nothing comes within `waitMs`. */
function exchange(port: number, bytes: Buffer, waitMs = 5000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, waitMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(bytes, port, '127.0.0.1');
  });
}

/**
 * Sends `junk`, then a good query, from one socket: the first datagram back must answer the good
 * query, so the junk got no answer (without waiting on a clock).
 */
async function firstAnswerAfter(port: number, junk: Buffer): Promise<number> {
  const probe = serializeMessage(questionMessage('kubernetes.default.svc.cluster.local', TYPE_A, 0x7777));
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error('no answer to the probe'));
    }, 5000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m.readUInt16BE(0));
    });
    s.send(junk, port, '127.0.0.1', () => s.send(probe, port, '127.0.0.1'));
  });
}

const service = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { ports: [{ port: 80 }], ...spec } });

test('cluster DNS: Services from the API (followed by watch), outside names forwarded byte for byte over UDP and TCP', async (t) => {
  const api = await startTestServer(t);
  const upstream = await startUpstream(t);
  const dns = await startDns(t, api, [upstream.server]);
  const ask = (name: string, transport: 'udp' | 'tcp' = 'udp') => dnsQuery('127.0.0.1', name, 'A', transport, 3000, dns.port);

  const k = await ask('kubernetes.default.svc.cluster.local');
  assert.equal(k.rcode, RCODE_NOERROR);
  assert.deepEqual(k.answers, ['10.96.0.1'], 'the kubernetes Service is answered');
  assert.equal((await ask('web.default.svc.cluster.local')).rcode, RCODE_NXDOMAIN);
  const created = await api.call('POST', '/api/v1/namespaces/default/services', service('web', {}));
  assert.equal(created.status, 201);
  const vip = (created.json as { spec: { clusterIP: string } }).spec.clusterIP;
  await waitUntil('the new Service is answered', async () => ((await ask('web.default.svc.cluster.local')).answers[0] === vip ? true : undefined));
  assert.deepEqual((await ask('web.default.svc.cluster.local', 'tcp')).answers, [vip], 'over TCP too');

  // Forwarding: the upstream gets the query's own bytes, the client gets the upstream's answer.
  const query = serializeMessage(questionMessage('www.example.org', TYPE_A, 0x5151));
  const answer = await exchange(dns.port, query);
  assert.ok(answer, 'the forwarded query is answered');
  assert.deepEqual(upstream.received.at(-1), query, 'the query reached the upstream unchanged');
  assert.deepEqual(parseMessage(answer).answers.map((a) => a.data), ['192.0.2.1']);
  assert.equal(parseMessage(answer).header.id, 0x5151);
  assert.deepEqual((await ask('www.example.org', 'tcp')).answers, ['192.0.2.1'], 'TCP queries are forwarded over TCP');
  assert.equal(upstream.received.length, 2, 'names inside cluster.local never went upstream');
});

test('cluster DNS: no resolver or a silent one is SERVFAIL in bounded time; the in-flight bound holds', async (t) => {
  const api = await startTestServer(t);
  const none = await startDns(t, api, []);
  assert.equal((await dnsQuery('127.0.0.1', 'example.org', 'A', 'udp', 5000, none.port)).rcode, RCODE_SERVFAIL, 'no resolver: SERVFAIL');

  const silent = await startUpstream(t, true);
  const dns = await startDns(t, api, [silent.server], { maxInFlight: 1, upstreamTimeoutMs: 4000 });
  let slowDone = false;
  const slow = dnsQuery('127.0.0.1', 'slow.example.org', 'A', 'udp', 10_000, dns.port).finally(() => (slowDone = true));
  await waitUntil('the first query is upstream', () => (silent.received.length >= 1 ? true : undefined));
  const refused = await dnsQuery('127.0.0.1', 'second.example.org', 'A', 'udp', 10_000, dns.port);
  assert.equal(refused.rcode, RCODE_SERVFAIL, 'over the in-flight bound: SERVFAIL');
  assert.equal(slowDone, false, 'answered while the first query still waits upstream');
  assert.equal(silent.received.length, 1, 'the second query never went upstream');
  assert.deepEqual((await dnsQuery('127.0.0.1', 'kubernetes.default.svc.cluster.local', 'A', 'udp', 3000, dns.port)).answers, ['10.96.0.1'], 'zone answers never wait on upstream');
  assert.equal((await slow).rcode, RCODE_SERVFAIL, 'an unanswered forward ends in SERVFAIL, not silence');
});

test('cluster DNS: malformed input is dropped or FORMERR, over UDP and TCP, and the server goes on', async (t) => {
  const api = await startTestServer(t);
  const dns = await startDns(t, api, []);
  assert.equal(await firstAnswerAfter(dns.port, Buffer.from([1, 2, 3])), 0x7777, 'shorter than a header: dropped');
  const response = serializeMessage({ ...questionMessage('x.cluster.local', TYPE_A, 7), header: { ...questionMessage('x', TYPE_A, 7).header, qr: true } });
  assert.equal(await firstAnswerAfter(dns.port, response), 0x7777, 'a response is not answered (no reflection loops)');
  assert.equal(await firstAnswerAfter(dns.port, serializeMessage(questionMessage('x.cluster.local', TYPE_A, 8))), 8, 'the probe can see an answer to the first datagram');
  const cut = Buffer.from([0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x3f, 0x61]);
  const formerr = await exchange(dns.port, cut);
  assert.ok(formerr);
  assert.deepEqual([parseMessage(formerr).header.id, parseMessage(formerr).header.rcode], [0xabcd, RCODE_FORMERR]);
  const loop = Buffer.from([0, 9, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
  assert.equal(parseMessage((await exchange(dns.port, loop))!).header.rcode, RCODE_FORMERR, 'a compression loop: FORMERR');

  const tcpAnswer = await new Promise<Buffer>((resolve, reject) => {
    const s = net.connect(dns.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        s.destroy();
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      }
    });
    const head = Buffer.alloc(2);
    head.writeUInt16BE(cut.length);
    // The length in two writes, then the message: framing does not depend on segment boundaries.
    s.write(head.subarray(0, 1));
    setTimeout(() => s.write(Buffer.concat([head.subarray(1), cut])), 50);
  });
  assert.equal(parseMessage(tcpAnswer).header.rcode, RCODE_FORMERR);
  assert.deepEqual((await dnsQuery('127.0.0.1', 'kubernetes.default.svc.cluster.local', 'A', 'udp', 3000, dns.port)).answers, ['10.96.0.1'], 'still answering');
});

test('ClusterIP allocation never hands out the DNS address (the tenth of the range); it can be asked for', async (t) => {
  const api = await startTestServer(t);
  const ips: string[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await api.call('POST', '/api/v1/namespaces/default/services', service(`s${i}`, {}));
    assert.equal(r.status, 201);
    ips.push((r.json as { spec: { clusterIP: string } }).spec.clusterIP);
  }
  assert.equal(ips.includes('10.96.0.10'), false, ips.join(' '));
  assert.ok(ips.includes('10.96.0.11'), 'allocation goes on past it');
  const dnsSvc = await api.call('POST', '/api/v1/namespaces/default/services', service('dns', { clusterIP: '10.96.0.10' }));
  assert.equal(dnsSvc.status, 201, dnsSvc.text);
});

test('cluster DNS: a taken port is a clear setup error naming the address', async (t) => {
  const api = await startTestServer(t);
  const holder = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => holder.bind(0, '127.0.0.1', () => resolve()));
  t.after(() => holder.close());
  const port = holder.address().port;
  const client = new KubeClient({ server: api.server.url, caPem: api.server.caCertPem, token: () => api.server.adminToken });
  const dns = new ClusterDns({ client, host: '127.0.0.1', port, domain: 'cluster.local', upstreams: [], log: silentLog });
  t.after(() => dns.stop());
  await assert.rejects(dns.start(), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'AMBIT_ERR_LOCAL_SETUP');
    assert.match(e.message, new RegExp(`cannot serve the cluster DNS on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    return true;
  });
});
