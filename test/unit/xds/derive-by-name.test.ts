/** deriveByName: the same map a Map built from the array gives, derived from the previous one when names line up. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deriveByName } from '../../../src/controller/xds/snapshot.js';
import type { Resource } from '../../../src/shared/resources.js';

type Item = Resource & { n: string; v: number };
const item = (n: string, v: number): Item => ({ n, v }) as unknown as Item;
const name = (r: Item): string => r.n;
const built = (items: readonly Item[]): Array<[string, Resource]> => [...new Map(items.map((r) => [r.n, r as Resource]))];

test('aligned arrays: only changed positions are set; the map equals one built whole, order included', () => {
  const a = [item('x', 1), item('y', 1), item('z', 1)];
  const m0 = deriveByName(undefined, a, name);
  assert.deepEqual([...m0], built(a));
  const b = [a[0]!, item('y', 2), a[2]!];
  const m1 = deriveByName({ items: a, map: m0 }, b, name);
  assert.deepEqual([...m1], built(b));
  assert.equal(m1.get('x'), a[0], 'unchanged items are the same objects');
  assert.deepEqual([...m0], built(a), 'the previous map is unchanged');
  assert.equal(deriveByName({ items: b, map: m1 }, b, name), m1, 'the same array gives the same map');
});

test('a name twice keeps its last item, derived or built', () => {
  const a = [item('x', 1), item('y', 1), item('x', 2)];
  const m0 = deriveByName(undefined, a, name);
  assert.equal((m0.get('x') as Item).v, 2);
  const first = [item('x', 9), a[1]!, a[2]!];
  assert.deepEqual([...deriveByName({ items: a, map: m0 }, first, name)], built(first), 'a change to the hidden first x changes nothing');
  const last = [a[0]!, a[1]!, item('x', 7)];
  assert.deepEqual([...deriveByName({ items: a, map: m0 }, last, name)], built(last));
});

test('names that do not line up (added, removed, reordered) build the map whole', () => {
  const a = [item('x', 1), item('y', 1)];
  const m0 = deriveByName(undefined, a, name);
  for (const next of [[a[0]!], [a[0]!, a[1]!, item('z', 1)], [a[1]!, a[0]!], [a[0]!, item('w', 1)]]) {
    assert.deepEqual([...deriveByName({ items: a, map: m0 }, next, name)], built(next));
  }
});
