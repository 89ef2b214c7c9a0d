/**
 * Pure parts of local mode's workloads: object keys, label selection and each pod's hosts file.
 * (Waypoint and gateway pods are the controller's Deployments: src/controller/owned/render.ts.)
 */
import type { KubeObject } from '../controller/objects.js';

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
