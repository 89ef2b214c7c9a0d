/**
 * Ingress mode and request bodies on 127.0.0.1: the istio.io example.com Gateway + VirtualService
 * translated by translateRoutes and served by a WaypointServer in gateway mode; a POST body
 * replayed on retry; a fault delay; HTTP/2 client to an HTTP/1.1 backend.
 */
import { validateRouteConfig } from '../../src/shared/validate-routes.js';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { KubeObject } from '../../src/controller/objects.js';
import { loadManifests } from '../../src/controller/source/manifests.js';
import { translateRoutes } from '../../src/controller/translate/routes.js';
import { silentLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { emptyHeaderOps, type RouteConfig } from '../../src/shared/routes.js';
import { seededRandom } from '../../src/waypoint/route/weighted.js';
import { WaypointServer, type BackendTarget } from '../../src/waypoint/server/server.js';
import { HttpUpstream, type Endpoint } from '../../src/waypoint/endpoint/upstream.js';
import * as https from 'node:https';
import { createTestCa } from '../helpers/test-ca.js';
import { listenHttp } from '../helpers/http-server.js';
import { forgeSignature } from '../helpers/jwt-forge.js';

const fixture = (p: string): string => fileURLToPath(new URL(`../../../test/fixtures/${p}`, import.meta.url));

function backend(t: TestContext, handler: http.RequestListener): Promise<number> {
  return listenHttp(t, http.createServer(handler));
}

async function waypoint(t: TestContext, configs: RouteConfig[], resolve: (target: BackendTarget) => Endpoint[], gateway?: string): Promise<{ port: number; server: WaypointServer }> {
  const upstream = new HttpUpstream();
  const server = new WaypointServer({ log: silentLogger(), registry: createRegistry(), dispatch: upstream.dispatch, resolveEndpoints: resolve, random: seededRandom(7), ...(gateway ? { gateway } : {}) });
  assert.deepEqual(configs.flatMap((c) => validateRouteConfig(c)), [], 'the test route configs are valid');
  server.setRoutes(configs);
  const { port } = await server.listen(0, '127.0.0.1');
  t.after(async () => {
    await server.close(500);
    upstream.close();
  });
  return { port, server };
}

function send(port: number, opts: { host: string; path: string; method?: string; body?: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: opts.path, method: opts.method ?? 'GET', headers: { host: opts.host } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.once('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.end(opts.body);
  });
}

/** A gateway-mode server for `bookinfo/web` whose every backend is one counting HTTP server. */
async function gatewayWithCountingBackend(t: TestContext, routes: RouteConfig[]): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const port = await backend(t, (req, res) => {
    hits++;
    req.resume();
    res.end('reviews');
  });
  const gw = await waypoint(t, routes, () => [{ key: `127.0.0.1:${port}`, address: '127.0.0.1', port }], 'bookinfo/web');
  return { port: gw.port, hits: () => hits };
}

test('ingress: the istio.io example.com Gateway + VirtualService serve Host example.com', async (t) => {
  const { objects } = await loadManifests([fixture('manifests/valid/istio-docs/ingress-example-com.yaml')]);
  const reviewsSvc: KubeObject = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'reviews', namespace: 'bookinfo' }, spec: { ports: [{ name: 'http', port: 9080 }] } };
  const out = translateRoutes([...objects, reviewsSvc]);
  assert.deepEqual(out.conditions, []);
  const seen: string[] = [];
  const port = await backend(t, (req, res) => {
    seen.push(`${req.headers.host} ${req.url}`);
    res.end('reviews says hi');
  });
  const resolve = (target: BackendTarget): Endpoint[] => (target.host === 'reviews.bookinfo.svc.cluster.local' && target.port === 9080 ? [{ key: `127.0.0.1:${port}`, address: '127.0.0.1', port }] : []);
  const gw = await waypoint(t, out.routes, resolve, 'bookinfo/my-gateway');
  const ok = await send(gw.port, { host: 'example.com', path: '/reviews/1' });
  assert.deepEqual(ok, { status: 200, body: 'reviews says hi' });
  assert.deepEqual(seen, ['example.com /reviews/1'], 'the authority and path reach the backend');
  assert.equal((await send(gw.port, { host: 'example.com', path: '/other' })).status, 404, 'only /reviews is routed');
  assert.equal((await send(gw.port, { host: 'reviews', path: '/reviews/1' })).status, 404, 'mesh hosts are not served by the gateway');
});

