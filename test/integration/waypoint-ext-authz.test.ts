/**
 * CUSTOM authorization through a real waypoint server against real external authorizers on
 * 127.0.0.1: an Envoy-style ext_authz HTTP server and a gRPC server of
 * envoy.service.auth.v3.Authorization (grpc-js, the same .proto the waypoint loads). Allow, deny
 * with the authorizer's status/headers/body, timeout, failOpen both ways, CUSTOM before DENY and
 * ALLOW, and a policy whose provider is unknown denying what it matches.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { listenHttp } from '../helpers/http-server.js';
import { loadProto } from '../../src/shared/api/load.js';
import { createLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import type { StringMatch } from '../../src/shared/model.js';
import { emptyHeaderOps, type ExtAuthzProvider, type L7AuthorizationPolicy, type RouteConfig } from '../../src/shared/routes.js';
import { validateRouteConfig } from '../../src/shared/validate-routes.js';
import { HttpUpstream, type Endpoint } from '../../src/waypoint/endpoint/upstream.js';
import { WaypointServer, type BackendTarget } from '../../src/waypoint/server/server.js';

const SVC = 'httpbin.foo.svc.cluster.local';
const AUTHZ = 'ext-authz.foo.svc.cluster.local';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** The backend: answers 200 with the headers it got. */
async function startBackend(t: TestContext): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const port = await listenHttp(
    t,
    http.createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      req.resume();
      res.end('backend');
    }),
  );
  return { port, seen };
}

/**
 * An ext_authz HTTP server as Istio's sample: `x-ext-authz: allow` is allowed (with `x-user`),
 * `unauthorized` gets 401, `broken` gets 500, `hang` never gets an answer, anything else 403.
 */
async function startHttpAuthorizer(t: TestContext): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const port = await listenHttp(
    t,
    http.createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      req.resume();
      const v = req.headers['x-ext-authz'];
      if (v === 'hang') return;
      if (v === 'allow') {
        res.writeHead(200, { 'x-ext-authz-check-result': 'allowed', 'x-user': 'alice', 'x-not-forwarded': 'no' });
        return res.end();
      }
      if (v === 'broken') {
        res.writeHead(500);
        return res.end('oops');
      }
      res.writeHead(v === 'unauthorized' ? 401 : 403, { 'x-ext-authz-check-result': 'denied', 'x-internal': 'secret', 'content-type': 'text/plain' });
      res.end(`denied by ext_authz for not found header \`x-ext-authz: allow\` in the request`);
    }),
  );
  return { port, seen };
}

interface CheckCall {
  attributes: { request: { http: { method: string; path: string; host: string; headers: Record<string, string>; protocol: string } }; source: { principal: string } };
}

