/**
 * Waypoint L7 proxy against real HTTP/1.1 and HTTP/2 servers on 127.0.0.1: weighted split, header
 * match, retries, timeouts, connection-pool limits, outlier ejection, gRPC trailers, authz, faults,
 * metrics and access log.
 */
import { validateRouteConfig } from '../../src/shared/validate-routes.js';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { emptyHeaderOps, type HttpRoute, type RouteConfig } from '../../src/shared/routes.js';
import { WaypointServer, type BackendTarget } from '../../src/waypoint/server/server.js';
import { HttpUpstream, type Endpoint } from '../../src/waypoint/endpoint/upstream.js';
import { seededRandom } from '../../src/waypoint/route/weighted.js';
import { counterValue, eventually } from '../helpers/process-usage.js';
import { forgeSignature } from '../helpers/jwt-forge.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

interface Backend {
  port: number;
  hits: number;
  close(): Promise<void>;
}

async function startBackend(t: TestContext, handler: Handler): Promise<Backend> {
  const b = { port: 0, hits: 0, close: async () => {} };
  const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    const n = b.hits++;
    handler(req, res, n);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  b.port = (server.address() as AddressInfo).port;
  b.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  t.after(() => b.close());
  return b;
}

function reply(body: string, status = 200): Handler {
  return (req, res) => {
    req.resume();
    req.once('end', () => {
      res.writeHead(status, { 'content-type': 'text/plain', 'x-backend': body });
      res.end(body);
    });
  };
}

const SVC = 'reviews.bookinfo.svc.cluster.local';

function route(name: string, partial: Partial<HttpRoute>): HttpRoute {
  return { name, match: [], backends: [], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() }, ...partial };
}

function config(routes: HttpRoute[], extra: Partial<RouteConfig> = {}): RouteConfig {
  return { name: `bookinfo/${SVC}`, namespace: 'bookinfo', hostname: SVC, aliases: ['reviews'], ports: [{ port: 9080, protocol: 'http' }], routes, authorization: [], ...extra };
}

interface Harness {
  port: number;
  server: WaypointServer;
  registry: ReturnType<typeof createRegistry>;
  lines: Array<Record<string, unknown>>;
}

/** `endpoints` maps a version label to backend ports. */
async function startWaypoint(t: TestContext, configs: RouteConfig[], endpoints: Record<string, number[]>, opts: { defaultRetries?: null; seed?: number } = {}): Promise<Harness> {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      // Envoy-format access lines (a Telemetry's log format) are kept as { raw }.
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(l.startsWith('{"level"') ? (JSON.parse(l) as Record<string, unknown>) : { raw: l });
      cb();
    },
  });
  const log = createLogger({ level: 'info', destination: sink });
  const registry = createRegistry();
  const upstream = new HttpUpstream();
  const resolveEndpoints = (target: BackendTarget): Endpoint[] => {
    const out: Endpoint[] = [];
    for (const [version, ports] of Object.entries(endpoints)) {
      if (target.subsetLabels && target.subsetLabels['version'] !== version) continue;
      for (const port of ports) out.push({ key: `127.0.0.1:${port}`, address: '127.0.0.1', port, labels: { app: 'reviews', version }, workload: `reviews-${version}`, namespace: 'bookinfo', canonicalService: 'reviews', canonicalRevision: version });
    }
    return out;
  };
  const server = new WaypointServer({
    log,
    registry,
    dispatch: upstream.dispatch,
    resolveEndpoints,
    random: seededRandom(opts.seed ?? 42),
    ...(opts.defaultRetries === null ? { defaultRetries: null } : {}),
  });
  assert.deepEqual(configs.flatMap((c) => validateRouteConfig(c)), [], 'the test route config is valid');
  server.setRoutes(configs);
  const addr = await server.listen(0, '127.0.0.1');
  t.after(async () => {
    await server.close(1000);
    upstream.close();
  });
  return { port: addr.port, server, registry, lines };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

function request(port: number, path: string, headers: Record<string, string> = {}, method = 'GET', body?: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent, headers: { host: 'reviews:9080', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
    });
    req.setTimeout(20_000, () => req.destroy(new Error(`request ${path} timed out`)));
    req.once('error', reject);
    req.end(body);
  });
}

/** Runs `count` requests with `concurrency` in flight. */
async function many<T>(count: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

test.after(() => agent.destroy());

const SUBSETS = { subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] };

