/**
 * @kubernetes/client-node (the controller's client) against the local API server: informers
 * through add/update/delete, a 410 on resume that makes the informer relist, and a restart of the
 * API server while informers watch (nothing lost, changes made after the restart arrive; a watch
 * resumed from the last resourceVersion gets exactly the changes since).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiServer } from '../../../src/local/apiserver/server.js';
import { httpsWatch, silentLog, startTestServer, waitUntil } from './helpers.js';

interface Harness {
  informer: k8s.Informer<k8s.V1ConfigMap> & k8s.ObjectCache<k8s.V1ConfigMap>;
  events: string[];
  lists: number;
  stop(): Promise<void>;
}

/** An informer on the ConfigMaps of `namespace`, restarted after errors as client-node's example does. */
async function configMapInformer(server: ApiServer, namespace: string): Promise<Harness> {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(server.kubeconfig());
  const api = kc.makeApiClient(k8s.CoreV1Api);
  const h: Harness = { informer: undefined as never, events: [], lists: 0, stop: async () => {} };
  const informer = k8s.makeInformer(kc, `/api/v1/namespaces/${namespace}/configmaps`, () => {
    h.lists++;
    return api.listNamespacedConfigMap({ namespace });
  });
  h.informer = informer;
  let stopped = false;
  let restart: NodeJS.Timeout | undefined;
  informer.on('add', (o) => h.events.push(`add ${o.metadata?.name}`));
  informer.on('update', (o) => h.events.push(`update ${o.metadata?.name} ${JSON.stringify(o.data ?? {})}`));
  informer.on('delete', (o) => h.events.push(`delete ${o.metadata?.name}`));
  informer.on('error', () => {
    if (stopped) return;
    restart = setTimeout(() => void informer.start().catch(() => {}), 100);
  });
  await informer.start();
  h.stop = async () => {
    stopped = true;
    clearTimeout(restart);
    await informer.stop();
  };
  return h;
}

function cacheView(h: Harness): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const o of h.informer.list()) out[o.metadata!.name!] = o.data ?? {};
  return out;
}

async function put(server: ApiServer, ns: string, name: string, data: Record<string, string>): Promise<void> {
  const existing = await server.request({ method: 'GET', path: `/api/v1/namespaces/${ns}/configmaps/${name}` });
  const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data };
  const r = existing.status === 404
    ? await server.request({ method: 'POST', path: `/api/v1/namespaces/${ns}/configmaps`, body })
    : await server.request({ method: 'PUT', path: `/api/v1/namespaces/${ns}/configmaps/${name}`, body });
  assert.ok(r.status === 200 || r.status === 201, `write ${ns}/${name}: ${JSON.stringify(r.body)}`);
}

