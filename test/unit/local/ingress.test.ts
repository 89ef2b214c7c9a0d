/**
 * The pure parts of the ingress gateway: what local mode installs and when it scales it up, which Gateway servers
 * select it, TLS Secret decoding and its errors, listeners per pod with their conditions, the
 * listener resource validation (never quoting key text), SNI certificate choice and the merge of
 * ingress routes in the gateway process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../../src/controller/objects.js';
import { decodeTlsSecret, gatewayListeners, serverSelectsPod } from '../../../src/controller/translate/gateway-listeners.js';
import { translateRoutes } from '../../../src/controller/translate/routes.js';
import { ingressGatewayObjects, ingressReplicas, isIstioGateway } from '../../../src/local/ingress-gateway.js';
import { renderOwned, type ProxyTemplate } from '../../../src/controller/owned/render.js';
import { loadWaypointConfig } from '../../../src/waypoint/config.js';
import { gatewayRoutes, httpsRedirectLocation } from '../../../src/waypoint/server/gateway.js';
import { certificateFor, emptyHeaderOps, type GatewayListener, type RouteConfig } from '../../../src/shared/routes.js';
import { validateGatewayListener } from '../../../src/shared/validate-routes.js';
import { validateResource } from '../../../src/shared/validate-resource.js';
import { TYPE_GATEWAY_LISTENER } from '../../../src/shared/resources.js';
import { createTestCa } from '../../helpers/test-ca.js';
import { testWorkload } from '../../helpers/loopback-net.js';
import { Waypoint } from '../../../src/waypoint/waypoint.js';
import { silentLogger } from '../../../src/shared/log.js';
import { createRegistry } from '../../../src/shared/metrics.js';
import { CertificateAuthority } from '../../../src/controller/ca/authority.js';

const template: ProxyTemplate = { image: 'localhost/ambit:local', controllerAddress: '10.1.0.1:15012', trustDomain: 'cluster.local', clusterId: 'Kubernetes', logLevel: 'info' };

/** A pod of a Deployment, as its ReplicaSet makes it from the template. */
function podOf(deployment: KubeObject, name: string): KubeObject {
  const tpl = (deployment.spec as { template: { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> } }).template;
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: deployment.metadata.namespace!, labels: { ...tpl.metadata.labels } }, spec: { ...tpl.spec, nodeName: 'node-1' } };
}
const ingressDeployment = (): KubeObject => ingressGatewayObjects(template, 1).find((o) => o.kind === 'Deployment')!;
const ingressGatewayPod = (name = 'istio-ingressgateway-5d9c7b8f6-abcde'): KubeObject => podOf(ingressDeployment(), name);

const istioGateway = (name: string, servers: unknown[], selector: Record<string, string> = { istio: 'ingressgateway' }): KubeObject => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'Gateway',
  metadata: { name, namespace: 'bookinfo' },
  spec: { selector, servers },
});
const waypointGateway: KubeObject = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: 'bookinfo' }, spec: { gatewayClassName: 'istio-waypoint' } };
const http80 = { port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['example.com'] };
const https443 = (credentialName: string): unknown => ({ port: { number: 443, name: 'https', protocol: 'HTTPS' }, tls: { mode: 'SIMPLE', credentialName }, hosts: ['example.com'] });

const serving = (() => {
  const ca = CertificateAuthority.generate({ trustDomain: 'example.test', ttlDays: 1 });
  return ca.issueServingCert({ dnsNames: ['example.com'], ttlMs: 3_600_000 });
})();
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const tlsSecret = (name: string, data: Record<string, string>, type = 'kubernetes.io/tls', namespace = 'istio-system'): KubeObject => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, type, data });
const goodSecret = tlsSecret('example-com-cert', { 'tls.crt': b64(serving.certChainPem.join('\n')), 'tls.key': b64(serving.keyPem) });

