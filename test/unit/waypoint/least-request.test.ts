import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pickLeastRequest } from '../../../src/shared/balancer.js';
import { seededRandom } from '../../../src/waypoint/route/weighted.js';

test('least-request: of two random candidates the one with fewer requests in flight wins', () => {
  const pool = [{ key: 'a' }, { key: 'b' }];
  const random = seededRandom(11);
  const busyA = new Map([['a', 5]]);
  for (let i = 0; i < 200; i++) assert.equal(pickLeastRequest(pool, busyA, random)!.key, 'b', 'two endpoints: always the idle one');
  const even = new Map<string, number>();
  const counts = { a: 0, b: 0 };
  for (let i = 0; i < 2000; i++) counts[pickLeastRequest(pool, even, random)!.key as 'a' | 'b']++;
  assert.ok(counts.a > 800 && counts.b > 800, `ties spread over both (${JSON.stringify(counts)})`);
  assert.equal(pickLeastRequest([], even, random), undefined);
  assert.equal(pickLeastRequest([{ key: 'x' }], busyA, random)!.key, 'x');
  const many = Array.from({ length: 10 }, (_, i) => ({ key: `e${i}` }));
  const load = new Map(many.map((e, i) => [e.key, i === 3 ? 0 : 100]));
  let idle = 0;
  for (let i = 0; i < 1000; i++) if (pickLeastRequest(many, load, random)!.key === 'e3') idle++;
  assert.ok(idle > 150, `the only idle endpoint is chosen well above 1/10 of the time (${idle}/1000)`);
});
