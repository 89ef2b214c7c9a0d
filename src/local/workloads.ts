/**
 * Pure parts of local mode's workloads: object keys, label selection and each pod's hosts file
 * and resolv.conf.
 * (Waypoint and gateway pods are the controller's Deployments: src/controller/owned/render.ts.)
 */
import type { KubeObject } from '../controller/objects.js';

export const CLUSTER_DOMAIN = 'cluster.local';

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

/** A pod as its hosts file names it (spec.hostname and spec.subdomain, when set). */
export interface HostsPod {
  name: string;
  namespace: string;
  ip: string;
  hostname?: string;
  subdomain?: string;
}

/**
 * A pod's hosts file as the kubelet writes it: localhost and the IPv6 names, then the pod's IP
 * with its hostname (`<hostname>.<subdomain>.<ns>.svc.<domain>` first when it has a subdomain).
 * Service names are not here: the cluster DNS answers them.
 */
export function renderHosts(pod: HostsPod, domain = CLUSTER_DOMAIN): string {
  const hostname = pod.hostname || pod.name;
  const names = pod.subdomain ? [`${hostname}.${pod.subdomain}.${pod.namespace}.svc.${domain}`, hostname] : [hostname];
  const lines = [
    '# Kubernetes-managed hosts file.',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
    `${pod.ip}\t${names.join('\t')}`,
  ];
  return lines.join('\n') + '\n';
}

/** A ClusterFirst pod's resolv.conf as the kubelet writes it: its namespace's search list, the cluster DNS, ndots:5. */
export function renderResolvConf(namespace: string, nameserver: string, domain = CLUSTER_DOMAIN): string {
  return `search ${namespace}.svc.${domain} svc.${domain} ${domain}\nnameserver ${nameserver}\noptions ndots:5\n`;
}
