/**
 * One type's subscription on its own (controller/xds/subscription.ts): the response that brings a
 * subscriber to the snapshot, one in flight at a time, a NACK reverting what it holds, an ACK
 * making it synced.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TYPE_SERVICE } from '../../../src/shared/resources.js';
import { encodeResource, type EncodedResource } from '../../../src/shared/xds/resource-codec.js';
import type { DeltaConfigRequestMessage } from '../../../src/shared/xds/proto.js';
import { applySubscriptionChange, isTypeNackedAtTarget, isTypeSynced, markDirty, newTypeSub, nextResponse, recordReply } from '../../../src/controller/xds/subscription.js';

const enc = (o: unknown): EncodedResource => encodeResource(o);
const reply = (nonce: string, error?: string): DeltaConfigRequestMessage =>
  ({ typeUrl: TYPE_SERVICE, responseNonce: nonce, ...(error ? { errorDetail: { code: 3, message: error } } : {}) }) as unknown as DeltaConfigRequestMessage;

test('subscription: delta from what the client holds, one response in flight, NACK reverts, ACK syncs', () => {
  const a = enc({ n: 'a' });
  const b = enc({ n: 'b' });
  const ts = newTypeSub(TYPE_SERVICE, [], { 'ns/a': a.version, 'ns/gone': 'v0' }, undefined);
  assert.equal(ts.wildcard, true, 'no names: the whole type');
  let n = 0;
  const nonce = (): string => String(++n);

  const first = nextResponse(ts, new Map([['ns/a', a], ['ns/b', b]]), { force: false, notifiedAt: undefined, nonce });
  assert.ok(first);
  assert.deepEqual(first.response.resources.map((r) => r.name), ['ns/b'], 'only what the client lacks');
  assert.deepEqual(first.response.removedResources, ['ns/gone']);
  assert.equal(ts.inflight?.nonce, '1');

  markDirty(ts, 123);
  assert.equal(ts.dirty, true, 'a change while one is in flight waits for the reply');
  const nack = recordReply(ts, reply('1', 'bad service'), 1000, 2);
  assert.equal(nack.nack?.message, 'bad service');
  assert.deepEqual([...ts.sent.keys()].sort(), ['ns/a', 'ns/gone'], 'a NACK reverts to what the client still holds');
  assert.deepEqual(nack.pushNow, { notifiedAt: 123 }, 'the waiting change goes out now');
  assert.equal(isTypeNackedAtTarget(ts), true);

  const second = nextResponse(ts, new Map([['ns/a', a]]), { force: false, notifiedAt: undefined, nonce });
  assert.ok(second);
  assert.deepEqual(second.response.removedResources, ['ns/gone']);
  const ack = recordReply(ts, reply('2'), 2000, 2);
  assert.equal(ack.acked?.version, ts.targetVersion);
  assert.equal(isTypeSynced(ts), true);
  assert.equal(nextResponse(ts, new Map([['ns/a', a]]), { force: false, notifiedAt: undefined, nonce }), undefined, 'nothing differs, nothing sent');
  assert.ok(nextResponse(ts, new Map([['ns/a', a]]), { force: true, notifiedAt: undefined, nonce }), 'a forced push answers even when nothing differs');

  assert.equal(applySubscriptionChange(ts, [], ['*']), true);
  assert.equal(ts.wildcard, false);
  assert.equal(applySubscriptionChange(ts, ['ns/a'], []), true);
  assert.equal(applySubscriptionChange(ts, ['ns/a'], []), false, 'already subscribed');
});