test('local mode scales the ingress gateway to one replica while an Istio Gateway exists, and only then', () => {
  assert.equal(ingressReplicas([]), 0);
  assert.equal(ingressReplicas([waypointGateway]), 0, 'a waypoint Gateway (Gateway API) is not an Istio Gateway');
  assert.equal(ingressReplicas([istioGateway('g', [http80])]), 1);
  const deleting = istioGateway('g', [http80]);
  deleting.metadata.deletionTimestamp = '2026-01-01T00:00:00Z';
  assert.equal(ingressReplicas([deleting]), 0, 'a Gateway being deleted asks for nothing');
  assert.equal(isIstioGateway(waypointGateway), false);
  const objs = ingressGatewayObjects(template, 0);
  assert.deepEqual(objs.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`), ['ServiceAccount istio-system/istio-ingressgateway', 'Service istio-system/istio-ingressgateway', 'Deployment istio-system/istio-ingressgateway']);
  assert.equal((objs[2]!.spec as { replicas: number }).replicas, 0);
});

test('the ingress gateway is istio-ingressgateway in istio-system, labelled as Istio, not enrolled, in gateway mode with its projected token', () => {
  const p = ingressGatewayPod();
  assert.equal(p.metadata.labels?.['istio'], 'ingressgateway');
  assert.equal(p.metadata.labels?.['app'], 'istio-ingressgateway');
  assert.equal(p.metadata.labels?.['istio.io/dataplane-mode'], 'none');
  const spec = p.spec as { serviceAccountName: string; containers: Array<{ command: string[]; env: Array<{ name: string; value?: string }>; readinessProbe?: unknown }>; volumes: Array<{ name: string; projected?: unknown }> };
  assert.equal(spec.serviceAccountName, 'istio-ingressgateway');
  const c = spec.containers[0]!;
  assert.deepEqual(c.command, ['ambit', 'waypoint']);
  const vars = Object.fromEntries(c.env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
  assert.equal(vars['AMBIT_WAYPOINT_MODE'], 'gateway');
  assert.equal(vars['AMBIT_TOKEN_FILE'], '/var/run/secrets/tokens/istio-token', 'the pod authenticates with its own projected service-account token');
  assert.deepEqual(spec.volumes.find((v) => v.name === 'istio-token')?.projected, { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] });
  assert.deepEqual((c.readinessProbe as { httpGet: unknown }).httpGet, { path: '/healthz/ready', port: 15021 });
  assert.deepEqual(ingressGatewayObjects(template, 1), ingressGatewayObjects(template, 1), 'stable: the same objects every pass');
  // The process reads that environment as a gateway.
  const cfg = loadWaypointConfig({ ...vars, AMBIT_NODE_NAME: 'node-1', POD_NAME: p.metadata.name, POD_NAMESPACE: 'istio-system', POD_IP: '10.1.1.5' });
  assert.equal(cfg.mode, 'gateway');
  assert.equal(cfg.gatewayName, 'istio-ingressgateway');
  assert.deepEqual(cfg.readyAddr, { host: '10.1.1.5', port: 15021 });
  // Waypoint pods come from the same template and stay waypoints.
  const wp = renderOwned({ ...waypointGateway, metadata: { ...waypointGateway.metadata, uid: 'u1' } }, template)!;
  assert.equal(wp.deployment.metadata.name, 'waypoint');
  assert.equal((podOf(wp.deployment, 'waypoint-1').spec as { containers: Array<{ env: Array<{ name: string; value?: string }> }> }).containers[0]!.env.find((e) => e.name === 'AMBIT_WAYPOINT_MODE')?.value, 'waypoint');
  assert.throws(() => loadWaypointConfig({ ...vars, AMBIT_NODE_NAME: 'node-1', AMBIT_WAYPOINT_MODE: 'ingress', POD_NAME: 'p', POD_NAMESPACE: 'istio-system', POD_IP: '10.1.1.5' }), /AMBIT_WAYPOINT_MODE: must be one of waypoint, gateway/);
});

test('Gateway servers select pods by spec.selector labels; an empty selector selects none', () => {
  const pod = ingressGatewayPod();
  const servers = translateRoutes([istioGateway('a', [http80]), istioGateway('b', [http80], { istio: 'eastwestgateway' }), istioGateway('c', [http80], {})]).gateways;
  assert.deepEqual(servers.filter((s) => serverSelectsPod(s, pod)).map((s) => s.gateway), ['bookinfo/a']);
});

test('decodeTlsSecret: a kubernetes.io/tls Secret decodes; every bad Secret gets a message naming it and never its content', () => {
  const ok = decodeTlsSecret(goodSecret, 'istio-system/example-com-cert');
  assert.ok(ok.ok);
  assert.equal(ok.keyPem, serving.keyPem);
  const other = createTestCa().issue('spiffe://cluster.local/ns/a/sa/b');
  const cases: Array<[KubeObject | undefined, RegExp]> = [
    [undefined, /^Secret istio-system\/s not found$/],
    [tlsSecret('s', {}, 'kubernetes.io/dockerconfigjson'), /has type kubernetes\.io\/dockerconfigjson; expected kubernetes\.io\/tls/],
    [tlsSecret('s', { 'tls.key': b64(serving.keyPem) }), /has no tls\.crt/],
    [tlsSecret('s', { 'tls.crt': b64(serving.certChainPem[0]!) }), /has no tls\.key/],
    [tlsSecret('s', { 'tls.crt': '!!not base64!!', 'tls.key': b64(serving.keyPem) }), /data\.tls\.crt is not base64/],
    [tlsSecret('s', { 'tls.crt': b64('hello'), 'tls.key': b64(serving.keyPem) }), /tls\.crt is not a PEM certificate/],
    [tlsSecret('s', { 'tls.crt': b64(serving.certChainPem[0]!), 'tls.key': b64('nope') }), /tls\.key is not a PEM private key/],
    [tlsSecret('s', { 'tls.crt': b64(serving.certChainPem[0]!), 'tls.key': b64(other.keyPem) }), /tls\.key does not belong to the certificate/],
  ];
  for (const [secret, want] of cases) {
    const r = decodeTlsSecret(secret, 'istio-system/s');
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.match(r.problem, want);
      assert.ok(!r.problem.includes('PRIVATE KEY') && !r.problem.includes(b64(serving.keyPem).slice(0, 20)), 'no key text in the message');
    }
  }
  const plain = decodeTlsSecret({ ...tlsSecret('s', {}), data: undefined, stringData: { 'tls.crt': serving.certChainPem[0]!, 'tls.key': serving.keyPem } } as KubeObject, 'istio-system/s');
  assert.ok(plain.ok, 'stringData works too');
});

test('gatewayListeners: HTTP, HTTPS and TLS termination per port for the selected pod; a bad server is refused with a condition, the rest served', () => {
  const pod = ingressGatewayPod('gw-0');
  const objects = [
    istioGateway('a', [http80, https443('example-com-cert')]),
    istioGateway('b', [https443('missing-cert'), { port: { number: 15020, name: 'm', protocol: 'HTTP' }, hosts: ['*'] }, { port: { number: 9000, name: 'tcp', protocol: 'TCP' }, hosts: ['*'] }, { port: { number: 9443, name: 'im', protocol: 'TLS' }, hosts: ['*'], tls: { mode: 'ISTIO_MUTUAL' } }, { port: { number: 8443, name: 'mtls', protocol: 'HTTPS' }, hosts: ['example.com'], tls: { mode: 'MUTUAL', credentialName: 'example-com-cert' } }, { port: { number: 9444, name: 'bare', protocol: 'TLS' }, hosts: ['*'] }, { port: { number: 9445, name: 'tls-simple', protocol: 'TLS' }, hosts: ['example.com'], tls: { mode: 'SIMPLE', credentialName: 'example-com-cert' } }, { port: { number: 9000, name: 'tcp-tls', protocol: 'TLS' }, hosts: ['example.com'], tls: { mode: 'SIMPLE', credentialName: 'example-com-cert' } }]),
    istioGateway('c', [{ port: { number: 443, name: 'plain', protocol: 'HTTP' }, hosts: ['other.com'] }]),
  ];
  const { gateways } = translateRoutes(objects);
  const out = gatewayListeners(gateways, [pod], [goodSecret, tlsSecret('missing-cert', {}, 'kubernetes.io/tls', 'bookinfo')]);
  const ls = out.byPod.get('istio-system/gw-0')!;
  assert.deepEqual(
    ls.map((l) => ({ port: l.port, protocol: l.protocol, gateways: l.gateways, hosts: l.hosts, secrets: l.certificates.map((c) => c.secret), terminate: l.terminate === true, istioMutual: l.istioMutual === true })),
    [
      { port: 80, protocol: 'HTTP', gateways: ['bookinfo/a'], hosts: ['example.com'], secrets: [], terminate: false, istioMutual: false },
      { port: 443, protocol: 'HTTPS', gateways: ['bookinfo/a'], hosts: ['example.com'], secrets: ['istio-system/example-com-cert'], terminate: false, istioMutual: false },
      { port: 9000, protocol: 'TCP', gateways: ['bookinfo/b'], hosts: ['*'], secrets: [], terminate: false, istioMutual: false },
      // Istio TLS servers that are not PASSTHROUGH end TLS and route the bytes by `tcp` routes.
      { port: 9443, protocol: 'TCP', gateways: ['bookinfo/b'], hosts: ['*'], secrets: [], terminate: true, istioMutual: true },
      { port: 9445, protocol: 'TCP', gateways: ['bookinfo/b'], hosts: ['example.com'], secrets: ['istio-system/example-com-cert'], terminate: true, istioMutual: false },
    ],
  );
  const messages = out.conditions.map((c) => `${c.objectKey} ${c.type}=${c.status} ${c.reason}: ${c.message}`).sort();
  assert.deepEqual(messages, [
    'Gateway.networking.istio.io/bookinfo/b Programmed=False InvalidCertificateRef: Gateway bookinfo/b server 0 "https" (port 443 HTTPS): credentialName "missing-cert": Secret istio-system/missing-cert not found; this server is not served (the others keep working)',
    'Gateway.networking.istio.io/bookinfo/b Programmed=False InvalidCertificateRef: Gateway bookinfo/b server 4 "mtls" (port 8443 HTTPS): credentialName "example-com-cert": Secret istio-system/example-com-cert has no ca.crt (and there is no Secret istio-system/example-com-cert-cacert), which tls.mode MUTUAL and OPTIONAL_MUTUAL need to verify client certificates; this server is not served (the others keep working)',
    'Gateway.networking.istio.io/bookinfo/b Programmed=False PortConflict: Gateway bookinfo/b server 7 "tcp-tls" (port 9000 TLS): port 9000 is already served as TCP without TLS termination by Gateway bookinfo/b; one port cannot mix both; this server is not served (the others keep working)',
    'Gateway.networking.istio.io/bookinfo/b Programmed=False PortUnavailable: Gateway bookinfo/b server 1 "m" (port 15020 HTTP): port 15020 is reserved for the gateway\'s own use (15000, 15008, 15020, 15021); this server is not served (the others keep working)',
    'Gateway.networking.istio.io/bookinfo/b Programmed=False UnsupportedProtocol: Gateway bookinfo/b server 5 "bare" (port 9444 TLS): protocol TLS is not supported by ambit gateways (HTTP, HTTP2, GRPC, HTTPS and TLS with tls.mode SIMPLE, MUTUAL, OPTIONAL_MUTUAL or ISTIO_MUTUAL, TLS with tls.mode PASSTHROUGH, and TCP are); this server is not served (the others keep working)',
    'Gateway.networking.istio.io/bookinfo/c Programmed=False PortConflict: Gateway bookinfo/c server 0 "plain" (port 443 HTTP): port 443 is already served as HTTPS by Gateway bookinfo/a; this server is not served (the others keep working)',
  ]);
  for (const l of ls) assert.deepEqual(validateGatewayListener(l), [], 'listeners the controller builds are valid');
  assert.equal(gatewayListeners(gateways, [], [goodSecret]).byPod.size, 0, 'no gateway pod, no listeners');
});

test('validateGatewayListener: problems name the field and never quote certificate or key text', () => {
  const l: GatewayListener = { pod: 'istio-system/gw-0', port: 443, protocol: 'HTTPS', gateways: ['bookinfo/a'], hosts: ['example.com'], certificates: [{ hosts: ['example.com'], secret: 'istio-system/c', certPem: 'garbage cert', keyPem: 'secret-key-text' }] };
  const issues = validateGatewayListener(l, 'l');
  assert.deepEqual(issues.map((i) => i.path), ['l.certificates[0].certPem', 'l.certificates[0].keyPem']);
  assert.ok(!JSON.stringify(issues).includes('secret-key-text'));
  assert.deepEqual(validateGatewayListener({ ...l, certificates: [] }, 'l').map((i) => i.problem), ['must hold at least one certificate for HTTPS']);
  const v = validateResource(TYPE_GATEWAY_LISTENER, 'istio-system/gw-0/80', { ...l, port: 443, protocol: 'HTTP', certificates: [] });
  assert.deepEqual(v.issues.map((i) => i.path), ['gatewayListener[istio-system/gw-0/80].port'], 'the resource name is pod/port');
});

test('certificateFor picks by SNI: exact host, then wildcard, then the first', () => {
  const c = (hosts: string[]): GatewayListener['certificates'][number] => ({ hosts, secret: `ns/${hosts[0]}`, certPem: '', keyPem: '' });
  const certs = [c(['a.com']), c(['*.b.com']), c(['c.com'])];
  assert.equal(certificateFor(certs, 'c.com')?.secret, 'ns/c.com');
  assert.equal(certificateFor(certs, 'x.b.com')?.secret, 'ns/*.b.com');
  assert.equal(certificateFor(certs, 'unknown.org')?.secret, 'ns/a.com');
  assert.equal(certificateFor(certs, undefined)?.secret, 'ns/a.com');
});

test('gatewayRoutes: ingress configs of the served Gateways merge per host and bind to the pod; others are dropped', () => {
  const cfg = (gateway: string | undefined, host: string, route: string): RouteConfig => ({
    name: gateway ? `${gateway}/${host}` : `ns/${host}`,
    namespace: 'bookinfo',
    hostname: host,
    aliases: [],
    ...(gateway ? { gateway } : {}),
    ports: [{ port: gateway === 'bookinfo/tls' ? 443 : 80, protocol: 'http' }],
    routes: [{ name: route, match: [], backends: [{ host: 'reviews', weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } }],
    authorization: [],
  });
  const listeners: GatewayListener[] = [
    { pod: 'istio-system/gw', port: 80, protocol: 'HTTP', gateways: ['bookinfo/web'], hosts: ['example.com'], certificates: [] },
    { pod: 'istio-system/gw', port: 443, protocol: 'HTTP', gateways: ['bookinfo/tls'], hosts: ['example.com'], certificates: [] },
  ];
  const out = gatewayRoutes([cfg(undefined, 'reviews', 'mesh'), cfg('bookinfo/web', 'example.com', 'r'), cfg('bookinfo/tls', 'example.com', 'r'), cfg('bookinfo/other', 'other.com', 'x')], listeners, 'istio-system/istio-ingressgateway');
  assert.deepEqual(
    out.map((c) => ({ name: c.name, gateway: c.gateway, ports: c.ports.map((p) => p.port), routes: c.routes.map((r) => r.name) })),
    [
      { name: 'ns/reviews', gateway: undefined, ports: [80], routes: ['mesh'] },
      { name: 'bookinfo/tls/example.com', gateway: 'istio-system/istio-ingressgateway', ports: [80, 443], routes: ['r', 'r#2'] },
    ],
  );
});

test('httpsRedirect: a plain server with tls.httpsRedirect becomes a redirecting HTTP listener; a port cannot mix both', () => {
  const redirect80 = { port: { number: 80, name: 'http', protocol: 'HTTP' }, tls: { httpsRedirect: true }, hosts: ['example.com'] };
  const out = translateRoutes([istioGateway('a', [redirect80, https443('example-com-cert')]), istioGateway('b', [http80])]);
  assert.deepEqual(out.conditions.filter((c) => c.status === 'False'), [], 'the Gateway is accepted (httpsRedirect needs no credentialName)');
  assert.equal(out.gateways.find((g) => g.gateway === 'bookinfo/a' && g.port === 80)?.httpsRedirect, true);
  const r = gatewayListeners(out.gateways, [ingressGatewayPod()], [goodSecret]);
  const ls = [...r.byPod.values()][0]!;
  assert.deepEqual(ls.map((l) => [l.port, l.protocol, l.httpsRedirect ?? false]), [[80, 'HTTP', true], [443, 'HTTPS', false]]);
  assert.deepEqual(r.conditions.map((c) => c.reason), ['PortConflict'], 'Gateway b on port 80 without redirect is refused');
  assert.match(r.conditions[0]!.message, /port 80 is already served with httpsRedirect by Gateway bookinfo\/a/);
  assert.deepEqual(validateGatewayListener({ ...ls[1]!, httpsRedirect: true }).map((i) => i.problem), ['is only valid for HTTP']);
});

test('httpsRedirectLocation keeps host (without port) and path, and refuses unusable hosts', () => {
  assert.equal(httpsRedirectLocation('example.com:8080', '/a/b?c=1'), 'https://example.com/a/b?c=1');
  assert.equal(httpsRedirectLocation('example.com', undefined), 'https://example.com/');
  assert.equal(httpsRedirectLocation('[::1]:80', '/x'), 'https://[::1]/x');
  assert.equal(httpsRedirectLocation('', '/x'), undefined);
  assert.equal(httpsRedirectLocation('evil.com/@x', '/x'), undefined);
});

test('gateway endpoints: a waypoint-bound Service is reached through its waypoint (VIP over HBONE to the waypoint); others directly', async () => {
  const wpRef = { name: 'bookinfo/waypoint', namespace: 'bookinfo', addresses: ['10.244.1.9'], identity: 'spiffe://cluster.local/ns/bookinfo/sa/waypoint' };
  const svc = (name: string, vip: string, uid: string, waypoint?: typeof wpRef) => ({
    name,
    namespace: 'bookinfo',
    hostname: `${name}.bookinfo.svc.cluster.local`,
    vips: [vip],
    ports: [{ name: 'http', port: 9080, targetPort: 9080, protocol: 'http' }],
    subjectAltNames: [],
    routingPreference: [] as Array<'node'>,
    endpoints: [uid],
    ...(waypoint ? { waypoint } : {}),
  });
  const pod = (name: string, ip: string) =>
    testWorkload({ name, namespace: 'bookinfo', ip, serviceAccount: name, labels: { app: name }, services: { [`bookinfo/${name}.bookinfo.svc.cluster.local`]: [{ servicePort: 9080, targetPort: 9080 }] } });
  const reviews = pod('reviews', '10.244.1.5');
  const ratings = pod('ratings', '10.244.2.6');
  const gw = new Waypoint({
    name: 'istio-system/istio-ingressgateway',
    podIp: '10.244.1.7',
    identity: 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway',
    trustDomain: 'cluster.local',
    log: silentLogger(),
    registry: createRegistry(),
    getCertificate: () => Promise.reject(new Error('no certificates in this test')),
    gateway: { source: { workload: 'istio-ingressgateway' } },
  });
  gw.applyConfig({
    workloads: new Map([reviews, ratings].map((w) => [w.uid, w])),
    services: new Map([svc('reviews', '10.96.0.10', reviews.uid, wpRef), svc('ratings', '10.96.0.11', ratings.uid)].map((s) => [`bookinfo/${s.hostname}`, s])),
    authorizations: new Map(),
    versions: new Map(),
    systemVersions: new Map(),
  });
  assert.deepEqual(gw.gatewayEndpoints({ host: 'reviews.bookinfo.svc.cluster.local', port: 9080 }), [
    { key: 'waypoint|bookinfo/waypoint|10.96.0.10:9080', address: '10.96.0.10', port: 9080, principal: wpRef.identity, workload: 'waypoint', namespace: 'bookinfo' },
  ]);
  assert.deepEqual(
    gw.gatewayEndpoints({ host: 'ratings.bookinfo.svc.cluster.local', port: 9080 }).map((e) => e.key),
    ['10.244.2.6:9080'],
    'a Service without a waypoint: its pods',
  );
  // Once the waypoint's own pod is known, the endpoint carries that pod's labels (as agents name it).
  const wpPod = testWorkload({ name: 'waypoint-5d9c-0', namespace: 'bookinfo', ip: '10.244.1.9', workloadName: 'waypoint', canonicalName: 'waypoint', canonicalRevision: 'latest', tunnelProtocol: 'NONE' });
  gw.applyConfig({
    workloads: new Map([reviews, ratings, wpPod].map((w) => [w.uid, w])),
    services: new Map([svc('reviews', '10.96.0.10', reviews.uid, wpRef)].map((s) => [`bookinfo/${s.hostname}`, s])),
    authorizations: new Map(),
    versions: new Map(),
    systemVersions: new Map(),
  });
  const [viaWaypoint] = gw.gatewayEndpoints({ host: 'reviews.bookinfo.svc.cluster.local', port: 9080 });
  assert.deepEqual(
    { workload: viaWaypoint?.workload, namespace: viaWaypoint?.namespace, canonicalService: viaWaypoint?.canonicalService, cluster: viaWaypoint?.cluster, principal: viaWaypoint?.principal, address: viaWaypoint?.address },
    { workload: 'waypoint', namespace: 'bookinfo', canonicalService: 'waypoint', cluster: 'Kubernetes', principal: wpRef.identity, address: '10.96.0.10' },
  );
  await gw.close(100);
});
