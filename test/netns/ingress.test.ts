/**
 * The ingress gateway end to end in `ambit local`: the seed Gateway + VirtualService for
 * example.com applied unchanged beside a reviews backend in an ambient, STRICT-mTLS namespace;
 * requests from the root namespace to the gateway pod's address over HTTP and HTTPS (certificate
 * from a kubernetes.io/tls Secret, and an httpsRedirect port), an unserved host, a Gateway whose Secret is missing, the
 * gateway's Istio metrics, the destination agent seeing the gateway's identity over HBONE, no key
 * material in any log, the gateway pod removed with the last Gateway, nothing left after down;
 * a TCP server whose VirtualService `tcp` route splits connections between two Services; and a
 * TLS PASSTHROUGH server routing by SNI to two TLS backends.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect as tlsConnect } from 'node:tls';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../../src/controller/ca/authority.js';
import type { IngressGatewayStatus, LocalStatus } from '../../src/local/mesh.js';
import { ambit, destroyMesh, isRoot, leftovers, lockLocalMesh, meshLogTail, meshName, metricSum, repoRoot, waitFor } from '../helpers/local-mesh.js';

const fx = (f: string): string => join(repoRoot, 'test/fixtures/ingress', f);
const SEED = join(repoRoot, 'test/fixtures/manifests/valid/istio-docs/ingress-example-com.yaml');
const skip = isRoot() ? false : 'requires root (network namespaces, BPF, nftables)';
const GATEWAY_ID = 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway';

interface Curl {
  code: number;
  status: number;
  body: string;
  stderr: string;
}

/** curl from the root namespace; the status code is the last line of stdout. */
function curl(args: string[]): Promise<Curl> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '-m', '10', '-w', '\n%{http_code}', ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      const cut = stdout.lastIndexOf('\n');
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, status: Number(stdout.slice(cut + 1)) || 0, body: stdout.slice(0, Math.max(0, cut)), stderr });
    });
  });
}

function secretYaml(certPem: string, keyPem: string): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Secret',
    'metadata: { name: example-com-cert, namespace: istio-system }',
    'type: kubernetes.io/tls',
    'data:',
    `  tls.crt: ${b64(certPem)}`,
    `  tls.key: ${b64(keyPem)}`,
    '',
  ].join('\n');
}

interface IngressMesh {
  name: string;
  status(): Promise<LocalStatus>;
  apply(...files: string[]): Promise<void>;
  /** Waits for the ingress gateway to be ready with listeners that satisfy `want`. */
  gatewayReady(want: (g: IngressGatewayStatus) => boolean): Promise<IngressGatewayStatus>;
}

/** Brings a mesh up from `files` under the machine-wide lock; it is destroyed after the test. */
async function startIngressMesh(t: TestContext, tag: string, files: string[]): Promise<IngressMesh> {
  const unlock = await lockLocalMesh();
  const name = meshName(tag);
  t.after(async () => {
    await destroyMesh(name);
    unlock();
  });
  const status = async (): Promise<LocalStatus> => JSON.parse((await ambit(['local', 'status', '--name', name, '-o', 'json'])).stdout) as LocalStatus;
  const apply = async (...more: string[]): Promise<void> => {
    const r = await ambit(['local', 'apply', '--name', name, ...more.flatMap((f) => ['-f', f])]);
    assert.equal(r.code, 0, `apply ${more.join(' ')}: ${r.stderr}`);
  };
  const gatewayReady = (want: (g: IngressGatewayStatus) => boolean): Promise<IngressGatewayStatus> =>
    waitFor('the ingress gateway to be ready with its listeners', async () => {
      const g = (await status()).ingressGateways[0];
      return g && g.ready && want(g) ? g : undefined;
    }, 60_000);
  const up = await ambit(['local', 'up', ...files.flatMap((f) => ['-f', f]), '--name', name, '--timeout', '120s']);
  assert.equal(up.code, 0, `local up failed:\n${up.stderr}\n${meshLogTail(name)}`);
  return { name, status, apply, gatewayReady };
}