test('90/10 weighted split over 2,000 requests lands within ±3 points', async (t) => {
  const v1 = await startBackend(t, reply('v1'));
  const v2 = await startBackend(t, reply('v2'));
  const r = route('split', {
    backends: [
      { host: SVC, subset: 'v1', subsetLabels: { version: 'v1' }, weight: 90 },
      { host: SVC, subset: 'v2', subsetLabels: { version: 'v2' }, weight: 10 },
    ],
  });
  const w = await startWaypoint(t, [config([r], { trafficPolicy: SUBSETS })], { v1: [v1.port], v2: [v2.port] });
  const results = await many(2000, 16, () => request(w.port, '/reviews/1'));
  assert.ok(results.every((x) => x.status === 200), 'every request succeeds');
  const share = (results.filter((x) => x.body === 'v2').length / results.length) * 100;
  assert.ok(Math.abs(share - 10) <= 3, `v2 share ${share.toFixed(2)}% should be 10% ± 3`);
  assert.equal(v1.hits + v2.hits, 2000, 'each request reached exactly one backend');
  const v2Metric = await counterValue(w.registry, 'istio_requests_total', { destination_version: 'v2', reporter: 'waypoint', response_code: '200' });
  assert.equal(v2Metric, v2.hits, 'istio_requests_total counts v2 requests by destination_version');
});

test('a header match sends the marked user to v2 only, everyone else to v1', async (t) => {
  const v1 = await startBackend(t, reply('v1'));
  const v2 = await startBackend(t, reply('v2'));
  const routes = [
    route('jason', { match: [{ headers: [{ name: 'end-user', match: { exact: 'jason' } }], queryParams: [] }], backends: [{ host: SVC, subset: 'v2', subsetLabels: { version: 'v2' }, weight: 1 }] }),
    route('rest', { backends: [{ host: SVC, subset: 'v1', subsetLabels: { version: 'v1' }, weight: 1 }] }),
  ];
  const w = await startWaypoint(t, [config(routes, { trafficPolicy: SUBSETS })], { v1: [v1.port], v2: [v2.port] });
  const marked = await many(100, 8, () => request(w.port, '/', { 'end-user': 'jason' }));
  const others = await many(100, 8, (i) => request(w.port, '/', i % 2 ? { 'end-user': 'alice' } : {}));
  assert.ok(marked.every((x) => x.body === 'v2'), 'jason always reaches v2');
  assert.ok(others.every((x) => x.body === 'v1'), 'everyone else reaches v1');
  const access = w.lines.filter((l) => l['scope'] === 'access');
  assert.equal(access.length, 200, 'one access-log line per request');
  assert.equal(access.filter((l) => l['route'] === 'jason').length, 100, 'the access log names the matched route');
});

test('retries: a backend failing every other request gives >= 99.5% success and the retry counter matches', async (t) => {
  const flaky = await startBackend(t, (req, res, n) => {
    req.resume();
    res.writeHead(n % 2 === 0 ? 503 : 200);
    res.end(n % 2 === 0 ? 'fail' : 'ok');
  });
  const r = route('flaky', { backends: [{ host: SVC, weight: 1 }], retries: { attempts: 3, retryOn: ['5xx'], retriableStatusCodes: [], backoffMs: 2, budget: { percent: 20, minConcurrency: 8 } } });
  const w = await startWaypoint(t, [config([r])], { v1: [flaky.port] });
  // Sequential, so "every other request fails" stays exactly 50% per try (concurrent tries would interleave).
  const results = await many(1000, 1, () => request(w.port, '/'));
  const ok = results.filter((x) => x.status === 200).length;
  assert.ok(ok / results.length >= 0.995, `success ratio ${ok / results.length} should be >= 0.995`);
  const failures = flaky.hits - ok;
  const retries = await counterValue(w.registry, 'ambit_request_retries_total', { reason: '5xx' });
  assert.equal(retries, failures, 'one retry per failed try');
  const logged = w.lines.filter((l) => l['scope'] === 'access').reduce((s, l) => s + Number(l['retries']), 0);
  assert.equal(logged, retries, 'access-log retries add up to the counter');
});

test('retry budget stops retries from multiplying load during an outage', async (t) => {
  const down = await startBackend(t, (req, res) => {
    req.resume();
    setTimeout(() => {
      res.writeHead(503);
      res.end();
    }, 20);
  });
  const r = route('down', { backends: [{ host: SVC, weight: 1 }], retries: { attempts: 5, retryOn: ['5xx'], retriableStatusCodes: [], budget: { percent: 20, minConcurrency: 1 } } });
  const w = await startWaypoint(t, [config([r])], { v1: [down.port] });
  const results = await many(200, 20, () => request(w.port, '/'));
  assert.ok(results.every((x) => x.status === 503), 'the outage shows through');
  const retries = await counterValue(w.registry, 'ambit_request_retries_total');
  assert.ok(retries < 200 * 0.5, `retries ${retries} stay well below the 1000 that 5 attempts each would make`);
  assert.ok((await counterValue(w.registry, 'ambit_circuit_breaker_trips_total', { reason: 'retry_budget' })) > 0, 'budget refusals are counted');
});

