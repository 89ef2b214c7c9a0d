/** SyncWaiters: a quick check (a plain ACK) skips a waiter while its blocker is not synced, without reading every state; full checks still see NACKs. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SyncWaiters, type SubscriberState, type SyncView } from '../../../src/controller/xds/status.js';
import { TYPE_WORKLOAD } from '../../../src/shared/resources.js';

function state(streamId: string): SubscriberState {
  return {
    streamId,
    nodeId: `agent~${streamId}`,
    nodeName: streamId,
    role: 'agent',
    metadata: {},
    peer: 'ipv4:127.0.0.1:1',
    connectedAt: 0,
    types: [{ typeUrl: TYPE_WORKLOAD, wildcard: true, names: [], sentVersion: 'v', targetVersion: 'v', ackedVersion: undefined, pending: undefined, resourceCount: 0, lastAckAt: undefined, lastNack: undefined, nackCount: 0 }],
    workloadStatus: [],
    statusAt: undefined,
  };
}

/** A view over `synced`/`nacked` sets, counting how often the states are read. */
function fakeView(ids: string[], synced: Set<string>, nacked: Set<string>): { view: () => SyncView; reads: () => number } {
  let reads = 0;
  return {
    reads: () => reads,
    view: () => ({
      get states(): SubscriberState[] {
        reads++;
        return ids.map(state);
      },
      pushPending: false,
      synced: (id) => synced.has(id),
      unsynced: (id) => ids.includes(id) && !synced.has(id),
      nackedAtTarget: (id) => nacked.has(id),
    }),
  };
}

test('a quick check skips a waiter whose blocker is not synced, and settles it once the blocker is', async () => {
  const ids = ['a', 'b', 'c'];
  const synced = new Set<string>();
  const v = fakeView(ids, synced, new Set());
  const waiters = new SyncWaiters();
  let settled = false;
  const done = waiters.wait(() => true, 5000, 3, v.view).then(() => (settled = true));
  assert.equal(v.reads(), 1, 'the first check reads the states');
  // ACKs arrive in subscriber order: the blocker is the last one not synced (c).
  synced.add('a');
  waiters.check(v.view(), true);
  synced.add('b');
  waiters.check(v.view(), true);
  assert.equal(v.reads(), 1, 'quick checks while c is not synced read no states');
  await Promise.resolve();
  assert.equal(settled, false);
  synced.add('c');
  waiters.check(v.view(), true);
  await done;
  assert.equal(settled, true);
  assert.equal(waiters.size, 0);
});

test('a full check still rejects on a NACK while the blocker is not synced', async () => {
  const ids = ['a', 'b'];
  const nacked = new Set<string>();
  const v = fakeView(ids, new Set(), nacked);
  const waiters = new SyncWaiters();
  const done = waiters.wait(() => true, 5000, 2, v.view);
  nacked.add('a');
  waiters.check(v.view(), true);
  assert.equal(waiters.size, 1, 'a quick check does not look for NACKs');
  waiters.check(v.view());
  await assert.rejects(done, (e: Error & { code?: string }) => e.code === 'AMBIT_ERR_XDS_NACK');
});
