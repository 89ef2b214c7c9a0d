/** Label and field selectors: the query grammar, matching, errors, and LabelSelector objects. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatLabelSelector,
  labelSelectorFromObject,
  matchFields,
  matchLabels,
  parseFieldSelector,
  parseLabelSelector,
} from '../../../src/local/apiserver/selectors.js';
import { ApiError } from '../../../src/local/apiserver/status.js';

const labels = { app: 'web', tier: 'front', version: '3' };

test('label selectors match as apimachinery labels.Parse does', () => {
  const cases: Array<[string, boolean]> = [
    ['', true],
    ['app=web', true],
    ['app==web', true],
    ['app!=web', false],
    ['app!=db', true],
    ['missing!=x', true],
    ['app', true],
    ['!app', false],
    ['!missing', true],
    ['app in (web,db)', true],
    ['app in (db)', false],
    ['app notin (db)', true],
    ['missing notin (db)', true],
    ['missing in (db)', false],
    ['app=web,tier=front', true],
    ['app=web,tier=back', false],
    ['version>2', true],
    ['version<3', false],
    ['empty=', false],
    [' app = web , tier in ( front , back ) ', true],
    ['example.com/key', false],
  ];
  for (const [sel, want] of cases) assert.equal(matchLabels(parseLabelSelector(sel), labels), want, sel);
  assert.equal(matchLabels(parseLabelSelector('empty='), { empty: '' }), true);
});

test('malformed label selectors are 400s naming the problem', () => {
  for (const bad of ['app in (web', 'app in web', '=web', 'app=web,', 'app=a b', 'bad key=1', 'app>x', `a=${'x'.repeat(64)}`, 'a/b/c=1']) {
    assert.throws(() => parseLabelSelector(bad), (e: unknown) => e instanceof ApiError && e.code === 400, bad);
  }
});

test('LabelSelector objects convert; nil selects nothing, empty selects everything', () => {
  const sel = labelSelectorFromObject({ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['front', 'back'] }, { key: 'canary', operator: 'DoesNotExist' }] });
  assert.equal(matchLabels(sel, labels), true);
  assert.equal(matchLabels(sel, { ...labels, canary: 'y' }), false);
  assert.equal(formatLabelSelector(sel), 'app=web,tier in (back,front),!canary');
  assert.equal(matchLabels(labelSelectorFromObject(undefined), labels), false);
  assert.equal(matchLabels(labelSelectorFromObject({}), labels), true);
  assert.throws(() => labelSelectorFromObject({ matchExpressions: [{ key: 'a', operator: 'Near' }] }), ApiError);
});

test('field selectors: equality, inequality, escapes, unsupported fields', () => {
  const supported = new Set(['metadata.name', 'spec.nodeName', 'status.phase']);
  const fields = { 'metadata.name': 'a,b', 'spec.nodeName': 'n1', 'status.phase': 'Running' };
  assert.equal(matchFields(parseFieldSelector('spec.nodeName=n1,status.phase!=Pending', supported), fields), true);
  assert.equal(matchFields(parseFieldSelector('spec.nodeName==n2', supported), fields), false);
  assert.equal(matchFields(parseFieldSelector('metadata.name=a\\,b', supported), fields), true);
  assert.equal(matchFields(parseFieldSelector('spec.nodeName=', supported), { 'spec.nodeName': '' }), true);
  assert.throws(() => parseFieldSelector('spec.other=x', supported), (e: unknown) => e instanceof ApiError && e.message === 'field label not supported: spec.other');
  assert.throws(() => parseFieldSelector('nonsense', supported), ApiError);
});
