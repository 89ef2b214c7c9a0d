/** The validator kit: readers record path-qualified issues and keep going; a subject prefixes every path. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Issues, cidrProblem, formatIssue, isDnsSubdomain, port, rec, str, strList, stringMap } from '../../../src/shared/validate.js';

test('readers return the typed value or undefined and record what is wrong, under the subject', () => {
  const all = new Issues();
  const c = all.at('app.yaml#1: Pod demo/web');
  assert.equal(str(c, 'x', 'spec.name', { required: true }), 'x');
  assert.equal(str(c, '', 'spec.empty', { required: true, allowEmpty: true }), '', 'allowEmpty keeps an empty string');
  assert.equal(str(c, undefined, 'spec.missing', { required: true }), undefined);
  assert.equal(str(c, 3, 'spec.number'), undefined);
  assert.equal(port(c, 70000, 'spec.port'), undefined);
  assert.deepEqual(strList(c, ['10.0.0.1', 'x', '10.0.0.1'], 'spec.ips', { check: (s) => (cidrProblem(s) ? 'must be an IP' : undefined), unique: true }), ['10.0.0.1']);
  assert.deepEqual(stringMap(c, { a: 'b', n: 1 }, 'metadata.labels'), { a: 'b' });
  assert.equal(rec(c, [], 'spec', true), undefined, 'a list is not an object');
  assert.deepEqual(all.list.map(formatIssue), [
    'app.yaml#1: Pod demo/web: spec.missing: is required',
    'app.yaml#1: Pod demo/web: spec.number: must be a string (got 3)',
    'app.yaml#1: Pod demo/web: spec.port: must be at most 65535 (got 70000)',
    'app.yaml#1: Pod demo/web: spec.ips[1]: must be an IP (got "x")',
    'app.yaml#1: Pod demo/web: spec.ips[2]: is a duplicate (got "10.0.0.1")',
    'app.yaml#1: Pod demo/web: metadata.labels.n: must be a string (quote numbers and booleans in YAML) (got 1)',
    'app.yaml#1: Pod demo/web: spec: must be an object (got [])',
  ]);
  assert.throws(() => all.throwIfAny('AMBIT_ERR_MANIFEST_INVALID', 'invalid manifest'), /invalid manifest: 7 problem\(s\)/);
});

test('isDnsSubdomain: dot-separated DNS labels of at most 253 characters', () => {
  for (const ok of ['a', 'web-1', 'a.b.c', 'node1.example.com']) assert.equal(isDnsSubdomain(ok), true, ok);
  for (const bad of ['', 'A', 'a..b', 'a.-b', '-a', 'a_b', 'a'.repeat(254)]) assert.equal(isDnsSubdomain(bad), false, bad);
});