test('a slow backend yields 504 at the route timeout', async (t) => {
  const slow = await startBackend(t, (req, res) => {
    req.resume();
    const timer = setTimeout(() => res.end('late'), 5000);
    res.once('close', () => clearTimeout(timer));
  });
  const r = route('slow', { backends: [{ host: SVC, weight: 1 }], timeoutMs: 200 });
  const w = await startWaypoint(t, [config([r])], { v1: [slow.port] }, { defaultRetries: null });
  const res = await request(w.port, '/slow');
  assert.equal(res.status, 504);
  assert.equal(res.body, 'upstream request timeout');
  assert.equal(await counterValue(w.registry, 'ambit_request_timeouts_total', { kind: 'request' }), 1);
  assert.equal(await counterValue(w.registry, 'istio_requests_total', { response_code: '504', response_flags: 'UT' }), 1, 'metric carries flag UT');
});

test('per-try timeout retries on another try and the request still succeeds', async (t) => {
  // The first try never answers; the second answers at once. The per-try timeout is wide (2 s)
  // so that on a loaded machine the prompt second try cannot time out too (150 ms could).
  const sometimesSlow = await startBackend(t, (req, res, n) => {
    req.resume();
    const timer = setTimeout(() => res.end('ok'), n === 0 ? 60_000 : 0);
    res.once('close', () => clearTimeout(timer));
  });
  const r = route('pertry', { backends: [{ host: SVC, weight: 1 }], timeoutMs: 20_000, retries: { attempts: 2, perTryTimeoutMs: 2000, retryOn: ['gateway-error'], retriableStatusCodes: [] } });
  const w = await startWaypoint(t, [config([r])], { v1: [sometimesSlow.port] });
  const res = await request(w.port, '/');
  assert.equal(res.status, 200);
  assert.equal(await counterValue(w.registry, 'ambit_request_timeouts_total', { kind: 'per_try' }), 1);
  assert.equal(await counterValue(w.registry, 'ambit_request_retries_total', { reason: 'gateway-error' }), 1);
});

test('connection-pool limit answers 503 UO when full, then recovers', async (t) => {
  const held: http.ServerResponse[] = [];
  const gate = await startBackend(t, (req, res) => {
    req.resume();
    if (req.url === '/hold') held.push(res);
    else res.end('ok');
  });
  const r = route('pool', { backends: [{ host: SVC, weight: 1 }] });
  const w = await startWaypoint(t, [config([r], { trafficPolicy: { connectionPool: { maxConnections: 1, http1MaxPendingRequests: 1 }, subsets: [] } })], { v1: [gate.port] }, { defaultRetries: null });
  const first = request(w.port, '/hold');
  const deadline = Date.now() + 5000;
  while (held.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(held.length, 1, 'the first request is in flight at the backend');
  const second = request(w.port, '/queued');
  // The overflow requests must come after the second is queued: wait for it, not for a guess.
  while (!w.server.poolLoad().some((l) => l.pending === 1) && Date.now() < deadline + 5000) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(w.server.poolLoad().map((l) => [l.active, l.pending]), [[1, 1]], 'one request in flight, one queued');
  const overflow = await Promise.all([request(w.port, '/x'), request(w.port, '/y'), request(w.port, '/z')]);
  assert.deepEqual(overflow.map((x) => x.status), [503, 503, 503], 'requests beyond active + pending are refused');
  assert.match(overflow[0]!.body, /overflow/);
  held[0]!.end('released');
  assert.equal((await first).status, 200);
  assert.equal((await second).status, 200, 'the queued request runs once a slot frees');
  const after = await request(w.port, '/after');
  assert.equal(after.status, 200, 'the pool recovers');
  assert.equal(await counterValue(w.registry, 'ambit_circuit_breaker_trips_total', { reason: 'pool_overflow' }), 3);
  assert.equal(await counterValue(w.registry, 'istio_requests_total', { response_code: '503', response_flags: 'UO' }), 3);
});

test('outlier detection ejects an endpoint that returns 5xx', async (t) => {
  const good = await startBackend(t, reply('good'));
  const bad = await startBackend(t, reply('bad', 500));
  const r = route('od', { backends: [{ host: SVC, weight: 1 }] });
  const tp = { outlierDetection: { consecutive5xxErrors: 2, intervalMs: 1000, baseEjectionTimeMs: 60_000, maxEjectionPercent: 100 }, subsets: [] };
  const w = await startWaypoint(t, [config([r], { trafficPolicy: tp })], { v1: [good.port, bad.port] }, { defaultRetries: null });
  const results = await many(200, 1, () => request(w.port, '/'));
  const badCount = results.filter((x) => x.status === 500).length;
  assert.equal(badCount, 2, 'the bad endpoint serves exactly consecutive5xxErrors requests before ejection');
  assert.ok(results.slice(-100).every((x) => x.status === 200), 'after ejection every request succeeds');
  assert.equal(await counterValue(w.registry, 'ambit_outlier_ejections_total'), 1);
});

test('gRPC-like HTTP/2 request: body and trailers pass through, grpc status is labelled', async (t) => {
  const h2 = http2.createServer();
  h2.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok', 'x-path': String(headers[':path']) }));
      stream.end(Buffer.concat([Buffer.from('echo:'), ...chunks]));
    });
  });
  await new Promise<void>((r) => h2.listen(0, '127.0.0.1', () => r()));
  const grpcPort = (h2.address() as AddressInfo).port;
  t.after(() => new Promise<void>((r) => h2.close(() => r())));
  const r = route('grpc', { backends: [{ host: SVC, port: 9090, weight: 1 }] });
  const w = await startWaypoint(t, [config([r], { ports: [{ port: 9090, protocol: 'grpc' }] })], { v1: [grpcPort] });
  const client = http2.connect(`http://127.0.0.1:${w.port}`);
  t.after(() => client.close());
  const result = await new Promise<{ headers: http2.IncomingHttpHeaders; body: string; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
    const s = client.request({ ':method': 'POST', ':path': '/pkg.Svc/Echo', ':authority': 'reviews:9090', 'content-type': 'application/grpc', te: 'trailers' });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    s.once('response', (h) => (headers = h));
    s.once('trailers', (tr) => (trailers = tr));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve({ headers, body: Buffer.concat(chunks).toString(), trailers }));
    s.once('error', reject);
    s.end(Buffer.from('payload'));
  });
  assert.equal(result.headers[':status'], 200);
  assert.equal(result.body, 'echo:payload');
  assert.equal(result.trailers['grpc-status'], '0');
  assert.equal(result.trailers['x-path'], '/pkg.Svc/Echo');
  assert.equal(await counterValue(w.registry, 'istio_requests_total', { request_protocol: 'grpc', grpc_response_status: '0', response_code: '200' }), 1);
});