async function del(server: ApiServer, ns: string, name: string): Promise<void> {
  const r = await server.request({ method: 'DELETE', path: `/api/v1/namespaces/${ns}/configmaps/${name}` });
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

async function namespace(server: ApiServer, name: string): Promise<void> {
  const r = await server.request({ method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
}

test('an informer follows adds, updates and deletes', async (t) => {
  const { server } = await startTestServer(t);
  await namespace(server, 'inf');
  await put(server, 'inf', 'before', { a: '1' });
  const h = await configMapInformer(server, 'inf');
  t.after(() => h.stop());
  await waitUntil('the initial list', () => (cacheView(h)['before'] ? true : undefined));
  await put(server, 'inf', 'x', { v: '1' });
  await put(server, 'inf', 'x', { v: '2' });
  await del(server, 'inf', 'before');
  await waitUntil('x at v=2 and before deleted', () => {
    const v = cacheView(h);
    return v['x']?.['v'] === '2' && v['before'] === undefined ? true : undefined;
  });
  assert.ok(h.events.includes('add x'), h.events.join('; '));
  assert.ok(h.events.includes('update x {"v":"2"}'), h.events.join('; '));
  assert.ok(h.events.includes('delete before'), h.events.join('; '));
  assert.deepEqual(Object.keys(cacheView(h)).sort(), ['kube-root-ca.crt', 'x']);
});

test('a resume from a compacted resourceVersion gets ERROR 410 and the informer relists', async (t) => {
  // Five events kept per resource, and watches that end after 1-2 s, so a quiet namespace's
  // watcher resumes from a resourceVersion the history no longer reaches.
  const { server } = await startTestServer(t, { historySize: 5, minRequestTimeoutSeconds: 1 });
  await namespace(server, 'quiet');
  await namespace(server, 'busy');
  await put(server, 'quiet', 'q1', { a: '1' });
  const rvBefore = String(server.resourceVersion);
  const h = await configMapInformer(server, 'quiet');
  t.after(() => h.stop());
  await waitUntil('the first list', () => (cacheView(h)['q1'] ? true : undefined));
  for (let i = 0; i < 10; i++) await put(server, 'busy', `b${i}`, { i: String(i) });

  const raw = await httpsWatch(server, `/api/v1/namespaces/quiet/configmaps?watch=true&resourceVersion=${rvBefore}`);
  const [ev] = await raw.waitFor(1);
  assert.equal(ev.type, 'ERROR');
  assert.equal(ev.object.kind, 'Status');
  assert.equal(ev.object.code, 410);
  assert.equal(ev.object.reason, 'Expired');
  assert.match(ev.object.message, /^too old resource version: \d+ \(\d+\)$/);
  await raw.ended;

  await waitUntil('a relist after the 410', () => (h.lists >= 2 ? true : undefined), 20_000);
  await put(server, 'quiet', 'q2', { b: '2' });
  await waitUntil('q2 after the relist', () => (cacheView(h)['q2'] ? true : undefined), 20_000);
  assert.deepEqual(cacheView(h)['q1'], { a: '1' });
});

test('the API server restarts while informers watch: nothing is lost, later changes apply', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-apiserver-restart-'));
  const stateDir = join(dir, 'state');
  const servers: ApiServer[] = [];
  let h: Harness | undefined;
  t.after(async () => {
    await h?.stop();
    for (const s of servers) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const first = await ApiServer.start({ stateDir, log: silentLog });
  servers.push(first);
  await namespace(first, 'rs');
  await put(first, 'rs', 'keep', { k: '1' });
  await put(first, 'rs', 'change', { c: '1' });
  await put(first, 'rs', 'remove', { r: '1' });
  h = await configMapInformer(first, 'rs');
  const harness = h;
  await waitUntil('the informer synced', () => (Object.keys(cacheView(harness)).length === 4 ? true : undefined));
  const rvAtStop = first.resourceVersion;
  await first.stop();

  const second = await ApiServer.start({ stateDir, log: silentLog });
  servers.push(second);
  assert.equal(second.port, first.port, 'the restarted server listens where the clients expect it');
  assert.ok(second.resourceVersion >= rvAtStop, 'resourceVersions do not go back');
  await put(second, 'rs', 'change', { c: '2' });
  await put(second, 'rs', 'added', { n: '1' });
  await del(second, 'rs', 'remove');
  assert.ok(second.resourceVersion > rvAtStop);

  await waitUntil('the informer sees the changes made after the restart', () => {
    const v = cacheView(harness);
    return v['change']?.['c'] === '2' && v['added'] !== undefined && v['remove'] === undefined && v['keep']?.['k'] === '1' ? true : undefined;
  }, 20_000);

  // At the protocol level: a watch resumed from the last resourceVersion seen before the restart
  // gets exactly the changes made since, in order, and no synthetic ADDED for what was there.
  const w = await httpsWatch(second, `/api/v1/namespaces/rs/configmaps?watch=true&resourceVersion=${rvAtStop}`);
  t.after(() => w.close());
  const evs = await w.waitFor(3);
  assert.deepEqual(evs.map((e) => `${e.type} ${e.object.metadata.name}`), ['MODIFIED change', 'ADDED added', 'DELETED remove']);
  const rvs = evs.map((e) => Number(e.object.metadata.resourceVersion));
  assert.ok(rvs.every((rv, i) => rv > rvAtStop && (i === 0 || rv > rvs[i - 1]!)), `rvs ${rvs} increase past ${rvAtStop}`);
  w.close();
});
