import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ObjectStore, type StoreChange, type StatusChange } from '../../../src/controller/store.js';
import type { KubeObject } from '../../../src/controller/objects.js';
import { isAmbitError } from '../../../src/shared/errors.js';

function newStore(): ObjectStore {
  let n = 0;
  return new ObjectStore({ now: () => new Date('2026-01-01T00:00:00Z'), newUid: () => `uid-${++n}` });
}

const ns = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
const sa = (name: string, namespace = 'demo'): KubeObject => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } });
const pod = (name: string, status?: Record<string, unknown>): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'demo', labels: { app: name } },
  spec: { containers: [{ name: 'c', image: 'x' }] },
  ...(status ? { status } : {}),
});

function recordChanges(store: ObjectStore): StoreChange[] {
  const seen: StoreChange[] = [];
  store.subscribe((c) => seen.push(c));
  return seen;
}

test('apply stores a batch, stamps server fields and emits exactly one change event', () => {
  const store = newStore();
  const seen = recordChanges(store);
  const change = store.apply([ns('demo'), sa('a'), sa('b')]);
  assert.equal(seen.length, 1);
  assert.equal(change.applied.length, 3);
  assert.equal(change.resourceVersion, '1');
  const a = store.get('ServiceAccount', 'demo', 'a')!;
  assert.equal(a.metadata.uid, 'uid-2');
  assert.equal(a.metadata.resourceVersion, '1');
  assert.equal(a.metadata.creationTimestamp, '2026-01-01T00:00:00.000Z');
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a.metadata), 'stored objects are frozen');
});

test('an invalid object rejects the whole batch: nothing stored, no event', () => {
  const store = newStore();
  const seen = recordChanges(store);
  const bad = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'Bad Name', namespace: 'demo' } } as KubeObject;
  assert.throws(
    () => store.apply([sa('good'), bad]),
    (e: unknown) => isAmbitError(e, 'AMBIT_ERR_MANIFEST_INVALID') && e.message.includes('apply[1]: ServiceAccount demo/Bad Name: metadata.name'),
  );
  assert.equal(store.get('ServiceAccount', 'demo', 'good'), undefined);
  assert.equal(seen.length, 0);
  assert.equal(store.resourceVersion, '0');
});

test('the same object twice in one batch is rejected', () => {
  const store = newStore();
  assert.throws(() => store.apply([sa('a'), sa('a')]), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_MANIFEST_INVALID'));
  assert.equal(store.list('ServiceAccount').length, 0);
});

test('re-applying an unchanged object is a no-op; a changed one keeps uid and creation time', () => {
  const store = newStore();
  const seen = recordChanges(store);
  store.apply([sa('a')]);
  const again = store.apply([sa('a')]);
  assert.equal(again.applied.length, 0);
  assert.equal(seen.length, 1, 'no event for a no-op batch');
  const changed = { ...sa('a'), metadata: { ...sa('a').metadata, labels: { team: 'x' } } };
  store.apply([changed]);
  const a = store.get('ServiceAccount', 'demo', 'a')!;
  assert.equal(a.metadata.uid, 'uid-1');
  assert.equal(a.metadata.resourceVersion, '2');
  assert.deepEqual(a.metadata.labels, { team: 'x' });
  assert.equal(seen.length, 2);
});

test('objects without a namespace land in the default namespace', () => {
  const store = newStore();
  store.apply([{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'x' } }]);
  assert.equal(store.get('ServiceAccount', 'default', 'x')?.metadata.namespace, 'default');
});

test('applying without status keeps the stored status unless preserveStatus is false', () => {
  const store = newStore();
  store.apply([pod('web', { phase: 'Running', podIP: '10.0.0.5' })]);
  store.apply([{ ...pod('web'), metadata: { ...pod('web').metadata, labels: { app: 'web', v: '2' } } }]);
  assert.equal(store.get('Pod', 'demo', 'web')!.status?.['podIP'], '10.0.0.5');
  store.apply([pod('web')], { preserveStatus: false });
  assert.equal(store.get('Pod', 'demo', 'web')!.status, undefined);
});

