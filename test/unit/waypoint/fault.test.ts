import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideFault, rollPercent } from '../../../src/waypoint/filters/fault.js';
import { seededRandom } from '../../../src/waypoint/route/weighted.js';

test('delay and abort percentages hold within ±3 points over 10,000 seeded requests', () => {
  const random = seededRandom(2024);
  let delayed = 0;
  let aborted = 0;
  for (let i = 0; i < 10_000; i++) {
    const d = decideFault({ delay: { percent: 30, fixedDelayMs: 7000 }, abort: { percent: 10, httpStatus: 500 } }, random);
    if (d.delayMs === 7000) delayed++;
    else assert.equal(d.delayMs, 0);
    if (d.abort) {
      aborted++;
      assert.deepEqual(d.abort, { httpStatus: 500 });
    }
  }
  assert.ok(Math.abs(delayed / 100 - 30) <= 3, `delayed ${delayed / 100}%`);
  assert.ok(Math.abs(aborted / 100 - 10) <= 3, `aborted ${aborted / 100}%`);
});

test('0% never and 100% always fire; gRPC aborts reply 200 with a grpc status', () => {
  const random = seededRandom(5);
  for (let i = 0; i < 100; i++) {
    assert.equal(rollPercent(0, random), false);
    assert.equal(rollPercent(100, random), true);
  }
  assert.deepEqual(decideFault({ abort: { percent: 100, grpcStatus: 14 } }, random), { delayMs: 0, abort: { httpStatus: 200, grpcStatus: 14 } });
  assert.deepEqual(decideFault(undefined, random), { delayMs: 0 });
});

test('fractional percentages work', () => {
  const random = seededRandom(77);
  let n = 0;
  for (let i = 0; i < 10_000; i++) if (rollPercent(2.5, random)) n++;
  assert.ok(Math.abs(n / 100 - 2.5) <= 1, `got ${n / 100}%`);
});
