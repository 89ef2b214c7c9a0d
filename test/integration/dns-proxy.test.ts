/**
 * The DNS proxy's handling over real loopback sockets (no netns: its listeners are opened on
 * 127.0.0.1 by the test's seams): local answers and truncation over UDP, TCP framing, forwarding
 * to a resolver the test runs, SERVFAIL when upstream is silent, FORMERR for bad queries,
 * silence for non-queries, and the per-pod bound on queries waiting upstream.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import { silentLogger } from '../../src/shared/log.js';
import { createRegistry, type Registry } from '../../src/shared/metrics.js';
import type { Service } from '../../src/shared/model.js';
import { buildDnsTable } from '../../src/agent/dns/answer.js';
import { DnsProxy } from '../../src/agent/dns/proxy.js';
import { createDnsMetrics } from '../../src/agent/dns/metrics.js';
import { DnsForwarder } from '../../src/shared/dns/forwarder.js';
import {
  CLASS_IN,
  RCODE_FORMERR,
  RCODE_NXDOMAIN,
  RCODE_SERVFAIL,
  TYPE_A,
  TYPE_OPT,
  TYPE_TXT,
  parseMessage,
  serializeMessage,
  type DnsMessage,
} from '../../src/shared/dns/message.js';

function query(name: string, id: number, type = TYPE_A, edns?: number): Buffer {
  const m: DnsMessage = {
    header: { id, qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, z: 0, rcode: 0 },
    questions: [{ name, type, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: edns ? [{ name: '', type: TYPE_OPT, class: edns, ttl: 0, data: Buffer.alloc(0) }] : [],
  };
  return serializeMessage(m);
}

const many = Array.from({ length: 30 }, (_, i) => `240.240.9.${i + 1}`);
const services: Service[] = [
  { name: 'echo', namespace: 'demo', hostname: 'echo.demo.svc.cluster.local', vips: ['10.96.0.9'], ports: [], subjectAltNames: [], routingPreference: [], endpoints: [] },
  { name: 'big', namespace: 'egress', hostname: 'big.example.com', vips: many, ports: [], subjectAltNames: [], routingPreference: [], endpoints: [] },
];

interface Harness {
  udpPort: number;
  tcpPort: number;
  registry: Registry;
  upstreamAsked: string[];
  /** Makes the upstream stop answering (queries then time out). */
  silence(): void;
  proxy: DnsProxy;
}

async function start(t: TestContext, o: { maxInFlightPerPod?: number; upstreamTimeoutMs?: number; maxTcpConnectionsPerPod?: number } = {}): Promise<Harness> {
  // Upstream: answers every name with TXT-less NXDOMAIN unless silenced.
  const asked: string[] = [];
  let silent = false;
  const up = dgram.createSocket('udp4');
  up.on('message', (msg, r) => {
    const m = parseMessage(msg);
    asked.push(m.questions[0]?.name ?? '');
    if (silent) return;
    up.send(serializeMessage({ ...m, header: { ...m.header, qr: true, ra: true, rcode: RCODE_NXDOMAIN } }), r.port, r.address);
  });
  await new Promise<void>((r) => up.bind(0, '127.0.0.1', () => r()));
  const registry = createRegistry();
  const sockets: { udp?: dgram.Socket; tcp?: net.Server } = {};
  const proxy = new DnsProxy({
    log: silentLogger(),
    metrics: createDnsMetrics(registry),
    forwarder: new DnsForwarder({ servers: [{ host: '127.0.0.1', port: up.address().port }], timeoutMs: o.upstreamTimeoutMs ?? 300 }),
    port: 0,
    ...(o.maxInFlightPerPod !== undefined ? { maxInFlightPerPod: o.maxInFlightPerPod } : {}),
    ...(o.maxTcpConnectionsPerPod !== undefined ? { maxTcpConnectionsPerPod: o.maxTcpConnectionsPerPod } : {}),
    openUdp: (_netns, address, port) => {
      const s = dgram.createSocket('udp4');
      s.bind(port, address);
      sockets.udp = s;
      return s;
    },
    openTcp: (_netns, address, port) => (sockets.tcp = net.createServer().listen(port, address)),
  });
  proxy.setTable(buildDnsTable(services));
  proxy.addPod({ uid: 'p1', netnsPath: '/proc/self/ns/net', namespace: 'demo', canonicalService: 'client', canonicalRevision: 'v1', ipv6: false });
  await Promise.all([once(sockets.udp!, 'listening'), once(sockets.tcp!, 'listening')]);
  t.after(() => {
    proxy.close();
    up.close();
  });
  return {
    udpPort: sockets.udp!.address().port,
    tcpPort: (sockets.tcp!.address() as net.AddressInfo).port,
    registry,
    upstreamAsked: asked,
    silence: () => (silent = true),
    proxy,
  };
}

