/**
 * Istio string values in AuthorizationPolicy read one way: the agents' L4 Authorization and the
 * waypoints' L7 policy get the same match for the same value. `*foo*` is not one of the forms
 * Istio documents; it reads as Istio's own translation reads it (leading `*` first: a suffix match
 * on `foo*`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { StringMatch } from '../../../src/shared/model.js';
import { toStringMatch } from '../../../src/controller/translate/string-match.js';
import { translateAll } from '../../../src/controller/translate/translate.js';
import { authorizationPolicy, namespace, pod, service } from './helpers.js';

const TABLE: Array<[string, StringMatch]> = [
  ['*', { presence: true }],
  ['foo*', { prefix: 'foo' }],
  ['*foo', { suffix: 'foo' }],
  ['*foo*', { suffix: 'foo*' }],
  ['foo', { exact: 'foo' }],
  ['f*o', { exact: 'f*o' }],
];

test('toStringMatch (table): presence, prefix, suffix, exact; a leading * is read first', () => {
  for (const [value, want] of TABLE) assert.deepEqual(toStringMatch(value), want, value);
});

test('the same value gives the same match at L4 (selector policy) and at L7 (targetRefs policy)', () => {
  const values = TABLE.map(([v]) => v);
  const rule = { from: [{ source: { namespaces: values } }] };
  const out = translateAll([
    namespace('demo'),
    pod('web', { labels: { app: 'web' } }),
    service('web'),
    authorizationPolicy('l4', 'demo', { selector: { matchLabels: { app: 'web' } }, rules: [rule] }),
    authorizationPolicy('l7', 'demo', { targetRefs: [{ kind: 'Service', group: '', name: 'web' }], rules: [rule] }),
  ]);
  const l4 = out.model.authorizations.find((a) => a.name === 'l4');
  assert.ok(l4, 'the selector policy reaches the agents');
  const l4Namespaces = l4.rules[0]!.clauses[0]!.matches[0]!.namespaces;
  const cfg = out.routes.routes.find((r) => r.hostname === 'web.demo.svc.cluster.local');
  const l7 = cfg?.authorization.find((a) => a.name === 'demo/l7');
  assert.ok(l7, 'the targetRefs policy reaches the waypoint config');
  const l7Namespaces = l7.rules[0]!.from[0]!.namespaces;
  assert.deepEqual(l4Namespaces, TABLE.map(([, m]) => m));
  assert.deepEqual(l7Namespaces, l4Namespaces);
});