test('L7 authorization: DENY on a path gives 403, other paths pass', async (t) => {
  const b = await startBackend(t, reply('ok'));
  const r = route('all', { backends: [{ host: SVC, weight: 1 }] });
  const authorization = [
    {
      name: 'bookinfo/deny-admin',
      action: 'DENY' as const,
      dryRun: false,
      rules: [{ from: [], to: [{ hosts: [], notHosts: [], paths: [{ prefix: '/admin' }], notPaths: [], methods: [], notMethods: [], ports: [], notPorts: [] }], when: [] }],
    },
  ];
  const w = await startWaypoint(t, [config([r], { authorization })], { v1: [b.port] });
  const denied = await request(w.port, '/admin/users');
  assert.equal(denied.status, 403);
  assert.equal(denied.body, 'RBAC: access denied');
  assert.equal((await request(w.port, '/public')).status, 200);
  assert.equal(b.hits, 1, 'the denied request never reached the backend');
});

test('fault abort, rate limit, unknown host, and the validator names the bad field of a route config', async (t) => {
  const b = await startBackend(t, reply('ok'));
  const r = route('abort', { match: [{ uri: { prefix: '/abort' }, headers: [], queryParams: [] }], backends: [{ host: SVC, weight: 1 }], fault: { abort: { percent: 100, httpStatus: 418 } } });
  const rest = route('rest', { backends: [{ host: SVC, weight: 1 }] });
  const w = await startWaypoint(t, [config([r, rest], { rateLimit: { maxTokens: 3, tokensPerFill: 1, fillIntervalMs: 60_000 } })], { v1: [b.port] });
  assert.equal((await request(w.port, '/abort')).status, 418);
  assert.equal((await request(w.port, '/ok')).status, 200);
  assert.equal((await request(w.port, '/ok')).status, 200);
  assert.equal((await request(w.port, '/ok')).status, 200, 'the abort came before the rate limit and took no token');
  const limited = await request(w.port, '/ok');
  assert.equal(limited.status, 429, 'the fourth request exceeds maxTokens 3');
  assert.equal((await request(w.port, '/', { host: 'nobody.example' })).status, 404);
  // An invalid route config never reaches the server: the config client validates every resource
  // on receipt and NACKs (test/integration/xds.test.ts); here the validator names the bad field.
  const bad = validateRouteConfig({ ...config([]), routes: [route('x', { backends: [{ host: '', weight: -1 }] })] });
  assert.ok(bad.some((i) => i.path.endsWith('backends[0].host')), 'issues name the bad field');
  assert.equal(await counterValue(w.registry, 'ambit_faults_injected_total', { kind: 'abort' }), 1);
  assert.equal(await counterValue(w.registry, 'istio_requests_total', { response_flags: 'RL', response_code: '429' }), 1);
  assert.equal((await request(w.port, '/abort')).status, 418, 'the last good config still serves');
});

