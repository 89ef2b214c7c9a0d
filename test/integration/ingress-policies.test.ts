/**
 * An ingress gateway pod enforcing what selects it, on real traffic over 127.0.0.0/8: an
 * AuthorizationPolicy and a RequestAuthentication with a workload selector (Istio's
 * authz-ingress task: allow by client address and path; JWT at the edge) translated by the
 * controller and served by a gateway-mode Waypoint with its listeners; an OPTIONAL_MUTUAL HTTPS
 * server (client certificate requested, verified when sent); and a Gateway API Gateway of class
 * istio whose TCP and TLS Passthrough listeners serve a TCPRoute and a TLSRoute (under the same
 * policy, as a TCP connection: only its rules without HTTP attributes can allow it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { CertificateAuthority } from '../../src/controller/ca/authority.js';
import type { KubeObject } from '../../src/controller/objects.js';
import { translateAll } from '../../src/controller/translate/translate.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { validateGatewayListener, validateRouteConfig } from '../../src/shared/validate-routes.js';
import { freePort } from '../helpers/local-mesh.js';
import { startGatewayPod } from '../helpers/gateway-pod.js';
import { createTestCa } from '../helpers/test-ca.js';
import { listening, startCountingWeb, startGreetingEcho, tcpExchange } from '../helpers/tcp-exchange.js';
import { namespace, pod, service } from '../unit/translate/helpers.js';
import { forgeSignature } from '../helpers/jwt-forge.js';

const serverCa = CertificateAuthority.generate({ trustDomain: 'server.test', ttlDays: 1 });
const clientCa = CertificateAuthority.generate({ trustDomain: 'client.test', ttlDays: 1 });
const rogueCa = CertificateAuthority.generate({ trustDomain: 'rogue.test', ttlDays: 1 });
const issued = (ca: CertificateAuthority, host: string) => ca.issueServingCert({ dnsNames: [host], ttlMs: 3_600_000 });
const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** HTTP status of a request through the gateway from `from` (a loopback address of this host). */
function get(port: number, path: string, opts: { from?: string; host?: string; auth?: string; xff?: string } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, localAddress: opts.from ?? '127.0.0.1', agent: false, headers: { host: opts.host ?? 'shop.example.com', ...(opts.auth ? { authorization: opts.auth } : {}), ...(opts.xff ? { 'x-forwarded-for': opts.xff } : {}) } },
      (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.once('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.end();
  });
}

function httpsGet(port: number, client?: { certChainPem: string[]; keyPem: string }): Promise<number | 'refused'> {
  return new Promise((resolve) => {
    const host = 'secure.example.com';
    const req = https.request({ host: '127.0.0.1', port, path: '/', servername: host, headers: { host }, ca: serverCa.rootCertPem, agent: false, ...(client ? { cert: client.certChainPem.join('\n'), key: client.keyPem } : {}) }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', () => resolve('refused'));
    req.setTimeout(10_000, () => req.destroy(new Error('https request timed out')));
    req.end();
  });
}

function tlsExchange(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca: serverCa.rootCertPem });
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (data += d));
    s.once('end', () => resolve(data.trim()));
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || /socket disconnected/.test(e.message) ? resolve('reset') : reject(e)));
    s.setTimeout(10_000, () => s.destroy(new Error('tls exchange timed out')));
  });
}

