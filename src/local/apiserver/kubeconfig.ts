/** Kubeconfig files for the local API server: the operator's (admin token) or a service account's. */
import { stringify } from 'yaml';
import { writeAtomic } from './state-file.js';

export interface KubeconfigOptions {
  /** `https://host:port`. */
  server: string;
  caCertPem: string;
  token: string;
  /** Cluster, user and context name. */
  name?: string;
  user?: string;
  namespace?: string;
}

/** The kubeconfig YAML text (CA inline, bearer token). */
export function kubeconfigYaml(o: KubeconfigOptions): string {
  const name = o.name ?? 'ambit-local';
  const user = o.user ?? 'ambit-admin';
  const context: Record<string, string> = { cluster: name, user };
  if (o.namespace) context['namespace'] = o.namespace;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server: o.server, 'certificate-authority-data': Buffer.from(o.caCertPem).toString('base64') } }],
    users: [{ name: user, user: { token: o.token } }],
    contexts: [{ name, context }],
    'current-context': name,
    preferences: {},
  });
}

/** Writes a kubeconfig atomically, readable by its owner only (it holds a token). */
export function writeKubeconfig(path: string, o: KubeconfigOptions): void {
  writeAtomic(path, kubeconfigYaml(o), 0o600);
}
