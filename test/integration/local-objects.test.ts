/**
 * Objects between `ambit local` and its API server: apply as server-side apply (namespaces
 * first, an undeclared namespace created, a second apply updates, custom kinds found through
 * discovery once their CRD is there, a refusal names the object), delete, and the feed that
 * keeps the controller's store equal to the API server (status kept only for Pods, refused
 * objects listed and skipped, catching up measured by resourceVersion).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ObjectStore } from '../../src/controller/store.js';
import type { KubeObject } from '../../src/controller/objects.js';
import { ALL_CRDS } from '../../src/crds/index.js';
import { isAmbitError } from '../../src/shared/errors.js';
import { KubeClient } from '../../src/local/kube-client.js';
import { ObjectsApi } from '../../src/local/objects-api.js';
import { StoreFeed, storeForm } from '../../src/local/store-feed.js';
import { ingressGatewayPod, waypointPod, type WaypointPodEnv } from '../../src/local/workloads.js';
import { agentMirrorPod } from '../../src/local/agent-pods.js';
import { planNode } from '../../src/local/plan.js';
import { silentLog, startTestServer, waitUntil } from './apiserver/helpers.js';

const cm = (name: string, ns: string, data: Record<string, string>): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data } as unknown as KubeObject);

test('local objects: server-side apply, discovery of custom kinds, delete; the feed mirrors the API into the store', async (t) => {
  const s = await startTestServer(t);
  const client = new KubeClient({ server: s.server.url, caPem: s.server.caCertPem, token: () => s.server.adminToken });
  const api = new ObjectsApi(client);
  const store = new ObjectStore();
  const feed = new StoreFeed({ client, objects: api, store, log: silentLog });
  t.after(() => feed.stop());

  const svc: KubeObject = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }] } };
  const written = await api.apply([svc, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } }]);
  assert.deepEqual(written.map((o) => o.kind), ['Namespace', 'Service'], 'namespaces are written first');
  assert.match(String(written[1]!.spec?.['clusterIP']), /^10\.96\./, 'the API server assigned the ClusterIP');
  const auto = await api.apply([cm('cfg', 'elsewhere', { a: '1' })]);
  assert.equal((await client.get('/api/v1/namespaces/elsewhere')).metadata.name, 'elsewhere', 'an undeclared namespace is created');
  const again = await api.apply([cm('cfg', 'elsewhere', { a: '2' })]);
  assert.ok(Number(again[0]!.metadata.resourceVersion) > Number(auto[0]!.metadata.resourceVersion));
  assert.deepEqual((await client.get<{ data: unknown }>('/api/v1/namespaces/elsewhere/configmaps/cfg')).data, { a: '2' }, 'a second apply updates');

  const vs: KubeObject = { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'r', namespace: 'shop' }, spec: { hosts: ['web'], http: [{ route: [{ destination: { host: 'web' } }] }] } };
  await assert.rejects(api.apply([vs]), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_APISERVER_REQUEST') && /does not serve VirtualService in networking\.istio\.io\/v1; is its CRD installed\?/.test((e as Error).message));
  for (const crd of ALL_CRDS) await client.create('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
  const vsWritten = await waitUntil('the VirtualService served once its CRD is established', async () => {
    try {
      return await api.apply([vs]);
    } catch {
      return undefined;
    }
  });
  const bad = await api.apply([{ ...svc, spec: { ports: [{ port: 70000 }] } }]).catch((e: unknown) => e);
  assert.ok(isAmbitError(bad, 'AMBIT_ERR_APISERVER_REQUEST'));
  assert.match((bad as Error).message, /^cannot apply Service shop\/web: .*422 Invalid/);

  // The feed: a first list, then changes as they happen.
  await feed.start();
  assert.ok(store.get('Service', 'shop', 'web'), 'listed Services are in the store');
  assert.ok(store.get('VirtualService', 'shop', 'r'), 'custom kinds are fed');
  assert.ok(feed.caughtUp([...written, ...vsWritten]));
  const pod = await client.create<KubeObject>('/api/v1/namespaces/shop/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', labels: { app: 'web' } }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'x', command: ['sleep', '1'] }] } });
  const running = await client.mergePatch<KubeObject>('/api/v1/namespaces/shop/pods/p/status', { status: { phase: 'Running', podIP: '10.5.1.9' } });
  await waitUntil('the pod and its status fed', () => (feed.caughtUp([running]) ? true : undefined));
  assert.equal(store.get('Pod', 'shop', 'p')?.status?.['podIP'], '10.5.1.9', 'Pods keep their status (translation reads it)');
  assert.ok(pod.metadata.uid);
  const withStatus = storeForm({ ...svc, status: { loadBalancer: {} }, metadata: { ...svc.metadata, managedFields: [{}], annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' } } as KubeObject['metadata'] });
  assert.deepEqual([withStatus.status, withStatus.metadata.annotations, (withStatus.metadata as Record<string, unknown>)['managedFields']], [undefined, undefined, undefined], 'other kinds enter without status, managedFields or last-applied');

  // An object the controller refuses is listed and skipped; the others go on.
  const refused = await client.create<KubeObject>('/apis/networking.istio.io/v1/namespaces/shop/virtualservices', { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'weird' }, spec: { hosts: ['web'], http: [{ route: [{ destination: { host: 'web' }, weight: -5 }] }] } });
  await waitUntil('the refusal recorded', () => (feed.refusedObjects().some((r) => r.object.endsWith('/shop/weird')) ? true : undefined));
  assert.equal(store.get('VirtualService', 'shop', 'weird'), undefined);
  assert.ok(refused.metadata.uid);

  // The pods local mode writes itself pass the API server's validation and admission.
  const env: WaypointPodEnv = { controllerAddr: '10.240.5.1:15012', caRootFile: '/x/root-cert.pem', tokenFile: (ns, p) => `/x/${ns}.${p}`, trustDomain: 'cluster.local', logLevel: 'info', nodes: ['node1'] };
  const gw: KubeObject = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: 'shop', uid: 'u' }, spec: { gatewayClassName: 'istio-waypoint' } };
  await client.create('/api/v1/namespaces/istio-system/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'ambit-agent' } }).catch(() => undefined);
  for (const [sa, p] of [['waypoint', waypointPod(gw, env)], ['istio-ingressgateway', ingressGatewayPod(env)], ['ambit-agent', agentMirrorPod(planNode('lk', 1, 5))]] as const) {
    delete p.metadata.ownerReferences;
    const ns = p.metadata.namespace!;
    await api.apply([{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: ns } }]);
    const r = await s.call('POST', `/api/v1/namespaces/${ns}/pods?dryRun=All`, p);
    assert.equal(r.status, 201, `${p.metadata.name}: ${r.text}`);
  }

  const deleted = await api.delete([vs, cm('gone', 'shop', {})]);
  assert.deepEqual(deleted.map((o) => o.metadata.name), ['r'], 'missing objects are skipped');
  await waitUntil('the delete fed', () => (feed.caughtUp(deleted, true) ? true : undefined));
  assert.equal(store.get('VirtualService', 'shop', 'r'), undefined);
});