test('ingress gateway pod: selector AuthorizationPolicy and RequestAuthentication enforced, OPTIONAL_MUTUAL, Gateway API TCP and TLS Passthrough listeners with TCPRoute and TLSRoute', async (t) => {
  const { exportJWK, generateKeyPair, SignJWT } = await import('jose');
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'edge', alg: 'RS256' }] });
  const webServer = await startCountingWeb(t, '127.0.0.6');
  const web = webServer.port;
  const echo = await startGreetingEcho(t, '127.0.0.2');
  const siteCert = issued(serverCa, 'site.example.com');
  const site = await listening(t, tls.createServer({ cert: siteCert.certChainPem.join('\n'), key: siteCert.keyPem }, (s) => s.end('tls site\n')), '127.0.0.4');
  const port = { http: await freePort(), https: await freePort(), tcp: await freePort(), tls: await freePort() };
  const secureCert = issued(serverCa, 'secure.example.com');
  const podKey = 'edge/edge-gateway-0';
  const gwLabels = { istio: 'ingressgateway', 'gateway.networking.k8s.io/gateway-name': 'edge-api' };
  const policy = (name: string, ns: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec });
  const objects: KubeObject[] = [
    namespace('shop'),
    namespace('edge'),
    // One trusted proxy (a load balancer) in front: the client is the last X-Forwarded-For entry.
    pod('edge-gateway-0', { ns: 'edge', ip: '127.0.0.1', labels: gwLabels, annotations: { 'proxy.istio.io/config': '{"gatewayTopology": {"numTrustedProxies": 1}}' } }),
    pod('edge-gateway-1', { ns: 'edge', ip: '127.0.0.9', labels: { ...gwLabels, canary: 'yes' } }),
    pod('web', { ns: 'shop', ip: '127.0.0.6', labels: { app: 'web' } }),
    pod('echo', { ns: 'shop', ip: '127.0.0.2', labels: { app: 'echo' } }),
    pod('site', { ns: 'shop', ip: '127.0.0.4', labels: { app: 'site' } }),
    service('web', { ns: 'shop', clusterIP: '10.96.8.1', ports: [{ name: 'http', port: 8080, targetPort: web }] }),
    service('echo', { ns: 'shop', clusterIP: '10.96.8.2', ports: [{ name: 'tcp', port: 9000, targetPort: echo }] }),
    service('site', { ns: 'shop', clusterIP: '10.96.8.3', ports: [{ name: 'tls', port: 8443, targetPort: site }] }),
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'secure-cred', namespace: 'edge' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(secureCert.certChainPem.join('\n')), 'tls.key': b64(secureCert.keyPem), 'ca.crt': b64(clientCa.rootCertPem) } },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge', namespace: 'edge' },
      spec: {
        selector: { istio: 'ingressgateway' },
        servers: [
          { port: { number: port.http, name: 'http', protocol: 'HTTP' }, hosts: ['*'] },
          { port: { number: port.https, name: 'https', protocol: 'HTTPS' }, hosts: ['secure.example.com'], tls: { mode: 'OPTIONAL_MUTUAL', credentialName: 'secure-cred' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'web', namespace: 'shop' },
      spec: { hosts: ['shop.example.com', 'secure.example.com'], gateways: ['edge/edge'], http: [{ route: [{ destination: { host: 'web', port: { number: 8080 } } }] }] },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge-api', namespace: 'edge' },
      spec: {
        gatewayClassName: 'istio',
        listeners: [
          { name: 'tcp', port: port.tcp, protocol: 'TCP' },
          { name: 'tls', port: port.tls, protocol: 'TLS', hostname: '*.example.com', tls: { mode: 'Passthrough' } },
        ],
      },
    },
    { apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind: 'TCPRoute', metadata: { name: 'echo', namespace: 'edge' }, spec: { parentRefs: [{ name: 'edge-api', sectionName: 'tcp' }], rules: [{ backendRefs: [{ name: 'echo', namespace: 'shop', port: 9000 }] }] } },
    { apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind: 'TLSRoute', metadata: { name: 'site', namespace: 'edge' }, spec: { parentRefs: [{ name: 'edge-api' }], hostnames: ['site.example.com'], rules: [{ backendRefs: [{ name: 'site', namespace: 'shop', port: 8443 }] }] } },
    { apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'ReferenceGrant', metadata: { name: 'from-edge', namespace: 'shop' }, spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'TCPRoute', namespace: 'edge' }, { group: 'gateway.networking.k8s.io', kind: 'TLSRoute', namespace: 'edge' }], to: [{ group: '', kind: 'Service' }] } },
    // Istio's authz-ingress task: the gateway allows some clients by address, and JWT holders on /private.
    policy('edge-allow', 'edge', {
      selector: { matchLabels: { istio: 'ingressgateway' } },
      action: 'ALLOW',
      rules: [
        { from: [{ source: { remoteIpBlocks: ['127.0.0.7/32'] } }], to: [{ operation: { paths: ['/public/*'] } }] },
        { from: [{ source: { requestPrincipals: ['https://login.example.com/*'] } }], to: [{ operation: { paths: ['/private'] } }] },
        { to: [{ operation: { hosts: ['secure.example.com'] } }] },
        // TCP and TLS passthrough connections have no HTTP attributes: only this rule can allow them.
        { from: [{ source: { ipBlocks: ['127.0.0.1'] } }], to: [{ operation: { ports: [String(port.tcp), String(port.tls)] } }] },
      ],
    }),
    { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'edge-jwt', namespace: 'edge' }, spec: { selector: { matchLabels: { istio: 'ingressgateway' } }, jwtRules: [{ issuer: 'https://login.example.com', jwks }] } },
    // Only the canary pod, and a namespace that is not the gateway's: neither applies to edge-gateway-0.
    policy('canary-deny', 'edge', { selector: { matchLabels: { canary: 'yes' } }, action: 'DENY', rules: [{}] }),
    policy('elsewhere', 'shop', { selector: { matchLabels: { istio: 'ingressgateway' } }, action: 'DENY', rules: [{}] }),
  ];
  const out = translateAll(objects);
  const problems = [...out.model.conditions, ...out.routes.conditions, ...out.listeners.conditions].filter((c) => c.status === 'False' || c.reason === 'PartiallyApplied');
  assert.deepEqual(problems, [], 'everything applies');
  const listeners = out.listeners.byPod.get(podKey) ?? [];
  assert.deepEqual(listeners.map((l) => `${l.port}/${l.protocol}${l.optionalClientCert ? '/optional' : ''}`).sort(), [`${port.http}/HTTP`, `${port.https}/HTTPS/optional`, `${port.tcp}/TCP`, `${port.tls}/TLS`].sort());
  for (const l of listeners) assert.deepEqual(validateGatewayListener(l), []);
  for (const r of out.routes.routes) assert.deepEqual(validateRouteConfig(r), [], `${r.name} is valid`);

  const mesh = createTestCa('cluster.local');
  const registry = createRegistry();
  await startGatewayPod(t, { podKey, identity: 'spiffe://cluster.local/ns/edge/sa/edge-gateway', workload: 'edge-gateway', mesh, registry, translation: out });

  // Selector AuthorizationPolicy: by the client's address and path.
  assert.equal(await get(port.http, '/public/a', { from: '127.0.0.7' }), 200, 'the allowed address on /public/*');
  assert.equal(await get(port.http, '/public/a', { from: '127.0.0.8' }), 403, 'another address');
  assert.equal(await get(port.http, '/private', { from: '127.0.0.7' }), 403, 'the allowed address elsewhere');
  // remoteIpBlocks with numTrustedProxies 1: the client address the trusted proxy appended counts.
  assert.equal(await get(port.http, '/public/a', { from: '127.0.0.8', xff: '10.9.9.9, 127.0.0.7' }), 200, 'the proxy says the client is the allowed address');
  assert.equal(await get(port.http, '/public/a', { from: '127.0.0.8', xff: '127.0.0.7, 10.9.9.9' }), 403, 'an entry left of what the trusted proxy appended is the client\'s own claim');
  // Selector RequestAuthentication: a valid token makes a request principal; a bad one is refused.
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'edge' }).setIssuer('https://login.example.com').setSubject('carol').setExpirationTime('5m').sign(privateKey);
  assert.equal(await get(port.http, '/private', { from: '127.0.0.8', auth: `Bearer ${token}` }), 200);
  assert.equal(await get(port.http, '/private', { from: '127.0.0.8', auth: `Bearer ${forgeSignature(token)}` }), 401);
  assert.equal(webServer.hits(), 3, 'only the allowed requests reached the backend (the canary-only and other-namespace DENY policies do not apply here)');

  // OPTIONAL_MUTUAL: no certificate is fine, a good one is fine, one from another CA is refused.
  assert.equal(await httpsGet(port.https), 200);
  assert.equal(await httpsGet(port.https, issued(clientCa, 'client.example.com')), 200);
  assert.equal(await httpsGet(port.https, issued(rogueCa, 'client.example.com')), 'refused');

  // Gateway API TCP listener with a TCPRoute, TLS Passthrough listener with a TLSRoute by SNI.
  assert.equal(await tcpExchange(port.tcp, 'ping'), 'echo\nping');
  assert.equal(await tlsExchange(port.tls, 'site.example.com'), 'tls site');
  assert.equal(await tlsExchange(port.tls, 'other.example.com'), 'reset', 'an SNI no TLSRoute names is reset');
  assert.equal(await tcpExchange(port.tcp, 'ping', '127.0.0.8'), 'reset', 'the selector policy holds on TCP listeners too: another client address is reset');
  const denials = (await registry.getSingleMetric('ambit_policy_denials_total')?.get())?.values ?? [];
  assert.equal(denials.filter((v) => v.labels['reason'] === 'rbac').reduce((n, v) => n + v.value, 0), 4, 'three HTTP requests and one TCP connection were denied by policy');
});
