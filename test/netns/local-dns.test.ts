/**
 * Local mode's cluster DNS on a real mesh: the kube-dns Service as kubectl shows it, pods with the
 * kubelet's resolv.conf resolving Services through it by short name, `<svc>.<ns>` and FQDN
 * (glibc's resolver with its search list), over UDP and TCP to the ClusterIP; NXDOMAIN and NODATA
 * inside cluster.local, a headless Service's endpoints, outside names forwarded to the machine's
 * resolvers, malformed queries answered or dropped without harm; and an enrolled pod resolving
 * a ServiceEntry host through its agent's DNS proxy, which forwards the rest to the cluster DNS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ambit, destroyMesh, isRoot, leftovers, lockLocalMesh, meshLogTail, meshName, meshStatus, metricSum, podExec, repoRoot } from '../helpers/local-mesh.js';
import { dnsQuery, questionMessage, type DnsQueryResult } from '../helpers/dns-query.js';
import { runKubectl } from '../integration/apiserver/helpers.js';
import { parseResolvConf } from '../../src/shared/dns/forwarder.js';
import { RCODE_FORMERR, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_SERVFAIL, TYPE_A, TYPE_SOA, parseMessage, serializeMessage } from '../../src/shared/dns/message.js';

const fixture = join(repoRoot, 'test/fixtures/local/dns.yaml');
const queryScript = join(repoRoot, 'dist/test/helpers/dns-query.js');
const net = Number(process.env.AMBIT_LOCAL_NET ?? '0');
const bridgeIp = `10.240.${net}.1`;
const dnsIp = `10.${96 + net}.0.10`;

/**
 * Sends raw bytes to the cluster DNS over UDP, then a good query from the same socket; resolves
 * with the first datagram back (the good query's answer when the bytes got none).
 */
function sendRaw(bytes: Buffer): Promise<Buffer> {
  const probe = serializeMessage(questionMessage('kubernetes.default.svc.cluster.local', TYPE_A, 0x7777));
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error('no answer from the cluster DNS'));
    }, 5000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(bytes, 53, bridgeIp, () => s.send(probe, 53, bridgeIp));
  });
}

