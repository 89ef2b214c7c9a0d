/**
 * Gateways that end TLS and carry the decrypted bytes as a TCP stream, from manifests-shaped
 * objects through the controller's translation into a gateway-mode Waypoint on 127.0.0.1, with
 * real TLS clients and TCP backends on other loopback addresses:
 * - Istio Gateway servers of protocol TLS in SIMPLE, MUTUAL and ISTIO_MUTUAL mode, routed by the
 *   VirtualService's `tcp` routes (the gateway's certificate reaches the client, no ALPN; client
 *   certificates are required and checked against the CA of the `<credentialName>-cacert` Secret; the mesh identity of an ISTIO_MUTUAL client is the
 *   principal AuthorizationPolicies see);
 * - a Gateway API TLS listener in Terminate mode whose TLSRoutes pick the backend by the SNI of
 *   the handshake.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { CertificateAuthority } from '../../src/controller/ca/authority.js';
import { objectKey, type KubeObject } from '../../src/controller/objects.js';
import { translateAll } from '../../src/controller/translate/translate.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { validateGatewayListener } from '../../src/shared/validate-routes.js';
import { freePort } from '../helpers/local-mesh.js';
import { startGatewayPod } from '../helpers/gateway-pod.js';
import { createTestCa } from '../helpers/test-ca.js';
import { startGreetingEcho } from '../helpers/tcp-exchange.js';
import { namespace, pod, service } from '../unit/translate/helpers.js';

const serverCa = CertificateAuthority.generate({ trustDomain: 'server.test', ttlDays: 1 });
const clientCa = CertificateAuthority.generate({ trustDomain: 'client.test', ttlDays: 1 });
const rogueCa = CertificateAuthority.generate({ trustDomain: 'rogue.test', ttlDays: 1 });
const b64 = (s: string): string => Buffer.from(s).toString('base64');

interface Pair {
  certChainPem: string[];
  keyPem: string;
}

function tlsSecret(name: string, ns: string, cert: Pair, ca?: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(cert.certChainPem.join('\n')), 'tls.key': b64(cert.keyPem), ...(ca ? { 'ca.crt': b64(ca) } : {}) } } as KubeObject;
}

type Exchange = { greeting: string; echoed: string; san: string; alpn: string | false } | 'refused';

/**
 * A TLS client through the gateway: the backend's greeting line, what came back of `echo`, the
 * names on the certificate the client saw and the ALPN agreed; `refused` when the handshake
 * fails or the connection is reset or closed before the exchange ends.
 */
function tlsExchange(port: number, servername: string, opts: { ca: string; client?: Pair; echo?: string; anyName?: boolean }): Promise<Exchange> {
  const echo = opts.echo ?? 'ping';
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      ca: opts.ca,
      ALPNProtocols: ['h2', 'http/1.1'],
      ...(opts.anyName ? { checkServerIdentity: () => undefined } : {}),
      ...(opts.client ? { cert: opts.client.certChainPem.join('\n'), key: opts.client.keyPem } : {}),
    });
    let data = '';
    let done = false;
    const finish = (r: Exchange): void => {
      if (done) return;
      done = true;
      s.destroy();
      resolve(r);
    };
    s.setEncoding('utf8');
    s.once('secureConnect', () => s.write(echo));
    s.on('data', (d: string) => {
      data += d;
      const nl = data.indexOf('\n');
      if (nl >= 0 && data.slice(nl + 1) === echo) {
        finish({ greeting: data.slice(0, nl), echoed: echo, san: String(s.getPeerX509Certificate()?.subjectAltName ?? ''), alpn: s.alpnProtocol ?? false });
      }
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE' || /socket disconnected|alert|certificate/i.test(e.message)) finish('refused');
      else if (!done) reject(e);
    });
    s.once('close', () => finish('refused'));
    s.setTimeout(10_000, () => s.destroy(new Error('tls exchange timed out')));
  });
}

/** Namespaces, the ingress gateway pod on 127.0.0.1 and Service shop/db (port 5432) in front of `dbPort` on 127.0.0.2. */
function dbCluster(dbPort: number): KubeObject[] {
  return [
    namespace('shop'),
    namespace('istio-system'),
    pod('istio-ingressgateway-0', { ns: 'istio-system', ip: '127.0.0.1', labels: { istio: 'ingressgateway' } }),
    pod('db', { ns: 'shop', ip: '127.0.0.2', labels: { app: 'db' } }),
    service('db', { ns: 'shop', clusterIP: '10.96.8.1', ports: [{ name: 'tcp', port: 5432, targetPort: dbPort }] }),
  ];
}

