/**
 * Istio Gateway servers of protocol TCP, TLS PASSTHROUGH and HTTPS MUTUAL and ISTIO_MUTUAL, from manifests-shaped
 * objects through the controller's translation into a gateway-mode Waypoint listening on
 * 127.0.0.1, with real TCP, TLS and HTTPS clients and backends on other loopback addresses:
 * weighted `tcp` routes, `tls` routes by SNI with the backend's own certificate reaching the
 * client, client certificates required and checked against the Secret's ca.crt, and mesh
 * identities required (and authorized by principal) on ISTIO_MUTUAL.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { CertificateAuthority } from '../../src/controller/ca/authority.js';
import type { KubeObject } from '../../src/controller/objects.js';
import { translateAll } from '../../src/controller/translate/translate.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { validateGatewayListener, validateRouteConfig } from '../../src/shared/validate-routes.js';
import { freePort } from '../helpers/local-mesh.js';
import { listening, startGreetingEcho } from '../helpers/tcp-exchange.js';
import { startGatewayPod } from '../helpers/gateway-pod.js';
import { createTestCa } from '../helpers/test-ca.js';
import { namespace, pod, service } from '../unit/translate/helpers.js';

const serverCa = CertificateAuthority.generate({ trustDomain: 'server.test', ttlDays: 1 });
const clientCa = CertificateAuthority.generate({ trustDomain: 'client.test', ttlDays: 1 });
const rogueCa = CertificateAuthority.generate({ trustDomain: 'rogue.test', ttlDays: 1 });
const issued = (ca: CertificateAuthority, host: string) => ca.issueServingCert({ dnsNames: [host], ttlMs: 3_600_000 });

function tlsBackend(t: TestContext, ip: string, host: string): Promise<number> {
  const cert = issued(serverCa, host);
  return listening(t, tls.createServer({ cert: cert.certChainPem.join('\n'), key: cert.keyPem }, (s) => s.end(`tls ${host}\n`)), ip);
}

/** First line a plain TCP connection gets, then what it gets back for `echo`; `reset` when the gateway resets it. */
function tcpExchange(port: number, echo: string): Promise<{ first: string; echoed: string } | 'reset'> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      data += d;
      const lines = data.split('\n');
      if (lines.length >= 2 && data.endsWith(`${echo}`)) {
        s.destroy();
        resolve({ first: lines[0]!, echoed: data.slice(lines[0]!.length + 1) });
      }
    });
    s.once('connect', () => s.write(echo));
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve('reset') : reject(e)));
    s.once('close', () => resolve('reset'));
    s.setTimeout(10_000, () => s.destroy(new Error('tcp exchange timed out')));
  });
}

/** A TLS client through the gateway: what the server said and the names on its certificate; `reset` when refused. */
function tlsExchange(port: number, servername: string): Promise<{ line: string; san: string } | 'reset'> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca: serverCa.rootCertPem });
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (data += d));
    s.once('end', () => resolve({ line: data.trim(), san: String(s.getPeerX509Certificate()?.subjectAltName ?? '') }));
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || /socket disconnected/.test(e.message) ? resolve('reset') : reject(e)));
    s.setTimeout(10_000, () => s.destroy(new Error('tls exchange timed out')));
  });
}

function httpsGet(port: number, client?: { certChainPem: string[]; keyPem: string }, host = 'secure.example.com', ca = serverCa.rootCertPem): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = https.request(
      { host: '127.0.0.1', port, path: '/hello', servername: host, headers: { host }, ca, agent: false,
        // The mesh certificate of an ISTIO_MUTUAL gateway names a SPIFFE identity, not the host.
        ...(ca === serverCa.rootCertPem ? {} : { checkServerIdentity: () => undefined }), ...(client ? { cert: client.certChainPem.join('\n'), key: client.keyPem } : {}) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.once('error', (e) => resolve({ error: e.message }));
    req.setTimeout(10_000, () => req.destroy(new Error('https request timed out')));
    req.end();
  });
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

