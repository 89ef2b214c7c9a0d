/**
 * The agent's Kubernetes client, with its own service-account credentials: in a cluster the pod's
 * mounted token (re-read for every request, as the kubelet rotates it) and CA, in local mode a
 * kubeconfig. It does only what the agent's RBAC grants (daemonset/core/rbac-agent.yaml): list
 * and watch the pods of its own node, and merge-patch their status subresource. Plain JSON over
 * node:https, no client library: @kubernetes/client-node cost the agent ~75 MB of resident memory
 * for these three requests (design decision 57).
 *
 * Invariants: a NodePodWatch delivers changes in the order the server sent them and keeps its
 * cache across reconnects (resume from the last resourceVersion, bookmarks, relist on 410 Gone);
 * after stop() no callback fires and no request or timer is left.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import type { IncomingMessage } from 'node:http';
import type * as Https from 'node:https';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import { readAnswerText, readJsonLines } from '../../shared/json-http.js';

const require = createRequire(import.meta.url);

/** Where the agent's API server and credentials come from. */
export type KubeSource = { kubeconfig: string } | { inCluster: true; server: string };

/** Where a pod's service-account token and the cluster CA are mounted. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** An API server and how to authenticate to it. */
export interface KubeEndpoint {
  /** `https://host:port` (or `http://` for a plain test server). */
  server: string;
  /** PEM of the CA the server's certificate chains to; undefined: the system roots. */
  caPem?: string;
  /** Skip checking the server's certificate (kubeconfig `insecure-skip-tls-verify`). */
  insecure?: boolean;
  /** The bearer token, read for every request; undefined: none (client certificate). */
  token?: () => string;
  certPem?: string;
  keyPem?: string;
}

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

const REQUEST_TIMEOUT_MS = 30_000;
/** Largest list or error body read (every pod of one node fits many times over). */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

interface Answer {
  status: number;
  body: unknown;
  text: string;
}

/** Pods of one node: a watch (list + watch with `spec.nodeName=<node>`) and status patches. */
export class NodePodsClient {
  private readonly https: typeof Https;

  constructor(
    readonly endpoint: KubeEndpoint,
    readonly nodeName: string,
  ) {
    // node:http(s) through require: an ES import of it loads the bundled undici (shared/node-builtins.ts).
    this.https = require(endpoint.server.startsWith('http://') ? 'node:http' : 'node:https') as typeof Https;
  }

  /** A watch of this node's pods (not started). */
  watch(): NodePodWatch {
    return new NodePodWatch(this);
  }

  /**
   * JSON-merge-patches `metadata.annotations` of a pod through its status subresource, with the
   * pod's uid as a precondition (a pod re-created under the name is not touched: 409). A null
   * value removes the annotation. Fails with AMBIT_ERR_KUBE_API and `details.status`.
   */
  async patchAnnotations(pod: { namespace: string; name: string; uid: string }, annotations: Record<string, string | null>): Promise<void> {
    const path = `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods/${encodeURIComponent(pod.name)}/status`;
    const a = await this.call('PATCH', path, `patching pods/status of ${pod.namespace}/${pod.name}`, { metadata: { uid: pod.uid, annotations } }, 'application/merge-patch+json');
    if (a.status < 200 || a.status >= 300) throw apiError(`patching pods/status of ${pod.namespace}/${pod.name}`, a);
  }

  /** The node's pods and the list's resourceVersion. */
  async list(): Promise<{ items: ApiPod[]; resourceVersion: string }> {
    const what = `listing the pods of node ${this.nodeName}`;
    const a = await this.call('GET', `/api/v1/pods?fieldSelector=${encodeURIComponent(this.fieldSelector())}`, what);
    if (a.status !== 200) throw apiError(what, a);
    const list = a.body as { items?: ApiPod[]; metadata?: { resourceVersion?: string } } | undefined;
    return { items: Array.isArray(list?.items) ? list.items : [], resourceVersion: list?.metadata?.resourceVersion ?? '' };
  }

  /**
   * Opens a watch from `resourceVersion`; `onEvent` gets each event, `onEnd` once when the stream
   * ends (undefined: the server closed it) or fails. Returns a function that aborts it.
   */
  openWatch(resourceVersion: string, onEvent: (e: WatchEvent) => void, onEnd: (err?: unknown) => void): () => void {
    // client-go's reflector asks for a random 5-10 min server timeout; so does this.
    const query = `fieldSelector=${encodeURIComponent(this.fieldSelector())}&watch=true&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(resourceVersion)}&timeoutSeconds=${300 + Math.floor(Math.random() * 300)}`;
    let ended = false;
    const end = (err?: unknown): void => {
      if (ended) return;
      ended = true;
      onEnd(err);
    };
    const req = this.https.request(this.url(`/api/v1/pods?${query}`), { ...this.options('GET'), timeout: 0 }, (m: IncomingMessage) => {
      if (m.statusCode !== 200) {
        readAnswer(m).then((a) => end(apiError(`watching the pods of node ${this.nodeName}`, a)), end);
        return;
      }
      readJsonLines(m, (v) => onEvent(v as WatchEvent), { active: () => !ended, maxLineBytes: MAX_BODY_BYTES });
      m.on('end', () => end());
      m.on('error', (e) => end(e));
    });
    req.on('error', (e) => end(e));
    req.end();
    return () => {
      ended = true;
      req.destroy();
    };
  }

