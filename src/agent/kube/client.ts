/**
 * The agent's Kubernetes client, with its own service-account credentials: in a cluster the pod's
 * mounted token (re-read for every request, as the kubelet rotates it) and CA, in local mode a
 * kubeconfig. It does only what the agent's RBAC grants (daemonset/core/rbac-agent.yaml): list
 * and watch the pods of its own node, and merge-patch their status subresource. Plain JSON over
 * node:https, no client library: @kubernetes/client-node cost the agent ~75 MB of resident memory
 * for these three requests (design decision 57).
 *
 * Requests and the pod watch are the shared shells (shared/kube-api.ts, shared/kube-informer.ts).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import { KubeApi, type KubeEndpoint } from '../../shared/kube-api.js';
import { Informer } from '../../shared/kube-informer.js';
import type { Logger } from '../../shared/log.js';

const require = createRequire(import.meta.url);

/** Where the agent's API server and credentials come from. */
export type KubeSource = { kubeconfig: string } | { inCluster: true; server: string };

/** Where a pod's service-account token and the cluster CA are mounted. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export type { KubeEndpoint } from '../../shared/kube-api.js';

/** The parts of a Pod the agent reads. */
export interface NodePod {
  namespace: string;
  name: string;
  uid: string;
  nodeName: string;
  annotations: Record<string, string>;
}

/** A pod as the API server sends it (only the fields the agent reads are typed). */
export interface ApiPod {
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string; annotations?: Record<string, string> };
  spec?: { nodeName?: string };
}

interface KubeconfigNamed<T> {
  name?: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}

/** Loads the endpoint; throws AMBIT_ERR_KUBE_CONFIG naming the file, field and what is wrong. */
export function loadKubeConfig(source: KubeSource): KubeEndpoint {
  if ('inCluster' in source) {
    const tokenFile = `${SERVICE_ACCOUNT_DIR}/token`;
    const caPem = readText(`${SERVICE_ACCOUNT_DIR}/ca.crt`, 'in-cluster credentials');
    readText(tokenFile, 'in-cluster credentials');
    return { server: source.server, caPem, token: () => readFileSync(tokenFile, 'utf8').trim() };
  }
  const file = source.kubeconfig;
  const what = `kubeconfig ${file}`;
  const text = readText(file, what);
  let doc: unknown;
  try {
    // local mode and most tools write YAML; JSON (a subset) needs no parser.
    doc = text.trimStart().startsWith('{') ? JSON.parse(text) : (require('yaml') as typeof import('yaml')).parse(text);
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', `cannot load ${what}: not YAML or JSON: ${errorMessage(e)}`, { cause: e });
  }
  return kubeconfigEndpoint(doc, what, dirname(resolve(file)));
}