test('metrics carry Istio labels and trace context is propagated', async (t) => {
  let seen: http.IncomingHttpHeaders = {};
  const b = await startBackend(t, (req, res) => {
    seen = req.headers;
    req.resume();
    res.end('ok');
  });
  const r = route('r', { backends: [{ host: SVC, subset: 'v1', subsetLabels: { version: 'v1' }, weight: 1 }], headers: { request: { set: { 'x-set': 'yes' }, add: {}, remove: ['x-drop'] }, response: { set: { 'x-resp': '1' }, add: {}, remove: [] } } });
  const w = await startWaypoint(t, [config([r], { trafficPolicy: SUBSETS })], { v1: [b.port] });
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const res = await request(w.port, '/', { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'x-drop': 'gone' });
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-resp'], '1', 'response header set');
  assert.equal(seen['x-set'], 'yes');
  assert.equal(seen['x-drop'], undefined);
  const tp = String(seen['traceparent']);
  assert.ok(tp.startsWith(`00-${traceId}-`), 'trace id kept');
  assert.notEqual(tp.split('-')[2], '00f067aa0ba902b7', 'a new span id for the waypoint hop');
  const m = await w.registry.getSingleMetric('istio_requests_total')!.get();
  const labels = m.values[0]!.labels;
  assert.equal(labels['reporter'], 'waypoint');
  assert.equal(labels['destination_service'], SVC);
  assert.equal(labels['destination_service_name'], 'reviews');
  assert.equal(labels['destination_service_namespace'], 'bookinfo');
  assert.equal(labels['destination_workload'], 'reviews-v1');
  assert.equal(labels['destination_version'], 'v1');
  assert.equal(labels['response_code'], '200');
  assert.equal(labels['response_flags'], '-');
  assert.equal(labels['request_protocol'], 'http');
  assert.equal(labels['source_workload'], 'unknown');
  const hist = await w.registry.getSingleMetric('istio_request_duration_milliseconds')!.get();
  assert.ok(hist.values.some((v) => (v as { metricName?: string }).metricName === 'istio_request_duration_milliseconds_count' && v.value === 1), 'one duration observation');
});

test('maxRequestsPerConnection: 1 opens a new upstream connection per request; otherwise one is reused', async (t) => {
  const sockets = new Set<unknown>();
  const b = await startBackend(t, (req, res) => {
    sockets.add(req.socket);
    req.resume();
    res.end('ok');
  });
  const r = route('r', { backends: [{ host: SVC, weight: 1 }] });
  const once = await startWaypoint(t, [config([r], { trafficPolicy: { connectionPool: { maxRequestsPerConnection: 1 }, subsets: [] } })], { v1: [b.port] });
  for (let i = 0; i < 5; i++) assert.equal((await request(once.port, '/')).status, 200);
  assert.equal(sockets.size, 5, 'one connection per request');
  sockets.clear();
  const reuse = await startWaypoint(t, [config([r])], { v1: [b.port] });
  for (let i = 0; i < 5; i++) assert.equal((await request(reuse.port, '/')).status, 200);
  assert.equal(sockets.size, 1, 'keep-alive reuses one connection');
});

test('redirect: a 301/308 with the Location Envoy builds, the backend never reached', async (t) => {
  const b = await startBackend(t, reply('ok'));
  const moved = route('moved', { match: [{ uri: { prefix: '/old' }, headers: [], queryParams: [] }], redirect: { code: 301, uri: '/new' } });
  const tls = route('tls', { match: [{ uri: { prefix: '/secure' }, headers: [], queryParams: [] }], redirect: { code: 308, scheme: 'https', authority: 'secure.example.com', derivePort: 'FROM_PROTOCOL_DEFAULT' } });
  const rest = route('rest', { backends: [{ host: SVC, weight: 1 }] });
  const w = await startWaypoint(t, [config([moved, tls, rest])], { v1: [b.port] });
  const r1 = await request(w.port, '/old/page?q=1');
  assert.equal(r1.status, 301);
  assert.equal(r1.headers.location, 'http://reviews:9080/new?q=1');
  assert.equal(r1.body, '');
  const r2 = await request(w.port, '/secure', {}, 'POST', 'x');
  assert.equal(r2.status, 308);
  assert.equal(r2.headers.location, 'https://secure.example.com/secure');
  assert.equal(b.hits, 0, 'redirected requests never reach the backend');
  assert.equal((await request(w.port, '/other')).status, 200);
  assert.equal(await counterValue(w.registry, 'istio_requests_total', { response_code: '301' }), 1);
});