/** A gRPC Authorization server: `x-ext-authz: allow` is OK with headers, `hang` is never answered, the rest PERMISSION_DENIED with a 401. */
async function startGrpcAuthorizer(t: TestContext): Promise<{ port: number; seen: CheckCall[] }> {
  const pkg = loadProto('ext-authz.proto') as unknown as { envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } } };
  const seen: CheckCall[] = [];
  const server = new grpc.Server();
  const hung: Array<() => void> = [];
  server.addService(pkg.envoy.service.auth.v3.Authorization.service, {
    Check: (call: grpc.ServerUnaryCall<CheckCall, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      seen.push(call.request);
      const v = call.request.attributes.request.http.headers['x-ext-authz'];
      if (v === 'hang') {
        hung.push(() => cb({ code: grpc.status.CANCELLED }));
        return;
      }
      if (v === 'allow') {
        return cb(null, {
          status: { code: 0 },
          okResponse: {
            headers: [{ header: { key: 'x-grpc-user', value: 'bob' } }, { header: { key: 'x-tag', value: 'b' }, append: { value: true } }],
            headersToRemove: ['x-remove-me'],
            responseHeadersToAdd: [{ header: { key: 'x-authz-said', value: 'ok' } }],
          },
        });
      }
      cb(null, { status: { code: 7, message: 'no' }, deniedResponse: { status: { code: 401 }, headers: [{ header: { key: 'www-authenticate', value: 'Bearer realm="ext"' } }], body: 'grpc authorizer says no' } });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  t.after(() => {
    for (const h of hung) h();
    server.forceShutdown();
  });
  return { port, seen };
}

const ANY: L7AuthorizationPolicy['rules'][number] = { from: [], to: [], when: [] };

function onPaths(paths: StringMatch[]): L7AuthorizationPolicy['rules'][number] {
  return { from: [], to: [{ hosts: [], notHosts: [], paths, notPaths: [], methods: [], notMethods: [], ports: [], notPorts: [] }], when: [] };
}

function customPolicy(name: string, provider: ExtAuthzProvider | undefined, providerName: string, rules = [onPaths([{ prefix: '/protected' }])]): L7AuthorizationPolicy {
  return { name: `foo/${name}`, action: 'CUSTOM', providerName, ...(provider ? { provider } : {}), rules, dryRun: false };
}

/** A waypoint serving httpbin with `authorization`; the authorizer service's ports map to the given local ports. */
async function startWaypoint(t: TestContext, authorization: L7AuthorizationPolicy[], backendPort: number, authzPorts: Record<number, number>): Promise<number> {
  const config: RouteConfig = {
    name: `foo/${SVC}`,
    namespace: 'foo',
    hostname: SVC,
    aliases: ['httpbin'],
    ports: [{ port: 8000, protocol: 'http' }],
    routes: [{ name: 'all', match: [], backends: [{ host: SVC, weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } }],
    authorization,
  };
  assert.deepEqual(validateRouteConfig(config), [], 'the test route config is valid');
  const resolveEndpoints = (target: BackendTarget): Endpoint[] => {
    const port = target.host === SVC ? backendPort : target.host === AUTHZ ? authzPorts[target.port] : undefined;
    return port === undefined ? [] : [{ key: `127.0.0.1:${port}`, address: '127.0.0.1', port }];
  };
  const upstream = new HttpUpstream();
  const server = new WaypointServer({ log: createLogger({ level: 'silent' }), registry: createRegistry(), dispatch: upstream.dispatch, resolveEndpoints, defaultRetries: null });
  server.setRoutes([config]);
  const addr = await server.listen(0, '127.0.0.1');
  t.after(async () => {
    await server.close(1000);
    upstream.close();
  });
  return addr.port;
}

/** GET, or POST with `body`. */
function get(port: number, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: body === undefined ? 'GET' : 'POST', agent: false, headers: { host: 'httpbin:8000', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
    });
    req.setTimeout(20_000, () => req.destroy(new Error(`request ${path} timed out`)));
    req.once('error', reject);
    req.end(body);
  });
}

function httpProvider(over: Partial<ExtAuthzProvider> = {}): ExtAuthzProvider {
  return {
    name: 'sample-ext-authz-http',
    protocol: 'http',
    service: AUTHZ,
    port: 8000,
    timeoutMs: 10_000,
    failOpen: false,
    pathPrefix: '/check',
    includeRequestHeadersInCheck: [{ exact: 'x-ext-authz' }],
    headersToUpstreamOnAllow: [{ exact: 'x-user' }, { exact: 'x-ext-authz-check-result' }],
    headersToDownstreamOnDeny: [{ exact: 'x-ext-authz-check-result' }, { exact: 'content-type' }],
    ...over,
  };
}

test('CUSTOM with an HTTP authorizer: matched requests are checked; allow passes its headers upstream, deny passes its status, body and listed headers', async (t) => {
  const backend = await startBackend(t);
  const authz = await startHttpAuthorizer(t);
  const port = await startWaypoint(t, [customPolicy('ext', httpProvider(), 'sample-ext-authz-http')], backend.port, { 8000: authz.port });

  const open = await get(port, '/public');
  assert.equal(open.status, 200, 'a request the policy does not match is not checked');
  assert.equal(authz.seen.length, 0);

  const allowed = await get(port, '/protected/a?x=1', { 'x-ext-authz': 'allow', 'x-other': 'kept-from-authz', authorization: 'Basic Zm9v' });
  assert.equal(allowed.status, 200);
  assert.equal(allowed.body, 'backend');
  const check = authz.seen[0]!;
  assert.equal(check.method, 'GET');
  assert.equal(check.url, '/check/protected/a?x=1', 'pathPrefix + the original path');
  assert.equal(check.headers.host, 'httpbin:8000');
  assert.equal(check.headers['content-length'], '0');
  assert.equal(check.headers['x-ext-authz'], 'allow', 'a header of includeRequestHeadersInCheck is sent');
  assert.equal(check.headers.authorization, 'Basic Zm9v', 'Authorization is always sent');
  assert.equal(check.headers['x-other'], undefined, 'other headers are not');
  const up = backend.seen.at(-1)!;
  assert.equal(up.headers['x-user'], 'alice', 'headersToUpstreamOnAllow go upstream');
  assert.equal(up.headers['x-ext-authz-check-result'], 'allowed');
  assert.equal(up.headers['x-not-forwarded'], undefined, 'unlisted answer headers do not');
  assert.equal(up.headers['x-other'], 'kept-from-authz');

  const before = backend.seen.length;
  const denied = await get(port, '/protected/b');
  assert.equal(denied.status, 403);
  assert.equal(denied.body, 'denied by ext_authz for not found header `x-ext-authz: allow` in the request');
  assert.equal(denied.headers['x-ext-authz-check-result'], 'denied');
  assert.equal(denied.headers['content-type'], 'text/plain');
  assert.equal(denied.headers['x-internal'], undefined, 'headers not in headersToDownstreamOnDeny stay with the authorizer');
  const unauthorized = await get(port, '/protected/c', { 'x-ext-authz': 'unauthorized' });
  assert.equal(unauthorized.status, 401, "the authorizer's own status reaches the client");
  assert.equal(backend.seen.length, before, 'denied requests never reach the backend');
});