test('ingress: a VirtualService redirect and corsPolicy bound to an Istio Gateway are served by the gateway', async (t) => {
  const gateway: KubeObject = { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'web', namespace: 'bookinfo' }, spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['shop.example.com'] }] } };
  const vs: KubeObject = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'shop', namespace: 'bookinfo' },
    spec: {
      hosts: ['shop.example.com'],
      gateways: ['web'],
      http: [
        { match: [{ uri: { prefix: '/legacy' } }], redirect: { uri: '/reviews', redirectCode: 302 } },
        { match: [{ uri: { prefix: '/login' } }], redirect: { scheme: 'https' } },
        { route: [{ destination: { host: 'reviews', port: { number: 9080 } } }], corsPolicy: { allowOrigins: [{ prefix: 'https://app.' }], allowMethods: ['POST'], maxAge: '30s' } },
      ],
    },
  };
  const reviewsSvc: KubeObject = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'reviews', namespace: 'bookinfo' }, spec: { ports: [{ name: 'http', port: 9080 }] } };
  const out = translateRoutes([gateway, vs, reviewsSvc]);
  assert.deepEqual(out.conditions, []);
  const gw = await gatewayWithCountingBackend(t, out.routes);
  const get = (path: string, headers: Record<string, string>, method = 'GET'): Promise<http.IncomingMessage> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: gw.port, path, method, headers: { host: 'shop.example.com', ...headers } }, (res) => {
        res.resume();
        res.once('end', () => resolve(res));
      });
      req.once('error', reject);
      req.end();
    });
  const legacy = await get('/legacy/x?id=7', {});
  assert.equal(legacy.statusCode, 302);
  assert.equal(legacy.headers.location, 'http://shop.example.com/reviews?id=7');
  const login = await get('/login', {});
  assert.equal(login.statusCode, 301);
  assert.equal(login.headers.location, 'https://shop.example.com/login');
  const pre = await get('/reviews', { origin: 'https://app.example.com', 'access-control-request-method': 'POST' }, 'OPTIONS');
  assert.equal(pre.statusCode, 200);
  assert.equal(pre.headers['access-control-allow-origin'], 'https://app.example.com');
  assert.equal(pre.headers['access-control-allow-methods'], 'POST');
  assert.equal(pre.headers['access-control-max-age'], '30');
  assert.equal(gw.hits(), 0, 'redirects and the preflight are answered by the gateway');
  const actual = await get('/reviews', { origin: 'https://app.example.com' });
  assert.equal(actual.statusCode, 200);
  assert.equal(actual.headers['access-control-allow-origin'], 'https://app.example.com');
  assert.equal(gw.hits(), 1);
});

test('ingress: a RequestAuthentication and an AuthorizationPolicy attached to the Istio Gateway are enforced by the gateway', async (t) => {
  const { exportJWK, generateKeyPair, SignJWT } = await import('jose');
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'gw', alg: 'RS256' }] });
  const gwRef = { kind: 'Gateway', group: 'networking.istio.io', name: 'web' };
  const objects: KubeObject[] = [
    { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'web', namespace: 'bookinfo' }, spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['shop.example.com'] }] } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'shop', namespace: 'bookinfo' }, spec: { hosts: ['shop.example.com'], gateways: ['web'], http: [{ route: [{ destination: { host: 'reviews', port: { number: 9080 } } }] }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'reviews', namespace: 'bookinfo' }, spec: { ports: [{ name: 'http', port: 9080 }] } },
    { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'jwt', namespace: 'bookinfo' }, spec: { targetRef: gwRef, jwtRules: [{ issuer: 'https://login.example.com', jwks }] } },
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'need-jwt', namespace: 'bookinfo' }, spec: { targetRef: gwRef, rules: [{ from: [{ source: { requestPrincipals: ['https://login.example.com/*'] } }] }] } },
  ];
  const out = translateRoutes(objects);
  assert.deepEqual(out.conditions, []);
  const gw = await gatewayWithCountingBackend(t, out.routes);
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'gw' }).setIssuer('https://login.example.com').setSubject('carol').setExpirationTime('5m').sign(privateKey);
  const get = (auth?: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: gw.port, path: '/', headers: { host: 'shop.example.com', ...(auth ? { authorization: auth } : {}) } }, (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
      });
      req.once('error', reject);
      req.end();
    });
  assert.equal(await get(), 403, 'no token: the ALLOW on requestPrincipals does not match');
  assert.equal(await get(`Bearer ${token}`), 200);
  assert.equal(await get(`Bearer ${forgeSignature(token)}`), 401);
  assert.equal(gw.hits(), 1);
});