  private fieldSelector(): string {
    return `spec.nodeName=${this.nodeName}`;
  }

  private url(path: string): URL {
    return new URL(this.endpoint.server.replace(/\/+$/, '') + path);
  }

  private options(method: string, extra: Record<string, string> = {}): Https.RequestOptions {
    const e = this.endpoint;
    const token = e.token?.();
    return {
      method,
      headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra },
      agent: false,
      ...(e.caPem !== undefined ? { ca: e.caPem } : {}),
      ...(e.certPem !== undefined && e.keyPem !== undefined ? { cert: e.certPem, key: e.keyPem } : {}),
      ...(e.insecure ? { rejectUnauthorized: false } : {}),
    };
  }

  private call(method: string, path: string, what: string, body?: unknown, contentType = 'application/json'): Promise<Answer> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const extra: Record<string, string> = payload ? { 'content-type': contentType, 'content-length': String(payload.length) } : {};
    return new Promise<Answer>((resolvePromise, reject) => {
      const req = this.https.request(this.url(path), { ...this.options(method, extra), timeout: REQUEST_TIMEOUT_MS }, (m) => readAnswer(m).then(resolvePromise, reject));
      req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(payload);
    }).catch((e: unknown) => {
      if (e instanceof AmbitError) throw e;
      throw new AmbitError('AMBIT_ERR_KUBE_API', `${what} failed: ${this.endpoint.server}: ${errorMessage(e)}`, { cause: e, details: { status: 0 } });
    });
  }
}

async function readAnswer(m: IncomingMessage): Promise<Answer> {
  const text = await readAnswerText(m, MAX_BODY_BYTES);
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: m.statusCode ?? 0, body, text };
}

/** A failed API call as AMBIT_ERR_KUBE_API with the HTTP status and the server's message. */
function apiError(what: string, a: Answer): AmbitError {
  const m = (a.body as { message?: unknown } | undefined)?.message;
  return new AmbitError('AMBIT_ERR_KUBE_API', `${what} failed: HTTP ${a.status}${typeof m === 'string' ? `: ${m}` : a.text ? `: ${a.text.slice(0, 200)}` : ''}`, { details: { status: a.status } });
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: ApiPod & { code?: number };
}

export interface NodePodWatchHandlers {
  /** A pod was added, changed or removed (after the cache changed). */
  changed: () => void;
  /** The list or watch failed; the watch is stopped until start() again. */
  error: (err: unknown) => void;
}

/**
 * A list + watch of one node's pods, as client-go's reflector runs it: the cache is kept while
 * it reconnects from the last resourceVersion; a 410 Gone relists. The owner restarts it after an
 * error (with its own backoff).
 */
export class NodePodWatch {
  private readonly cache = new Map<string, ApiPod>();
  private rv = '';
  private abort: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private handlers: NodePodWatchHandlers = { changed: () => undefined, error: () => undefined };

  constructor(private readonly client: NodePodsClient) {}

  on(handlers: NodePodWatchHandlers): void {
    this.handlers = handlers;
  }

  /** Lists (once, or again after 410 Gone) and watches; resolves after the list, rejects when it failed. */
  async start(): Promise<void> {
    this.stopped = false;
    this.abort?.();
    this.abort = undefined;
    if (this.rv === '') await this.relist();
    this.watch();
  }

  list(): ApiPod[] {
    return [...this.cache.values()];
  }

  stop(): void {
    this.stopped = true;
    this.abort?.();
    this.abort = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async relist(): Promise<void> {
    const list = await this.client.list();
    if (this.stopped) return;
    this.cache.clear();
    for (const p of list.items) {
      const key = keyOf(p);
      if (key) this.cache.set(key, p);
    }
    this.rv = list.resourceVersion;
    this.handlers.changed();
  }

  private watch(): void {
    if (this.stopped) return;
    let gone = false;
    let sawEvent = false;
    this.abort = this.client.openWatch(
      this.rv,
      (ev) => {
        if (this.stopped) return;
        sawEvent = true;
        if (ev.type === 'ERROR') {
          if (ev.object.code === 410) gone = true;
          return;
        }
        const rv = ev.object.metadata?.resourceVersion;
        if (rv) this.rv = rv;
        if (ev.type === 'BOOKMARK') return;
        const key = keyOf(ev.object);
        if (!key) return;
        if (ev.type === 'DELETED') this.cache.delete(key);
        else this.cache.set(key, ev.object);
        this.handlers.changed();
      },
      (err) => {
        this.abort = undefined;
        if (this.stopped) return;
        const status = err instanceof AmbitError ? err.details?.['status'] : undefined;
        if (gone || status === 410) {
          this.rv = '';
          this.start().catch((e: unknown) => this.handlers.error(e));
        } else if (err === undefined) {
          // The server's timeout: resume, at once when the stream carried something, else after a second.
          if (sawEvent) this.watch();
          else this.timer = setTimeout(() => ((this.timer = undefined), this.watch()), 1000);
        } else this.handlers.error(err);
      },
    );
  }
}

function keyOf(p: ApiPod): string | undefined {
  const m = p.metadata;
  return m?.namespace && m.name ? `${m.namespace}/${m.name}` : undefined;
}