test('local mode has a cluster DNS: kube-dns, kubelet resolv.conf, Services by name, NXDOMAIN, headless, forwarding, DNS proxy', { skip: isRoot() ? false : 'requires root (network namespaces, BPF)' }, async (t) => {
  const unlock = await lockLocalMesh();
  const name = meshName('td');
  const cache = mkdtempSync(join(tmpdir(), 'ambit-dns-'));
  t.after(async () => {
    await destroyMesh(name);
    rmSync(cache, { recursive: true, force: true });
    unlock();
  });
  const up = await ambit(['local', 'up', '-f', fixture, '--name', name, '--nodes', '2']);
  assert.equal(up.code, 0, `up failed: ${up.stderr}`);
  const st = await meshStatus(name);
  const exec = async (pod: string, cmd: string[]): Promise<string> => {
    const r = await podExec(name, pod, cmd);
    assert.equal(r.code, 0, `${pod}: ${cmd.join(' ')}: ${r.stderr}\n${meshLogTail(name)}`);
    return r.stdout;
  };
  /** One question from inside `pod` to the kube-dns ClusterIP (the pod's own resolver path). */
  const ask = async (pod: string, host: string, type = 'A', transport: 'udp' | 'tcp' = 'udp'): Promise<DnsQueryResult> => JSON.parse(await exec(pod, [process.execPath, queryScript, dnsIp, host, type, transport])) as DnsQueryResult;

  // kube-dns is there as on a kubeadm cluster, at the range's .10 address.
  const kc = await ambit(['local', 'kubeconfig', '--name', name]);
  assert.equal(kc.code, 0, kc.stderr);
  const svcs = await runKubectl(kc.stdout.trim(), cache, ['get', 'svc', '-n', 'kube-system', 'kube-dns']);
  assert.equal(svcs.code, 0, svcs.stderr);
  assert.match(svcs.stdout, new RegExp(`^kube-dns\\s+ClusterIP\\s+${dnsIp.replaceAll('.', '\\.')}\\s+<none>\\s+53/UDP,53/TCP\\s`, 'm'), svcs.stdout);
  const echo = st.services.find((s) => s.namespace === 'dnsplain' && s.name === 'echo')!;
  assert.ok(echo && echo.clusterIP !== dnsIp, 'dynamic allocation never hands out the DNS address');

  // The kubelet's resolv.conf and hosts file.
  assert.equal(await exec('dnsplain/client', ['cat', '/etc/resolv.conf']), `search dnsplain.svc.cluster.local svc.cluster.local cluster.local\nnameserver ${dnsIp}\noptions ndots:5\n`);
  const client = st.pods.find((p) => p.namespace === 'dnsplain' && p.name === 'client')!;
  const hosts = await exec('dnsplain/client', ['cat', '/etc/hosts']);
  assert.match(hosts, new RegExp(`^${client.ip.replaceAll('.', '\\.')}\\tclient$`, 'm'));
  assert.doesNotMatch(hosts, /echo|svc/, 'Service names come from DNS, not the hosts file');

  // glibc's resolver (search list, ndots:5) finds the Service in every form.
  for (const host of ['echo', 'echo.dnsplain', 'echo.dnsplain.svc.cluster.local']) {
    const out = await exec('dnsplain/client', ['getent', 'ahostsv4', host]);
    assert.equal(out.split(/\s+/)[0], echo.clusterIP, `${host} resolves to the ClusterIP`);
  }
  const curl = await exec('dnsplain/client', ['curl', '-s', '-m', '5', 'http://echo/']);
  assert.match(curl, /"text":"echo"/, 'a Service reached by its short name');
  const unknown = await podExec(name, 'dnsplain/client', ['getent', 'ahostsv4', 'nope.dnsplain.svc.cluster.local']);
  assert.equal(unknown.code, 2, 'an unknown cluster name does not resolve');

  // The cluster DNS itself, through the ClusterIP over UDP and TCP (kube-proxy's rules cover both).
  for (const transport of ['udp', 'tcp'] as const) {
    assert.deepEqual(await ask('dnsplain/client', 'echo.dnsplain.svc.cluster.local', 'A', transport), { rcode: RCODE_NOERROR, answers: [echo.clusterIP], authorities: [] }, transport);
    assert.deepEqual(await ask('dnsplain/client', 'nope.dnsplain.svc.cluster.local', 'A', transport), { rcode: RCODE_NXDOMAIN, answers: [], authorities: [TYPE_SOA] }, `NXDOMAIN over ${transport}`);
  }
  assert.deepEqual(await ask('dnsplain/client', 'echo.dnsplain.svc.cluster.local', 'AAAA'), { rcode: RCODE_NOERROR, answers: [], authorities: [TYPE_SOA] }, 'NODATA for the family the Service has no address in');
  const echoPods = st.pods.filter((p) => p.namespace === 'dnsplain' && p.name.startsWith('echo-')).map((p) => p.ip).sort();
  assert.equal(echoPods.length, 2);
  assert.deepEqual((await ask('dnsplain/client', 'echo-headless.dnsplain.svc.cluster.local')).answers, echoPods, 'a headless Service answers its ready endpoints');
  const headlessGlibc = await exec('dnsplain/client', ['getent', 'ahostsv4', 'echo-headless']);
  assert.ok(echoPods.includes(headlessGlibc.split(/\s+/)[0]!), headlessGlibc);

  // Names outside cluster.local go to the machine's resolvers, unchanged.
  const upstream = parseResolvConf(readFileSync('/etc/resolv.conf', 'utf8')).filter((s) => s.host !== bridgeIp)[0];
  const outside = 'example.com';
  const direct = upstream ? await dnsQuery(upstream.host, outside, 'A', 'udp').catch(() => undefined) : undefined;
  const viaCluster = await ask('dnsplain/client', outside);
  if (direct) assert.deepEqual({ rcode: viaCluster.rcode, answers: [...viaCluster.answers].sort() }, { rcode: direct.rcode, answers: [...direct.answers].sort() }, 'the upstream answer is passed through');
  else assert.equal(viaCluster.rcode, RCODE_SERVFAIL, 'no usable upstream: SERVFAIL, not silence');

  // Malformed input from the network: no header is dropped, a cut question gets FORMERR, and the
  // server keeps answering.
  assert.equal((await sendRaw(Buffer.from([1, 2, 3]))).readUInt16BE(0), 0x7777, 'a message shorter than a header is dropped');
  const cut = Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x05, 0x61]);
  const formerr = await sendRaw(cut);
  assert.deepEqual([parseMessage(formerr).header.id, parseMessage(formerr).header.rcode], [0x1234, RCODE_FORMERR]);
  assert.deepEqual((await dnsQuery(bridgeIp, 'echo.dnsplain.svc.cluster.local', 'A', 'udp')).answers, [echo.clusterIP], 'still answering');

  // An enrolled pod: its agent's DNS proxy answers the ServiceEntry host (the controller's
  // allocated address), and forwards what it does not know (a headless Service) to the cluster DNS.
  const meshClient = st.pods.find((p) => p.namespace === 'dnsmesh' && p.name === 'client')!;
  assert.equal(meshClient.captured, true, JSON.stringify(meshClient));
  const node = st.nodes.find((n) => n.name === meshClient.node)!;
  const metrics = async (): Promise<string> => (await fetch(node.metrics)).text();
  const before = await metrics();
  const entry = await exec('dnsmesh/client', ['getent', 'ahostsv4', 'api.partner.test']);
  const entryIp = entry.split(/\s+/)[0]!;
  assert.match(entryIp, /^240\.240\.\d+\.\d+$/, `the ServiceEntry host resolves to its allocated address: ${entry}`);
  assert.deepEqual((await ask('dnsmesh/client', 'api.partner.test', 'A', 'tcp')).answers, [entryIp], 'over TCP too');
  assert.deepEqual((await ask('dnsmesh/client', 'echo-headless.dnsplain.svc.cluster.local')).answers, echoPods, 'the proxy forwards a headless Service to the cluster DNS');
  assert.equal((await ask('dnsmesh/client', 'nope.dnsmesh.svc.cluster.local')).rcode, RCODE_NXDOMAIN);
  const after = await metrics();
  const requests = (text: string): number => metricSum(text, 'istio_dns_requests_total', { source_canonical_service: 'client' });
  const forwarded = (text: string): number => metricSum(text, 'istio_dns_upstream_requests_total', { source_canonical_service: 'client' });
  assert.ok(requests(after) >= requests(before) + 4, `the agent's DNS proxy saw the pod's queries (${requests(before)} -> ${requests(after)})`);
  assert.ok(forwarded(after) >= forwarded(before) + 2, `the proxy forwarded the names it does not answer (${forwarded(before)} -> ${forwarded(after)})`);
  assert.equal(metricSum(after, 'istio_dns_upstream_failures_total', {}), 0, 'no forwarded query failed');

  const down = await ambit(['local', 'down', '--name', name]);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(leftovers(name), []);
});