test('delete removes a batch atomically with one event; missing objects are skipped', () => {
  const store = newStore();
  store.apply([sa('a'), sa('b')]);
  const seen = recordChanges(store);
  const change = store.delete([sa('a'), sa('missing')]);
  assert.deepEqual(change.deleted.map((o) => o.metadata.name), ['a']);
  assert.equal(seen.length, 1);
  assert.equal(store.get('ServiceAccount', 'demo', 'a'), undefined);
  assert.deepEqual(store.remove([sa('missing')]), []);
  assert.equal(seen.length, 1, 'deleting nothing emits nothing');
  assert.throws(() => store.delete([sa('b'), { apiVersion: 'v9', kind: 'Nope', metadata: { name: 'x' } }]), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_MANIFEST_INVALID'));
  assert.ok(store.get('ServiceAccount', 'demo', 'b'), 'a malformed reference deletes nothing');
});

test('deleting a Namespace deletes what is in it, in the same batch', () => {
  const store = newStore();
  store.apply([ns('demo'), ns('other'), sa('a'), sa('b', 'other')]);
  assert.deepEqual(store.remove([ns('demo')]).sort(), ['Namespace//demo', 'ServiceAccount/demo/a']);
  assert.ok(store.get('ServiceAccount', 'other', 'b'));
});

test('setStatus on a policy emits status only; on a Pod it is also a change (translation reads pod status)', () => {
  const store = newStore();
  const ap: KubeObject = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'demo' }, spec: {} };
  store.apply([ap, pod('web')]);
  const changes = recordChanges(store);
  const statuses: StatusChange[] = [];
  store.on('status', (s) => statuses.push(s));
  const conditions = { conditions: [{ type: 'Accepted', status: 'True' }] };
  assert.equal(store.setStatus('AuthorizationPolicy', 'demo', 'p', conditions), true);
  assert.equal(store.setStatus('AuthorizationPolicy', 'demo', 'p', structuredClone(conditions)), false, 'unchanged status is a no-op');
  assert.equal(changes.length, 0);
  assert.equal(statuses.length, 1);
  assert.deepEqual(store.get('AuthorizationPolicy', 'demo', 'p')!.status, conditions);
  assert.equal(store.setStatus('Pod', 'demo', 'web', { phase: 'Running' }), true);
  assert.equal(changes.length, 1);
  assert.equal(store.setStatus('Pod', 'demo', 'missing', { phase: 'Running' }), false);
});

test('list filters by kind ref or bare kind and namespace; Gateways of both groups never collide', () => {
  const store = newStore();
  const istioGw: KubeObject = { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: 'demo' }, spec: { servers: [{ port: { number: 80, protocol: 'HTTP' }, hosts: ['*'] }] } };
  const apiGw: KubeObject = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: 'demo' }, spec: { gatewayClassName: 'ambit-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } };
  store.apply([istioGw, apiGw, sa('z'), sa('y', 'other')]);
  assert.equal(store.list('Gateway').length, 2);
  assert.equal(store.list('Gateway.networking.istio.io')[0]!.apiVersion, 'networking.istio.io/v1');
  assert.equal(store.get('Gateway.gateway.networking.k8s.io', 'demo', 'gw')!.apiVersion, 'gateway.networking.k8s.io/v1');
  assert.deepEqual(store.list('ServiceAccount').map((o) => o.metadata.name), ['z', 'y'], 'sorted by key: namespace, then name');
  assert.deepEqual(store.list('ServiceAccount', 'demo').map((o) => o.metadata.name), ['z']);
});

test('snapshot is sorted and unaffected by later batches', () => {
  const store = newStore();
  store.apply([sa('b'), sa('a')]);
  const snap = store.snapshot();
  store.apply([sa('c')]);
  assert.equal(snap.resourceVersion, '1');
  assert.deepEqual(snap.objects.map((o) => o.metadata.name), ['a', 'b']);
  assert.equal(store.snapshot().objects.length, 3);
});

