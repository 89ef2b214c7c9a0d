/**
 * Pure parts of local mode's workloads: each pod's hosts file, and the waypoint and ingress
 * gateway pods local mode runs for Gateways (proxies.ts writes them to the API server).
 */
import { createHash } from 'node:crypto';
import type { KubeObject } from '../controller/objects.js';
import {
  ENV_CA_ROOT_FILE,
  ENV_CONTROLLER_ADDR,
  ENV_LOG_LEVEL,
  ENV_NODE_NAME,
  ENV_SERVICE_ACCOUNT,
  ENV_TOKEN_FILE,
  ENV_TRUST_DOMAIN,
  ENV_WAYPOINT_MODE,
  ENV_WAYPOINT_NAME,
} from '../waypoint/config.js';
import { ENV_POD_IP, ENV_POD_NAME, ENV_POD_NAMESPACE } from '../shared/env.js';

export const CLUSTER_DOMAIN = 'cluster.local';

function rec(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function nsOf(o: KubeObject): string {
  return o.metadata.namespace ?? 'default';
}

export function keyOf(o: KubeObject): string {
  return `${nsOf(o)}/${o.metadata.name}`;
}

/** Stable short hash of what a proxy pod is made from (its pod-template-hash). */
function templateHash(template: unknown): string {
  return createHash('sha256').update(JSON.stringify(template ?? {})).digest('hex').slice(0, 8);
}

/** True when `labels` carry every key/value of `selector` (an empty selector selects nothing, as for Services). */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  const l = labels ?? {};
  return Object.entries(selector).every(([k, v]) => l[k] === v);
}

/** The hosts file of a pod in namespace `podNs`: `<svc>` (same namespace), `<svc>.<ns>`, `<svc>.<ns>.svc.cluster.local`. */
export function renderHosts(pod: { name: string; namespace: string; ip: string }, services: KubeObject[]): string {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', `${pod.ip}\t${pod.name}`];
  const sorted = [...services].sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1));
  for (const s of sorted) {
    const vip = rec(s.spec).clusterIP;
    if (typeof vip !== 'string' || vip === 'None' || vip === '') continue;
    const n = s.metadata.name;
    const ns = nsOf(s);
    const names = [`${n}.${ns}.svc.${CLUSTER_DOMAIN}`, `${n}.${ns}.svc`, `${n}.${ns}`];
    if (ns === pod.namespace) names.push(n);
    lines.push(`${vip}\t${names.join(' ')}`);
  }
  return lines.join('\n') + '\n';
}

/** Gateway API classes whose Gateways local mode runs as waypoint pods. */
export const WAYPOINT_CLASS_NAMES: readonly string[] = ['ambit-waypoint', 'istio-waypoint'];

/** What a waypoint pod needs to reach the controller, as the node's agent does. */
export interface WaypointPodEnv {
  controllerAddr: string;
  caRootFile: string;
  /** The pod's own credential file (a waypoint or gateway authenticates as itself, never as its node). */
  tokenFile: (namespace: string, pod: string) => string;
  trustDomain: string;
  logLevel: string;
  /** Node names; the waypoint pod is pinned to one of them (stable per Gateway). */
  nodes: readonly string[];
}

/** True for a Gateway API Gateway of a waypoint class. */
export function isWaypointGateway(o: KubeObject): boolean {
  return o.kind === 'Gateway' && o.apiVersion.startsWith('gateway.networking.k8s.io/') && WAYPOINT_CLASS_NAMES.includes(String(rec(o.spec).gatewayClassName ?? ''));
}

/** Namespace, name and labels of the built-in ingress gateway (Istio's `istio-ingressgateway` Deployment). */
export const INGRESS_GATEWAY = {
  namespace: 'istio-system',
  name: 'istio-ingressgateway',
  labels: { istio: 'ingressgateway', app: 'istio-ingressgateway' } as Readonly<Record<string, string>>,
} as const;

/** True for an Istio (networking.istio.io) Gateway: ingress servers, not a waypoint. */
export function isIstioGateway(o: KubeObject): boolean {
  return o.kind === 'Gateway' && o.apiVersion.startsWith('networking.istio.io/');
}

/**
 * Whether local mode runs the built-in ingress gateway pod: yes while at least one Istio Gateway
 * exists (whatever its selector; Gateways whose selector does not match its labels are simply not
 * served by it, as on a cluster without a matching gateway Deployment).
 */
export function wantsIngressGateway(objects: readonly KubeObject[]): boolean {
  return objects.some(isIstioGateway);
}

const DOWNWARD_ENV: ReadonlyArray<[string, string]> = [
  [ENV_POD_NAME, 'metadata.name'],
  [ENV_POD_NAMESPACE, 'metadata.namespace'],
  [ENV_POD_IP, 'status.podIP'],
];