test('a POST body is replayed on retry when retryNonIdempotent is set', async (t) => {
  const bodies: string[] = [];
  const port = await backend(t, (req, res) => {
    let b = '';
    req.on('data', (c: Buffer) => (b += c.toString()));
    req.once('end', () => {
      bodies.push(b);
      res.writeHead(bodies.length === 1 ? 503 : 200);
      res.end(`got ${b.length}`);
    });
  });
  const payload = 'x'.repeat(20_000);
  const cfg: RouteConfig = {
    name: 'ns/svc',
    namespace: 'ns',
    hostname: 'svc',
    aliases: [],
    ports: [{ port: 80, protocol: 'http' }],
    routes: [{ name: 'post', match: [], backends: [{ host: 'svc', weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() }, retries: { attempts: 2, retryOn: ['5xx'], retriableStatusCodes: [], retryNonIdempotent: true, backoffMs: 1 } }],
    authorization: [],
  };
  const w = await waypoint(t, [cfg], () => [{ key: `127.0.0.1:${port}`, address: '127.0.0.1', port }]);
  const res = await send(w.port, { host: 'svc', path: '/upload', method: 'POST', body: payload });
  assert.deepEqual(res, { status: 200, body: `got ${payload.length}` });
  assert.deepEqual(bodies.map((b) => b.length), [20_000, 20_000], 'both tries carried the whole body');
  assert.equal(bodies[1], payload);
});

test('a POST is not retried on a 5xx by default (not idempotent)', async (t) => {
  let hits = 0;
  const port = await backend(t, (req, res) => {
    hits++;
    req.resume();
    res.writeHead(503);
    res.end();
  });
  const cfg: RouteConfig = {
    name: 'ns/svc',
    namespace: 'ns',
    hostname: 'svc',
    aliases: [],
    ports: [{ port: 80, protocol: 'http' }],
    routes: [{ name: 'post', match: [], backends: [{ host: 'svc', weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() }, retries: { attempts: 3, retryOn: ['5xx'], retriableStatusCodes: [] } }],
    authorization: [],
  };
  const w = await waypoint(t, [cfg], () => [{ key: `127.0.0.1:${port}`, address: '127.0.0.1', port }]);
  assert.equal((await send(w.port, { host: 'svc', path: '/', method: 'POST', body: 'data' })).status, 503);
  assert.equal(hits, 1);
});

test('connect failure to a dead endpoint is retried on a live one; h2c client to an HTTP/1.1 backend', async (t) => {
  const port = await backend(t, (req, res) => {
    req.resume();
    res.end(`hello ${req.httpVersion}`);
  });
  // A port nothing listens on: bind, note the port, close. On an address of its own, so a listener
  // another test opens on 127.0.0.1 meanwhile cannot take it over.
  const DEAD_IP = '127.0.0.254';
  const probe = http.createServer();
  await new Promise<void>((r) => probe.listen(0, DEAD_IP, () => r()));
  const dead = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const cfg: RouteConfig = {
    name: 'ns/svc',
    namespace: 'ns',
    hostname: 'svc',
    aliases: [],
    ports: [{ port: 80, protocol: 'http' }],
    routes: [{ name: 'r', match: [], backends: [{ host: 'svc', weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() }, fault: { delay: { percent: 100, fixedDelayMs: 50 } } }],
    authorization: [],
  };
  // Connecting to `dead` fails; the default policy retries connect failures on the other endpoint.
  const w = await waypoint(t, [cfg], () => [
    { key: `${DEAD_IP}:${dead}`, address: DEAD_IP, port: dead },
    { key: `127.0.0.1:${port}`, address: '127.0.0.1', port },
  ]);
  const client = http2.connect(`http://127.0.0.1:${w.port}`);
  t.after(() => client.close());
  // Least request over two endpoints picks by random and by in-flight counts (which depend on when a
  // previous response's body finished): 20 requests make a run that never tries the dead one
  // vanishingly unlikely whatever the timing.
  for (let i = 0; i < 20; i++) {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const s = client.request({ ':path': '/', ':authority': 'svc' });
      let status = 0;
      let body = '';
      s.once('response', (h) => (status = Number(h[':status'])));
      s.on('data', (c: Buffer) => (body += c.toString()));
      s.once('end', () => resolve({ status, body }));
      s.once('error', reject);
    });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello 1.1', 'HTTP/2 in, HTTP/1.1 out for an http port');
  }
  const retries = (await w.server.metrics.retries.get()).values.filter((v) => v.labels['reason'] === 'connect-failure').reduce((a, v) => a + v.value, 0);
  assert.ok(retries >= 1, `the dead endpoint was tried and retried (${retries} retries)`);
  const faults = (await w.server.metrics.faults.get()).values.reduce((a, v) => a + v.value, 0);
  assert.equal(faults, 20, 'a 100% delay fault hits every request');
});

test('local replies to gRPC requests are trailers-only with a grpc-status (404 → UNIMPLEMENTED, 403 → PERMISSION_DENIED)', async (t) => {
  const cfg: RouteConfig = {
    name: 'ns/svc',
    namespace: 'ns',
    hostname: 'svc',
    aliases: [],
    ports: [{ port: 80, protocol: 'grpc' }],
    routes: [{ name: 'only', match: [{ uri: { prefix: '/pkg.Svc/' }, headers: [], queryParams: [] }], backends: [{ host: 'svc', weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } }],
    authorization: [{ name: 'ns/deny-all', action: 'DENY', dryRun: false, rules: [{ from: [], to: [{ hosts: [], notHosts: [], paths: [{ prefix: '/pkg.Svc/Admin' }], notPaths: [], methods: [], notMethods: [], ports: [], notPorts: [] }], when: [] }] }],
  };
  const w = await waypoint(t, [cfg], () => []);
  const client = http2.connect(`http://127.0.0.1:${w.port}`);
  t.after(() => client.close());
  const call = (path: string): Promise<http2.IncomingHttpHeaders> =>
    new Promise((resolve, reject) => {
      const s = client.request({ ':method': 'POST', ':path': path, ':authority': 'svc', 'content-type': 'application/grpc', te: 'trailers' });
      let headers: http2.IncomingHttpHeaders = {};
      s.once('response', (h) => (headers = h));
      s.resume();
      s.once('end', () => resolve(headers));
      s.once('error', reject);
      s.end();
    });
  const missing = await call('/other.Svc/X');
  assert.equal(missing[':status'], 200);
  assert.equal(missing['grpc-status'], '12');
  const denied = await call('/pkg.Svc/AdminReset');
  assert.equal(denied['grpc-status'], '7');
  const noEndpoints = await call('/pkg.Svc/Get');
  assert.equal(noEndpoints['grpc-status'], '14', 'no healthy upstream → UNAVAILABLE');
});

test('ingress over TLS: HTTPS (http/1.1) and h2 via ALPN terminate and route like plain HTTP', async (t) => {
  const port = await backend(t, (req, res) => {
    req.resume();
    res.end(`secure ${req.headers.host} ${req.url}`);
  });
  const cfg: RouteConfig = {
    name: 'bookinfo/gw/example.com',
    namespace: 'bookinfo',
    hostname: 'example.com',
    aliases: [],
    gateway: 'bookinfo/gw',
    ports: [{ port: 443, protocol: 'https' }],
    routes: [{ name: 'r', match: [], backends: [{ host: 'reviews.bookinfo.svc.cluster.local', port: 9080, weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } }],
    authorization: [],
  };
  const upstream = new HttpUpstream();
  const server = new WaypointServer({ log: silentLogger(), registry: createRegistry(), dispatch: upstream.dispatch, resolveEndpoints: () => [{ key: `127.0.0.1:${port}`, address: '127.0.0.1', port }], gateway: 'bookinfo/gw' });
  assert.deepEqual(validateRouteConfig(cfg), [], 'the test route config is valid');
  server.setRoutes([cfg]);
  const ca = createTestCa();
  const issued = ca.issue('spiffe://cluster.local/ns/bookinfo/sa/ingress');
  const addr = await server.listenTls({ certPem: issued.certChainPem.join('\n'), keyPem: issued.keyPem });
  t.after(async () => {
    await server.close(500);
    upstream.close();
  });
  const tlsOpts = { ca: ca.rootPem, checkServerIdentity: () => undefined };
  const h1 = await new Promise<{ status: number; body: string; alpn: string | false }>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: addr.port, path: '/p', headers: { host: 'example.com' }, agent: false, ...tlsOpts, ...({ ALPNProtocols: ['http/1.1'] } as object) }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body, alpn: (res.socket as import('node:tls').TLSSocket).alpnProtocol ?? false }));
    });
    req.once('error', reject);
    req.end();
  });
  assert.equal(h1.status, 200);
  assert.equal(h1.body, 'secure example.com /p');
  assert.equal(h1.alpn, 'http/1.1');
  const client = http2.connect(`https://127.0.0.1:${addr.port}`, tlsOpts);
  t.after(() => client.close());
  const h2 = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const s = client.request({ ':path': '/q', ':authority': 'example.com' });
    let status = 0;
    let body = '';
    s.once('response', (h) => (status = Number(h[':status'])));
    s.on('data', (c: Buffer) => (body += c.toString()));
    s.once('end', () => resolve({ status, body }));
    s.once('error', reject);
  });
  assert.deepEqual(h2, { status: 200, body: 'secure example.com /q' });
  assert.equal(client.alpnProtocol, 'h2');
});

