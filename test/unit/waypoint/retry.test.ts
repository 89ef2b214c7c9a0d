import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RetryPolicy } from '../../../src/shared/routes.js';
import { RetryBudget } from '../../../src/waypoint/dispatch/budget.js';
import { defaultRetryPolicy, isRetryable, retryBackoffMs, type RetryInput, type TryOutcome } from '../../../src/waypoint/dispatch/retry.js';
import { seededRandom } from '../../../src/waypoint/route/weighted.js';

const pol = (p: Partial<RetryPolicy>): RetryPolicy => ({ attempts: 3, retryOn: [], retriableStatusCodes: [], ...p });
const resp = (status: number, grpcStatus?: number): TryOutcome => (grpcStatus === undefined ? { kind: 'response', status } : { kind: 'response', status, grpcStatus });

test('isRetryable decisions (table)', () => {
  const cases: Array<[string, Partial<RetryInput>, boolean, string]> = [
    ['2xx is success', { outcome: resp(200), policy: pol({ retryOn: ['5xx'] }) }, false, 'success'],
    ['5xx under 5xx', { outcome: resp(500), policy: pol({ retryOn: ['5xx'] }) }, true, '5xx'],
    ['503 under gateway-error', { outcome: resp(503), policy: pol({ retryOn: ['gateway-error'] }) }, true, 'gateway-error'],
    ['500 is not a gateway error', { outcome: resp(500), policy: pol({ retryOn: ['gateway-error'] }) }, false, 'not-retryable'],
    ['reset under reset', { outcome: { kind: 'reset' }, policy: pol({ retryOn: ['reset'] }) }, true, 'reset'],
    ['reset under 5xx', { outcome: { kind: 'reset' }, policy: pol({ retryOn: ['5xx'] }) }, true, '5xx'],
    ['reset not covered by connect-failure', { outcome: { kind: 'reset' }, policy: pol({ retryOn: ['connect-failure'] }) }, false, 'not-retryable'],
    ['connect failure', { outcome: { kind: 'connect-failure' }, policy: pol({ retryOn: ['connect-failure'] }) }, true, 'connect-failure'],
    ['refused stream', { outcome: { kind: 'refused-stream' }, policy: pol({ retryOn: ['refused-stream'] }) }, true, 'refused-stream'],
    ['per-try timeout counts under gateway-error', { outcome: { kind: 'timeout' }, policy: pol({ retryOn: ['gateway-error'] }) }, true, 'gateway-error'],
    ['per-try timeout not under reset', { outcome: { kind: 'timeout' }, policy: pol({ retryOn: ['reset'] }) }, false, 'no-policy'.replace('no-policy', 'not-retryable')],
    ['retriable status code 429', { outcome: resp(429), policy: pol({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [429] }) }, true, 'retriable-status-codes'],
    ['status code not listed', { outcome: resp(429), policy: pol({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [503] }) }, false, 'success'],
    ['409 under retriable-4xx', { outcome: resp(409), policy: pol({ retryOn: ['retriable-4xx'] }) }, true, 'retriable-4xx'],
    ['grpc unavailable', { outcome: resp(200, 14), policy: pol({ retryOn: ['unavailable'] }) }, true, 'unavailable'],
    ['grpc deadline-exceeded', { outcome: resp(200, 4), policy: pol({ retryOn: ['deadline-exceeded'] }) }, true, 'deadline-exceeded'],
    ['grpc internal not configured', { outcome: resp(200, 13), policy: pol({ retryOn: ['unavailable'] }) }, false, 'not-retryable'],
    ['attempts exhausted', { outcome: resp(503), retriesDone: 3, policy: pol({ retryOn: ['5xx'] }) }, false, 'attempts-exhausted'],
    ['POST is not retried on a 5xx', { outcome: resp(503), method: 'POST', policy: pol({ retryOn: ['5xx'] }) }, false, 'non-idempotent'],
    ['POST is retried when it never reached the server', { outcome: { kind: 'connect-failure' }, method: 'POST', policy: pol({ retryOn: ['connect-failure'] }) }, true, 'connect-failure'],
    ['POST retried when told', { outcome: resp(503), method: 'POST', policy: pol({ retryOn: ['5xx'], retryNonIdempotent: true }) }, true, '5xx'],
    ['PUT and DELETE are idempotent', { outcome: resp(503), method: 'DELETE', policy: pol({ retryOn: ['5xx'] }) }, true, '5xx'],
    ['no policy', { outcome: resp(503), policy: undefined }, false, 'no-policy'],
    ['attempts 0 disables', { outcome: resp(503), policy: pol({ attempts: 0, retryOn: ['5xx'] }) }, false, 'no-policy'],
    ['body too large to replay', { outcome: resp(503), bodyReplayable: false, policy: pol({ retryOn: ['5xx'] }) }, false, 'body-not-replayable'],
  ];
  for (const [what, input, retry, reason] of cases) {
    const d = isRetryable({ method: 'GET', retriesDone: 0, bodyReplayable: true, policy: undefined, outcome: resp(200), ...input });
    assert.equal(d.retry, retry, what);
    assert.equal(d.reason, reason, what);
  }
});

test('the default policy retries connect failures twice and leaves 500s alone', () => {
  const p = defaultRetryPolicy();
  assert.equal(isRetryable({ policy: p, method: 'GET', retriesDone: 1, outcome: { kind: 'connect-failure' }, bodyReplayable: true }).retry, true);
  assert.equal(isRetryable({ policy: p, method: 'GET', retriesDone: 2, outcome: { kind: 'connect-failure' }, bodyReplayable: true }).retry, false);
  assert.equal(isRetryable({ policy: p, method: 'GET', retriesDone: 0, outcome: resp(500), bodyReplayable: true }).retry, false);
  assert.equal(isRetryable({ policy: p, method: 'GET', retriesDone: 0, outcome: resp(503), bodyReplayable: true }).retry, true);
});

test('retry budget: min concurrency always allowed, beyond that ~percent of requests', () => {
  const b = new RetryBudget({ percent: 20, minConcurrency: 2 });
  assert.equal(b.tryStart(), true);
  assert.equal(b.tryStart(), true);
  assert.equal(b.tryStart(), false, 'no tokens yet and min concurrency used up');
  // a full outage: 1,000 requests, every one wants a retry while two retries stay in flight
  let granted = 0;
  for (let i = 0; i < 1000; i++) {
    b.deposit();
    if (b.tryStart()) granted++;
  }
  assert.ok(granted >= 195 && granted <= 200, `granted ${granted} retries for 1,000 requests at 20%`);
  for (let i = 0; i < granted + 2; i++) b.finish();
  assert.equal(b.activeRetries, 0);
  assert.equal(b.tryStart(), true, 'finished retries free the concurrency slots');
});

test('retry budget tokens are capped so a quiet period does not bank a burst', () => {
  const b = new RetryBudget({ percent: 20, minConcurrency: 0 });
  for (let i = 0; i < 100_000; i++) b.deposit();
  assert.equal(b.availableTokens, 20);
});

test('backoff is jittered below base * 2^n and capped at 10x base', () => {
  const random = seededRandom(1);
  for (let n = 0; n < 10; n++) {
    for (let i = 0; i < 200; i++) {
      const ms = retryBackoffMs(n, 25, random);
      assert.ok(ms >= 0 && ms < Math.min(250, 25 * 2 ** n), `n=${n} ms=${ms}`);
    }
  }
  assert.equal(retryBackoffMs(3, 0, random), 0);
});