/** Sends datagrams and collects replies until `count` arrived or the time is up. */
async function udpAsk(port: number, msgs: Buffer[], count = msgs.length, waitMs = 2000): Promise<Buffer[]> {
  const s = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, waitMs);
    s.on('message', (m) => {
      got.push(m);
      if (got.length >= count) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  for (const m of msgs) s.send(m, port, '127.0.0.1');
  await done;
  s.close();
  return got;
}

test('UDP: a Service short name is answered locally; a big answer is truncated without EDNS and fits with it', async (t) => {
  const h = await start(t);
  const [a] = await udpAsk(h.udpPort, [query('echo', 1)]);
  const m = parseMessage(a!);
  assert.deepEqual(m.answers.map((r) => r.data), ['10.96.0.9']);
  const [plain] = await udpAsk(h.udpPort, [query('big.example.com', 2)]);
  const cut = parseMessage(plain!);
  assert.equal(cut.header.tc, true, 'over 512 bytes without EDNS: TC, the client retries over TCP');
  assert.equal(cut.answers.length, 0);
  const [edns] = await udpAsk(h.udpPort, [query('big.example.com', 3, TYPE_A, 4096)]);
  assert.equal(parseMessage(edns!).answers.length, 30);
  assert.equal(h.upstreamAsked.length, 0);
});

test('TCP: several queries on one connection, local and forwarded, each framed', async (t) => {
  const h = await start(t);
  // The upstream only speaks UDP here: a TCP forward fails and is SERVFAIL, the local answer is not affected.
  const s = net.connect(h.tcpPort, '127.0.0.1');
  await once(s, 'connect');
  const frame = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]);
  s.write(Buffer.concat([frame(query('big.example.com', 10)), frame(query('outside.test', 11))]));
  let buf = Buffer.alloc(0);
  const replies: DnsMessage[] = [];
  for await (const d of s) {
    buf = Buffer.concat([buf, d as Buffer]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      replies.push(parseMessage(buf.subarray(2, 2 + buf.readUInt16BE(0))));
      buf = buf.subarray(2 + buf.readUInt16BE(0));
    }
    if (replies.length === 2) break;
  }
  s.destroy();
  const byId = new Map(replies.map((r) => [r.header.id, r]));
  assert.equal(byId.get(10)!.answers.length, 30, 'no truncation over TCP');
  assert.equal(byId.get(11)!.header.rcode, RCODE_SERVFAIL, 'no TCP resolver upstream: SERVFAIL');
  const text = await h.registry.metrics();
  assert.match(text, /istio_dns_upstream_failures_total\{request_query_type="a",request_protocol="tcp",source_canonical_service="client",source_canonical_revision="v1"\} 1/);
});

test('forwarded: other names and types go upstream unchanged; SERVFAIL when upstream is silent', async (t) => {
  const h = await start(t);
  const [nx, txt] = await udpAsk(h.udpPort, [query('outside.test', 20), query('echo', 21, TYPE_TXT)]);
  const replies = [parseMessage(nx!), parseMessage(txt!)].sort((x, y) => x.header.id - y.header.id);
  assert.deepEqual(replies.map((r) => r.header.rcode), [RCODE_NXDOMAIN, RCODE_NXDOMAIN], "upstream's answers, passed through");
  assert.deepEqual(h.upstreamAsked.sort(), ['echo', 'outside.test']);
  h.silence();
  const [fail] = await udpAsk(h.udpPort, [query('slow.test', 22)]);
  assert.equal(parseMessage(fail!).header.rcode, RCODE_SERVFAIL);
  const text = await h.registry.metrics();
  assert.match(text, /istio_dns_upstream_requests_total\{request_query_type="a",request_protocol="udp",source_canonical_service="client",source_canonical_revision="v1"\} 2/);
  assert.match(text, /istio_dns_upstream_requests_total\{request_query_type="txt",request_protocol="udp",[^}]*\} 1/);
  assert.match(text, /istio_dns_upstream_failures_total\{request_query_type="a",request_protocol="udp",[^}]*\} 1/);
});

