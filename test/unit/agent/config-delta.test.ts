import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyConfigDelta, mapDelta, persistentSnapshot, workerConfigMessage } from '../../../src/agent/workers/config-delta.js';
import { PersistentMap } from '../../../src/shared/state/persistent-map.js';
import type { ConfigSnapshot } from '../../../src/shared/state/workloads.js';
import type { Workload } from '../../../src/shared/model.js';

const wl = (n: number, version = 'v1'): Workload => ({ uid: `c//v1/Pod/ns/p${n}`, name: `p${n}`, namespace: 'ns', addresses: [`10.0.0.${n}`], labels: { version } }) as unknown as Workload;

function snapshot(ws: Workload[]): ConfigSnapshot {
  return { workloads: PersistentMap.of(ws.map((w) => [w.uid, w] as const)), services: new Map(), authorizations: new Map() };
}

test('mapDelta: same map is no change; added, replaced and removed entries found by identity', () => {
  const a = wl(1);
  const b = wl(2);
  const c = wl(3);
  const prev = new Map([
    ['a', a],
    ['b', b],
  ]);
  assert.equal(mapDelta(prev, prev), undefined);
  assert.equal(mapDelta(prev, new Map(prev)), undefined, 'a copy holding the same objects is no change');
  const b2 = wl(2, 'v2');
  assert.deepEqual(mapDelta(prev, new Map([['a', a], ['b', b2]])), { removed: [], updated: [['b', b2]] });
  assert.deepEqual(mapDelta(prev, new Map([['b', b], ['c', c]])), { removed: ['a'], updated: [['c', c]] });
  assert.deepEqual(mapDelta(prev, new Map([['a', a]])), { removed: ['b'], updated: [] });
  assert.deepEqual(mapDelta(prev, new Map()), { removed: ['a', 'b'], updated: [] });
  // A changed value with equal content is still sent: identity is the contract, content is not compared.
  const a2 = wl(1);
  assert.deepEqual(mapDelta(prev, new Map([['a', a2], ['b', b]])), { removed: [], updated: [['a', a2]] });
});

test('a worker applying the deltas of a sequence of changes holds what the pool holds, entries and order', () => {
  const ws = Array.from({ length: 40 }, (_, i) => wl(i + 1));
  let pool = snapshot(ws);
  const first = workerConfigMessage(undefined, pool);
  assert.equal(first.kind, 'full');
  let worker = persistentSnapshot(structuredClone({ workloads: new Map(pool.workloads), services: new Map(), authorizations: new Map() }));
  const steps: Array<(p: ConfigSnapshot) => ConfigSnapshot> = [
    (p) => ({ ...p, workloads: (p.workloads as PersistentMap<string, Workload>).withChanges([], [[ws[3]!.uid, wl(4, 'v2')]]) }),
    (p) => ({ ...p, workloads: (p.workloads as PersistentMap<string, Workload>).withChanges([ws[0]!.uid, ws[9]!.uid], []) }),
    (p) => ({ ...p, workloads: (p.workloads as PersistentMap<string, Workload>).withChanges([], [[wl(77).uid, wl(77)]]) }),
    (p) => ({ ...p, services: new Map([['ns/s', { name: 's' } as never]]) }),
    (p) => p,
  ];
  let deltas = 0;
  for (const step of steps) {
    const next = step(pool);
    const m = workerConfigMessage(pool, next);
    if (next === pool) assert.equal(m.kind, 'none');
    if (m.kind === 'delta') {
      deltas++;
      // What crosses to the worker is a structured clone.
      worker = applyConfigDelta(worker, structuredClone(m.delta));
    } else assert.equal(m.kind, 'none');
    pool = next;
    assert.deepEqual([...worker.workloads.entries()], [...pool.workloads.entries()]);
    assert.deepEqual([...worker.services.entries()], [...pool.services.entries()]);
  }
  assert.equal(deltas, 4);
});

test('most of the snapshot changed: the whole snapshot is sent instead of a delta', () => {
  const ws = Array.from({ length: 10 }, (_, i) => wl(i + 1));
  const prev = snapshot(ws);
  const next = snapshot(ws.map((w, i) => (i < 6 ? wl(i + 1, 'v2') : w)));
  assert.equal(workerConfigMessage(prev, next).kind, 'full');
  const few = snapshot(ws.map((w, i) => (i < 2 ? wl(i + 1, 'v2') : w)));
  assert.equal(workerConfigMessage(prev, few).kind, 'delta');
});
