/** The local-files source: initial load, changes applied, invalid changes rejected whole, removals deleted. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import type { KubeObject } from '../../../src/controller/objects.js';
import { FileSource, type ReloadResult } from '../../../src/controller/source/watch.js';
import { ObjectStore } from '../../../src/controller/store.js';
import { isAmbitError } from '../../../src/shared/errors.js';
import { createRegistry } from '../../../src/shared/metrics.js';
import { namespace, pod, service } from '../translate/helpers.js';

function logSink(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `ambit-fs${process.pid % 10000}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function manifest(...objects: KubeObject[]): string {
  return objects.map((o) => JSON.stringify(o)).join('\n---\n');
}

/** Waits (bounded) for the next reload the source reports. */
function nextReload(results: ReloadResult[], from: number, timeoutMs = 5000): Promise<ReloadResult> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const tick = (): void => {
      if (results.length > from) return resolve(results[from] as ReloadResult);
      if (Date.now() > deadline) return reject(new Error(`no reload within ${timeoutMs}ms`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

const names = (store: ObjectStore, kind: string): string[] => store.list(kind).map((o) => o.metadata.name);

test('initial load puts every object in the store; an invalid initial set refuses to start', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.yaml'), manifest(namespace('demo'), pod('web'), service('web')));
  const store = new ObjectStore();
  const src = new FileSource({ paths: [dir], store, log: pino({ level: 'silent' }) });
  t.after(() => src.close());
  assert.equal(src.ready, false);
  await src.start();
  assert.equal(src.ready, true);
  assert.deepEqual(names(store, 'Pod'), ['web']);
  assert.deepEqual(names(store, 'Service'), ['web']);

  const bad = await tempDir(t);
  await writeFile(join(bad, 'b.yaml'), manifest({ ...service('x'), spec: { ports: [{ port: 'eighty' }] } }));
  const store2 = new ObjectStore();
  const src2 = new FileSource({ paths: [bad], store: store2, log: pino({ level: 'silent' }) });
  t.after(() => src2.close());
  await assert.rejects(src2.start(), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_MANIFEST_INVALID') && /b\.yaml#1: Service demo\/x: spec\.ports\[0\]\.port/.test((e as Error).message));
  assert.equal(store2.snapshot().objects.length, 0);
  assert.equal(src2.ready, false);
});

test('a valid change is applied; a removed object is deleted; objects others applied stay', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'app.yaml');
  await writeFile(file, manifest(namespace('demo'), pod('web'), pod('db', { ip: '10.0.0.2' }), service('web')));
  const store = new ObjectStore();
  store.apply([pod('other', { ip: '10.0.0.9' })]); // not the source's: must survive reloads
  const results: ReloadResult[] = [];
  const registry = createRegistry();
  const src = new FileSource({ paths: [file], store, log: pino({ level: 'silent' }), registry, debounceMs: 20, onReload: (r) => results.push(r) });
  t.after(() => src.close());
  await src.start();
  assert.deepEqual(names(store, 'Pod'), ['db', 'other', 'web']);

  // Change the Service's port and drop the db pod: one reload applies both.
  const n = results.length;
  await writeFile(file, manifest(namespace('demo'), pod('web'), service('web', { ports: [{ name: 'http', port: 8080, targetPort: 8080 }] })));
  const r = await nextReload(results, n);
  assert.equal(r.result, 'applied');
  assert.deepEqual(names(store, 'Pod'), ['other', 'web']);
  const svc = store.get('Service', 'demo', 'web');
  assert.equal((svc?.spec?.['ports'] as Array<{ port: number }>)[0]?.port, 8080);
  const metrics = await registry.getSingleMetricAsString('ambit_config_source_reloads_total');
  assert.match(metrics, /result="applied"} [1-9]/);
});

test('an invalid change is rejected as a whole: nothing of it lands, the last good objects stay, the log names file, object, field and value', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.yaml'), manifest(namespace('demo'), pod('web')));
  await writeFile(join(dir, 'b.yaml'), manifest(service('web')));
  const store = new ObjectStore();
  const { log, lines } = logSink();
  const results: ReloadResult[] = [];
  const src = new FileSource({ paths: [dir], store, log, debounceMs: 20, onReload: (r) => results.push(r) });
  t.after(() => src.close());
  await src.start();
  const before = store.snapshot();

  // One good change (a new pod) and one bad (port 99999), in two files: neither may land.
  const n = results.length;
  await writeFile(join(dir, 'a.yaml'), manifest(namespace('demo'), pod('web'), pod('api', { ip: '10.0.0.3' })));
  await writeFile(join(dir, 'b.yaml'), manifest(service('web', { ports: [{ name: 'http', port: 99999, targetPort: 8080 }] })));
  let r = await nextReload(results, n);
  // The two writes may land in two reloads; wait until the one that sees the bad file.
  for (let i = n + 1; r.result !== 'rejected' && i < n + 5; i++) r = await nextReload(results, i);
  assert.equal(r.result, 'rejected');
  assert.equal(store.get('Pod', 'demo', 'api'), undefined, 'the valid part of a rejected set is not applied');
  assert.equal(store.get('Service', 'demo', 'web')?.metadata.resourceVersion, before.objects.find((o) => o.kind === 'Service')?.metadata.resourceVersion);
  const line = lines.find((l) => l['msg'] === 'manifest change rejected as a whole; the store keeps the last good objects');
  assert.ok(line, 'a rejection log line');
  assert.equal(line['level'], 50);
  const issues = line['issues'] as string[];
  assert.ok(
    issues.some((i) => i.includes('b.yaml#1: Service demo/web: spec.ports[0].port') && i.includes('(got 99999)')),
    `issue names file, object, field and value: ${JSON.stringify(issues)}`,
  );

  // Fixing the file applies the whole set.
  const m = results.length;
  await writeFile(join(dir, 'b.yaml'), manifest(service('web')));
  r = await nextReload(results, m);
  for (let i = m + 1; r.result !== 'applied' && i < m + 5; i++) r = await nextReload(results, i);
  assert.equal(r.result, 'applied');
  assert.ok(store.get('Pod', 'demo', 'api'), 'the fixed set lands');
});

test('deleting a file deletes its objects; reload() without changes is unchanged', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'ns.yaml'), manifest(namespace('demo')));
  await writeFile(join(dir, 'web.yaml'), manifest(pod('web'), service('web')));
  const store = new ObjectStore();
  const results: ReloadResult[] = [];
  const src = new FileSource({ paths: [dir], store, log: pino({ level: 'silent' }), debounceMs: 20, onReload: (r) => results.push(r) });
  t.after(() => src.close());
  await src.start();
  assert.deepEqual(await src.reload(), { result: 'unchanged' });
  const n = results.length;
  await unlink(join(dir, 'web.yaml'));
  let r = await nextReload(results, n);
  for (let i = n + 1; r.result !== 'applied' && i < n + 5; i++) r = await nextReload(results, i);
  assert.deepEqual(r, { result: 'applied', applied: 0, deleted: 2 });
  assert.deepEqual(names(store, 'Pod'), []);
  assert.deepEqual(names(store, 'Service'), []);
  assert.deepEqual(names(store, 'Namespace'), ['demo']);
});