test('ingress gateway: example.com over HTTP and HTTPS from the root namespace, into the mesh over HBONE', { skip, timeout: 600_000 }, async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'ambit-ingress-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const { name, status, apply, gatewayReady } = await startIngressMesh(t, 'ti', [fx('app.yaml'), SEED]);

  const st = await status();
  const gwPod = st.pods.find((p) => p.namespace === 'istio-system' && p.name.startsWith('istio-ingressgateway-'));
  assert.ok(gwPod, `an ingress gateway pod runs in istio-system: ${JSON.stringify(st.pods.map((p) => `${p.namespace}/${p.name}`))}`);
  assert.equal(gwPod.enrolled, false, 'the gateway pod itself is not captured');
  const gw = await gatewayReady((g) => g.listeners.some((l) => l.port === 80));
  assert.deepEqual(
    { namespace: gw.namespace, pod: gw.pod, ip: gw.ip, gateways: gw.gateways, listeners: gw.listeners },
    { namespace: 'istio-system', pod: gwPod.name, ip: gwPod.ip, gateways: ['bookinfo/my-gateway'], listeners: [{ port: 80, protocol: 'HTTP', hosts: ['example.com'], url: `http://${gwPod.ip}:80/` }] },
    'status shows the gateway, its address and the port to curl',
  );
  const table = await ambit(['local', 'status', '--name', name]);
  assert.match(table.stdout, new RegExp(`istio-ingressgateway-\\S+\\s+${gwPod.ip.replace(/\./g, '\\.')}\\s+yes\\s+80/HTTP\\s+example\\.com\\s+http://`), table.stdout);
  const ip = gw.ip;

  await t.test('Host: example.com /reviews/1 from the root namespace reaches the backend (200)', async () => {
    const r = await waitFor('a 200 through the gateway', async () => {
      const c = await curl(['-H', 'Host: example.com', `http://${ip}/reviews/1`]);
      return c.status === 200 ? c : undefined;
    }, 20_000);
    const body = JSON.parse(r.body) as { text: string; path: string };
    assert.equal(body.text, 'reviews-v1');
    assert.equal(body.path, '/reviews/1');
    const resolved = await curl(['--resolve', `example.com:80:${ip}`, 'http://example.com/reviews/2']);
    assert.equal(resolved.status, 200, resolved.stderr);
  });

  await t.test('a host or path the Gateway does not route gets 404', async () => {
    assert.equal((await curl(['-H', 'Host: other.example.org', `http://${ip}/reviews/1`])).status, 404);
    assert.equal((await curl(['-H', 'Host: reviews.bookinfo.svc.cluster.local', `http://${ip}/reviews/1`])).status, 404, 'mesh hosts are not exposed');
    assert.equal((await curl(['-H', 'Host: example.com', `http://${ip}/ratings`])).status, 404, 'only /reviews is routed');
    assert.equal((await curl([`http://${ip}/reviews/1`])).status, 404, 'the gateway address as Host is not routed');
  });

  await t.test('the backend is reached over HBONE with the gateway identity (STRICT mTLS lets it in)', async () => {
    const nodes = (await status()).nodes;
    const opened = await waitFor('the destination agent to count the gateway connection', async () => {
      let sum = 0;
      for (const n of nodes) sum += metricSum(await fetch(n.metrics).then((r) => r.text()), 'istio_tcp_connections_opened_total', { reporter: 'destination', source_principal: GATEWAY_ID });
      return sum > 0 ? sum : undefined;
    }, 10_000);
    assert.ok(opened >= 1, `connections from ${GATEWAY_ID} counted at the destination: ${opened}`);
  });

  await t.test('the gateway :15020 metrics count the requests with Istio labels', async () => {
    const text = await fetch(gw.metrics).then((r) => r.text());
    const ok = metricSum(text, 'istio_requests_total', { reporter: 'source', response_code: '200', destination_service_name: 'reviews', destination_service_namespace: 'bookinfo', source_workload: 'istio-ingressgateway' });
    assert.ok(ok >= 2, `200s to reviews counted: ${ok}`);
    assert.ok(metricSum(text, 'istio_requests_total', { response_code: '404' }) >= 4, '404s counted');
    // A no-route reply names no Service: never the Host a client sent (an address made it "10" once).
    assert.equal(metricSum(text, 'istio_requests_total', { response_code: '404', response_flags: 'NR', destination_service: 'unknown', destination_service_name: 'unknown', destination_service_namespace: 'unknown' }), metricSum(text, 'istio_requests_total', { response_code: '404' }));
    assert.doesNotMatch(text, /destination_service_name="\d+"/);
  });

  await t.test('a selector AuthorizationPolicy on the gateway pods is enforced by the gateway (403 at the edge)', async () => {
    await apply(fx('selector-policy.yaml'));
    const denied = await waitFor('the gateway to deny /reviews/9x', async () => {
      const c = await curl(['-H', 'Host: example.com', `http://${ip}/reviews/99`]);
      return c.status === 403 ? c : undefined;
    });
    assert.match(denied.body, /RBAC: access denied/);
    assert.equal((await curl(['-H', 'Host: example.com', '-H', 'x-block: yes', `http://${ip}/reviews/1`])).status, 403, 'the header condition denies too');
    assert.equal((await curl(['-H', 'Host: example.com', `http://${ip}/reviews/1`])).status, 200, 'other requests pass');
    const problems = (await status()).objectProblems ?? [];
    assert.deepEqual(problems.filter((p) => p.object.includes('ingress-deny')), [], 'the policy applies whole');
  });

  await t.test('HTTPS with the certificate from a kubernetes.io/tls Secret in istio-system', async () => {
    const ca = CertificateAuthority.generate({ trustDomain: 'example.test', ttlDays: 1 });
    const issued = ca.issueServingCert({ dnsNames: ['example.com'], ips: [], ttlMs: 3_600_000 });
    const caFile = join(tmp, 'ca.pem');
    writeFileSync(caFile, ca.rootCertPem);
    const secretFile = join(tmp, 'secret.yaml');
    writeFileSync(secretFile, secretYaml(issued.certChainPem.join('\n'), issued.keyPem), { mode: 0o600 });
    await apply(secretFile, fx('tls.yaml'));
    const g = await gatewayReady((x) => x.listeners.some((l) => l.port === 443));
    assert.deepEqual(g.listeners.map((l) => `${l.port}/${l.protocol}`), ['80/HTTP', '443/HTTPS', '8080/HTTP']);
    const r = await waitFor('a 200 over HTTPS', async () => {
      const c = await curl(['--resolve', `example.com:443:${ip}`, '--cacert', caFile, 'https://example.com/reviews/1']);
      return c.status === 200 ? c : undefined;
    }, 20_000);
    assert.equal((JSON.parse(r.body) as { text: string }).text, 'reviews-v1');
    const wrongCa = await curl(['--resolve', `example.com:443:${ip}`, 'https://example.com/reviews/1']);
    assert.notEqual(wrongCa.code, 0, 'the certificate is not trusted without the test CA (it really is the Secret one)');
    assert.equal((await curl(['-H', 'Host: example.com', `http://${ip}/reviews/1`])).status, 200, 'plain HTTP still works');
    // tls.httpsRedirect: 301 to the same URL over https, which curl -L then follows through the gateway.
    const redirect = await curl(['-o', '/dev/null', '-D', '-', '--resolve', `example.com:8080:${ip}`, 'http://example.com:8080/reviews/3?x=1']);
    assert.equal(redirect.status, 301, redirect.stderr);
    assert.match(redirect.body, /^location: https:\/\/example\.com\/reviews\/3\?x=1\r?$/im);
    const followed = await curl(['-L', '--resolve', `example.com:8080:${ip}`, '--resolve', `example.com:443:${ip}`, '--cacert', caFile, 'http://example.com:8080/reviews/3']);
    assert.equal(followed.status, 200, followed.stderr);
    // Key material must not be logged anywhere (controller, agents, gateway).
    const keyBody = issued.keyPem.split('\n')[1]!;
    const dir = join('/run/ambit', name, 'logs');
    for (const f of readdirSync(dir)) {
      const text = readFileSync(join(dir, f), 'utf8');
      assert.ok(!text.includes('PRIVATE KEY') && !text.includes(keyBody) && !text.includes(Buffer.from(issued.keyPem).toString('base64').slice(0, 40)), `no key material in ${f}`);
    }
  });

  await t.test('a Gateway whose Secret is missing gets a clear message; the other servers keep working', async () => {
    await apply(fx('broken-tls.yaml'));
    const st2 = await status();
    const problem = st2.ingressProblems.find((p) => p.includes('bookinfo/broken-tls'));
    assert.ok(problem, `a problem is reported: ${JSON.stringify(st2.ingressProblems)}`);
    assert.match(problem, /server 0 "https-broken" \(port 8443 HTTPS\)/);
    assert.match(problem, /Secret istio-system\/no-such-cert not found/);
    assert.equal(st2.ingressGateways[0]!.listeners.some((l) => l.port === 8443), false, 'the broken server does not listen');
    const table2 = await ambit(['local', 'status', '--name', name]);
    assert.match(table2.stdout, /! Gateway bookinfo\/broken-tls server 0/);
    assert.equal((await curl(['-H', 'Host: example.com', `http://${ip}/reviews/1`])).status, 200, 'HTTP still served');
  });

  await t.test('deleting the Gateways removes the gateway pod', async () => {
    const r = await ambit(['local', 'delete', '--name', name, '-f', SEED, '-f', fx('tls.yaml'), '-f', fx('broken-tls.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    const after = await status();
    assert.equal(after.pods.some((p) => p.namespace === 'istio-system'), false, 'the ingress gateway pod is gone');
    assert.deepEqual(after.ingressGateways, []);
    assert.notEqual((await curl(['-m', '2', '-H', 'Host: example.com', `http://${ip}/reviews/1`])).status, 200);
  });

  await t.test('down leaves nothing behind', async () => {
    const down = await ambit(['local', 'down', '--name', name]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(leftovers(name), []);
  });
});

test('ingress gateway → a Service bound to a waypoint: the waypoint routes, authorizes and counts ingress requests', { skip, timeout: 300_000 }, async (t) => {
  const { name, status, gatewayReady } = await startIngressMesh(t, 'tj', [fx('waypoint-app.yaml'), SEED]);
  const st = await status();
  const wp = st.waypoints.find((w) => w.namespace === 'bookinfo');
  assert.ok(wp, `bookinfo has a waypoint: ${JSON.stringify(st.waypoints)}`);
  const { ip } = await gatewayReady((g) => g.listeners.some((l) => l.port === 80));
  const get = (path: string, ...headers: string[]): Promise<Curl> => curl([...headers.flatMap((h) => ['-H', h]), '-H', 'Host: example.com', `http://${ip}${path}`]);
  const texts = async (n: number, path: string, ...headers: string[]): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const r = await get(path, ...headers);
      const echo = r.status === 200 ? (JSON.parse(r.body) as { text: string; client: string }) : undefined;
      const key = echo ? `${echo.text} via ${echo.client.replace(/^::ffff:/, '')}` : `status ${r.status}`;
      out[key] = (out[key] ?? 0) + 1;
    }
    return out;
  };
  // `up` returns once the gateway and the waypoint acknowledged their config: the first request must pass.
  const first = await get('/reviews/0');
  assert.equal(first.status, 200, `${first.stderr}${first.body}`);

  await t.test('the mesh VirtualService on the waypoint applies to ingress traffic: end-user jason → v2, others → v1', async () => {
    // The backend sees the waypoint's address: the request went gateway → waypoint → backend.
    assert.deepEqual(await texts(10, '/reviews/1'), { [`reviews-v1 via ${wp.ip}`]: 10 });
    assert.deepEqual(await texts(10, '/reviews/1', 'end-user: jason'), { [`reviews-v2 via ${wp.ip}`]: 10 });
  });

  await t.test('an L7 AuthorizationPolicy on the waypoint denies /reviews/admin with 403 through the ingress', async () => {
    const denied = await get('/reviews/admin');
    assert.equal(denied.status, 403, denied.body);
    assert.match(denied.body, /RBAC: access denied/i);
    assert.deepEqual(await texts(4, '/reviews/admin/x'), { 'status 403': 4 });
    assert.equal((await get('/reviews/administrator')).status, 200, 'only the denied paths are refused');
  });

  await t.test("the waypoint's :15020 metrics count the ingress requests under the gateway's identity", async () => {
    const text = await fetch(wp.metrics).then((r) => r.text());
    const fromGateway = { reporter: 'waypoint', destination_service_name: 'reviews', source_workload: 'istio-ingressgateway', source_principal: GATEWAY_ID };
    const v1 = metricSum(text, 'istio_requests_total', { ...fromGateway, response_code: '200', destination_version: 'v1' });
    const v2 = metricSum(text, 'istio_requests_total', { ...fromGateway, response_code: '200', destination_version: 'v2' });
    const forbidden = metricSum(text, 'istio_requests_total', { ...fromGateway, response_code: '403', response_flags: 'RBAC' });
    assert.ok(v1 >= 12 && v2 === 10 && forbidden === 5, `counted at the waypoint: v1 ${v1} (≥ 12), v2 ${v2} (10), 403 ${forbidden} (5)`);
  });

  await t.test('no bypass: the backends admit only the waypoint, never the gateway directly', async () => {
    let gateway = 0;
    let waypoint = 0;
    for (const n of (await status()).nodes) {
      const text = await fetch(n.metrics).then((r) => r.text());
      gateway += metricSum(text, 'istio_tcp_connections_opened_total', { reporter: 'destination', source_principal: GATEWAY_ID });
      waypoint += metricSum(text, 'istio_tcp_connections_opened_total', { reporter: 'destination', source_principal: 'spiffe://cluster.local/ns/bookinfo/sa/waypoint' });
    }
    assert.deepEqual({ gateway: gateway, waypointSeen: waypoint > 0 }, { gateway: 0, waypointSeen: true }, `destination connections: from the gateway ${gateway}, from the waypoint ${waypoint}`);
  });

  await t.test('down leaves nothing behind; agents stop on SIGTERM (the proxies holding tunnels into them stopped first)', async () => {
    const down = await ambit(['local', 'down', '--name', name]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(leftovers(name), []);
    const dir = join('/run/ambit', name, 'logs');
    const agents = readdirSync(dir).filter((f) => f.startsWith('agent-'));
    assert.equal(agents.length, 2, `agent logs: ${agents.join(', ')}`);
    for (const f of agents) assert.match(readFileSync(join(dir, f), 'utf8'), /"msg":"agent stopped"/, `${f}: the agent finished its shutdown (not killed after its drain deadline)`);
  });
});

test('ingress gateway: a TCP server carries connections into the mesh over HBONE, split by tcp route weights', { skip, timeout: 300_000 }, async (t) => {
  const { status, gatewayReady } = await startIngressMesh(t, 'tk', [fx('app.yaml'), fx('tcp.yaml')]);
  const gw = await gatewayReady((g) => g.listeners.some((l) => l.port === 31400 && l.protocol === 'TCP'));
  const url = `http://${gw.ip}:31400/anything`;
  await waitFor('a first answer through the TCP server', async () => ((await curl([url])).status === 200 ? true : undefined), 20_000);
  const texts: Record<string, number> = {};
  for (let i = 0; i < 40; i++) {
    const c = await curl([url]);
    assert.equal(c.status, 200, c.stderr);
    const text = (JSON.parse(c.body) as { text: string }).text;
    texts[text] = (texts[text] ?? 0) + 1;
  }
  assert.deepEqual(Object.keys(texts).sort(), ['reviews-b', 'reviews-v1'], JSON.stringify(texts));
  assert.ok(texts['reviews-b']! >= 5 && texts['reviews-v1']! >= 5, `a 50/50 split of 40 connections: ${JSON.stringify(texts)}`);
  const gwText = await fetch(gw.metrics).then((r) => r.text());
  assert.ok(metricSum(gwText, 'istio_tcp_connections_opened_total', { reporter: 'source', source_workload: 'istio-ingressgateway' }) >= 41, 'the gateway counts the TCP connections');
  let fromGateway = 0;
  for (const n of (await status()).nodes) fromGateway += metricSum(await fetch(n.metrics).then((r) => r.text()), 'istio_tcp_connections_opened_total', { reporter: 'destination', source_principal: GATEWAY_ID });
  assert.ok(fromGateway >= 41, `STRICT backends admitted the gateway's HBONE tunnels: ${fromGateway}`);
});

test('ingress gateway: a TLS PASSTHROUGH server routes by SNI to backends whose own certificates reach the client', { skip, timeout: 300_000 }, async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'ambit-passthrough-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const ca = CertificateAuthority.generate({ trustDomain: 'passthrough.test', ttlDays: 1 });
  const sites = ['a', 'b'].map((x) => {
    const host = `${x}.example.com`;
    const issued = ca.issueServingCert({ dnsNames: [host], ttlMs: 3_600_000 });
    const cert = join(tmp, `${x}.crt`);
    const key = join(tmp, `${x}.key`);
    writeFileSync(cert, issued.certChainPem.join('\n'));
    writeFileSync(key, issued.keyPem, { mode: 0o600 });
    return { x, host, cert, key };
  });
  const backend = (s: (typeof sites)[number]): string => `apiVersion: apps/v1
kind: Deployment
metadata: { name: site-${s.x}, namespace: bookinfo }
spec:
  replicas: 1
  selector: { matchLabels: { app: site-${s.x} } }
  template:
    metadata: { labels: { app: site-${s.x} } }
    spec:
      containers:
        - name: site
          image: example/site
          command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(join(repoRoot, 'test/fixtures/ingress/tls-echo.mjs'))}, "8443", ${JSON.stringify(s.cert)}, ${JSON.stringify(s.key)}, "site-${s.x}"]
          ports: [{ containerPort: 8443, name: tls }]
---
apiVersion: v1
kind: Service
metadata: { name: site-${s.x}, namespace: bookinfo }
spec:
  selector: { app: site-${s.x} }
  ports: [{ name: tls, port: 8443, targetPort: 8443 }]
---
`;
  const manifest = join(tmp, 'passthrough.yaml');
  writeFileSync(
    manifest,
    sites.map(backend).join('') +
      `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: tls-gateway, namespace: bookinfo }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 443, name: tls, protocol: TLS }
    hosts: [a.example.com, b.example.com]
    tls: { mode: PASSTHROUGH }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: sites, namespace: bookinfo }
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [tls-gateway]
  tls:
${sites.map((s) => `  - match: [{ port: 443, sniHosts: [${s.host}] }]\n    route: [{ destination: { host: site-${s.x}.bookinfo.svc.cluster.local, port: { number: 8443 } } }]`).join('\n')}
`,
  );
  const { gatewayReady } = await startIngressMesh(t, 'tp', [fx('app.yaml'), manifest]);
  const gw = await gatewayReady((g) => g.listeners.some((l) => l.port === 443 && l.protocol === 'TLS'));
  const hello = (servername: string): Promise<{ line: string; san: string } | 'reset'> =>
    new Promise((resolve, reject) => {
      const s = tlsConnect({ host: gw.ip, port: 443, servername, ca: ca.rootCertPem });
      let data = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => (data += d));
      s.once('end', () => resolve({ line: data.trim(), san: String(s.getPeerX509Certificate()?.subjectAltName ?? '') }));
      s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || /socket disconnected/.test(e.message) ? resolve('reset') : reject(e)));
      s.setTimeout(10_000, () => s.destroy(new Error('tls hello timed out')));
    });
  await waitFor('site-a through the gateway', async () => {
    const r = await hello('a.example.com').catch(() => 'reset' as const);
    return r !== 'reset' && r.line === 'site-a' ? true : undefined;
  }, 30_000);
  for (const s of sites) {
    const r = await hello(s.host);
    assert.notEqual(r, 'reset', s.host);
    if (r === 'reset') return;
    assert.equal(r.line, `site-${s.x}`);
    assert.match(r.san, new RegExp(`DNS:${s.x}\\.example\\.com`), 'the backend\'s own certificate: TLS was not terminated at the gateway');
  }
  assert.equal(await hello('c.example.com'), 'reset', 'an SNI the Gateway does not list is reset');
});