test('spans are exported as OTLP/HTTP JSON with the caller trace id and parent span', async (t) => {
  const bodies: string[] = [];
  const collectorPort = await backend(t, (req, res) => {
    let b = '';
    req.on('data', (c: Buffer) => (b += c.toString()));
    req.once('end', () => {
      bodies.push(`${req.method} ${req.url} ${b}`);
      res.end('{}');
    });
  });
  const appPort = await backend(t, (req, res) => {
    req.resume();
    res.end('ok');
  });
  const { OtlpSpanExporter } = await import('../../src/waypoint/trace.js');
  const errors: string[] = [];
  const exporter = new OtlpSpanExporter({ url: `http://127.0.0.1:${collectorPort}/v1/traces`, serviceName: 'waypoint.shop', flushIntervalMs: 50_000, onError: (m) => errors.push(m) });
  const upstream = new HttpUpstream();
  const server = new WaypointServer({ log: silentLogger(), registry: createRegistry(), dispatch: upstream.dispatch, resolveEndpoints: () => [{ key: `127.0.0.1:${appPort}`, address: '127.0.0.1', port: appPort }], spanExporter: exporter });
  const cfg: RouteConfig = { name: 'ns/svc', namespace: 'ns', hostname: 'svc', aliases: [], ports: [{ port: 80, protocol: 'http' }], routes: [], authorization: [] };
  assert.deepEqual(validateRouteConfig(cfg), [], 'the test route config is valid');
  server.setRoutes([cfg]);
  const { port } = await server.listen(0, '127.0.0.1');
  t.after(async () => {
    await server.close(200);
    upstream.close();
    await exporter.close();
  });
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  await new Promise<void>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/x', headers: { host: 'svc', traceparent: `00-${traceId}-00f067aa0ba902b7-01` } }, (res) => {
        res.resume();
        res.once('end', () => resolve());
      })
      .once('error', reject);
  });
  // The span is exported when the response closes; give the close event a turn.
  for (let i = 0; i < 50 && bodies.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
    await exporter.flush();
  }
  assert.deepEqual(errors, []);
  assert.equal(bodies.length, 1);
  assert.ok(bodies[0]!.startsWith('POST /v1/traces '));
  const payload = JSON.parse(bodies[0]!.slice('POST /v1/traces '.length)) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<Record<string, unknown>> }> }> };
  const span = payload.resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
  assert.equal(span['traceId'], traceId);
  assert.equal(span['parentSpanId'], '00f067aa0ba902b7');
  assert.match(String(span['spanId']), /^[0-9a-f]{16}$/);
  assert.equal(span['name'], 'svc/*');
  assert.ok((span['attributes'] as Array<{ key: string; value: Record<string, unknown> }>).some((a) => a.key === 'http.status_code' && a.value['intValue'] === '200'));
});
