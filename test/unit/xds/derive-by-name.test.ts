/**
 * deriveByName: the same map a Map built from the array gives, derived from the previous one when
 * names line up; the encoder's wildcard view of a derived map (SnapshotEncoder).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deriveByName, factsOf, SnapshotEncoder } from '../../../src/controller/xds/snapshot.js';
import { TYPE_WORKLOAD, type Resource } from '../../../src/shared/resources.js';
import { silentLogger } from '../../../src/shared/log.js';

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

test('a wildcard view of a derived map looks at the entries set since the last view, and sees every change', () => {
  const validated: string[] = [];
  const encoder = new SnapshotEncoder((_t, n) => {
    validated.push(n);
    return [];
  }, () => undefined);
  const log = silentLogger();
  const sub = { typeUrl: TYPE_WORKLOAD, wildcard: true, names: new Set<string>() } as const;
  const view = (map: ReadonlyMap<string, Resource>): ReadonlyMap<string, unknown> => {
    encoder.beginRound();
    const v = encoder.visible(sub, { resources: { [TYPE_WORKLOAD]: map } }, log);
    encoder.endRound(true);
    return v;
  };
  const a = Array.from({ length: 100 }, (_, i) => item(`w${i}`, 0));
  const m0 = deriveByName(undefined, a, name);
  const v0 = view(m0);
  assert.equal(validated.length, 100);
  // One derivation since the last view: the changed entry alone is encoded and in the delta.
  const b = a.map((x, i) => (i === 42 ? item('w42', 1) : x));
  const m1 = deriveByName({ items: a, map: m0 }, b, name);
  validated.length = 0;
  const v1 = view(m1);
  assert.deepEqual(validated, ['w42']);
  assert.deepEqual(factsOf(v1 as never)?.from?.delta, { updated: ['w42'], removed: [] });
  assert.equal(v1.get('w7'), v0.get('w7'), 'an unchanged entry keeps its encoding');
  // Two derivations with no view between: the second's own record does not start at the last
  // view's map, so every entry is compared and both changes are seen.
  const c = b.map((x, i) => (i === 3 ? item('w3', 1) : x));
  const m2 = deriveByName({ items: b, map: m1 }, c, name);
  const d = c.map((x, i) => (i === 90 ? item('w90', 1) : x));
  const m3 = deriveByName({ items: c, map: m2 }, d, name);
  validated.length = 0;
  const v3 = view(m3);
  assert.deepEqual(validated.sort(), ['w3', 'w90']);
  assert.deepEqual(factsOf(v3 as never)?.from?.delta, { updated: ['w3', 'w90'], removed: [] });
});
