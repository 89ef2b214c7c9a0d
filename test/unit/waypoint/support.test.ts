import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { createRegistry } from '../../../src/shared/metrics.js';
import { emptyHeaderOps, type RouteConfig } from '../../../src/shared/routes.js';
import { validateGatewayServer, validateRouteConfig } from '../../../src/shared/validate-routes.js';
import { createWaypointMetrics, ISTIO_HTTP_LABELS } from '../../../src/waypoint/metrics.js';
import { istioHttpLabels, peerLabels, recordIstioRequest, serviceLabels } from '../../../src/shared/istio-metrics.js';
import { TokenBucket } from '../../../src/waypoint/filters/rate-limit.js';
import { ReplayableBody } from '../../../src/waypoint/dispatch/replay-body.js';
import { createDeadline, isExpired, parseGrpcTimeout, remainingMs, tryTimeoutMs } from '../../../src/waypoint/dispatch/timeout.js';
import { seededRandom } from '../../../src/waypoint/route/weighted.js';
import { propagateTrace, readTraceContext } from '../../../src/waypoint/trace.js';

test('token bucket: maxTokens burst, then tokensPerFill per interval, never above max', () => {
  let now = 0;
  const b = new TokenBucket({ maxTokens: 3, tokensPerFill: 2, fillIntervalMs: 1000 }, () => now);
  assert.deepEqual([b.tryTake(), b.tryTake(), b.tryTake(), b.tryTake()], [true, true, true, false]);
  now = 999;
  assert.equal(b.tryTake(), false, 'no refill before the interval');
  now = 1000;
  assert.deepEqual([b.tryTake(), b.tryTake(), b.tryTake()], [true, true, false]);
  now = 100_000;
  assert.equal(b.available, 3, 'capped at maxTokens');
});

test('deadlines: per-try is the smaller of perTryTimeout and what is left', () => {
  const d = createDeadline(1000, 0);
  assert.equal(tryTimeoutMs(d, 300, 0), 300);
  assert.equal(tryTimeoutMs(d, 300, 800), 200);
  assert.equal(remainingMs(d, 1500), 0);
  assert.equal(isExpired(d, 1000), true);
  const none = createDeadline(undefined, 0);
  assert.equal(tryTimeoutMs(none, undefined, 5), undefined);
  assert.equal(tryTimeoutMs(none, 50, 5), 50);
  assert.equal(isExpired(none, 1e12), false);
  assert.equal(parseGrpcTimeout('100m'), 100);
  assert.equal(parseGrpcTimeout('2S'), 2000);
  assert.equal(parseGrpcTimeout('1H'), 3_600_000);
  assert.equal(parseGrpcTimeout('bogus'), undefined);
});