/** One pod of the `ambit waypoint` binary, as a gateway Deployment of one replica would run it. */
function proxyPod(p: {
  name: string;
  namespace: string;
  /** What the pod-template-hash and the node choice are derived from (stable per owner). */
  owner: string;
  labels: Record<string, string>;
  serviceAccount: string;
  container: string;
  vars: Record<string, string>;
  ports: Array<{ name: string; containerPort: number }>;
  readinessPort?: number;
  env: WaypointPodEnv;
}): KubeObject {
  const hash = templateHash({ owner: p.owner, labels: p.labels });
  const node = p.env.nodes[parseInt(templateHash(p.owner), 16) % Math.max(1, p.env.nodes.length)] ?? '';
  const podName = `${p.name}-${hash}-0`;
  const vars: Record<string, string> = {
    [ENV_NODE_NAME]: node,
    [ENV_CONTROLLER_ADDR]: p.env.controllerAddr,
    [ENV_CA_ROOT_FILE]: p.env.caRootFile,
    [ENV_TOKEN_FILE]: p.env.tokenFile(p.namespace, podName),
    [ENV_TRUST_DOMAIN]: p.env.trustDomain,
    [ENV_LOG_LEVEL]: p.env.logLevel,
    ...p.vars,
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: podName,
      namespace: p.namespace,
      labels: { ...p.labels, 'istio.io/dataplane-mode': 'none', 'pod-template-hash': hash },
      // Scraped as Istio's waypoint and gateway pods are: Prometheus' pod discovery keeps these.
      annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15020', 'prometheus.io/path': '/metrics' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${p.name}-${hash}`, controller: true }],
    },
    spec: {
      nodeName: node,
      serviceAccountName: p.serviceAccount,
      containers: [
        {
          name: p.container,
          // Local mode runs the command as a host process; the image is what a cluster would pull.
          image: 'ambit',
          command: ['ambit', 'waypoint'],
          env: [
            ...Object.entries(vars).map(([k, v]) => ({ name: k, value: v })),
            // The downward API, as the waypoint's Deployment on a cluster sets them.
            ...DOWNWARD_ENV.map(([name, fieldPath]) => ({ name, valueFrom: { fieldRef: { fieldPath } } })),
          ],
          ports: p.ports,
          ...(p.readinessPort !== undefined ? { readinessProbe: { httpGet: { path: '/healthz/ready', port: p.readinessPort } } } : {}),
        },
      ],
    },
  };
}

/**
 * The pod local mode runs for a waypoint Gateway (what a Deployment would give on Kubernetes):
 * `<gateway>-<hash>-0` (Istio names the waypoint Deployment after its Gateway, so the workload is
 * `<gateway>` in every component's telemetry), not enrolled itself, service account `<gateway>`, running
 * `ambit waypoint` with HBONE on 15008, metrics on 15020 and the readiness port 15021 (opened once
 * its first config is applied, so the pod is ready only when it routes), pinned to one node.
 */
export function waypointPod(gw: KubeObject, env: WaypointPodEnv): KubeObject {
  const name = gw.metadata.name;
  const ns = nsOf(gw);
  return proxyPod({
    name,
    namespace: ns,
    owner: `${ns}/${name}`,
    // Kiali finds waypoints by these two labels.
    labels: { 'gateway.networking.k8s.io/gateway-name': name, 'gateway.istio.io/managed': 'istio.io-mesh-controller', 'service.istio.io/canonical-name': name },
    serviceAccount: name,
    container: 'waypoint',
    vars: { [ENV_WAYPOINT_NAME]: name, [ENV_SERVICE_ACCOUNT]: name },
    ports: [
      { name: 'hbone', containerPort: 15008 },
      { name: 'metrics', containerPort: 15020 },
      { name: 'status-port', containerPort: 15021 },
    ],
    readinessPort: 15021,
    env,
  });
}

/**
 * The built-in ingress gateway pod (Istio's `istio-ingressgateway`): `istio-ingressgateway-<hash>-0`
 * in istio-system with labels `istio: ingressgateway` and `app: istio-ingressgateway`, not enrolled,
 * service account `istio-ingressgateway`, running `ambit waypoint` in gateway mode (metrics on
 * 15020, ready on 15021 once its listeners are open), pinned to one node.
 */
export function ingressGatewayPod(env: WaypointPodEnv): KubeObject {
  const g = INGRESS_GATEWAY;
  return proxyPod({
    name: g.name,
    namespace: g.namespace,
    owner: `${g.namespace}/${g.name}`,
    labels: { ...g.labels, 'service.istio.io/canonical-name': g.name },
    serviceAccount: g.name,
    container: 'istio-proxy',
    vars: { [ENV_WAYPOINT_MODE]: 'gateway', [ENV_WAYPOINT_NAME]: g.name, [ENV_SERVICE_ACCOUNT]: g.name },
    ports: [
      { name: 'metrics', containerPort: 15020 },
      { name: 'status-port', containerPort: 15021 },
    ],
    readinessPort: 15021,
    env,
  });
}
