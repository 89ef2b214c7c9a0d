/**
 * A generated cluster for the control-plane benchmark: enrolled namespaces with running, ready
 * pods spread over the nodes, Services selecting them, AuthorizationPolicies and VirtualServices,
 * plus the single-object changes the benchmark applies one at a time. Deterministic for a size.
 */
import type { KubeObject } from '../../src/controller/objects.js';

export interface ClusterSize {
  pods: number;
  services: number;
  policies: number;
  virtualServices: number;
  namespaces: number;
  /** Node names pods are spread over (one config-stream client each). */
  nodes: number;
}

/** The kinds of single-object change measured, applied in turn. */
export const CHANGE_KINDS = ['pod', 'policy', 'service'] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

export const nodeName = (i: number): string => `node-${i}`;
const ns = (i: number): string => `ns-${i}`;

function podIp(i: number): string {
  return `10.${16 + Math.floor(i / 65_536)}.${Math.floor(i / 256) % 256}.${i % 256}`;
}

function serviceIp(i: number): string {
  return `10.96.${Math.floor(i / 256) % 256}.${i % 256}`;
}

/** Pod `i` (its namespace is i mod namespaces; app label picks its Service). */
export function pod(size: ClusterSize, i: number, revision = 0): KubeObject {
  const app = `app-${i % size.services}`;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `pod-${i}`, namespace: ns((i % size.services) % size.namespaces), labels: { app, version: `v${revision}` } },
    spec: { nodeName: nodeName(i % size.nodes), serviceAccountName: `sa-${i % 10}`, containers: [{ name: 'app', image: 'app' }] },
    status: { phase: 'Running', podIP: podIp(i), podIPs: [{ ip: podIp(i) }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

/** Service `i` in the namespace of its pods. */
export function service(size: ClusterSize, i: number, revision = 0): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `svc-${i}`, namespace: ns(i % size.namespaces) },
    spec: {
      clusterIP: serviceIp(i),
      selector: { app: `app-${i}` },
      ports: [{ name: 'http', port: 8080, targetPort: 8080 }, ...(revision > 0 ? [{ name: `tcp-${revision}`, port: 9000 + (revision % 500), targetPort: 9000 }] : [])],
    },
  };
}

/** AuthorizationPolicy `i`: ALLOW from one namespace's service account on one port. */
export function policy(size: ClusterSize, i: number, revision = 0): KubeObject {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: `authz-${i}`, namespace: ns(i % size.namespaces) },
    spec: {
      selector: { matchLabels: { app: `app-${i % size.services}` } },
      action: 'ALLOW',
      rules: [{ from: [{ source: { principals: [`cluster.local/ns/${ns((i + 1) % size.namespaces)}/sa/sa-${revision}`] } }], to: [{ operation: { ports: ['8080'] } }] }],
    },
  };
}

/** VirtualService `i`: a header match and a 90/10 split over service `i`. */
export function virtualService(size: ClusterSize, i: number): KubeObject {
  const host = `svc-${i % size.services}`;
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: `vs-${i}`, namespace: ns((i % size.services) % size.namespaces) },
    spec: {
      hosts: [host],
      http: [
        { match: [{ headers: { 'end-user': { exact: 'jason' } } }], route: [{ destination: { host } }], timeout: '2s' },
        { route: [{ destination: { host }, weight: 90 }, { destination: { host }, weight: 10 }], retries: { attempts: 2, retryOn: '5xx' } },
      ],
    },
  };
}

/** Every object of the cluster, namespaces first. */
export function generateCluster(size: ClusterSize): KubeObject[] {
  const out: KubeObject[] = [];
  for (let i = 0; i < size.namespaces; i++) {
    out.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns(i), labels: { 'istio.io/dataplane-mode': 'ambient' } } });
    for (let a = 0; a < 10; a++) out.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: `sa-${a}`, namespace: ns(i) } });
  }
  for (let i = 0; i < size.services; i++) out.push(service(size, i));
  for (let i = 0; i < size.pods; i++) out.push(pod(size, i));
  for (let i = 0; i < size.policies; i++) out.push(policy(size, i));
  for (let i = 0; i < size.virtualServices; i++) out.push(virtualService(size, i));
  return out;
}

/** The `n`-th change (1-based): one object of `kind`, changed so that translation output differs. */
export function change(size: ClusterSize, kind: ChangeKind, n: number): KubeObject {
  const spread = (count: number): number => (n * 7919) % Math.max(1, count);
  if (kind === 'pod') return pod(size, spread(size.pods), n);
  if (kind === 'policy') return policy(size, spread(size.policies), n);
  return service(size, spread(size.services), n);
}
