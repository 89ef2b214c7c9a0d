import assert from 'node:assert/strict';
import { test } from 'node:test';
import { computeDelta } from '../../../src/controller/xds/delta.js';
import { buildSnapshot } from '../../../src/controller/xds/snapshot.js';
import { TYPE_AUTHORIZATION, TYPE_SERVICE, TYPE_WORKLOAD } from '../../../src/shared/resources.js';
import { decodeResponse } from '../../../src/shared/xds/client.js';
import { canonicalJson, encodeResource, setVersion } from '../../../src/shared/xds/resource-codec.js';
import { authorization, service, workload } from './fixtures.js';

const v = (version: string): { version: string } => ({ version });

test('computeDelta: table of prev/next holdings', () => {
  const cases: Array<{ what: string; prev: Record<string, string>; next: Record<string, string>; updated: string[]; removed: string[] }> = [
    { what: 'empty to empty', prev: {}, next: {}, updated: [], removed: [] },
    { what: 'initial sync sends everything', prev: {}, next: { b: '1', a: '2' }, updated: ['a', 'b'], removed: [] },
    { what: 'unchanged sends nothing', prev: { a: '1' }, next: { a: '1' }, updated: [], removed: [] },
    { what: 'changed version is updated', prev: { a: '1', b: '1' }, next: { a: '2', b: '1' }, updated: ['a'], removed: [] },
    { what: 'missing name is removed', prev: { a: '1', b: '1' }, next: { b: '1' }, updated: [], removed: ['a'] },
    { what: 'reconnect with stale holdings', prev: { a: '1', gone: '9' }, next: { a: '2', c: '1' }, updated: ['a', 'c'], removed: ['gone'] },
  ];
  for (const c of cases) {
    const d = computeDelta(new Map(Object.entries(c.prev)), new Map(Object.entries(c.next).map(([k, ver]) => [k, v(ver)])));
    assert.deepEqual(d, { updated: c.updated, removed: c.removed }, c.what);
  }
});

test('computeDelta applied to prev yields next', () => {
  const prev = new Map([['a', '1'], ['b', '1'], ['c', '1']]);
  const next = new Map([['b', v('2')], ['c', v('1')], ['d', v('1')]]);
  const d = computeDelta(prev, next);
  const applied = new Map(prev);
  for (const n of d.removed) applied.delete(n);
  for (const n of d.updated) applied.set(n, (next.get(n) as { version: string }).version);
  assert.deepEqual([...applied].sort(), [...next].map(([k, x]) => [k, x.version]).sort());
});

test('resource versions are content hashes independent of key order', () => {
  const a = encodeResource({ x: 1, y: { b: 2, a: 1 } });
  const b = encodeResource({ y: { a: 1, b: 2 }, x: 1 });
  const c = encodeResource({ x: 2, y: { a: 1, b: 2 } });
  assert.equal(a.version, b.version);
  assert.notEqual(a.version, c.version);
  assert.equal(a.body.toString(), '{"x":1,"y":{"a":1,"b":2}}');
  assert.equal(canonicalJson({ u: undefined, a: [3, 1] }), '{"a":[3,1]}');
});

test('setVersion depends on names and versions, not insertion order', () => {
  const one = setVersion(new Map([['a', '1'], ['b', '2']]));
  assert.equal(one, setVersion(new Map([['b', '2'], ['a', '1']])));
  assert.notEqual(one, setVersion(new Map([['a', '1'], ['b', '3']])));
  assert.notEqual(one, setVersion(new Map([['a', '1']])));
});

test('buildSnapshot keys each kind by its resource-name rule', () => {
  const s = buildSnapshot({ workloads: [workload()], services: [service()], authorizations: [authorization()] });
  assert.deepEqual([...(s.resources[TYPE_WORKLOAD]?.keys() ?? [])], ['cluster1//v1/Pod/default/web-1']);
  assert.deepEqual([...(s.resources[TYPE_SERVICE]?.keys() ?? [])], ['default/web.default.svc.cluster.local']);
  assert.deepEqual([...(s.resources[TYPE_AUTHORIZATION]?.keys() ?? [])], ['default/allow-frontend']);
});

test('decodeResponse rejects the whole response when one resource is invalid, naming it', () => {
  const good = workload();
  const bad = workload('web-2', 'default', { addresses: ['999.1.1.1'] });
  const resp = {
    systemVersionInfo: 'v',
    typeUrl: TYPE_WORKLOAD,
    resources: [good, bad].map((w) => ({ name: w.uid, ...encodeResource(w) })),
    removedResources: [],
    nonce: '1',
  };
  const d = decodeResponse(TYPE_WORKLOAD, resp);
  assert.equal(d.issues.length, 1);
  assert.equal(d.issues[0]?.path, 'workload[cluster1//v1/Pod/default/web-2].addresses[0]');
  assert.equal(d.issues[0]?.value, '999.1.1.1');
});

test('decodeResponse flags non-JSON bodies, duplicates and update+remove of one name', () => {
  const w = workload();
  const enc = encodeResource(w);
  const resp = {
    systemVersionInfo: 'v',
    typeUrl: TYPE_WORKLOAD,
    resources: [
      { name: w.uid, ...enc },
      { name: w.uid, ...enc },
      { name: 'cluster1//v1/Pod/default/x', version: '1', body: Buffer.from('{not json') },
    ],
    removedResources: [w.uid],
    nonce: '1',
  };
  const paths = decodeResponse(TYPE_WORKLOAD, resp).issues.map((i) => i.path);
  assert.deepEqual(paths.sort(), [
    'workload[cluster1//v1/Pod/default/web-1]',
    'workload[cluster1//v1/Pod/default/web-1]',
    'workload[cluster1//v1/Pod/default/x].body',
  ]);
});
