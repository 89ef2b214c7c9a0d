import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyResult, ConnectionPoolGate, OutlierDetector } from '../../../src/waypoint/balance/breaker.js';

test('pool gate: maxConnections active, http1MaxPendingRequests queued, the rest refused', async () => {
  const gate = new ConnectionPoolGate({ maxConnections: 2, http1MaxPendingRequests: 1 });
  const a = gate.enter();
  const b = gate.enter();
  const c = gate.enter();
  const d = gate.enter();
  assert.ok(a.ok && b.ok && c.ok, 'two active and one pending are admitted');
  assert.equal(d.ok, false, 'the fourth overflows');
  assert.equal(gate.activeCount, 2);
  assert.equal(gate.pendingCount, 1);
  const ra = await a.ready;
  let cReady = false;
  void c.ready.then(() => (cReady = true));
  ra();
  ra();
  await new Promise((r) => setImmediate(r));
  assert.equal(cReady, true, 'the queued request gets the freed slot');
  assert.equal(gate.activeCount, 2, 'a release handed over keeps the active count; a double release is ignored');
  assert.equal(gate.enter().ok, true, 'the queue has room again');
});

test('pool gate: http2MaxRequests also limits, a cancelled waiter leaves the queue, no policy means no limit', async () => {
  const gate = new ConnectionPoolGate({ http2MaxRequests: 1, http1MaxPendingRequests: 1 });
  const a = gate.enter();
  const b = gate.enter();
  assert.ok(a.ok && b.ok);
  b.cancel();
  assert.equal(gate.pendingCount, 0);
  (await a.ready)();
  assert.equal(gate.activeCount, 0);
  const open = new ConnectionPoolGate(undefined);
  for (let i = 0; i < 10_000; i++) assert.equal(open.enter().ok, true);
});

test('classifyResult maps statuses and failures', () => {
  assert.equal(classifyResult(200), 'success');
  assert.equal(classifyResult(404), 'success');
  assert.equal(classifyResult(500), '5xx');
  assert.equal(classifyResult(503), 'gateway-error');
  assert.equal(classifyResult('connect-failure'), 'gateway-error');
  assert.equal(classifyResult('timeout'), 'gateway-error');
});

test('outlier detection: consecutive 5xx eject for baseEjectionTime x count, success resets the streak', () => {
  let now = 0;
  const od = new OutlierDetector({ consecutive5xxErrors: 3, intervalMs: 1000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 100 }, () => now);
  const all = ['a', 'b'];
  assert.equal(od.record('a', '5xx', all), false);
  assert.equal(od.record('a', '5xx', all), false);
  assert.equal(od.record('a', 'success', all), false, 'a success resets');
  assert.equal(od.record('a', '5xx', all), false);
  assert.equal(od.record('a', 'gateway-error', all), false);
  assert.equal(od.record('a', '5xx', all), true, 'third consecutive error ejects (gateway errors count as 5xx)');
  assert.equal(od.isEjected('a'), true);
  assert.deepEqual(od.filter(all, (x) => x), ['b']);
  now = 30_000;
  assert.equal(od.isEjected('a'), false, 'back after baseEjectionTime');
  for (let i = 0; i < 3; i++) od.record('a', '5xx', all);
  now = 30_000 + 59_999;
  assert.equal(od.isEjected('a'), true, 'the second ejection lasts twice as long');
  now = 30_000 + 60_000;
  assert.equal(od.isEjected('a'), false);
});

test('outlier detection: consecutiveGatewayErrors counts only gateway errors', () => {
  const od = new OutlierDetector({ consecutiveGatewayErrors: 2, intervalMs: 1000, baseEjectionTimeMs: 1000, maxEjectionPercent: 100 }, () => 0);
  assert.equal(od.record('a', '5xx', ['a', 'b']), false);
  assert.equal(od.record('a', '5xx', ['a', 'b']), false, 'plain 500s do not count');
  assert.equal(od.record('a', 'gateway-error', ['a', 'b']), false);
  assert.equal(od.record('a', 'gateway-error', ['a', 'b']), true);
});

test('outlier detection: maxEjectionPercent bounds ejections and all-ejected means panic', () => {
  const od = new OutlierDetector({ consecutive5xxErrors: 1, intervalMs: 1000, baseEjectionTimeMs: 1000, maxEjectionPercent: 50 }, () => 0);
  const all = ['a', 'b', 'c', 'd'];
  assert.equal(od.record('a', '5xx', all), true);
  assert.equal(od.record('b', '5xx', all), true, '25% ejected < 50%: one more may go');
  assert.equal(od.record('c', '5xx', all), false, '50% ejected: no more');
  const full = new OutlierDetector({ consecutive5xxErrors: 1, intervalMs: 1000, baseEjectionTimeMs: 1000, maxEjectionPercent: 100 }, () => 0);
  full.record('x', '5xx', ['x']);
  assert.deepEqual(full.filter(['x'], (e) => e), ['x'], 'panic: with every endpoint ejected, use them all');
});
