/**
 * The agent's DNS proxy on real namespaces, with BPF capture and with the nft fallback: a client
 * in an enrolled pod asks a resolver address that does not exist (10.X.0.53, blackholed); capture
 * takes its queries to the agent's 15053 in the pod, which answers a ServiceEntry host with its
 * allocated 240.240.x.y address and a Service's short name with its ClusterIP, and forwards other
 * names to a DNS server this test runs on 127.0.0.1, over UDP and TCP. The client (c-ares through
 * Node's dns.Resolver, raw UDP and raw TCP) sees every reply as coming from the resolver it
 * asked, then connects to the entry's address through the mesh. The istio_dns_* metrics count it
 * all; a pod annotated out of DNS capture is not answered.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { once } from 'node:events';
import dgram from 'node:dgram';
import net from 'node:net';
import { silentLogger } from '../../src/shared/log.js';
import type { Registry } from '../../src/shared/metrics.js';
import type { Service, Workload } from '../../src/shared/model.js';
import { ISTIO_METRIC_LABELS } from '../../src/shared/istio-metrics.js';
import type { Capture } from '../../src/agent/capture/capture.js';
import { NftCapture } from '../../src/agent/capture/nft.js';
import type { BpfCapture } from '../../src/agent/capture/redirect.js';
import { createNetnsDnsProxy } from '../../src/agent/dns/netns-proxy.js';
import { CLASS_IN, TYPE_A, parseMessage, serializeMessage, type DnsMessage } from '../../src/shared/dns/message.js';
import { testWorkload } from '../helpers/loopback-net.js';
import { bpfSkipReason, captureTest, nftSkipReason, startApps, type Pod } from './fixture.js';
import { snapshot, startWorkerAgent } from './worker-agent.js';

const SE_HOST = 'httpbin.example.com';
const SE_VIP = '240.240.3.4';
const SVC_VIP = '10.96.7.7';
const OUTSIDE = 'outside.test';
const OUTSIDE_IP = '203.0.113.7';

/** A DNS server on 127.0.0.1 (UDP and TCP, one port) answering OUTSIDE, NXDOMAIN otherwise; records what it was asked. */
async function startUpstream(t: { after(fn: () => Promise<void> | void): void }): Promise<{ port: number; asked: string[] }> {
  const asked: string[] = [];
  const answer = (q: Buffer): Buffer => {
    const m = parseMessage(q);
    const name = m.questions[0]?.name ?? '';
    const known = name === OUTSIDE && m.questions[0]?.type === TYPE_A;
    const r: DnsMessage = {
      header: { ...m.header, qr: true, ra: true, rcode: known ? 0 : 3 },
      questions: m.questions,
      answers: known ? [{ name, type: TYPE_A, class: CLASS_IN, ttl: 60, data: OUTSIDE_IP }] : [],
      authorities: [],
      additionals: [],
    };
    return serializeMessage(r);
  };
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    asked.push(`udp ${parseMessage(msg).questions[0]?.name}`);
    udp.send(answer(msg), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
  const port = udp.address().port;
  const tcp = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + q.length);
        asked.push(`tcp ${parseMessage(q).questions[0]?.name}`);
        const a = answer(q);
        const head = Buffer.alloc(2);
        head.writeUInt16BE(a.length);
        s.write(Buffer.concat([head, a]));
      }
    });
  });
  await new Promise<void>((r) => tcp.listen(port, '127.0.0.1', () => r()));
  t.after(async () => {
    udp.close();
    await new Promise<void>((r) => tcp.close(() => r()));
  });
  return { port, asked };
}

/**
 * Runs in the pod (ip netns exec): c-ares (connected UDP) for three names, raw unconnected UDP
 * and raw TCP queries to resolver:53 (printing the reply's source), then a connection to the
 * entry's address on port 80. Prints one JSON line.
 */
