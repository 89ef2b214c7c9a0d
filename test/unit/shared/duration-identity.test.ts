import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration, tryParseDuration } from '../../../src/shared/duration.js';
import { formatSpiffeId, parseSpiffeId, principalOf, tryParseSpiffeId } from '../../../src/shared/identity.js';
import { Issues, formatIssue } from '../../../src/shared/validate.js';
import { backoffMs } from '../../../src/shared/drain.js';

test('durations parse as Istio/Go write them and round-trip through formatDuration', () => {
  const table: Array<[string, number]> = [
    ['250ms', 250],
    ['1.5s', 1500],
    ['2m', 120_000],
    ['24h', 86_400_000],
    ['1h30m', 5_400_000],
    ['0', 0],
    ['100us', 0.1],
  ];
  for (const [text, ms] of table) {
    assert.equal(tryParseDuration(text), ms, text);
    if (Number.isInteger(ms)) assert.equal(tryParseDuration(formatDuration(ms)), ms, `round-trip ${text}`);
  }
  for (const bad of ['', '5', '5x', '-1s', 's', '1.s', '1s2']) assert.equal(tryParseDuration(bad), undefined, bad);
  assert.throws(() => parseDuration('5x', 'VirtualService shop/web spec.http[0].timeout'), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'AMBIT_ERR_DURATION_INVALID');
    assert.match(e.message, /spec\.http\[0\]\.timeout: invalid duration "5x"/);
    return true;
  });
});

test('SPIFFE ids: exactly trust-domain/ns/<ns>/sa/<sa>; formatting round-trips', () => {
  const uri = 'spiffe://cluster.local/ns/shop/sa/web';
  const id = parseSpiffeId(uri);
  assert.deepEqual(id, { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' });
  assert.equal(formatSpiffeId(id), uri);
  assert.equal(principalOf(id), 'cluster.local/ns/shop/sa/web');
  for (const bad of [
    'http://cluster.local/ns/a/sa/b',
    'spiffe://cluster.local/ns/a/sa',
    'spiffe://cluster.local/ns/a/sa/b/extra',
    'spiffe://cluster.local/namespace/a/sa/b',
    'spiffe://Cluster Local/ns/a/sa/b',
    'spiffe://cluster.local/ns//sa/b',
  ]) {
    assert.equal(tryParseSpiffeId(bad), undefined, bad);
  }
  assert.throws(() => parseSpiffeId('spiffe://td/ns/a'), /invalid SPIFFE id "spiffe:\/\/td\/ns\/a"/);
});

test('issues are collected and thrown together with path and value', () => {
  const issues = new Issues();
  issues.add('a.yaml: Service shop/web spec.ports[0].port', 'must be 1..65535', 70000);
  issues.add('a.yaml: Pod shop/p metadata.name', 'is required');
  assert.equal(formatIssue(issues.list[0]!), 'a.yaml: Service shop/web spec.ports[0].port: must be 1..65535 (got 70000)');
  assert.throws(
    () => issues.throwIfAny('AMBIT_ERR_MANIFEST_INVALID', 'manifests rejected'),
    (e: Error & { code?: string }) => e.code === 'AMBIT_ERR_MANIFEST_INVALID' && /2 problem\(s\)/.test(e.message) && /got 70000/.test(e.message),
  );
});

test('backoff grows, stays capped and jitters within [ceiling/2, ceiling)', () => {
  assert.equal(backoffMs(0, 100, 1000, () => 0), 50);
  assert.equal(backoffMs(3, 100, 1000, () => 0), 400);
  assert.equal(backoffMs(10, 100, 1000, () => 0.999), 999);
  assert.equal(backoffMs(50, 100, 1000, () => 0), 500);
});