test('CORS: preflights are answered at the waypoint; allowed origins get their headers on the backend response; others get none', async (t) => {
  const b = await startBackend(t, reply('ok'));
  const cors = { allowOrigins: [{ exact: 'https://app.example.com' }], allowMethods: ['GET', 'PUT'], allowHeaders: ['x-token'], exposeHeaders: ['x-backend'], maxAgeSeconds: 600, allowCredentials: true, unmatchedPreflights: 'IGNORE' as const };
  const w = await startWaypoint(t, [config([route('api', { backends: [{ host: SVC, weight: 1 }], cors })])], { v1: [b.port] });
  const pre = await request(w.port, '/items', { origin: 'https://app.example.com', 'access-control-request-method': 'PUT' }, 'OPTIONS');
  assert.equal(pre.status, 200);
  assert.equal(pre.headers['access-control-allow-origin'], 'https://app.example.com');
  assert.equal(pre.headers['access-control-allow-methods'], 'GET,PUT');
  assert.equal(pre.headers['access-control-allow-headers'], 'x-token');
  assert.equal(pre.headers['access-control-max-age'], '600');
  assert.equal(pre.headers['access-control-allow-credentials'], 'true');
  assert.equal(b.hits, 0, 'the preflight is answered by the waypoint');
  const actual = await request(w.port, '/items', { origin: 'https://app.example.com' });
  assert.equal(actual.status, 200);
  assert.equal(actual.body, 'ok');
  assert.equal(actual.headers['access-control-allow-origin'], 'https://app.example.com');
  assert.equal(actual.headers['access-control-expose-headers'], 'x-backend');
  assert.equal(actual.headers['access-control-allow-credentials'], 'true');
  const other = await request(w.port, '/items', { origin: 'https://evil.example.com' });
  assert.equal(other.status, 200);
  assert.equal(other.headers['access-control-allow-origin'], undefined);
  const ignored = await request(w.port, '/items', { origin: 'https://evil.example.com', 'access-control-request-method': 'PUT' }, 'OPTIONS');
  assert.equal(ignored.status, 200);
  assert.equal(ignored.headers['access-control-allow-origin'], undefined);
  assert.equal(b.hits, 2, 'an ignored unmatched preflight does not reach the backend either');
});

test('a refused backend (RefNotPermitted) gets its share of requests answered 500; the rest reach their backend', async (t) => {
  const b = await startBackend(t, reply('ok'));
  const r = route('split', { backends: [{ host: SVC, weight: 1 }, { host: 'other.elsewhere.svc.cluster.local', weight: 1, refused: true }] });
  const w = await startWaypoint(t, [config([r])], { v1: [b.port] });
  const statuses = await many(40, 4, async () => (await request(w.port, '/')).status);
  const fails = statuses.filter((s) => s === 500).length;
  assert.equal(fails + statuses.filter((s) => s === 200).length, 40);
  assert.ok(fails > 5 && fails < 35, `about half the requests get 500 (${fails} of 40)`);
  assert.equal(b.hits, 40 - fails);
});

test('JWT: a RequestAuthentication with a JWKS the test serves, and an ALLOW on requestPrincipals and a claim, through the waypoint', async (t) => {
  const { exportJWK, generateKeyPair, SignJWT } = await import('jose');
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] });
  let jwksFetches = 0;
  const keyServer = http.createServer((_req, res) => {
    jwksFetches++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(jwks);
  });
  await new Promise<void>((r) => keyServer.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => keyServer.close(() => r())));
  const seen: http.IncomingHttpHeaders[] = [];
  const b = await startBackend(t, (req, res) => {
    seen.push(req.headers);
    req.resume();
    res.end('ok');
  });
  const iss = 'https://issuer.example.com';
  const sign = (sub: string, groups: string[]) => new SignJWT({ groups }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(iss).setSubject(sub).setAudience('shop').setExpirationTime('5m').sign(privateKey);
  const jwtRules = [{ issuer: iss, audiences: ['shop'], jwksUri: `http://127.0.0.1:${(keyServer.address() as AddressInfo).port}/jwks.json`, fromHeaders: [], fromParams: [], outputPayloadToHeader: 'x-jwt-payload', forwardOriginalToken: false }];
  const authorization = [
    {
      name: 'bookinfo/require-jwt',
      action: 'ALLOW' as const,
      dryRun: false,
      rules: [{ from: [{ principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], requestPrincipals: [{ presence: true as const }] }], to: [], when: [{ header: '', claim: ['groups'], values: [{ exact: 'readers' }], notValues: [] }] }],
    },
  ];
  const w = await startWaypoint(t, [config([route('all', { backends: [{ host: SVC, weight: 1 }] })], { jwtRules, authorization })], { v1: [b.port] });

  const none = await request(w.port, '/');
  assert.equal(none.status, 403, 'no token: no request principal, so the ALLOW does not match');
  const reader = await request(w.port, '/', { authorization: `Bearer ${await sign('alice', ['readers'])}` });
  assert.equal(reader.status, 200);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!['authorization'], undefined, 'the token is not forwarded');
  assert.equal(JSON.parse(Buffer.from(String(seen[0]!['x-jwt-payload']), 'base64url').toString()).sub, 'alice');
  assert.equal((await request(w.port, '/', { authorization: `Bearer ${await sign('bob', ['writers'])}` })).status, 403, 'a valid token without the claim');
  const forged = await request(w.port, '/', { authorization: `Bearer ${forgeSignature(await sign('alice', ['readers']))}` });
  assert.equal(forged.status, 401);
  assert.equal(forged.body, 'Jwt verification fails');
  assert.match(String(forged.headers['www-authenticate']), /^Bearer realm=.*error="invalid_token"/);
  assert.equal(seen.length, 1, 'refused requests never reached the backend');
  assert.ok(jwksFetches >= 1, 'the waypoint fetched the JWKS');
});

