/**
 * Test helpers for the controller in Kubernetes mode: local mode's API server (real HTTPS, real
 * watches, real kubectl), CRDs from src/crds/ installed through it, objects written with kubectl
 * or in process, and a Kubernetes source feeding a store.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubernetesController } from '../../../src/controller/kubernetes-mode.js';
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

/** A logger whose lines (parsed) land in `lines`. */
export function captureLog(lines: Array<Record<string, unknown>>): Logger {
  return createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
}

/** A store fed by a Kubernetes source on `server` (admin credentials); closed in t.after. */
export async function startSource(t: { after(fn: () => unknown): void }, server: ApiServer, opts: { start?: boolean; log?: Logger } = {}): Promise<SourceHarness> {
  const store = new ObjectStore();
  const registry = createRegistry();
  const source = new KubernetesSource({ client: adminClient(server), store, log: opts.log ?? testLog(), registry, batchMs: 10, backoff: { initialMs: 100, maxMs: 1000 } });
  t.after(() => source.close());
  if (opts.start !== false) await source.start();
  return { store, source, registry };
}

export interface Cluster {
  ts: import('../apiserver/helpers.js').TestServer;
  /** Kubeconfig text of the controller's service account (RBAC from daemonset/core/rbac-controller.yaml). */
  controllerKubeconfig: string;
}

/**
 * An API server with Ambit's CRDs, namespace istio-system, the controller's RBAC exactly as
 * daemonset/core/rbac-controller.yaml grants it (applied with kubectl), the agents' service
 * account, and a kubeconfig of the controller's service account.
 */
export async function startCluster(t: { after(fn: () => unknown): void }): Promise<Cluster> {
  const { startTestServer } = await import('../apiserver/helpers.js');
  const ts = await startTestServer(t);
  await installCrds(ts.server, 'all');
  await put(ts.server, [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'ambit-agent', namespace: 'istio-system' } },
  ]);
  const rbac = new URL('../../../../daemonset/core/rbac-controller.yaml', import.meta.url).pathname;
  const applied = await ts.kubectl(['apply', '-n', 'istio-system', '-f', rbac]);
  assert.equal(applied.code, 0, applied.stderr);
  const { token } = ts.server.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-controller', expirationSeconds: 7200 });
  return { ts, controllerKubeconfig: ts.server.serviceAccountKubeconfig(token, 'istio-system', 'ambit-controller') };
}

/** A pod object on a node (status set separately: the API server has no kubelet). */
export function podObject(name: string, ns: string, o: { node: string; sa: string; labels?: Record<string, string> }): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels: o.labels ?? { app: name } },
    spec: { nodeName: o.node, serviceAccountName: o.sa, containers: [{ name: 'c', image: 'x' }] },
  };
}

/** Marks a pod Running and Ready with an IP, as a kubelet would. */
export async function setPodRunning(server: ApiServer, ns: string, name: string, ip: string): Promise<void> {
  await server.requestOk({
    method: 'PATCH',
    path: `/api/v1/namespaces/${ns}/pods/${name}/status`,
    contentType: 'application/merge-patch+json',
    body: { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] } },
  });
}

/**
 * A controller replica in Kubernetes mode as the controller's service account, with short lease
 * and backoff timings; closed in t.after unless the test closed it.
 */
export async function startKubernetesController(t: { after(fn: () => unknown): void }, c: Cluster, o: { identity?: string } = {}): Promise<KubernetesController> {
  const stateDir = mkdtempSync(join(tmpdir(), 'ambit-k8sctl-'));
  const kc = await KubernetesController.start({
    kubeconfig: { text: c.controllerKubeconfig },
    namespace: 'istio-system',
    stateDir,
    host: '127.0.0.1',
    port: 0,
    trustDomain: 'cluster.local',
    log: testLog(),
    registry: createRegistry(),
    debounceMs: 10,
    ...(o.identity ? { identity: o.identity } : {}),
    lease: { durationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 200 },
    informerBackoff: { initialMs: 100, maxMs: 1000 },
    proxy: { image: 'localhost/ambit:test' },
  });
  let closed = false;
  const close = kc.close.bind(kc);
  kc.close = async () => {
    if (closed) return;
    closed = true;
    await close();
  };
  t.after(async () => {
    await kc.close();
    rmSync(stateDir, { recursive: true, force: true });
  });
  return kc;
}
