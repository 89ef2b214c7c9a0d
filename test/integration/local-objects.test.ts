/**
 * Objects between `ambit local` and its API server: apply as server-side apply (namespaces
 * first, an undeclared namespace created, a second apply updates, custom kinds found through
 * discovery once their CRD is there, a refusal names the object), delete; and the workloads local
 * mode's API server must accept as they are: the controller's waypoint and gateway Deployments,
 * the ingress gateway install and the agents' mirror pods.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../src/controller/objects.js';
import { ALL_CRDS } from '../../src/crds/index.js';
import { isAmbitError } from '../../src/shared/errors.js';
import { KubeClient } from '../../src/local/kube-client.js';
import { ObjectsApi } from '../../src/local/objects-api.js';
import { renderOwned, type ProxyTemplate } from '../../src/controller/owned/render.js';
import { ingressGatewayObjects } from '../../src/local/ingress-gateway.js';
import { agentMirrorPod } from '../../src/local/agent-pods.js';
import { planNode } from '../../src/local/plan.js';
import { startTestServer, waitUntil } from './apiserver/helpers.js';

const cm = (name: string, ns: string, data: Record<string, string>): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data } as unknown as KubeObject);

test('local objects: server-side apply, discovery of custom kinds, delete; local mode\'s workloads are accepted', async (t) => {
  const s = await startTestServer(t);
  const client = new KubeClient({ server: s.server.url, caPem: s.server.caCertPem, token: () => s.server.adminToken });
  const api = new ObjectsApi(client);

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
  await waitUntil('the VirtualService served once its CRD is established', async () => {
    try {
      return await api.apply([vs]);
    } catch {
      return undefined;
    }
  });
  const bad = await api.apply([{ ...svc, spec: { ports: [{ port: 70000 }] } }]).catch((e: unknown) => e);
  assert.ok(isAmbitError(bad, 'AMBIT_ERR_APISERVER_REQUEST'));
  assert.match((bad as Error).message, /^cannot apply Service shop\/web: .*422 Invalid/);

  // The workloads local mode runs pass the API server's validation and admission: the
  // controller's Deployments for waypoint and ingress Gateways (server-side dry run, as the
  // controller's apply), the ingress gateway install and an agent's mirror pod.
  const template: ProxyTemplate = { image: 'localhost/ambit:local', controllerAddress: '10.240.5.1:15012', trustDomain: 'cluster.local', clusterId: 'Kubernetes', logLevel: 'info' };
  const gw = (name: string, gatewayClassName: string): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: 'shop', uid: `uid-${name}` }, spec: { gatewayClassName, listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } });
  const owned = [renderOwned(gw('waypoint', 'istio-waypoint'), template)!, renderOwned(gw('web', 'istio'), template)!].flatMap((o) => [o.serviceAccount, o.service, o.deployment]);
  await api.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } }]);
  for (const o of [...owned, ...ingressGatewayObjects(template, 1)]) {
    const r = await s.call('POST', `${await api.collectionPath(o.apiVersion, o.kind, o.metadata.namespace)}?dryRun=All`, { ...o, metadata: { ...o.metadata, ownerReferences: undefined } });
    assert.equal(r.status, 201, `${o.kind} ${o.metadata.namespace}/${o.metadata.name}: ${r.text}`);
  }
  await api.apply([{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'ambit-agent', namespace: 'istio-system' } }]);
  const mirror = agentMirrorPod(planNode('lk', 1, 5));
  const r = await s.call('POST', `/api/v1/namespaces/istio-system/pods?dryRun=All`, mirror);
  assert.equal(r.status, 201, `${mirror.metadata.name}: ${r.text}`);

  const deleted = await api.delete([vs, cm('gone', 'shop', {})]);
  assert.deepEqual(deleted.map((o) => o.metadata.name), ['r'], 'missing objects are skipped');
  assert.equal(await client.getOptional('/apis/networking.istio.io/v1/namespaces/shop/virtualservices/r'), undefined);
});
