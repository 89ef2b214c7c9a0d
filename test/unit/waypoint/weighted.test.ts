import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pickWeighted, seededRandom } from '../../../src/waypoint/route/weighted.js';

test('90/10 over 10,000 seeded picks lands within ±2 points', () => {
  for (const seed of [1, 7, 12345]) {
    const random = seededRandom(seed);
    const items = [{ name: 'v1', weight: 90 }, { name: 'v2', weight: 10 }];
    let v2 = 0;
    for (let i = 0; i < 10_000; i++) if (pickWeighted(items, random)!.name === 'v2') v2++;
    const pct = v2 / 100;
    assert.ok(Math.abs(pct - 10) <= 2, `seed ${seed}: v2 got ${pct}%`);
  }
});

test('boundary randoms map to the right item and weight 0 is never picked', () => {
  const items = [{ n: 'a', weight: 90 }, { n: 'zero', weight: 0 }, { n: 'b', weight: 10 }];
  assert.equal(pickWeighted(items, () => 0)!.n, 'a');
  assert.equal(pickWeighted(items, () => 0.8999)!.n, 'a');
  assert.equal(pickWeighted(items, () => 0.9)!.n, 'b');
  assert.equal(pickWeighted(items, () => 0.999999)!.n, 'b');
  const random = seededRandom(3);
  for (let i = 0; i < 1000; i++) assert.notEqual(pickWeighted(items, random)!.n, 'zero');
});

test('empty lists and all-zero weights pick nothing; weights need not sum to 100', () => {
  assert.equal(pickWeighted([], Math.random), undefined);
  assert.equal(pickWeighted([{ weight: 0 }], Math.random), undefined);
  const items = [{ n: 'x', weight: 1 }, { n: 'y', weight: 3 }];
  const random = seededRandom(9);
  let y = 0;
  for (let i = 0; i < 10_000; i++) if (pickWeighted(items, random)!.n === 'y') y++;
  assert.ok(Math.abs(y / 100 - 75) <= 2, `y got ${y / 100}%`);
});

test('seededRandom is reproducible and in [0, 1)', () => {
  const a = seededRandom(42);
  const b = seededRandom(42);
  for (let i = 0; i < 1000; i++) {
    const x = a();
    assert.equal(x, b());
    assert.ok(x >= 0 && x < 1);
  }
});