test('CUSTOM runs before DENY and ALLOW: an ALLOW-all does not bypass it, a DENY still denies what it allowed', async (t) => {
  const backend = await startBackend(t);
  const authz = await startHttpAuthorizer(t);
  const allowAll: L7AuthorizationPolicy = { name: 'foo/allow-all', action: 'ALLOW', rules: [ANY], dryRun: false };
  const denyAdmin: L7AuthorizationPolicy = { name: 'foo/deny-admin', action: 'DENY', rules: [onPaths([{ prefix: '/protected/admin' }])], dryRun: false };
  const port = await startWaypoint(t, [allowAll, denyAdmin, customPolicy('ext', httpProvider({ headersToDownstreamOnDeny: undefined }), 'sample-ext-authz-http')], backend.port, { 8000: authz.port });
  const denied = await get(port, '/protected/x');
  assert.equal(denied.status, 403);
  assert.equal(denied.headers['x-internal'], 'secret', 'without headersToDownstreamOnDeny every answer header reaches the client');
  assert.equal((await get(port, '/protected/x', { 'x-ext-authz': 'allow' })).status, 200);
  const admin = await get(port, '/protected/admin', { 'x-ext-authz': 'allow' });
  assert.equal(admin.status, 403);
  assert.equal(admin.body, 'RBAC: access denied', 'the DENY policy decides after the authorizer allowed');
  assert.equal(authz.seen.length, 3, 'the authorizer was asked first every time');
});

test('CUSTOM failures: a timeout, a 5xx or an unreachable authorizer deny with statusOnError unless the provider fails open', async (t) => {
  const backend = await startBackend(t);
  const authz = await startHttpAuthorizer(t);
  const closed = http.createServer();
  const closedPort = await listenHttp(t, closed);
  await new Promise<void>((r) => closed.close(() => r()));
  const strict = httpProvider({ name: 'strict', timeoutMs: 300 });
  const lenient = httpProvider({ name: 'lenient', port: 8001, timeoutMs: 300, failOpen: true });
  const custom503 = httpProvider({ name: 'custom503', port: 8002, timeoutMs: 300, statusOnError: 503 });
  const gone = httpProvider({ name: 'gone', port: 8003 });
  const port = await startWaypoint(
    t,
    [
      customPolicy('strict', strict, 'strict', [onPaths([{ prefix: '/strict' }])]),
      customPolicy('lenient', lenient, 'lenient', [onPaths([{ prefix: '/lenient' }])]),
      customPolicy('custom503', custom503, 'custom503', [onPaths([{ prefix: '/c503' }])]),
      customPolicy('gone', gone, 'gone', [onPaths([{ prefix: '/gone' }])]),
    ],
    backend.port,
    { 8000: authz.port, 8001: authz.port, 8002: authz.port, 8003: closedPort },
  );
  const strictTimeout = await get(port, '/strict', { 'x-ext-authz': 'hang' });
  assert.equal(strictTimeout.status, 403, 'timeout, failOpen false: denied');
  assert.equal(strictTimeout.body, '');
  assert.equal((await get(port, '/strict', { 'x-ext-authz': 'broken' })).status, 403, 'a 5xx is an error, not a denial to pass on');
  assert.equal((await get(port, '/lenient', { 'x-ext-authz': 'hang' })).status, 200, 'timeout, failOpen true: allowed');
  assert.equal((await get(port, '/lenient', { 'x-ext-authz': 'broken' })).status, 200, '5xx, failOpen true: allowed');
  assert.equal((await get(port, '/lenient', { 'x-ext-authz': 'no' })).status, 403, 'failOpen does not turn a denial into an allow');
  assert.equal((await get(port, '/c503', { 'x-ext-authz': 'hang' })).status, 503, 'statusOnError');
  assert.equal((await get(port, '/gone', { 'x-ext-authz': 'allow' })).status, 403, 'unreachable authorizer');
});