test('ingress gateway: a TCP server with weighted tcp routes, TLS PASSTHROUGH routed by SNI, HTTPS MUTUAL requiring client certificates, ISTIO_MUTUAL requiring mesh identities', async (t) => {
  const [v1, v2, tlsA, tlsB] = [await startGreetingEcho(t, '127.0.0.2', 'v1'), await startGreetingEcho(t, '127.0.0.3', 'v2'), await tlsBackend(t, '127.0.0.4', 'a.example.com'), await tlsBackend(t, '127.0.0.5', 'b.example.com')];
  const web = await listening(
    t,
    http.createServer((req, res) => {
      req.resume();
      res.end('web');
    }),
    '127.0.0.6',
  );
  const port = { tcp: await freePort(), tls: await freePort(), mtls: await freePort(), mesh: await freePort() };
  const mesh = createTestCa('cluster.local');
  const gatewayId = 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway';
  const secureCert = issued(serverCa, 'secure.example.com');
  const otherCert = issued(serverCa, 'other.example.com');
  const backendPod = (name: string, ip: string) => pod(name, { ns: 'shop', ip, labels: { app: name } });
  const svc = (name: string, p: number, target: number, appProtocol?: string) => service(name, { ns: 'shop', clusterIP: '10.96.7.' + (p % 200), ports: [{ name: appProtocol ?? 'tcp', port: p, targetPort: target }] });
  const objects: KubeObject[] = [
    namespace('shop'),
    namespace('istio-system'),
    pod('istio-ingressgateway-0', { ns: 'istio-system', ip: '127.0.0.1', labels: { istio: 'ingressgateway' } }),
    backendPod('echo-v1', '127.0.0.2'),
    backendPod('echo-v2', '127.0.0.3'),
    backendPod('site-a', '127.0.0.4'),
    backendPod('site-b', '127.0.0.5'),
    backendPod('web', '127.0.0.6'),
    svc('echo-v1', 9001, v1),
    svc('echo-v2', 9002, v2),
    svc('site-a', 8443, tlsA),
    svc('site-b', 8444, tlsB),
    svc('web', 8080, web, 'http'),
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'secure-cred', namespace: 'istio-system' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(secureCert.certChainPem.join('\n')), 'tls.key': b64(secureCert.keyPem), 'ca.crt': b64(clientCa.rootCertPem) } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'other-cred', namespace: 'istio-system' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(otherCert.certChainPem.join('\n')), 'tls.key': b64(otherCert.keyPem), 'ca.crt': b64(rogueCa.rootCertPem) } },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge', namespace: 'shop' },
      spec: {
        selector: { istio: 'ingressgateway' },
        servers: [
          { port: { number: port.tcp, name: 'tcp', protocol: 'TCP' }, hosts: ['*'] },
          { port: { number: port.tls, name: 'tls', protocol: 'TLS' }, hosts: ['a.example.com', 'b.example.com'], tls: { mode: 'PASSTHROUGH' } },
          { port: { number: port.mtls, name: 'https', protocol: 'HTTPS' }, hosts: ['secure.example.com'], tls: { mode: 'MUTUAL', credentialName: 'secure-cred' } },
          { port: { number: port.mtls, name: 'https-other', protocol: 'HTTPS' }, hosts: ['other.example.com'], tls: { mode: 'MUTUAL', credentialName: 'other-cred' } },
          { port: { number: port.mesh, name: 'https-mesh', protocol: 'HTTPS' }, hosts: ['mesh.example.com'], tls: { mode: 'ISTIO_MUTUAL' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'echo', namespace: 'shop' },
      spec: {
        hosts: ['*'],
        gateways: ['edge'],
        tcp: [{ match: [{ port: port.tcp }], route: [{ destination: { host: 'echo-v1', port: { number: 9001 } }, weight: 50 }, { destination: { host: 'echo-v2', port: { number: 9002 } }, weight: 50 }] }],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'sites', namespace: 'shop' },
      spec: {
        hosts: ['a.example.com', 'b.example.com'],
        gateways: ['edge'],
        tls: [
          { match: [{ port: port.tls, sniHosts: ['a.example.com'] }], route: [{ destination: { host: 'site-a', port: { number: 8443 } } }] },
          { match: [{ port: port.tls, sniHosts: ['b.example.com'] }], route: [{ destination: { host: 'site-b', port: { number: 8444 } } }] },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'web', namespace: 'shop' },
      spec: { hosts: ['secure.example.com', 'mesh.example.com'], gateways: ['edge'], http: [{ route: [{ destination: { host: 'web', port: { number: 8080 } } }] }] },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'mesh-clients', namespace: 'shop' },
      spec: {
        targetRefs: [{ kind: 'Gateway', group: 'networking.istio.io', name: 'edge' }],
        action: 'ALLOW',
        rules: [
          { from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }], to: [{ operation: { hosts: ['mesh.example.com'] } }] },
          { to: [{ operation: { hosts: ['secure.example.com'] } }] },
          // The TCP and TLS passthrough ports: connections have no hosts, so only a rule without HTTP attributes allows them (Istio's network RBAC).
          { to: [{ operation: { ports: [String(port.tcp), String(port.tls)] } }] },
        ],
      },
    },
  ];
  const out = translateAll(objects);
  const problems = [...out.model.conditions, ...out.routes.conditions, ...out.listeners.conditions].filter((c) => /Gateway|VirtualService/.test(c.objectKey));
  assert.deepEqual(problems, [], 'the Gateway and VirtualServices apply without problems');
  const podKey = 'istio-system/istio-ingressgateway-0';
  const listeners = out.listeners.byPod.get(podKey) ?? [];
  assert.deepEqual(
    listeners.map((l) => [l.port, l.protocol, l.certificates.map((c) => c.caPem !== undefined)]),
    [
      [port.tcp, 'TCP', []],
      [port.tls, 'TLS', []],
      [port.mtls, 'HTTPS', [true, true]],
      [port.mesh, 'HTTPS', []],
    ].sort((a, b) => (a[0] as number) - (b[0] as number)),
  );
  for (const l of listeners) assert.deepEqual(validateGatewayListener(l), []);
  for (const r of out.routes.routes) assert.deepEqual(validateRouteConfig(r), [], `${r.name} is valid`);

  const registry = createRegistry();
  const gw = await startGatewayPod(t, { podKey, identity: gatewayId, workload: 'istio-ingressgateway', mesh, registry, translation: out });
  assert.deepEqual(gw.ingress!.ports().map((p) => p.protocol).sort(), ['HTTPS', 'HTTPS', 'TCP', 'TLS']);

  // TCP: half the connections each way, bytes both ways.
  const firsts: Record<string, number> = {};
  for (let i = 0; i < 40; i++) {
    const r = await tcpExchange(port.tcp, `ping ${i}`);
    assert.notEqual(r, 'reset', 'every TCP connection is carried');
    if (r === 'reset') return;
    assert.equal(r.echoed, `ping ${i}`);
    firsts[r.first] = (firsts[r.first] ?? 0) + 1;
  }
  assert.deepEqual(Object.keys(firsts).sort(), ['v1', 'v2']);
  assert.ok(firsts['v1']! >= 5 && firsts['v2']! >= 5, `a 50/50 split of 40 connections: ${JSON.stringify(firsts)}`);

  // TLS passthrough: the backend's own certificate reaches the client; SNI picks the backend.
  for (const host of ['a.example.com', 'b.example.com']) {
    const r = await tlsExchange(port.tls, host);
    assert.notEqual(r, 'reset', `${host} is carried`);
    if (r === 'reset') return;
    assert.equal(r.line, `tls ${host}`);
    assert.match(r.san, new RegExp(`DNS:${host.replaceAll('.', '\\.')}$`), 'the certificate is the backend\'s: the gateway did not terminate TLS');
  }
  assert.equal(await tlsExchange(port.tls, 'c.example.com'), 'reset', 'an SNI the server does not list is reset');
  assert.equal(await tcpExchange(port.tls, 'GET / HTTP/1.0\r\n\r\n'), 'reset', 'bytes that are no ClientHello are reset');

  // MUTUAL: a client certificate from the Secret's ca.crt is required.
  assert.deepEqual(await httpsGet(port.mtls, issued(clientCa, 'client.example.com')), { status: 200, body: 'web' });
  assert.ok('error' in (await httpsGet(port.mtls)), 'no client certificate: the handshake fails');
  assert.ok('error' in (await httpsGet(port.mtls, issued(rogueCa, 'client.example.com'))), 'a certificate of the CA of another host on the port: refused');
  assert.equal((await httpsGet(port.mtls, issued(rogueCa, 'client.example.com'), 'other.example.com') as { status: number }).status, 404, 'that CA is good for its own host (which has no route)');
  assert.ok('error' in (await httpsGet(port.mtls, issued(clientCa, 'client.example.com'), 'other.example.com')), '... and only there');

  // ISTIO_MUTUAL: the gateway's mesh certificate; clients need one of the mesh, whose identity AuthorizationPolicies see.
  const meshGet = (id?: string) => httpsGet(port.mesh, id ? mesh.issue(id) : undefined, 'mesh.example.com', mesh.rootPem);
  assert.deepEqual(await meshGet('spiffe://cluster.local/ns/shop/sa/client'), { status: 200, body: 'web' });
  assert.equal(((await meshGet('spiffe://cluster.local/ns/shop/sa/other')) as { status: number }).status, 403, 'another mesh identity: the ALLOW on principals does not match');
  assert.ok('error' in (await meshGet()), 'no client certificate: the handshake fails');
  assert.ok('error' in (await httpsGet(port.mesh, issued(clientCa, 'client.example.com'), 'mesh.example.com', mesh.rootPem)), 'a certificate from outside the mesh: the handshake fails');

  const opened = (await registry.getSingleMetric('istio_tcp_connections_opened_total')?.get())?.values ?? [];
  const bySource = opened.filter((v) => v.labels['reporter'] === 'source' && v.labels['source_workload'] === 'istio-ingressgateway');
  assert.equal(
    bySource.reduce((n, v) => n + v.value, 0),
    42,
    'the gateway counts its TCP and passed-through TLS connections (reporter=source)',
  );
});