test('Telemetry knobs: access log off and 0% sampling for one config; a caller\'s sampling decision is kept', async (t) => {
  const seen: string[] = [];
  const be = await startBackend(t, (req, res, n) => {
    seen[n] = String(req.headers['traceparent']);
    req.resume();
    res.end('ok');
  });
  const all = [route('all', { backends: [{ host: SVC, weight: 100 }] })];
  const quiet = config(all, { telemetry: { accessLog: false, samplingPercent: 0, reportSpans: true } });
  const w = await startWaypoint(t, [quiet], { v1: [be.port] });
  for (let i = 0; i < 10; i++) assert.equal((await request(w.port, '/q', { host: 'reviews' })).status, 200);
  assert.ok(await eventually(async () => (await counterValue(w.registry, 'istio_requests_total', {})) === 10), 'every request was finished (metrics come before the access line)');
  assert.equal(w.lines.filter((l) => l['scope'] === 'access').length, 0, 'no access-log line for a config whose access log is disabled');
  assert.equal(seen.length, 10);
  assert.ok(seen.every((tp) => /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/.test(tp)), `new traces are not sampled at 0%: ${seen.join(' ')}`);
  const callerId = '4bf92f3577b34da6a3ce929d0e0e4736';
  await request(w.port, '/q', { host: 'reviews', traceparent: `00-${callerId}-00f067aa0ba902b7-01` });
  assert.match(seen[10]!, new RegExp(`^00-${callerId}-[0-9a-f]{16}-01$`), 'a sampled caller stays sampled');

  // The same waypoint with the knobs gone (the Telemetry deleted): lines and sampled traces again.
  w.server.setRoutes([config(all)]);
  assert.equal((await request(w.port, '/q', { host: 'reviews' })).status, 200);
  assert.match(seen[11]!, /-01$/);
  assert.ok(await eventually(() => w.lines.some((l) => l['scope'] === 'access')), 'the access log is back');
});

test('Telemetry access-log filters: a line is written only for requests a filter expression lets through', async (t) => {
  const be = await startBackend(t, (req, res) => {
    req.resume();
    res.statusCode = req.url?.startsWith('/fail') ? 503 : req.url?.startsWith('/missing') ? 404 : 200;
    res.end('x');
  });
  const all = [route('all', { backends: [{ host: SVC, weight: 100 }] })];
  const filters = ['response.code >= 500', "request.headers['x-debug'] == 'on' && request.url_path.startsWith('/ok')"];
  const w = await startWaypoint(t, [config(all, { telemetry: { accessLog: true, accessLogFilters: filters, samplingPercent: 100, reportSpans: true } })], { v1: [be.port] });
  const sent: Array<[string, Record<string, string>, number]> = [
    ['/ok', {}, 200],
    ['/missing', {}, 404],
    ['/fail/1', {}, 503],
    ['/ok/2?x=1', { 'x-debug': 'on' }, 200],
    ['/other', { 'x-debug': 'on' }, 200],
    ['/fail/2', {}, 503],
  ];
  for (const [path, headers, status] of sent) assert.equal((await request(w.port, path, { host: 'reviews', ...headers })).status, status);
  assert.ok(await eventually(async () => (await counterValue(w.registry, 'istio_requests_total', {})) === sent.length), 'every request was finished');
  const logged = w.lines.filter((l) => l['scope'] === 'access').map((l) => String(l['path'])).sort();
  assert.deepEqual(logged, ['/fail/1', '/fail/2', '/ok/2?x=1'], 'the 5xx responses and the debug request under /ok, nothing else');
});