test('trace: keeps the trace id, makes a new span, parent is the caller span; starts one when absent', () => {
  const random = seededRandom(1);
  const incoming = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
  const out = propagateTrace(incoming, random);
  assert.equal(out.context.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(out.context.parentSpanId, '00f067aa0ba902b7');
  assert.notEqual(out.context.spanId, '00f067aa0ba902b7');
  assert.match(out.set['traceparent']!, /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
  assert.equal(out.set['x-b3-traceid'], undefined, 'B3 only when the request used it');
  const fresh = propagateTrace({}, random);
  assert.match(fresh.set['traceparent']!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  assert.equal(readTraceContext({ traceparent: fresh.set['traceparent'] })?.traceId, fresh.context.traceId, 'what we write parses back');
  const b3 = propagateTrace({ 'x-b3-traceid': '463ac35c9f6413ad', 'x-b3-spanid': 'a2fb4a1d1a96d312', 'x-b3-sampled': '1' }, random);
  assert.equal(b3.set['x-b3-traceid'], '463ac35c9f6413ad', '64-bit B3 trace ids stay 64-bit');
  assert.equal(b3.set['x-b3-parentspanid'], 'a2fb4a1d1a96d312');
  assert.equal(b3.context.traceId, '0000000000000000463ac35c9f6413ad');
  const single = propagateTrace({ b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0' }, random);
  assert.equal(single.context.sampled, false);
  assert.match(single.set['b3']!, /^80f198ee56343ba864fe8b2a57d3eff7-[0-9a-f]{16}-0-e457b5a2e4d86bd1$/);
  assert.equal(readTraceContext({ traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' }), undefined, 'all-zero trace id is invalid');
});

test('metrics: Istio label set with reporter=waypoint, unknown defaults', async () => {
  const registry = createRegistry();
  const m = createWaypointMetrics(registry);
  const labels = istioHttpLabels({ reporter: 'waypoint', source: peerLabels({}), destination: peerLabels({}), service: serviceLabels(undefined), protocol: 'http', mtls: false, responseCode: 200 });
  assert.equal(labels.reporter, 'waypoint');
  assert.equal(labels.source_workload, 'unknown');
  assert.equal(labels.response_flags, '-');
  assert.deepEqual(Object.keys(labels).sort(), [...ISTIO_HTTP_LABELS].sort());
  recordIstioRequest(m, labels, { durationMs: 12, requestBytes: 100, responseBytes: 2000 });
  const text = await registry.metrics();
  assert.match(text, /istio_requests_total\{reporter="waypoint",.*response_code="200".*\} 1/);
  assert.match(text, /istio_request_bytes_sum\{.*\} 100/);
  assert.match(text, /istio_response_bytes_sum\{.*\} 2000/);
  for (const name of ['ambit_request_retries_total', 'ambit_request_timeouts_total', 'ambit_circuit_breaker_trips_total', 'ambit_outlier_ejections_total', 'ambit_faults_injected_total']) {
    assert.ok(registry.getSingleMetric(name), `${name} is registered`);
  }
});

test('replayable body: a second open replays what was sent; over the limit it cannot replay', async () => {
  const read = (s: NodeJS.ReadableStream): Promise<string> =>
    new Promise((resolve, reject) => {
      let out = '';
      s.on('data', (c: Buffer) => (out += c.toString()));
      s.once('end', () => resolve(out));
      s.once('error', reject);
    });
  const src = new PassThrough();
  const body = new ReplayableBody(src, 1024);
  const first = body.open();
  src.write('hello ');
  src.end('world');
  assert.equal(await read(first), 'hello world');
  assert.equal(body.replayable, true);
  assert.equal(await read(body.open()), 'hello world', 'replay carries the whole body');
  const big = new PassThrough();
  const b2 = new ReplayableBody(big, 4);
  const f2 = b2.open();
  big.end('0123456789');
  assert.equal(await read(f2), '0123456789', 'the first try still gets everything');
  assert.equal(b2.replayable, false);
});

const valid = (): RouteConfig => ({
  name: 'ns/svc.ns.svc.cluster.local',
  namespace: 'ns',
  hostname: 'svc.ns.svc.cluster.local',
  aliases: ['svc'],
  ports: [{ port: 80, protocol: 'http' }],
  routes: [
    {
      name: 'r',
      match: [{ uri: { prefix: '/' }, headers: [{ name: 'x', match: { present: true } }], queryParams: [] }],
      backends: [{ host: 'svc.ns.svc.cluster.local', weight: 90, subset: 'v1', subsetLabels: { version: 'v1' } }, { host: 'svc.ns.svc.cluster.local', weight: 10 }],
      headers: { request: emptyHeaderOps(), response: { set: { a: 'b' }, add: {}, remove: ['c'] } },
      timeoutMs: 1000,
      retries: { attempts: 3, perTryTimeoutMs: 200, retryOn: ['5xx', 'retriable-status-codes'], retriableStatusCodes: [503], budget: { percent: 20, minConcurrency: 3 } },
      fault: { delay: { percent: 10, fixedDelayMs: 5 }, abort: { percent: 1, httpStatus: 500 } },
      mirror: { host: 'm', port: 80, percent: 50 },
    },
  ],
  trafficPolicy: { connectionPool: { maxConnections: 1 }, outlierDetection: { consecutive5xxErrors: 1, intervalMs: 1000, baseEjectionTimeMs: 1000, maxEjectionPercent: 100 }, subsets: [{ name: 'v1', labels: { version: 'v1' } }] },
  rateLimit: { maxTokens: 10, tokensPerFill: 1, fillIntervalMs: 1000 },
  authorization: [{ name: 'ns/p', action: 'ALLOW', dryRun: false, rules: [{ from: [{ principals: [{ exact: 'a' }], notPrincipals: [], namespaces: [], notNamespaces: [] }], to: [], when: [] }] }],
});

test('validateRouteConfig: a full valid config passes and survives a JSON round trip', () => {
  const c = valid();
  assert.deepEqual(validateRouteConfig(c), []);
  const again = JSON.parse(JSON.stringify(c)) as unknown;
  assert.deepEqual(again, c);
  assert.deepEqual(validateRouteConfig(again), []);
});

test('validateRouteConfig: every problem is reported with its path (table)', () => {
  const cases: Array<[string, (c: RouteConfig) => unknown, string]> = [
    ['missing hostname', (c) => ({ ...c, hostname: '' }), 'rc.hostname'],
    ['negative weight', (c) => (c.routes[0]!.backends[0]!.weight = -1), 'rc.routes[0].backends[0].weight'],
    ['all weights zero', (c) => c.routes[0]!.backends.forEach((b) => (b.weight = 0)), 'rc.routes[0].backends'],
    ['bad regex', (c) => (c.routes[0]!.match[0]!.uri = { regex: '(' }), 'rc.routes[0].match[0].uri.regex'],
    ['uppercase header name', (c) => (c.routes[0]!.match[0]!.headers[0]!.name = 'X'), 'rc.routes[0].match[0].headers[0].name'],
    ['unknown retryOn', (c) => (c.routes[0]!.retries!.retryOn = ['sometimes']), 'rc.routes[0].retries.retryOn[0]'],
    ['fault percent > 100', (c) => (c.routes[0]!.fault!.delay!.percent = 150), 'rc.routes[0].fault.delay.percent'],
    ['abort with both statuses', (c) => (c.routes[0]!.fault!.abort = { percent: 1, httpStatus: 500, grpcStatus: 14 }), 'rc.routes[0].fault.abort'],
    ['duplicate route name', (c) => c.routes.push(structuredClone(c.routes[0]!)), 'rc.routes[1].name'],
    ['zero pool limit', (c) => (c.trafficPolicy!.connectionPool!.maxConnections = 0), 'rc.trafficPolicy.connectionPool.maxConnections'],
    ['duplicate subset', (c) => c.trafficPolicy!.subsets.push({ name: 'v1', labels: {} }), 'rc.trafficPolicy.subsets[1].name'],
    ['bad authz action', (c) => ((c.authorization[0] as { action: string }).action = 'REJECT'), 'rc.authorization[0].action'],
    ['CUSTOM without a provider name', (c) => (c.authorization[0]!.action = 'CUSTOM'), 'rc.authorization[0].providerName'],
    ['CUSTOM provider without a port', (c) => Object.assign(c.authorization[0]!, { action: 'CUSTOM', providerName: 'x', provider: { name: 'x', protocol: 'grpc', service: 'a.b', port: 0, timeoutMs: 1, failOpen: false } }), 'rc.authorization[0].provider.port'],
    ['bad rate limit', (c) => (c.rateLimit!.fillIntervalMs = 0), 'rc.rateLimit.fillIntervalMs'],
  ];
  for (const [what, mutate, path] of cases) {
    const c = valid();
    const replaced = mutate(c);
    const input = typeof replaced === 'object' && replaced !== null && 'hostname' in replaced ? replaced : c;
    const issues = validateRouteConfig(input, 'rc');
    assert.ok(issues.some((i) => i.path === path), `${what}: expected an issue at ${path}, got ${JSON.stringify(issues.map((i) => i.path))}`);
  }
  assert.deepEqual(validateRouteConfig(null, 'rc').map((i) => i.path), ['rc']);
});

test('validateGatewayServer', () => {
  assert.deepEqual(validateGatewayServer({ gateway: 'ns/gw', port: 80, protocol: 'HTTP', hosts: ['example.com'], selector: {} }), []);
  assert.deepEqual(validateGatewayServer({ gateway: 'gw', port: 0, protocol: 'FTP', hosts: 'x', selector: {} }, 's').map((i) => i.path), ['s.gateway', 's.port', 's.protocol', 's.hosts']);
});