test('snapshot stays sorted and current through creates, updates, status writes and deletes', () => {
  const store = newStore();
  const names = (): string[] => store.snapshot().objects.map((o) => `${o.kind}/${o.metadata.name}`);
  store.apply([sa('m'), ns('demo'), sa('c')]);
  assert.deepEqual(names(), ['Namespace/demo', 'ServiceAccount/c', 'ServiceAccount/m']);
  store.apply([{ ...sa('c'), metadata: { name: 'c', namespace: 'demo', labels: { v: '2' } } }]);
  assert.deepEqual(store.snapshot().objects[1]?.metadata.labels, { v: '2' }, 'an update is seen at its place');
  store.apply([pod('p', { phase: 'Running' }), sa('a')]);
  assert.deepEqual(names(), ['Namespace/demo', 'Pod/p', 'ServiceAccount/a', 'ServiceAccount/c', 'ServiceAccount/m']);
  assert.ok(store.setStatus('Pod', 'demo', 'p', { phase: 'Failed' }));
  assert.equal(store.snapshot().objects[1]?.status?.['phase'], 'Failed', 'a status write is seen');
  store.delete([{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'c', namespace: 'demo' } }]);
  assert.deepEqual(names(), ['Namespace/demo', 'Pod/p', 'ServiceAccount/a', 'ServiceAccount/m']);
});

test('snapshot byKind: groups sorted, in the order of objects; an unchanged kind keeps its array, a changed one is gathered again', () => {
  const store = newStore();
  const kinds = (): Array<[string, string[]]> => [...store.snapshot().byKind].map(([ref, g]) => [ref, g.map((o) => o.metadata.name)]);
  store.apply([sa('m'), ns('demo'), sa('c'), pod('q', { phase: 'Running' })]);
  assert.deepEqual(kinds(), [['Namespace', ['demo']], ['Pod', ['q']], ['ServiceAccount', ['c', 'm']]]);
  const first = store.snapshot();
  assert.deepEqual(first.objects, [...first.byKind.values()].flat(), 'objects is the groups in order');
  assert.equal(store.snapshot(), first, 'nothing changed: the same snapshot');
  store.apply([{ ...sa('c'), metadata: { name: 'c', namespace: 'demo', labels: { v: '2' } } }]);
  const afterUpdate = store.snapshot();
  assert.equal(afterUpdate.byKind.get('Pod'), first.byKind.get('Pod'), 'pods did not change: same array');
  assert.notEqual(afterUpdate.byKind.get('ServiceAccount'), first.byKind.get('ServiceAccount'), 'service accounts changed: a new array');
  assert.deepEqual(first.byKind.get('ServiceAccount')?.[0]?.metadata.labels, undefined, 'the earlier snapshot is unchanged');
  store.apply([pod('a', { phase: 'Running' })]);
  const afterCreate = store.snapshot();
  assert.deepEqual(afterCreate.byKind.get('Pod')?.map((o) => o.metadata.name), ['a', 'q']);
  assert.equal(afterCreate.byKind.get('ServiceAccount'), afterUpdate.byKind.get('ServiceAccount'), 'a create of another kind keeps this one');
  assert.ok(store.setStatus('Pod', 'demo', 'q', { phase: 'Failed' }));
  assert.equal(store.snapshot().byKind.get('Pod')?.[1]?.status?.['phase'], 'Failed', 'a status write regathers its kind');
  store.delete([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo' } }]);
  assert.deepEqual(kinds(), [], 'deleting the namespace took every kind with it');
  assert.deepEqual(store.snapshot().objects, []);
});

test('an object that carries uid and creationTimestamp (from an API server) keeps them; a recreated one takes the new uid', () => {
  const s = newStore();
  const cm = (uid: string, data: string): KubeObject => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'x', namespace: 'demo', uid, creationTimestamp: '2025-05-05T00:00:00Z' }, spec: { data } });
  s.apply([cm('api-uid-1', 'a')]);
  assert.equal(s.get('ServiceAccount', 'demo', 'x')!.metadata.uid, 'api-uid-1');
  assert.equal(s.get('ServiceAccount', 'demo', 'x')!.metadata.creationTimestamp, '2025-05-05T00:00:00Z');
  const same = s.apply([cm('api-uid-2', 'a')]);
  assert.equal(same.applied.length, 1, 'the same content under a new uid is a change');
  assert.equal(s.get('ServiceAccount', 'demo', 'x')!.metadata.uid, 'api-uid-2');
});