/** The current context's endpoint of a parsed kubeconfig; `base` resolves relative file names. */
export function kubeconfigEndpoint(doc: unknown, what: string, base: string): KubeEndpoint {
  const fail = (msg: string): never => {
    throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', `cannot load ${what}: ${msg}`);
  };
  if (typeof doc !== 'object' || doc === null) return fail('not a kubeconfig (no mapping at the top)');
  const d = doc as Record<string, unknown>;
  const current = d['current-context'];
  if (typeof current !== 'string' || current === '') return fail('current-context is not set');
  const find = <K extends 'cluster' | 'user' | 'context'>(list: string, key: K, name: unknown): Record<string, unknown> => {
    const items = Array.isArray(d[list]) ? (d[list] as KubeconfigNamed<Record<string, unknown>>[]) : [];
    const hit = items.find((x) => x?.name === name)?.[key];
    if (typeof hit !== 'object' || hit === null) return fail(`${list}: no entry named ${JSON.stringify(name)}`);
    return hit;
  };
  const context = find('contexts', 'context', current);
  const cluster = find('clusters', 'cluster', context['cluster']);
  const user = context['user'] === undefined ? {} : find('users', 'user', context['user']);
  const server = cluster['server'];
  if (typeof server !== 'string' || !/^https?:\/\//.test(server)) return fail(`clusters[${JSON.stringify(context['cluster'])}].server must be an http(s) URL, got ${JSON.stringify(server)}`);
  const pem = (dataKey: string, fileKey: string, where: Record<string, unknown>, path: string): string | undefined => {
    const data = where[dataKey];
    if (typeof data === 'string' && data !== '') return Buffer.from(data, 'base64').toString('utf8');
    const f = where[fileKey];
    if (typeof f === 'string' && f !== '') return readText(resolve(base, f), `${what} (${path}.${fileKey})`);
    return undefined;
  };
  for (const unsupported of ['exec', 'auth-provider', 'username', 'password']) {
    if (user[unsupported] !== undefined) return fail(`users[${JSON.stringify(context['user'])}].${unsupported} is not supported by the agent; use a token, tokenFile or a client certificate`);
  }
  const userPath = `users[${JSON.stringify(context['user'])}]`;
  const out: KubeEndpoint = { server };
  const caPem = pem('certificate-authority-data', 'certificate-authority', cluster, `clusters[${JSON.stringify(context['cluster'])}]`);
  if (caPem !== undefined) out.caPem = caPem;
  if (cluster['insecure-skip-tls-verify'] === true) out.insecure = true;
  const token = user['token'];
  const tokenFile = user['tokenFile'];
  if (typeof token === 'string' && token !== '') out.token = () => token;
  else if (typeof tokenFile === 'string' && tokenFile !== '') {
    const path = resolve(base, tokenFile);
    readText(path, `${what} (${userPath}.tokenFile)`);
    out.token = () => readFileSync(path, 'utf8').trim();
  }
  const certPem = pem('client-certificate-data', 'client-certificate', user, userPath);
  const keyPem = pem('client-key-data', 'client-key', user, userPath);
  if ((certPem === undefined) !== (keyPem === undefined)) return fail(`${userPath} needs both a client certificate and its key`);
  if (certPem !== undefined && keyPem !== undefined) Object.assign(out, { certPem, keyPem });
  return out;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', `cannot load ${what}: cannot read ${path}: ${errorMessage(e)}`, { cause: e });
  }
}

/** The fields of a pod the agent uses; undefined for a pod without name, namespace or uid. */
export function nodePodOf(pod: ApiPod): NodePod | undefined {
  const m = pod.metadata;
  if (!m?.name || !m.namespace || !m.uid) return undefined;
  return { namespace: m.namespace, name: m.name, uid: m.uid, nodeName: pod.spec?.nodeName ?? '', annotations: { ...(m.annotations ?? {}) } };
}

/** Largest list or error body read (every pod of one node fits many times over). */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** Pods of one node: a watch (list + watch with `spec.nodeName=<node>`) and status patches. */
export class NodePodsClient {
  private readonly api: KubeApi;

  constructor(
    readonly endpoint: KubeEndpoint,
    readonly nodeName: string,
  ) {
    this.api = new KubeApi({ endpoint, errorCode: 'AMBIT_ERR_KUBE_API', unreachableHint: 'is the API server reachable?', maxBodyBytes: MAX_BODY_BYTES });
  }

  /**
   * A list + watch of this node's pods (not started): the cache is kept while it reconnects from
   * the last resourceVersion, a 410 Gone relists, failures are retried with `backoff`.
   */
  watch(opts: { log: Logger; onChange: () => void; onError?: (what: 'list' | 'watch', err: unknown, retryInMs: number) => void; backoff?: { initialMs: number; maxMs: number } }): Informer<ApiPod> {
    return new Informer<ApiPod>({
      client: this.api,
      path: '/api/v1/pods',
      fieldSelector: this.fieldSelector(),
      log: opts.log,
      onEvent: () => opts.onChange(),
      ...(opts.onError ? { onError: opts.onError } : {}),
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
    });
  }

  /**
   * JSON-merge-patches `metadata.annotations` of a pod through its status subresource, with the
   * pod's uid as a precondition (a pod re-created under the name is not touched: 409). A null
   * value removes the annotation. Fails with AMBIT_ERR_KUBE_API and `details.status`.
   */
  async patchAnnotations(pod: { namespace: string; name: string; uid: string }, annotations: Record<string, string | null>): Promise<void> {
    await this.api.mergePatch(`/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods/${encodeURIComponent(pod.name)}/status`, { metadata: { uid: pod.uid, annotations } });
  }

  private fieldSelector(): string {
    return `spec.nodeName=${this.nodeName}`;
  }
}