test('CUSTOM with a gRPC authorizer (envoy.service.auth.v3.Authorization/Check): OK with header changes, denial with its status, timeout with failOpen both ways', async (t) => {
  const backend = await startBackend(t);
  const authz = await startGrpcAuthorizer(t);
  const provider: ExtAuthzProvider = { name: 'sample-ext-authz-grpc', protocol: 'grpc', service: AUTHZ, port: 9000, timeoutMs: 400, failOpen: false };
  const port = await startWaypoint(
    t,
    [customPolicy('grpc', provider, provider.name), customPolicy('open', { ...provider, name: 'open', port: 9001, failOpen: true }, 'open', [onPaths([{ prefix: '/open' }])])],
    backend.port,
    { 9000: authz.port, 9001: authz.port },
  );
  const ok = await get(port, '/protected/g?q=1', { 'x-ext-authz': 'allow', 'x-remove-me': 'secret', 'x-tag': 'a' });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['x-authz-said'], 'ok', 'response_headers_to_add reach the client');
  const up = backend.seen.at(-1)!;
  assert.equal(up.headers['x-grpc-user'], 'bob');
  assert.equal(up.headers['x-tag'], 'a,b', 'append: true appends');
  assert.equal(up.headers['x-remove-me'], undefined, 'headers_to_remove are removed');
  const call = authz.seen[0]!.attributes.request.http;
  assert.equal(call.method, 'GET');
  assert.equal(call.path, '/protected/g?q=1');
  assert.equal(call.host, 'httpbin:8000');
  assert.equal(call.protocol, 'HTTP/1.1');
  assert.equal(call.headers[':authority'], 'httpbin:8000');
  assert.equal(call.headers['x-remove-me'], 'secret', 'the check request carries every request header');

  const denied = await get(port, '/protected/g', { 'x-ext-authz': 'nope' });
  assert.equal(denied.status, 401);
  assert.equal(denied.body, 'grpc authorizer says no');
  assert.equal(denied.headers['www-authenticate'], 'Bearer realm="ext"');
  assert.equal((await get(port, '/protected/g', { 'x-ext-authz': 'hang' })).status, 403, 'no answer within the timeout, failOpen false: denied');
  assert.equal((await get(port, '/open', { 'x-ext-authz': 'hang' })).status, 200, 'failOpen true: allowed');
  assert.equal((await get(port, '/open', { 'x-ext-authz': 'nope' })).status, 401, 'a denial is a denial even when failing open');
});

test('CUSTOM with an unknown provider denies the requests it matches, and only those', async (t) => {
  const backend = await startBackend(t);
  const port = await startWaypoint(t, [customPolicy('bad', undefined, 'nope')], backend.port, {});
  const r = await get(port, '/protected/x');
  assert.equal(r.status, 403);
  assert.equal(r.body, 'RBAC: access denied');
  assert.equal((await get(port, '/elsewhere')).status, 200);
  assert.equal(backend.seen.length, 1);
});

interface BodySeen {
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** An HTTP authorizer deciding on the request body: allowed when it holds `allow` (with `x-authz-note` and `x-secret` answer headers). */
async function startBodyAuthorizer(t: TestContext): Promise<{ port: number; seen: BodySeen[] }> {
  const seen: BodySeen[] = [];
  const port = await listenHttp(
    t,
    http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.once('end', () => {
        const body = Buffer.concat(chunks).toString();
        seen.push({ body, headers: req.headers });
        res.writeHead(body.includes('allow') ? 200 : 403, { 'x-authz-note': body.includes('allow') ? 'ok' : 'no', 'x-secret': 'kept' });
        res.end();
      });
    }),
  );
  return { port, seen };
}

interface BodyCheck {
  attributes: { request: { http: { headers: Record<string, string>; body: string; rawBody: Buffer; size: string | number } } };
}

