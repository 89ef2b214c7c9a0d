/**
 * The waypoint's dispatch layers as wrappers around a ProxyDispatch: withRetries retries what the
 * policy and the budget allow and reports why it stopped, withDeadline turns a late request into
 * `timeout`, withPoolGate refuses past the pool and holds a slot for as long as the response
 * streams. The inner dispatch is scripted; the real proxying is covered by the integration tests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type { RetryPolicy, RouteConfig } from '../../../src/shared/routes.js';
import { Destinations } from '../../../src/waypoint/balance/destinations.js';
import { withPoolGate } from '../../../src/waypoint/balance/pool-gate.js';
import { withDeadline } from '../../../src/waypoint/dispatch/deadline.js';
import { DispatchFailure, type ProxyDispatch, type ProxyRequest } from '../../../src/waypoint/dispatch/dispatch.js';
import { withRetries, type RetryDeps } from '../../../src/waypoint/dispatch/retry.js';
import type { UpstreamResponse } from '../../../src/waypoint/endpoint/upstream.js';

function response(status: number, body = ''): UpstreamResponse {
  const stream = new PassThrough();
  stream.end(body);
  return { status, headers: { 'content-length': String(body.length) }, body: stream, trailers: Promise.resolve({}) };
}

function request(over: Partial<ProxyRequest> = {}, config?: RouteConfig): ProxyRequest {
  const overall = new AbortController().signal;
  return {
    reqId: 'r1',
    target: { host: 'svc.demo.svc.cluster.local', port: 80 },
    destination: new Destinations(() => 0).of({ host: 'svc.demo.svc.cluster.local', weight: 1 }, config),
    method: 'GET',
    path: '/',
    authority: 'svc',
    headers: {},
    body: undefined,
    http2: false,
    route: 'r',
    service: 'svc.demo.svc.cluster.local',
    timeoutMs: undefined,
    retryPolicy: undefined,
    mirror: undefined,
    overall,
    signal: overall,
    record: { retries: 0, tried: new Set(), flags: [] },
    ...over,
  };
}

function policy(p: Partial<RetryPolicy> = {}): RetryPolicy {
  return { attempts: 2, retryOn: ['connect-failure', 'retriable-status-codes'], retriableStatusCodes: [503], ...p };
}

function retryDeps(events: string[]): RetryDeps {
  return {
    now: () => 0,
    random: () => 0,
    sleep: async () => undefined,
    onRetry: (_r, reason) => void events.push(`retry:${reason}`),
    onTryTimeout: () => void events.push('try-timeout'),
    onBudgetExhausted: () => void events.push('budget'),
  };
}

/** An inner dispatch answering from a script, one entry per try. */
function scripted(script: Array<number | 'connect-failure' | 'reset'>): { dispatch: ProxyDispatch; tries: () => number } {
  let n = 0;
  return {
    tries: () => n,
    dispatch: async () => {
      const step = script[Math.min(n++, script.length - 1)]!;
      if (typeof step === 'number') return response(step, step === 200 ? 'ok' : 'busy');
      throw new DispatchFailure(step, `scripted ${step}`);
    },
  };
}

test('withRetries: a retriable status is retried until a good answer, which is returned', async () => {
  const events: string[] = [];
  const inner = scripted([503, 503, 200]);
  const req = request({ retryPolicy: policy() });
  const resp = await withRetries(inner.dispatch, retryDeps(events))(req);
  assert.equal(resp.status, 200);
  assert.equal(inner.tries(), 3);
  assert.equal(req.record.retries, 2);
  assert.deepEqual(events, ['retry:retriable-status-codes', 'retry:retriable-status-codes']);
});

test('withRetries: retries run out → the last failure, marked retryLimit; a reset of a POST is not retried', async () => {
  const exhausted = scripted(['connect-failure']);
  await assert.rejects(withRetries(exhausted.dispatch, retryDeps([]))(request({ retryPolicy: policy() })), (e: unknown) => {
    assert.ok(e instanceof DispatchFailure && e.kind === 'connect-failure' && e.detail.retryLimit === true);
    return true;
  });
  assert.equal(exhausted.tries(), 3, 'the first try and two retries');

  const reset = scripted(['reset', 200]);
  await assert.rejects(withRetries(reset.dispatch, retryDeps([]))(request({ method: 'POST', retryPolicy: policy({ retryOn: ['reset'] }) })), (e: unknown) => {
    assert.ok(e instanceof DispatchFailure && e.kind === 'reset' && e.detail.retryLimit !== true);
    return true;
  });
  assert.equal(reset.tries(), 1, 'a POST that may have reached the server is not sent again');

  const post = scripted(['connect-failure', 200]);
  assert.equal((await withRetries(post.dispatch, retryDeps([]))(request({ method: 'POST', retryPolicy: policy() }))).status, 200, 'a connect failure never reached it: retried');
});

test('withRetries: an empty retry budget refuses the retry and the first answer goes back', async () => {
  const events: string[] = [];
  const inner = scripted([503, 200]);
  const resp = await withRetries(inner.dispatch, retryDeps(events))(request({ retryPolicy: policy({ budget: { percent: 0, minConcurrency: 0 } }) }));
  assert.equal(resp.status, 503);
  assert.equal(inner.tries(), 1);
  assert.deepEqual(events, ['budget']);
});

test('withDeadline: a request still waiting when its timeout passes fails with timeout, counted once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let counted = 0;
  const hang: ProxyDispatch = (req) =>
    new Promise((_resolve, reject) => req.signal.addEventListener('abort', () => reject(new DispatchFailure('cancelled', 'aborted')), { once: true }));
  const pending = withDeadline(hang, { now: () => 0, onTimeout: () => void counted++ })(request({ timeoutMs: 250 }));
  t.mock.timers.tick(249);
  assert.equal(counted, 0, 'not before the timeout');
  t.mock.timers.tick(1);
  await assert.rejects(pending, (e: unknown) => e instanceof DispatchFailure && e.kind === 'timeout');
  assert.equal(counted, 1);
});

test('withPoolGate: past the pool and its queue a request overflows; a slot frees when the response body is done', async () => {
  const config: RouteConfig = {
    name: 'demo/svc',
    namespace: 'demo',
    hostname: 'svc.demo.svc.cluster.local',
    aliases: [],
    ports: [{ port: 80, protocol: 'http' }],
    routes: [],
    authorization: [],
    trafficPolicy: { subsets: [], connectionPool: { maxConnections: 1, http1MaxPendingRequests: 0 } },
  };
  const req = request({}, config);
  const held = new PassThrough();
  const inner: ProxyDispatch = async () => ({ status: 200, headers: {}, body: held, trailers: Promise.resolve({}) });
  let overflows = 0;
  const gated = withPoolGate(inner, () => void overflows++);
  const first = await gated(req);
  await assert.rejects(gated({ ...req }), (e: unknown) => e instanceof DispatchFailure && e.kind === 'overflow');
  assert.equal(overflows, 1);
  first.body.resume();
  held.end();
  await new Promise((r) => first.body.once('end', r));
  assert.equal(req.destination.gate.activeCount, 0, 'the slot is free once the body ended');
});
