/** PersistentMap: the same entries, in the same order, as copying a Map and applying the same calls; old versions never change. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PersistentMap, plainMap } from '../../../src/shared/state/persistent-map.js';

/** A seeded generator, so a failure replays. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function assertSame(p: ReadonlyMap<string, number>, ref: ReadonlyMap<string, number>, where: string): void {
  assert.equal(p.size, ref.size, `${where}: size`);
  assert.deepEqual([...p.entries()], [...ref.entries()], `${where}: entries in order`);
  assert.deepEqual([...p.keys()], [...ref.keys()], `${where}: keys`);
  assert.deepEqual([...p.values()], [...ref.values()], `${where}: values`);
  const each: Array<[string, number]> = [];
  p.forEach((v, k) => each.push([k, v]));
  assert.deepEqual(each, [...ref], `${where}: forEach`);
}

test('random removals and sets match a copied Map, order included, across folds', () => {
  const rnd = lcg(7);
  let p = PersistentMap.of<string, number>([['a', 1], ['b', 2], ['c', 3]]);
  let ref = new Map<string, number>([['a', 1], ['b', 2], ['c', 3]]);
  const history: Array<{ p: PersistentMap<string, number>; ref: Map<string, number> }> = [];
  for (let step = 0; step < 3000; step++) {
    const removed: string[] = [];
    const updated: Array<[string, number]> = [];
    const n = 1 + Math.floor(rnd() * 4);
    for (let i = 0; i < n; i++) {
      const key = `k${Math.floor(rnd() * 120)}`;
      if (rnd() < 0.35) removed.push(key);
      else if (!removed.includes(key)) updated.push([key, step * 10 + i]);
    }
    const next = new Map(ref);
    for (const k of removed) next.delete(k);
    for (const [k, v] of updated) next.set(k, v);
    p = p.withChanges(removed, updated);
    ref = next;
    for (const k of ['a', 'k1', 'k50', 'k119', 'absent']) {
      assert.equal(p.get(k), ref.get(k), `step ${step}: get ${k}`);
      assert.equal(p.has(k), ref.has(k), `step ${step}: has ${k}`);
    }
    if (step % 50 === 0) assertSame(p, ref, `step ${step}`);
    if (step % 300 === 0) history.push({ p, ref });
  }
  assertSame(p, ref, 'end');
  // Every earlier version still reads as it did when it was made.
  for (const [i, h] of history.entries()) assertSame(h.p, h.ref, `version ${i}`);
});

test('a key removed and added again goes last; a replaced one keeps its place', () => {
  const p = PersistentMap.of<string, number>([['a', 1], ['b', 2], ['c', 3]]);
  const q = p.withChanges(['a'], []).withChanges([], [['a', 10], ['b', 20], ['d', 4]]);
  assert.deepEqual([...q], [['b', 20], ['c', 3], ['a', 10], ['d', 4]]);
  assert.deepEqual([...p], [['a', 1], ['b', 2], ['c', 3]], 'the original is unchanged');
  const r = q.withChanges(['d'], [['d', 5]]);
  assert.deepEqual([...r], [['b', 20], ['c', 3], ['a', 10], ['d', 5]]);
  assert.equal(r.withChanges([], []), r, 'no change, same map');
  assert.equal(r.withChanges(['zz'], []).size, 4, 'removing an absent key changes nothing');
});

test('toMap and plainMap give a plain Map that survives a structured clone', () => {
  let p = PersistentMap.of<string, number>();
  for (let i = 0; i < 10; i++) p = p.withChanges([], [[`k${i}`, i]]);
  p = p.withChanges(['k3'], [['k0', 100]]);
  const plain = plainMap(p);
  assert.ok(plain instanceof Map);
  const cloned = structuredClone(plain) as Map<string, number>;
  assert.deepEqual([...cloned], [...p]);
  assert.equal(p.toMap(), plain, 'folded once, then reused');
  const m = new Map([['x', 1]]);
  assert.equal(plainMap(m), m, 'a plain Map is passed through');
});