/** A gRPC authorizer deciding on the body (`body` or `raw_body`): OK when it holds `allow`. */
async function startGrpcBodyAuthorizer(t: TestContext): Promise<{ port: number; seen: BodyCheck[] }> {
  const pkg = loadProto('ext-authz.proto') as unknown as { envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } } };
  const seen: BodyCheck[] = [];
  const server = new grpc.Server();
  server.addService(pkg.envoy.service.auth.v3.Authorization.service, {
    Check: (call: grpc.ServerUnaryCall<BodyCheck, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      seen.push(call.request);
      const h = call.request.attributes.request.http;
      const text = h.body || Buffer.from(h.rawBody ?? []).toString();
      cb(null, text.includes('allow') ? { status: { code: 0 } } : { status: { code: 7 } });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  t.after(() => server.forceShutdown());
  return { port, seen };
}

/** A backend answering with the body it received. */
async function startEchoBackend(t: TestContext): Promise<number> {
  return listenHttp(
    t,
    http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.once('end', () => res.end(Buffer.concat(chunks)));
    }),
  );
}

const post = (port: number, path: string, body: string) => get(port, path, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)) }, body);

test('CUSTOM with includeRequestBodyInCheck: the authorizer decides on the body, which still reaches the backend whole; too long is 413 unless partial messages are allowed', async (t) => {
  const backendPort = await startEchoBackend(t);
  const httpAuthz = await startBodyAuthorizer(t);
  const grpcAuthz = await startGrpcBodyAuthorizer(t);
  const strict = httpProvider({
    name: 'body-http',
    includeRequestHeadersInCheck: [],
    includeAdditionalHeadersInCheck: { 'x-ext-authz-extra': 'fixed' },
    headersToDownstreamOnAllow: [{ exact: 'x-authz-note' }],
    includeRequestBodyInCheck: { maxRequestBytes: 32, allowPartialMessage: false, packAsBytes: false },
  });
  const partial: ExtAuthzProvider = { name: 'body-grpc', protocol: 'grpc', service: AUTHZ, port: 9000, timeoutMs: 10_000, failOpen: false, includeRequestBodyInCheck: { maxRequestBytes: 16, allowPartialMessage: true, packAsBytes: true } };
  const port = await startWaypoint(
    t,
    [customPolicy('http', strict, 'body-http', [onPaths([{ prefix: '/http' }])]), customPolicy('grpc', partial, 'body-grpc', [onPaths([{ prefix: '/grpc' }])])],
    backendPort,
    { 8000: httpAuthz.port, 9000: grpcAuthz.port },
  );

  // HTTP provider: the body is the check request's body; the backend still gets all of it.
  const allowed = await post(port, '/http/orders', 'please allow this');
  assert.equal(allowed.status, 200);
  assert.equal(allowed.body, 'please allow this', 'the body held for the check goes upstream whole');
  assert.equal(allowed.headers['x-authz-note'], 'ok', 'headersToDownstreamOnAllow reach the client');
  assert.equal(allowed.headers['x-secret'], undefined, 'unlisted answer headers do not');
  const check = httpAuthz.seen.at(-1)!;
  assert.equal(check.body, 'please allow this');
  assert.equal(check.headers['content-length'], String('please allow this'.length));
  assert.equal(check.headers['x-envoy-auth-partial-body'], 'false');
  assert.equal(check.headers['x-ext-authz-extra'], 'fixed', 'includeAdditionalHeadersInCheck are sent');
  const denied = await post(port, '/http/orders', 'not this one');
  assert.equal(denied.status, 403, 'the body decides');
  const asked = httpAuthz.seen.length;
  const tooLong = await post(port, '/http/orders', 'allow ' + 'x'.repeat(100));
  assert.equal(tooLong.status, 413, 'past maxRequestBytes without allowPartialMessage: Payload Too Large');
  assert.equal(httpAuthz.seen.length, asked, '... and the authorizer is not asked');

  // gRPC provider, partial messages and packAsBytes: the first 16 bytes go as raw_body, marked partial.
  const long = 'allow-me-please ' + 'y'.repeat(200);
  const passed = await post(port, '/grpc/upload', long);
  assert.equal(passed.status, 200);
  assert.equal(passed.body, long, 'the backend gets the whole body, not the part the authorizer saw');
  const g = grpcAuthz.seen.at(-1)!.attributes.request.http;
  assert.equal(Buffer.from(g.rawBody).toString(), long.slice(0, 16), 'raw_body holds the first maxRequestBytes');
  assert.equal(g.body, '', 'packAsBytes: nothing in body');
  assert.equal(g.headers['x-envoy-auth-partial-body'], 'true');
  assert.equal((await post(port, '/grpc/upload', 'no thanks ' + 'z'.repeat(50))).status, 403);
  assert.equal((await get(port, '/http/orders')).status, 403, 'a request without a body is checked with an empty one');
});