test('Istio Gateway TLS servers in SIMPLE, MUTUAL and ISTIO_MUTUAL mode end TLS and route the bytes by tcp routes', async (t) => {
  const db = await startGreetingEcho(t, '127.0.0.2', 'db');
  const port = { simple: await freePort(), mutual: await freePort(), mesh: await freePort() };
  const mesh = createTestCa('cluster.local');
  const dbCert = serverCa.issueServingCert({ dnsNames: ['db.example.com'], ttlMs: 3_600_000 });
  const objects: KubeObject[] = [
    ...dbCluster(db),
    tlsSecret('db-cred', 'istio-system', dbCert),
    // MUTUAL's CA certificates in Istio's companion Secret `<credentialName>-cacert` (key `cacert`).
    tlsSecret('db-mutual-cred', 'istio-system', dbCert),
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db-mutual-cred-cacert', namespace: 'istio-system' }, type: 'Opaque', data: { cacert: b64(clientCa.rootCertPem) } } as KubeObject,
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge', namespace: 'shop' },
      spec: {
        selector: { istio: 'ingressgateway' },
        servers: [
          { port: { number: port.simple, name: 'tls-simple', protocol: 'TLS' }, hosts: ['db.example.com'], tls: { mode: 'SIMPLE', credentialName: 'db-cred' } },
          { port: { number: port.mutual, name: 'tls-mutual', protocol: 'TLS' }, hosts: ['db.example.com'], tls: { mode: 'MUTUAL', credentialName: 'db-mutual-cred' } },
          { port: { number: port.mesh, name: 'tls-mesh', protocol: 'TLS' }, hosts: ['*'], tls: { mode: 'ISTIO_MUTUAL' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'db', namespace: 'shop' },
      spec: {
        hosts: ['*'],
        gateways: ['edge'],
        tcp: [port.simple, port.mutual, port.mesh].map((p) => ({ match: [{ port: p }], route: [{ destination: { host: 'db', port: { number: 5432 } } }] })),
      },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'edge', namespace: 'shop' },
      spec: {
        targetRefs: [{ kind: 'Gateway', group: 'networking.istio.io', name: 'edge' }],
        action: 'ALLOW',
        rules: [
          { to: [{ operation: { ports: [String(port.simple), String(port.mutual)] } }] },
          // The mesh port: only this mesh identity, which the gateway learnt from the client's certificate.
          { from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }], to: [{ operation: { ports: [String(port.mesh)] } }] },
        ],
      },
    },
  ];
  const out = translateAll(objects);
  const problems = [...out.model.conditions, ...out.routes.conditions, ...out.listeners.conditions].filter((c) => /Gateway|VirtualService|AuthorizationPolicy/.test(c.objectKey));
  assert.deepEqual(problems, [], 'the Gateway, VirtualService and policy apply without problems');
  const podKey = 'istio-system/istio-ingressgateway-0';
  const listeners = out.listeners.byPod.get(podKey) ?? [];
  assert.deepEqual(
    listeners.map((l) => [l.port, l.protocol, l.terminate === true, l.istioMutual === true, l.certificates.map((c) => c.caPem !== undefined)]),
    [
      [port.simple, 'TCP', true, false, [false]],
      [port.mutual, 'TCP', true, false, [true]],
      [port.mesh, 'TCP', true, true, []],
    ].sort((a, b) => (a[0] as number) - (b[0] as number)),
  );
  for (const l of listeners) assert.deepEqual(validateGatewayListener(l), [], `listener ${l.port} is valid`);

  const registry = createRegistry();
  await startGatewayPod(t, { podKey, identity: 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway', workload: 'istio-ingressgateway', mesh, registry, translation: out });

  // SIMPLE: the gateway's certificate, no HTTP ALPN, the plaintext reaches the TCP backend and back.
  const simple = await tlsExchange(port.simple, 'db.example.com', { ca: serverCa.rootCertPem, echo: 'select 1' });
  assert.notEqual(simple, 'refused', 'the SIMPLE port carries the connection');
  if (simple === 'refused') return;
  assert.equal(simple.greeting, 'db', 'the backend greets in plaintext through the gateway');
  assert.equal(simple.echoed, 'select 1');
  assert.match(simple.san, /DNS:db\.example\.com/, 'the certificate is the gateway\'s from the Secret');
  assert.equal(simple.alpn, false, 'a TLS server offers no HTTP ALPN');

  // MUTUAL: a client certificate chaining to the Secret's ca.crt is required.
  const client = clientCa.issueServingCert({ dnsNames: ['client.example.com'], ttlMs: 3_600_000 });
  const rogue = rogueCa.issueServingCert({ dnsNames: ['client.example.com'], ttlMs: 3_600_000 });
  const mutual = await tlsExchange(port.mutual, 'db.example.com', { ca: serverCa.rootCertPem, client });
  assert.ok(mutual !== 'refused' && mutual.greeting === 'db', 'a client certificate of the CA: carried');
  assert.equal(await tlsExchange(port.mutual, 'db.example.com', { ca: serverCa.rootCertPem }), 'refused', 'no client certificate: refused');
  assert.equal(await tlsExchange(port.mutual, 'db.example.com', { ca: serverCa.rootCertPem, client: rogue }), 'refused', 'a certificate of another CA: refused');

  // ISTIO_MUTUAL: the mesh certificate both ways; the client's identity decides the ALLOW rule.
  const meshExchange = (id?: string) => tlsExchange(port.mesh, 'db.shop.svc.cluster.local', { ca: mesh.rootPem, anyName: true, ...(id ? { client: mesh.issue(id) } : {}) });
  const allowed = await meshExchange('spiffe://cluster.local/ns/shop/sa/client');
  assert.ok(allowed !== 'refused' && allowed.greeting === 'db', 'the allowed mesh identity is carried');
  assert.equal(await meshExchange('spiffe://cluster.local/ns/shop/sa/other'), 'refused', 'another mesh identity: the ALLOW on principals does not match, reset');
  assert.equal(await meshExchange(), 'refused', 'no client certificate: refused');

  const opened = (await registry.getSingleMetric('istio_tcp_connections_opened_total')?.get())?.values ?? [];
  const counted = opened.filter((v) => v.labels['reporter'] === 'source' && v.labels['source_workload'] === 'istio-ingressgateway').reduce((n, v) => n + v.value, 0);
  assert.equal(counted, 3, 'the gateway counts the three carried connections');
});

test('Gateway API TLS listener in Terminate mode: TLSRoutes pick the backend by the SNI of the handshake', async (t) => {
  const [a, b] = [await startGreetingEcho(t, '127.0.0.2', 'site-a'), await startGreetingEcho(t, '127.0.0.3', 'site-b')];
  const tlsPort = await freePort();
  const siteCert = serverCa.issueServingCert({ dnsNames: ['a.example.com', 'b.example.com', 'c.example.com'], ttlMs: 3_600_000 });
  const route = (name: string, host: string): KubeObject => ({
    apiVersion: 'gateway.networking.k8s.io/v1alpha2',
    kind: 'TLSRoute',
    metadata: { name, namespace: 'infra' },
    spec: { parentRefs: [{ name: 'edge-tls' }], hostnames: [host], rules: [{ backendRefs: [{ name, port: 7000 }] }] },
  });
  const objects: KubeObject[] = [
    namespace('infra'),
    pod('edge-tls-0', { ns: 'infra', ip: '127.0.0.1', labels: { 'gateway.networking.k8s.io/gateway-name': 'edge-tls' } }),
    pod('site-a', { ns: 'infra', ip: '127.0.0.2', labels: { app: 'site-a' } }),
    pod('site-b', { ns: 'infra', ip: '127.0.0.3', labels: { app: 'site-b' } }),
    service('site-a', { ns: 'infra', clusterIP: '10.96.8.2', ports: [{ name: 'tcp', port: 7000, targetPort: a }] }),
    service('site-b', { ns: 'infra', clusterIP: '10.96.8.3', ports: [{ name: 'tcp', port: 7000, targetPort: b }] }),
    tlsSecret('site-cred', 'infra', siteCert),
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge-tls', namespace: 'infra' },
      // No tls.mode: Terminate is the Gateway API's default.
      spec: { gatewayClassName: 'istio', listeners: [{ name: 'tls', port: tlsPort, protocol: 'TLS', tls: { certificateRefs: [{ name: 'site-cred' }] } }] },
    },
    route('site-a', 'a.example.com'),
    route('site-b', 'b.example.com'),
  ];
  const out = translateAll(objects);
  const conditions = [...out.model.conditions, ...out.routes.conditions, ...out.listeners.conditions];
  const of = (kind: string, name: string) => conditions.filter((c) => c.objectKey === objectKey(objects.find((o) => o.kind === kind && o.metadata.name === name)!) && c.status === 'False').map((c) => c.message);
  assert.deepEqual(of('Gateway', 'edge-tls'), [], 'the Terminate listener is served');
  assert.deepEqual([of('TLSRoute', 'site-a'), of('TLSRoute', 'site-b')], [[], []], 'both TLSRoutes attach to it');
  const podKey = 'infra/edge-tls-0';
  const listeners = out.listeners.byPod.get(podKey) ?? [];
  assert.deepEqual(listeners.map((l) => [l.port, l.protocol, l.terminate === true, l.certificates.map((c) => c.secret)]), [[tlsPort, 'TLS', true, ['infra/site-cred']]]);

  await startGatewayPod(t, { podKey, identity: 'spiffe://cluster.local/ns/infra/sa/edge-tls', workload: 'edge-tls', mesh: createTestCa('cluster.local'), registry: createRegistry(), translation: out });
  for (const [host, greeting] of [['a.example.com', 'site-a'], ['b.example.com', 'site-b']] as const) {
    const r = await tlsExchange(tlsPort, host, { ca: serverCa.rootCertPem });
    assert.notEqual(r, 'refused', `${host} is carried`);
    if (r === 'refused') return;
    assert.equal(r.greeting, greeting, `the SNI ${host} picks its route's backend`);
    assert.match(r.san, /DNS:a\.example\.com/, 'the gateway presented the listener\'s certificate (it terminated TLS)');
  }
  assert.equal(await tlsExchange(tlsPort, 'c.example.com', { ca: serverCa.rootCertPem }), 'refused', 'an SNI no TLSRoute names: reset after the handshake');
});