const CLIENT = String.raw`
const dns = require('node:dns');
const dgram = require('node:dgram');
const net = require('node:net');
const [resolver, seHost, seVip, mode, resolver6] = process.argv.slice(1);
function query(id, name) {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const head = Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([head, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}
function lastA(msg) {
  // the last 4 bytes of a reply whose last record is an A record
  return msg.length >= 4 ? [...msg.subarray(msg.length - 4)].join('.') : '';
}
function udp(name, dst = resolver, type = 'udp4') {
  return new Promise((resolve) => {
    const s = dgram.createSocket(type);
    const timer = setTimeout(() => { s.close(); resolve({ error: 'timeout' }); }, 1500);
    s.on('message', (m, r) => { clearTimeout(timer); s.close(); resolve({ from: r.address + ':' + r.port, rcode: m[3] & 15, a: lastA(m), id: m.readUInt16BE(0) }); });
    s.send(query(4242, name), 53, dst);
  });
}
function tcp(names) {
  return new Promise((resolve) => {
    const s = net.connect(53, resolver);
    const out = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { s.destroy(); resolve({ error: 'timeout', out }); }, 3000);
    let peer;
    s.on('connect', () => { peer = s.remoteAddress + ':' + s.remotePort; for (const [i, n] of names.entries()) { const q = query(100 + i, n); s.write(Buffer.concat([Buffer.from([q.length >> 8, q.length & 255]), q])); } });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + m.length);
        out.push({ id: m.readUInt16BE(0), rcode: m[3] & 15, a: lastA(m) });
      }
      if (out.length === names.length) { clearTimeout(timer); s.destroy(); resolve({ peer, out: out.sort((x, y) => x.id - y.id) }); }
    });
    s.on('error', (e) => { clearTimeout(timer); resolve({ error: e.code || e.message, out }); });
  });
}
function fetch80(ip) {
  return new Promise((resolve) => {
    const s = net.connect(80, ip);
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d) => (data += d));
    s.on('end', () => resolve(data));
    s.on('error', (e) => resolve('error:' + (e.code || e.message)));
    setTimeout(() => { s.destroy(); resolve('timeout'); }, 4000).unref();
  });
}
(async () => {
  const out = {};
  if (mode === 'optout') {
    out.udp = await udp(seHost);
  } else {
    const r = new dns.promises.Resolver({ timeout: 2000, tries: 1 });
    r.setServers([resolver]);
    const ask = (n) => r.resolve4(n).catch((e) => e.code);
    out.cares = { se: await ask(seHost), short: await ask('echo'), outside: await ask('outside.test'), unknown: await ask('nope.test') };
    out.udp = await udp(seHost);
    out.udp6 = await udp(seHost, resolver6, 'udp6');
    out.mapped = await udp(seHost, '::ffff:' + resolver, 'udp6');
    out.tcp = await tcp(['echo.demo.svc.cluster.local', 'outside.test']);
    out.fetch = await fetch80(seVip);
  }
  console.log(JSON.stringify(out));
  process.exit(0);
})();
`;

async function runInPod(pod: Pod, resolver: string, mode: 'full' | 'optout'): Promise<Record<string, unknown>> {
  const resolver6 = pod.hostIp6.replace(/::1$/, '::53');
  const child = spawn('ip', ['netns', 'exec', pod.name, process.execPath, '-e', CLIENT, resolver, SE_HOST, SE_VIP, mode, resolver6], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  try {
    await once(child, 'close');
  } finally {
    clearTimeout(killer);
  }
  const line = stdout.trim().split('\n').pop() ?? '';
  assert.notEqual(line, '', `client printed nothing: ${stderr.trim()}`);
  return JSON.parse(line) as Record<string, unknown>;
}

/** Sum of a counter's series whose labels include `labels`. */
async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  return (await m.get()).values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
}

function workloads(a: Pod, b: Pod): { client: Workload; server: Workload; services: Service[] } {
  const svcHost = 'echo.demo.svc.cluster.local';
  const client = testWorkload({ name: 'client', namespace: 'demo', ip: a.ip, netns: a.netnsPath });
  const server = testWorkload({
    name: 'server',
    namespace: 'demo',
    ip: b.ip,
    netns: b.netnsPath,
    services: { [`demo/${svcHost}`]: [{ servicePort: 80, targetPort: 8080 }], [`egress/${SE_HOST}`]: [{ servicePort: 80, targetPort: 8080 }] },
  });
  const base = { ports: [{ name: 'tcp', port: 80, targetPort: 8080, protocol: 'tcp' }], subjectAltNames: [], routingPreference: [], endpoints: [server.uid] };
  const services: Service[] = [
    { name: 'echo', namespace: 'demo', hostname: svcHost, vips: [SVC_VIP], ...base },
    { name: 'httpbin-ext', namespace: 'egress', hostname: SE_HOST, vips: [SE_VIP], ...base },
  ];
  return { client, server, services };
}