test('Telemetry metrics overrides: a family disabled, a label removed, a label set from a request header', async (t) => {
  const be = await startBackend(t, (req, res) => {
    req.resume();
    res.end('x');
  });
  const all = [route('all', { backends: [{ host: SVC, weight: 100 }] })];
  const metricOverrides = [
    { metrics: ['requests' as const], mode: 'CLIENT_AND_SERVER' as const, tags: { request_protocol: { remove: true as const }, source_app: { value: "request.headers['x-tenant']" } } },
    { metrics: ['duration' as const], mode: 'SERVER' as const, disabled: true },
    // CLIENT overrides are for gateways (reporter=source): a waypoint leaves them alone.
    { metrics: ['requestBytes' as const], mode: 'CLIENT' as const, disabled: true },
  ];
  const w = await startWaypoint(t, [config(all, { telemetry: { accessLog: true, samplingPercent: 100, reportSpans: true, metricOverrides } })], { v1: [be.port] });
  for (const tenant of ['blue', 'blue', 'green']) assert.equal((await request(w.port, '/', { host: 'reviews', 'x-tenant': tenant })).status, 200);
  assert.equal((await request(w.port, '/', { host: 'reviews' })).status, 200);
  const series = async (name: string) => (await w.registry.getSingleMetric(name)?.get())?.values ?? [];
  assert.ok(await eventually(async () => (await series('istio_requests_total')).reduce((n, v) => n + v.value, 0) === 4), 'every request counted');
  const counts = Object.fromEntries((await series('istio_requests_total')).map((v) => [String(v.labels['source_app']), { n: v.value, protocol: v.labels['request_protocol'] }]));
  assert.deepEqual(counts, { blue: { n: 2, protocol: '' }, green: { n: 1, protocol: '' }, unknown: { n: 1, protocol: '' } }, 'source_app from the header (unknown without it), request_protocol removed');
  assert.equal((await series('istio_request_duration_milliseconds')).length, 0, 'the SERVER-side duration is disabled at a waypoint');
  const sizes = (await series('istio_request_bytes')).filter((v) => (v as { metricName?: string }).metricName === 'istio_request_bytes_count');
  assert.equal(sizes.reduce((n, v) => n + v.value, 0), 4, 'a CLIENT override does not touch a waypoint\'s metrics');
  assert.ok(sizes.every((v) => v.labels['request_protocol'] === 'http' && v.labels['source_app'] !== 'blue'), 'overrides of another family do not leak');
});

test('Telemetry access-log format: Envoy text and JSON labels lines from the provider\'s logFormat', async (t) => {
  const be = await startBackend(t, (req, res) => {
    req.resume();
    res.setHeader('x-envoy-upstream-service-time', '3');
    res.statusCode = req.url === '/missing' ? 404 : 200;
    res.end('abc');
  });
  const all = [route('all', { backends: [{ host: SVC, weight: 100 }] })];
  const text = '%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% %BYTES_SENT% "%REQ(USER-AGENT):4%" %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %UPSTREAM_HOST% %ROUTE_NAME% %REQ(X-MISSING)%\n';
  const w = await startWaypoint(t, [config(all, { telemetry: { accessLog: true, samplingPercent: 100, reportSpans: true, accessLogFormat: { text } } })], { v1: [be.port] });
  assert.equal((await request(w.port, '/items?x=1', { host: 'reviews', 'user-agent': 'curl/8.0' })).status, 200);
  assert.ok(await eventually(() => w.lines.some((l) => l['raw'] !== undefined)), 'a text line is written');
  assert.deepEqual(w.lines.filter((l) => l['raw'] !== undefined).map((l) => l['raw']), [`GET /items?x=1 200 3 "curl" 3 127.0.0.1:${be.port} all -`]);
  assert.equal(w.lines.filter((l) => l['scope'] === 'access').length, 0, 'no JSON access line besides it');

  w.server.setRoutes([config(all, { telemetry: { accessLog: true, samplingPercent: 100, reportSpans: true, accessLogFormat: { labels: { code: '%RESPONSE_CODE%', path: '%REQ(:PATH)%', who: 'ua=%REQ(USER-AGENT)%', gone: '%REQ(X-MISSING)%' } } } })]);
  assert.equal((await request(w.port, '/missing', { host: 'reviews', 'user-agent': 'tester' })).status, 404);
  const json = async () => w.lines.filter((l) => typeof l['raw'] === 'string' && String(l['raw']).startsWith('{')).map((l) => JSON.parse(String(l['raw'])) as Record<string, unknown>);
  assert.ok(await eventually(async () => (await json()).length === 1), 'a JSON labels line is written');
  assert.deepEqual((await json())[0], { code: 404, path: '/missing', who: 'ua=tester', gone: null }, 'one-operator labels keep their type (a missing one is null); mixed ones are strings');
});
