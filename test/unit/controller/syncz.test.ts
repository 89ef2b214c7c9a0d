/** Sync states (SYNCED / STALE / NACKED / NOT SENT), the /debug/syncz document and the proxy-status table. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildSyncz, typeSyncState, type SyncState } from '../../../src/controller/admin.js';
import type { SubscriberState, TypeSubscriptionState } from '../../../src/controller/xds/status.js';
import { formatTypeState, renderProxyStatus } from '../../../src/cli/proxy-status.js';
import { TYPE_AUTHORIZATION, TYPE_SERVICE, TYPE_WORKLOAD } from '../../../src/shared/resources.js';

function ts(o: Partial<TypeSubscriptionState>): TypeSubscriptionState {
  return {
    typeUrl: TYPE_WORKLOAD,
    wildcard: true,
    names: [],
    sentVersion: 'v1',
    targetVersion: 'v1',
    ackedVersion: 'v1',
    pending: undefined,
    resourceCount: 1,
    lastAckAt: 1,
    lastNack: undefined,
    nackCount: 0,
    ...o,
  };
}

const nack = (version: string, message = 'bad'): TypeSubscriptionState['lastNack'] => ({ nonce: '7', version, code: 13, message, at: 5 });

test('typeSyncState: each state from the subscription fields', () => {
  const cases: Array<[string, Partial<TypeSubscriptionState>, SyncState]> = [
    ['acked the target', {}, 'SYNCED'],
    ['push awaiting its ACK', { pending: '3', sentVersion: 'v2', targetVersion: 'v2' }, 'STALE'],
    ['behind the target, nothing pending', { targetVersion: 'v2' }, 'STALE'],
    ['rejected the target, holds an older version', { targetVersion: 'v2', lastNack: nack('v2') }, 'NACKED'],
    ['rejected the very first push', { ackedVersion: undefined, sentVersion: '', targetVersion: 'v2', lastNack: nack('v2') }, 'NACKED'],
    ['an old NACK, since synced', { targetVersion: 'v3', ackedVersion: 'v3', lastNack: nack('v2') }, 'SYNCED'],
    ['an old NACK, pending a newer push', { targetVersion: 'v3', pending: '9', lastNack: nack('v2') }, 'STALE'],
    ['nothing sent or acked', { ackedVersion: undefined, sentVersion: '', targetVersion: 'v1' }, 'NOT SENT'],
  ];
  for (const [what, o, want] of cases) assert.equal(typeSyncState(ts(o)), want, what);
});

test('buildSyncz: sorted subscribers and types, capture counts, ISO times', () => {
  const sub = (nodeName: string, role: SubscriberState['role'], types: TypeSubscriptionState[], workloadStatus: SubscriberState['workloadStatus'] = []): SubscriberState => ({
    streamId: nodeName,
    nodeId: `${role}~${nodeName}`,
    nodeName,
    role,
    metadata: {},
    peer: 'ipv4:127.0.0.1:5000',
    connectedAt: 0,
    types,
    workloadStatus,
    statusAt: workloadStatus.length > 0 ? 1000 : undefined,
  });
  const report = buildSyncz('127.0.0.1:15012', [
    sub('node-2', 'agent', [ts({ typeUrl: TYPE_WORKLOAD }), ts({ typeUrl: TYPE_AUTHORIZATION, pending: '4' }), ts({ typeUrl: TYPE_SERVICE, targetVersion: 'v9', lastNack: nack('v9', 'no\n  room') })], [
      { uid: 'a', captured: true, mode: 'ambient', message: '' },
      { uid: 'b', captured: true, mode: 'ambient', message: '' },
      { uid: 'c', captured: false, mode: 'failed', message: 'cgroup missing' },
    ]),
    sub('node-1', 'waypoint', [ts({ typeUrl: TYPE_SERVICE, ackedVersion: undefined, sentVersion: '' })]),
  ], 0);
  assert.equal(report.generatedAt, '1970-01-01T00:00:00.000Z');
  assert.deepEqual(report.subscribers.map((s) => s.name), ['node-1/waypoint', 'node-2/agent']);
  const n2 = report.subscribers[1]!;
  assert.deepEqual(n2.types.map((t) => [t.type, t.state]), [['authorization', 'STALE'], ['service', 'NACKED'], ['workload', 'SYNCED']]);
  assert.deepEqual(n2.capture, { total: 3, captured: 2, modes: { ambient: 2, failed: 1 }, problems: [{ uid: 'c', mode: 'failed', message: 'cgroup missing' }] });
  assert.equal(n2.statusAt, '1970-01-01T00:00:01.000Z');
  assert.deepEqual(n2.types[1]!.lastNack, { message: 'no\n  room', version: 'v9', code: 13, at: '1970-01-01T00:00:00.005Z' });

  const table = renderProxyStatus(report).split('\n');
  assert.match(table[0]!, /^NAME\s+WORKLOAD\s+SERVICE\s+AUTHORIZATION\s+CAPTURED$/);
  assert.match(table[1]!, /^node-1\/waypoint\s+-\s+NOT SENT\s+-\s+-$/);
  assert.match(table[2]!, /^node-2\/agent\s+SYNCED \(v1\)\s+NACKED: no room\s+STALE \(pending v1\)\s+2\/3 \(ambient=2, failed=1\)$/);
  assert.equal(table[5], '  node-2/agent service: no room');
});

test('formatTypeState: long NACK messages are cut with an ellipsis; behind-without-pending names both versions', () => {
  const long = buildSyncz('c', [{
    streamId: '1', nodeId: 'n', nodeName: 'n', role: 'agent', metadata: {}, peer: '', connectedAt: 0, statusAt: undefined, workloadStatus: [],
    types: [ts({ targetVersion: 'v2', lastNack: nack('v2', 'x'.repeat(200)) }), ts({ typeUrl: TYPE_SERVICE, ackedVersion: 'aaaaaaaaaaaa', targetVersion: 'bbbbbbbbbbbb' })],
  }], 0).subscribers[0]!;
  const cell = formatTypeState(long.types.find((t) => t.type === 'workload'));
  assert.equal(cell.length, 'NACKED: '.length + 60);
  assert.ok(cell.endsWith('...'));
  assert.equal(formatTypeState(long.types.find((t) => t.type === 'service')), 'STALE (has aaaaaaaa, want bbbbbbbb)');
  assert.equal(formatTypeState(undefined), '-');
});