async function dnsScenario(t: TestContext, tag: string, openCapture: (ct: ReturnType<typeof captureTest>) => Promise<Capture>, workers = 1): Promise<void> {
  const ct = captureTest(t, tag, 2);
  const [a, b] = ct.fx.pods as [Pod, Pod];
  startApps([a, b], ct.servers);
  // Pods here have no default route; a real pod has one, and nft's REDIRECT (unlike BPF's
  // connect hook) runs after the route lookup. The host drops what would leave by it.
  execFileSync('ip', ['route', 'add', 'blackhole', `${SE_VIP}/32`]);
  t.after(() => execFileSync('ip', ['route', 'del', 'blackhole', `${SE_VIP}/32`]));
  execFileSync('ip', ['-n', a.name, 'route', 'add', `${SE_VIP}/32`, 'via', a.hostIp]);
  const upstream = await startUpstream(t);
  const capture = await openCapture(ct);
  const { agent, registry } = startWorkerAgent(capture, {
    workers,
    dns: (reg) => createNetnsDnsProxy({ log: silentLogger(), registry: reg, upstreams: [{ host: '127.0.0.1', port: upstream.port }], timeoutMs: 1000 }),
  });
  ct.own({ uninstall: () => agent.close(200) });
  const { client, server, services } = workloads(a, b);
  await agent.applyConfig(snapshot([client, server], [], services));
  assert.deepEqual(agent.statusProvider().map((s) => s.captured), [true, true]);
  const dump = (await agent.configDump()) as { dns?: unknown };
  assert.deepEqual(dump.dns, { port: 15053, upstreams: [`127.0.0.1:${upstream.port}`], pods: [client.uid, server.uid].sort(), names: 2, wildcards: 0 }, '/config_dump shows the DNS proxy');
  const resolver = a.hostIp.replace(/\.1$/, '.53');

  const out = await runInPod(a, resolver, 'full');
  assert.deepEqual(out['cares'], { se: [SE_VIP], short: [SVC_VIP], outside: [OUTSIDE_IP], unknown: 'ENOTFOUND' }, 'c-ares got local answers, a forwarded one, and NXDOMAIN from upstream');
  assert.deepEqual(out['udp'], { from: `${resolver}:53`, rcode: 0, a: SE_VIP, id: 4242 }, 'the reply is seen from the resolver the client asked');
  const resolver6 = a.hostIp6.replace(/::1$/, '::53');
  assert.deepEqual(out['udp6'], { from: `${resolver6}:53`, rcode: 0, a: SE_VIP, id: 4242 }, 'an IPv6 resolver: through [::1]:15053, the reply from it');
  assert.deepEqual(out['mapped'], { from: `::ffff:${resolver}:53`, rcode: 0, a: SE_VIP, id: 4242 }, 'a dual-stack socket asking a v4-mapped resolver');
  assert.deepEqual(out['tcp'], { peer: `${resolver}:53`, out: [{ id: 100, rcode: 0, a: SVC_VIP }, { id: 101, rcode: 0, a: OUTSIDE_IP }] }, 'TCP: a local answer and a forwarded one on one connection');
  assert.equal(out['fetch'], `app ${b.name} from ${a.ip}`, "the entry's allocated address reaches its endpoint through the mesh");
  assert.deepEqual(upstream.asked.sort(), ['tcp outside.test', 'udp nope.test', 'udp outside.test'], 'only names the mesh does not know went upstream');

  const src = { source_canonical_service: 'client', source_canonical_revision: 'v1' };
  assert.equal(await metric(registry, 'istio_dns_requests_total', { ...src, request_query_type: 'a', request_protocol: 'udp' }), 7);
  assert.equal(await metric(registry, 'istio_dns_requests_total', { ...src, request_query_type: 'a', request_protocol: 'tcp' }), 2);
  assert.equal(await metric(registry, 'istio_dns_upstream_requests_total', { ...src, request_protocol: 'udp' }), 2);
  assert.equal(await metric(registry, 'istio_dns_upstream_requests_total', { ...src, request_protocol: 'tcp' }), 1);
  assert.equal(await metric(registry, 'istio_dns_upstream_failures_total', src), 0);
  const text = await registry.metrics();
  assert.match(text, /istio_dns_upstream_request_duration_seconds_count\{request_query_type="a",request_protocol="udp",source_canonical_service="client",source_canonical_revision="v1"\} 2/);
  for (const m of await registry.getMetricsAsJSON()) {
    if (!m.name.startsWith('istio_dns_')) continue;
    for (const v of m.values) {
      const names = Object.keys(v.labels).filter((l) => l !== 'le');
      assert.deepEqual(names.sort(), [...ISTIO_METRIC_LABELS[m.name]!].sort(), `labels of ${m.name} are the table's`);
    }
  }
  if (capture.mode === 'bpf') {
    const stats = (capture as BpfCapture).stats();
    assert.ok(stats.DNS_REDIRECTED >= 3, `queries redirected: ${stats.DNS_REDIRECTED}`);
    assert.ok(stats.DNS_REPLY_REWRITTEN >= 7, `replies shown from the resolver: ${stats.DNS_REPLY_REWRITTEN}`);
  }

  // glibc, as a pod's own programs resolve: resolv.conf with the pod's search list and ndots:5
  // (bind-mounted by `ip netns exec`), so the first name asked is `<host>.demo.svc.cluster.local`.
  const etc = `/etc/netns/${a.name}`;
  mkdirSync(etc, { recursive: true });
  t.after(() => rmSync(etc, { recursive: true, force: true }));
  writeFileSync(`${etc}/resolv.conf`, `nameserver ${resolver}\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:1\n`);
  const getent = async (name: string): Promise<string> => {
    const { stdout } = await promisify(execFile)('ip', ['netns', 'exec', a.name, 'getent', 'ahostsv4', name], { timeout: 10_000 });
    return stdout.split('\n')[0]!.split(/\s+/)[0]!;
  };
  assert.equal(await getent(SE_HOST), SE_VIP, 'glibc through the search list: the CNAME from the search form to the entry host');
  assert.equal(await getent('echo'), SVC_VIP, 'glibc: a short Service name');
  assert.equal(await getent(OUTSIDE), OUTSIDE_IP, 'glibc: an outside name after the search list was answered NXDOMAIN upstream');

  // ambient.istio.io/dns-capture: "false" → the pod's queries go where they were sent (nowhere here).
  await agent.applyConfig(snapshot([{ ...client, dnsCapture: false }, server], [], services));
  assert.deepEqual(agent.statusProvider().map((s) => s.captured), [true, true]);
  const before = await metric(registry, 'istio_dns_requests_total', {});
  const optout = await runInPod(a, resolver, 'optout');
  assert.deepEqual(optout['udp'], { error: 'timeout' }, 'not captured: the blackholed resolver never answers');
  assert.equal(await metric(registry, 'istio_dns_requests_total', {}), before);
}

test('DNS capture through BPF: local answers, forwarding over UDP and TCP, replies from the asked resolver, metrics, opt-out', { skip: bpfSkipReason(), timeout: 60_000 }, async (t) => {
  await dnsScenario(t, 'q', (ct) => ct.openBpf());
});

test('DNS capture through the nft fallback: the same behaviour', { skip: nftSkipReason(), timeout: 60_000 }, async (t) => {
  await dnsScenario(t, 'r', async (ct) => ct.own(new NftCapture({ log: silentLogger() })));
});

test('DNS capture with the data path on two worker threads: the proxy stays on the main thread, the rest is unchanged', { skip: bpfSkipReason(), timeout: 60_000 }, async (t) => {
  await dnsScenario(t, 's', (ct) => ct.openBpf(), 2);
});
