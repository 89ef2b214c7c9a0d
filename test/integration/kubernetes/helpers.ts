/**
 * Test helpers for the controller in Kubernetes mode: local mode's API server (real HTTPS, real
 * watches, real kubectl), CRDs from src/crds/ installed through it, objects written with kubectl
 * or in process, and a Kubernetes source feeding a store.
 */
import assert from 'node:assert/strict';
import { ALL_CRDS, GATEWAY_API_CRDS, ISTIO_CRDS } from '../../../src/crds/index.js';
import type { ApiServer } from '../../../src/local/apiserver/server.js';
import { KubeClient, loadKubeConfig } from '../../../src/controller/source/kube-client.js';
import { KubernetesSource } from '../../../src/controller/source/kubernetes.js';
import { ObjectStore } from '../../../src/controller/store.js';
import { createLogger, type Logger } from '../../../src/shared/log.js';
import { createRegistry, type Registry } from '../../../src/shared/metrics.js';
import { stringify } from 'yaml';

export { startTestServer, waitUntil, silentLog, type TestServer } from '../apiserver/helpers.js';

/** Logs of the code under test: silent unless AMBIT_TEST_LOG names a level. */
export function testLog(): Logger {
  return createLogger({ level: (process.env['AMBIT_TEST_LOG'] as 'debug' | undefined) ?? 'silent' });
}

/** A client of `server` as its admin (the controller's rights are checked by RBAC tests elsewhere). */
export function adminClient(server: ApiServer): KubeClient {
  return new KubeClient(loadKubeConfig({ text: server.kubeconfig() }));
}

/** Installs a set of Ambit's CRDs in process and waits until each is Established. */
export async function installCrds(server: ApiServer, set: 'istio' | 'gateway-api' | 'all'): Promise<void> {
  const crds = set === 'istio' ? ISTIO_CRDS : set === 'gateway-api' ? GATEWAY_API_CRDS : ALL_CRDS;
  for (const crd of crds) {
    await server.requestOk({ method: 'POST', path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', body: crd });
  }
  for (const crd of crds) {
    for (let i = 0; ; i++) {
      const got = await server.requestOk<{ status?: { conditions?: Array<{ type: string; status: string }> } }>({
        method: 'GET',
        path: `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`,
      });
      if (got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      assert.ok(i < 200, `CRD ${crd.metadata.name} established`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** Creates or updates objects in process (server-side apply as manager `test`), in order. */
export async function put(server: ApiServer, objects: Array<Record<string, unknown>>): Promise<void> {
  for (const o of objects) {
    const r = await server.request({ method: 'PATCH', path: `${pathOf(o)}?fieldManager=test&force=true`, body: stringify(o), contentType: 'application/apply-patch+yaml' });
    assert.ok(r.status === 200 || r.status === 201, `apply ${pathOf(o)}: ${r.status} ${JSON.stringify(r.body)}`);
  }
}

/** The API path of an object (the resource is the lowercase plural, which holds for every kind used here). */
export function pathOf(o: Record<string, unknown>, subresource?: string): string {
  const apiVersion = String(o['apiVersion']);
  const kind = String(o['kind']);
  const md = o['metadata'] as { name: string; namespace?: string };
  const plural = PLURALS[kind] ?? `${kind.toLowerCase()}s`;
  const root = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const ns = md.namespace ? `/namespaces/${md.namespace}` : '';
  return `${root}${ns}/${plural}/${md.name}${subresource ? `/${subresource}` : ''}`;
}

const PLURALS: Record<string, string> = {
  AuthorizationPolicy: 'authorizationpolicies',
  PeerAuthentication: 'peerauthentications',
  GatewayClass: 'gatewayclasses',
  HTTPRoute: 'httproutes',
  GRPCRoute: 'grpcroutes',
  EndpointSlice: 'endpointslices',
  DestinationRule: 'destinationrules',
  VirtualService: 'virtualservices',
};

export interface SourceHarness {
  store: ObjectStore;
  source: KubernetesSource;
  registry: Registry;
}

/** A store fed by a Kubernetes source on `server` (admin credentials); closed in t.after. */
export async function startSource(t: { after(fn: () => unknown): void }, server: ApiServer, opts: { start?: boolean } = {}): Promise<SourceHarness> {
  const store = new ObjectStore();
  const registry = createRegistry();
  const source = new KubernetesSource({ client: adminClient(server), store, log: testLog(), registry, batchMs: 10, backoff: { initialMs: 100, maxMs: 1000 } });
  t.after(() => source.close());
  if (opts.start !== false) await source.start();
  return { store, source, registry };
}