/** A client CA made with the openssl CLI, two client certificates, and a CRL revoking the first. */
function caWithRevocation(): { caPem: string; crlPem: string; revoked: Pair; good: Pair } {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-crl-'));
  try {
    const run = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    writeFileSync(join(dir, 'ca.cnf'), '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 1\n');
    writeFileSync(join(dir, 'index.txt'), '');
    writeFileSync(join(dir, 'crlnumber'), '01\n');
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=client-ca', '-days', '1');
    for (const c of ['revoked', 'good']) {
      run('req', ...ec, '-keyout', `${c}.key`, '-out', `${c}.csr`, '-subj', `/CN=${c}`);
      run('x509', '-req', '-in', `${c}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${c}.crt`, '-days', '1');
    }
    run('ca', '-config', 'ca.cnf', '-keyfile', 'ca.key', '-cert', 'ca.crt', '-revoke', 'revoked.crt');
    run('ca', '-config', 'ca.cnf', '-keyfile', 'ca.key', '-cert', 'ca.crt', '-gencrl', '-out', 'ca.crl');
    const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
    const pair = (c: string): Pair => ({ certChainPem: [read(`${c}.crt`)], keyPem: read(`${c}.key`) });
    return { caPem: read('ca.crt'), crlPem: read('ca.crl'), revoked: pair('revoked'), good: pair('good') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('MUTUAL with a ca.crl in the credential: a revoked client certificate is refused, others are carried', async (t) => {
  const db = await startGreetingEcho(t, '127.0.0.2', 'db');
  const port = await freePort();
  const clients = caWithRevocation();
  const dbCert = serverCa.issueServingCert({ dnsNames: ['db.example.com'], ttlMs: 3_600_000 });
  const cred = tlsSecret('db-crl-cred', 'istio-system', dbCert, clients.caPem);
  (cred as unknown as { data: Record<string, string> }).data['ca.crl'] = b64(clients.crlPem);
  const objects: KubeObject[] = [
    ...dbCluster(db),
    cred,
    { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'shop' }, spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: port, name: 'tls', protocol: 'TLS' }, hosts: ['db.example.com'], tls: { mode: 'MUTUAL', credentialName: 'db-crl-cred' } }] } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'db', namespace: 'shop' }, spec: { hosts: ['db.example.com'], gateways: ['edge'], tcp: [{ match: [{ port }], route: [{ destination: { host: 'db', port: { number: 5432 } } }] }] } },
  ];
  const out = translateAll(objects);
  assert.deepEqual([...out.listeners.conditions, ...out.routes.conditions], [], 'the credential with its CRL and the route are accepted');
  const listener = out.listeners.byPod.get('istio-system/istio-ingressgateway-0')?.[0];
  assert.match(listener?.certificates[0]?.crlPem ?? '', /BEGIN X509 CRL/, 'the CRL travels with the certificate');
  assert.deepEqual(validateGatewayListener(listener), []);
  await startGatewayPod(t, { podKey: 'istio-system/istio-ingressgateway-0', identity: 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway', workload: 'istio-ingressgateway', mesh: createTestCa('cluster.local'), registry: createRegistry(), translation: out });
  const good = await tlsExchange(port, 'db.example.com', { ca: serverCa.rootCertPem, client: clients.good });
  assert.ok(good !== 'refused' && good.greeting === 'db', 'a certificate the CRL does not list is carried');
  assert.equal(await tlsExchange(port, 'db.example.com', { ca: serverCa.rootCertPem, client: clients.revoked }), 'refused', 'a revoked certificate is refused in the handshake');

  // A CRL that is not one: the server is refused with a message naming the Secret, not served half-checked.
  (cred as unknown as { data: Record<string, string> }).data['ca.crl'] = b64('-----BEGIN X509 CRL-----\nnope\n-----END X509 CRL-----\n');
  const bad = translateAll(objects);
  assert.match(bad.listeners.conditions.map((c) => c.message).join(), /Secret istio-system\/db-crl-cred: ca\.crl is not a PEM X509 CRL of that CA/);
  assert.equal(bad.listeners.byPod.get('istio-system/istio-ingressgateway-0'), undefined);
});
