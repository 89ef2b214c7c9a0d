/** Builders of Kubernetes objects for translate tests. */
import type { KubeObject, OwnerReference } from '../../../src/controller/objects.js';

export function namespace(name: string, labels: Record<string, string> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

export interface PodOptions {
  ns?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  sa?: string;
  ip?: string | string[];
  phase?: string;
  ready?: boolean;
  node?: string;
  owner?: OwnerReference;
  ports?: Array<{ name?: string; containerPort: number; protocol?: string }>;
  hostNetwork?: boolean;
  created?: string;
}

export function pod(name: string, o: PodOptions = {}): KubeObject {
  const ips = o.ip === undefined ? ['10.0.0.1'] : Array.isArray(o.ip) ? o.ip : [o.ip];
  const phase = o.phase ?? 'Running';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: o.ns ?? 'demo',
      labels: o.labels ?? { app: name },
      ...(o.annotations ? { annotations: o.annotations } : {}),
      ...(o.owner ? { ownerReferences: [o.owner] } : {}),
    },
    spec: {
      ...(o.sa ? { serviceAccountName: o.sa } : {}),
      nodeName: o.node ?? 'node-1',
      ...(o.hostNetwork ? { hostNetwork: true } : {}),
      containers: [{ name: 'c', command: ['sleep', '1'], ...(o.ports ? { ports: o.ports } : {}) }],
    },
    status: {
      phase,
      ...(ips.length > 0 ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}),
      conditions: [{ type: 'Ready', status: (o.ready ?? phase === 'Running') ? 'True' : 'False' }],
    },
  };
}

export function service(
  name: string,
  o: {
    ns?: string;
    selector?: Record<string, string>;
    ports?: Array<Record<string, unknown>>;
    clusterIP?: string;
    clusterIPs?: string[];
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    spec?: Record<string, unknown>;
  } = {},
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: o.ns ?? 'demo', ...(o.labels ? { labels: o.labels } : {}), ...(o.annotations ? { annotations: o.annotations } : {}) },
    spec: {
      ...(o.selector !== undefined ? { selector: o.selector } : { selector: { app: name } }),
      ports: o.ports ?? [{ name: 'http', port: 80, targetPort: 8080 }],
      clusterIP: o.clusterIP ?? '10.96.0.10',
      ...(o.clusterIPs ? { clusterIPs: o.clusterIPs } : {}),
      ...(o.spec ?? {}),
    },
  };
}

export function waypointGateway(name: string, o: { ns?: string; className?: string; waypointFor?: string } = {}): KubeObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace: o.ns ?? 'demo', ...(o.waypointFor ? { labels: { 'istio.io/waypoint-for': o.waypointFor } } : {}) },
    spec: { gatewayClassName: o.className ?? 'ambit-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  };
}

export function peerAuthentication(name: string, ns: string, spec: Record<string, unknown>, created?: string): KubeObject {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { name, namespace: ns, ...(created ? { creationTimestamp: created } : {}) },
    spec,
  };
}

export function authorizationPolicy(name: string, ns: string, spec: Record<string, unknown>, annotations?: Record<string, string>): KubeObject {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: ns, ...(annotations ? { annotations } : {}) },
    spec,
  };
}