test('bad input: garbage after a header is FORMERR with its id; responses and short messages get nothing', async (t) => {
  const h = await start(t);
  const garbage = Buffer.concat([Buffer.from('abcd01000001000000000000', 'hex'), Buffer.from([0xc0])]);
  const response = Buffer.from(query('echo', 5));
  response[2] = response[2]! | 0x80;
  const got = await udpAsk(h.udpPort, [garbage, response, Buffer.from([1, 2, 3])], 3, 800);
  assert.equal(got.length, 1, 'only the readable query is answered');
  const m = parseMessage(got[0]!);
  assert.equal(m.header.id, 0xabcd);
  assert.equal(m.header.rcode, RCODE_FORMERR);
  const [ok] = await udpAsk(h.udpPort, [query('echo', 6)]);
  assert.equal(parseMessage(ok!).answers.length, 1, 'the proxy still serves');
});

test('at most maxInFlightPerPod queries wait upstream; the rest get SERVFAIL at once', async (t) => {
  // The upstream timeout is far beyond the wait, so the replies seen are the refusals, not timeouts.
  const h = await start(t, { maxInFlightPerPod: 2, upstreamTimeoutMs: 3000 });
  h.silence();
  const got = await udpAsk(h.udpPort, [query('a.test', 30), query('b.test', 31), query('c.test', 32), query('d.test', 33)], 2, 2000);
  assert.deepEqual(got.map((m) => parseMessage(m).header.rcode), [RCODE_SERVFAIL, RCODE_SERVFAIL], 'two refused before the upstream timeout');
  assert.equal(h.upstreamAsked.length, 2, 'only two reached upstream');
});

test('a pod removed while its query is upstream: the late answer is dropped, nothing throws', async (t) => {
  const h = await start(t, { upstreamTimeoutMs: 200 });
  h.silence();
  const s = dgram.createSocket('udp4');
  t.after(() => s.close());
  const got: Buffer[] = [];
  s.on('message', (m) => got.push(m));
  s.send(query('late.test', 40), h.udpPort, '127.0.0.1');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(h.upstreamAsked, ['late.test']);
  h.proxy.removePod('p1');
  assert.equal(h.proxy.hasPod('p1'), false);
  // Past the upstream timeout: the SERVFAIL has nowhere to go.
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(got.length, 0);
});

test('TCP connections per pod are bounded: one over the limit is closed at once, the open ones keep working', async (t) => {
  const h = await start(t, { maxTcpConnectionsPerPod: 2 });
  const open = async (): Promise<net.Socket> => {
    const s = net.connect(h.tcpPort, '127.0.0.1');
    s.on('error', () => undefined);
    await once(s, 'connect');
    return s;
  };
  const ask = async (s: net.Socket, id: number): Promise<string> => {
    const q = query('echo', id);
    s.write(Buffer.concat([Buffer.from([q.length >> 8, q.length & 255]), q]));
    const [d] = (await once(s, 'data')) as [Buffer];
    return String(parseMessage(d.subarray(2)).answers[0]!.data);
  };
  const [a, b] = [await open(), await open()];
  // An answer on each: the listener has accepted (and counts) both.
  assert.equal(await ask(a, 50), '10.96.0.9');
  assert.equal(await ask(b, 51), '10.96.0.9');
  const c = await open();
  await once(c, 'close');
  assert.equal(await ask(a, 52), '10.96.0.9', 'the open ones keep working');
  for (const s of [a, b]) s.destroy();
});
