/** The store and its state folder: resourceVersions, watch history and expiry, persistence, torn log lines, compaction. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateFile, LOG_FILE, SNAPSHOT_FILE } from '../../../src/local/apiserver/state-file.js';
import { Store, type StoreEvent } from '../../../src/local/apiserver/store.js';
import { isAmbitError } from '../../../src/shared/errors.js';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function open(dir: string, historySize = 1000): { store: Store; file: StateFile } {
  const { file, snapshot, records } = StateFile.open(dir);
  const store = new Store(file, { historySize });
  store.load(snapshot, records);
  return { store, file };
}

const cm = (name: string, v: string): any => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'd', uid: `uid-${name}` }, data: { v } });

test('writes get increasing resourceVersions; events carry the previous state; uids are indexed', (t) => {
  const { store, file } = open(tempDir(t));
  t.after(() => file.close());
  const seen: StoreEvent[] = [];
  store.subscribe((e) => seen.push(e));
  const a = store.put('/configmaps', cm('a', '1'));
  const a2 = store.put('/configmaps', cm('a', '2'));
  const gone = store.remove('/configmaps', 'd', 'a');
  assert.deepEqual([a.metadata.resourceVersion, a2.metadata.resourceVersion, gone!.metadata.resourceVersion], ['1', '2', '3']);
  assert.deepEqual(seen.map((e) => e.type), ['ADDED', 'MODIFIED', 'DELETED']);
  assert.equal((seen[1]!.prev as any).data.v, '1');
  assert.equal((seen[2]!.object as any).data.v, '2', 'DELETED carries the last state');
  store.put('/configmaps', cm('b', '1'));
  assert.equal(store.byUid('uid-b')?.object.metadata.name, 'b');
  assert.equal(store.byUid('uid-a'), undefined);
});

test('history resumes at an exact resourceVersion and expires past its size', (t) => {
  const { store, file } = open(tempDir(t), 3);
  t.after(() => file.close());
  for (let i = 0; i < 5; i++) store.put('/configmaps', cm(`c${i}`, '1'));
  store.put('/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'd' } });
  const since = store.eventsSince('/configmaps', 3);
  assert.ok(Array.isArray(since));
  assert.deepEqual((since as StoreEvent[]).map((e) => e.rv), [4, 5]);
  assert.equal(store.eventsSince('/configmaps', 1), 'expired');
  assert.equal(store.floorOf('/configmaps'), 2);
  assert.deepEqual((store.eventsSince('/secrets', 0) as StoreEvent[]).map((e) => e.rv), [6], 'each resource keeps its own history');
  assert.equal(store.eventsSince('/configmaps', 99), 'future');
});

test('state survives reopening, including the watch history; a torn last line is ignored', (t) => {
  const dir = tempDir(t);
  {
    const { store, file } = open(dir);
    store.put('/configmaps', cm('a', '1'));
    store.put('/configmaps', cm('a', '2'));
    store.put('/configmaps', cm('b', '1'));
    store.remove('/configmaps', 'd', 'b');
    file.close();
  }
  appendFileSync(join(dir, LOG_FILE), '{"rv":5,"op":"put","r":"/configmaps","o":{"metad');
  const { store, file } = open(dir);
  t.after(() => file.close());
  assert.equal(store.rv, 4);
  assert.equal((store.get('/configmaps', 'd', 'a') as any).data.v, '2');
  assert.equal(store.get('/configmaps', 'd', 'b'), undefined);
  assert.deepEqual((store.eventsSince('/configmaps', 1) as StoreEvent[]).map((e) => `${e.type}@${e.rv}`), ['MODIFIED@2', 'ADDED@3', 'DELETED@4']);
  assert.equal(store.put('/configmaps', cm('c', '1')).metadata.resourceVersion, '5');
});

test('compaction writes a snapshot and empties the log; a corrupt middle line stops loading with a clear error', (t) => {
  const dir = tempDir(t);
  {
    const { store, file } = open(dir);
    store.put('/configmaps', cm('a', '1'));
    store.compact();
    store.put('/configmaps', cm('a', '2'));
    file.close();
  }
  const snap = JSON.parse(readFileSync(join(dir, SNAPSHOT_FILE), 'utf8'));
  assert.equal(snap.rv, 1);
  assert.equal(readFileSync(join(dir, LOG_FILE), 'utf8').trim().split('\n').length, 1);
  const { store, file } = open(dir);
  assert.equal((store.get('/configmaps', 'd', 'a') as any).data.v, '2');
  file.close();
  writeFileSync(join(dir, LOG_FILE), 'garbage\n{"rv":9,"op":"put","r":"/x","o":{"metadata":{"name":"x"}}}\n');
  assert.throws(() => StateFile.open(dir), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_APISERVER_STATE') && /objects.log line 1 is corrupt/.test(e.message));
});

test('a listener that throws does not fail the write; the failure is reported', (t) => {
  const { file, snapshot, records } = StateFile.open(tempDir(t));
  t.after(() => file.close());
  const failures: unknown[] = [];
  const store = new Store(file, { onListenerError: (e) => failures.push(e) });
  store.load(snapshot, records);
  const after: string[] = [];
  store.subscribe(() => {
    throw new Error('broken watcher');
  });
  store.subscribe((e) => after.push(e.type));
  assert.equal(store.put('/configmaps', cm('a', '1')).metadata.resourceVersion, '1');
  assert.deepEqual(after, ['ADDED'], 'later listeners still hear the event');
  assert.equal((failures[0] as Error).message, 'broken watcher');
});
