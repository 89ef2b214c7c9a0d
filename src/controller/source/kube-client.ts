/**
 * The controller's Kubernetes client: a kubeconfig (a file, in-cluster service-account credentials,
 * or text) loaded with @kubernetes/client-node, plain JSON requests over the client's own TLS and
 * credentials (objects stay exactly as the API server wrote them: no model classes, no Date
 * conversions), and client-node's Watch with bookmarks and a server-side timeout for informers.
 *
 * Every failed request throws AMBIT_ERR_KUBE_API naming the verb, path, HTTP status and the
 * server's Status reason and message; callers branch on `kubeStatus(e)`, never on text.
 */
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import * as k8s from '@kubernetes/client-node';
import { AmbitError, errorMessage, isAmbitError } from '../../shared/errors.js';
import { readAnswerText } from '../../shared/json-http.js';

/** Where the client's cluster and credentials come from. */
export type KubeConfigSource =
  /** A kubeconfig file (its current context). */
  | { file: string }
  /** A kubeconfig's text. */
  | { text: string }
  /** The pod's service account (KUBERNETES_SERVICE_HOST/PORT, the mounted token and CA). */
  | { inCluster: true };

/** Loads a kubeconfig; throws AMBIT_ERR_KUBE_CONFIG naming what is missing. */
export function loadKubeConfig(source: KubeConfigSource): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  try {
    if ('file' in source) kc.loadFromFile(source.file);
    else if ('text' in source) kc.loadFromString(source.text);
    else kc.loadFromCluster();
  } catch (e) {
    const what = 'file' in source ? `kubeconfig ${source.file}` : 'text' in source ? 'kubeconfig text' : 'in-cluster credentials';
    throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', `cannot load ${what}: ${errorMessage(e)}`, { cause: e });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', 'kubeconfig has no current cluster (current-context names none, or names a missing one)');
  return kc;
}

export interface KubeRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Absolute API path (`/api/v1/...`, `/apis/<group>/<version>/...`). */
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  /** Default application/json; PATCH needs a patch type (merge-patch+json, apply-patch+yaml, ...). */
  contentType?: string;
  timeoutMs?: number;
}

/** HTTP status and Status reason of a failed request (from the error's details). */
export interface KubeFailure {
  status: number;
  reason: string;
}

/** The HTTP status and reason of an AMBIT_ERR_KUBE_API error, or undefined for anything else. */
export function kubeStatus(e: unknown): KubeFailure | undefined {
  if (!isAmbitError(e, 'AMBIT_ERR_KUBE_API')) return undefined;
  const status = e.details?.['status'];
  const reason = e.details?.['reason'];
  return typeof status === 'number' ? { status, reason: typeof reason === 'string' ? reason : '' } : undefined;
}

export const isNotFound = (e: unknown): boolean => kubeStatus(e)?.status === 404;
export const isConflict = (e: unknown): boolean => kubeStatus(e)?.status === 409 && kubeStatus(e)?.reason !== 'AlreadyExists';
export const isAlreadyExists = (e: unknown): boolean => kubeStatus(e)?.status === 409 && kubeStatus(e)?.reason === 'AlreadyExists';

const DEFAULT_TIMEOUT_MS = 30_000;
/** Largest response body read (a list of every pod of a big cluster fits). */
const MAX_BODY_BYTES = 256 * 1024 * 1024;

/** Plain JSON requests to one API server with the kubeconfig's TLS settings and credentials. */
export class KubeClient {
  constructor(readonly kubeConfig: k8s.KubeConfig) {}

  /** The API server's URL (for logs). */
  get server(): string {
    return this.kubeConfig.getCurrentCluster()?.server ?? '';
  }

  /** Sends one request; resolves with the parsed body of a 2xx answer, else throws AMBIT_ERR_KUBE_API. */
  async request<T = unknown>(req: KubeRequest): Promise<T> {
    const url = new URL(this.server.replace(/\/+$/, '') + req.path);
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const opts: RequestOptions & { headers: Record<string, string> } = { method: req.method, headers: { accept: 'application/json' } };
    try {
      await this.kubeConfig.applyToHTTPSOptions(opts as Parameters<k8s.KubeConfig['applyToHTTPSOptions']>[0]);
    } catch (e) {
      throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', `cannot apply credentials for ${this.server}: ${errorMessage(e)}`, { cause: e });
    }
    let payload: Buffer | undefined;
    if (req.body !== undefined) {
      payload = Buffer.from(typeof req.body === 'string' ? req.body : JSON.stringify(req.body));
      opts.headers['content-type'] = req.contentType ?? 'application/json';
      opts.headers['content-length'] = String(payload.length);
    }
    const what = `${req.method} ${url.pathname}`;
    const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
      const r = send(url, { ...opts, timeout: req.timeoutMs ?? DEFAULT_TIMEOUT_MS }, (m: IncomingMessage) => {
        readAnswerText(m, MAX_BODY_BYTES).then((text) => resolve({ status: m.statusCode ?? 0, text }), reject);
      });
      r.on('timeout', () => r.destroy(new Error(`no answer within ${req.timeoutMs ?? DEFAULT_TIMEOUT_MS}ms`)));
      r.on('error', reject);
      r.end(payload);
    }).catch((e: unknown) => {
      throw new AmbitError('AMBIT_ERR_KUBE_API', `${what} to ${this.server} failed: ${errorMessage(e)}; is the API server reachable?`, { cause: e, details: { status: 0, reason: 'Unreachable' } });
    });
    let body: unknown;
    try {
      body = res.text === '' ? undefined : JSON.parse(res.text);
    } catch {
      body = undefined;
    }
    if (res.status >= 200 && res.status < 300) return body as T;
    const st = typeof body === 'object' && body !== null ? (body as { reason?: unknown; message?: unknown }) : {};
    const reason = typeof st.reason === 'string' ? st.reason : '';
    const message = typeof st.message === 'string' ? st.message : res.text.slice(0, 300);
    throw new AmbitError('AMBIT_ERR_KUBE_API', `${what}: ${res.status}${reason ? ` ${reason}` : ''}: ${message}`, { details: { status: res.status, reason } });
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.request<T>({ method: 'GET', path });
  }

  /** GET that answers undefined for 404. */
  async getOptional<T = unknown>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  create<T = unknown>(collectionPath: string, body: unknown): Promise<T> {
    return this.request<T>({ method: 'POST', path: collectionPath, body });
  }

  /** PUT (optimistic: the body's metadata.resourceVersion must be current, else 409 Conflict). */
  replace<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request<T>({ method: 'PUT', path, body });
  }

  /** Server-side apply of `body` as field manager `manager` (creates the object when missing). */
  apply<T = unknown>(path: string, body: unknown, manager: string, force = true): Promise<T> {
    return this.request<T>({
      method: 'PATCH',
      path,
      query: { fieldManager: manager, ...(force ? { force: 'true' } : {}) },
      body,
      contentType: 'application/apply-patch+yaml',
    });
  }

  delete<T = unknown>(path: string, body?: unknown): Promise<T> {
    return this.request<T>({ method: 'DELETE', path, ...(body !== undefined ? { body } : {}) });
  }

  /** A client-node Watch for informers: bookmarks on, streams the server ends after a random 5-10 min. */
  watch(): k8s.Watch {
    return new BookmarkWatch(this.kubeConfig);
  }
}

/**
 * client-node's Watch asking for bookmarks (so a quiet resource's watch keeps an up-to-date
 * resourceVersion and its connection shows signs of life) and a server-side timeout of 5 to 10
 * minutes, as client-go's reflector does, so streams are renewed before proxies cut them.
 */
class BookmarkWatch extends k8s.Watch {
  constructor(config: k8s.KubeConfig) {
    super(config);
    // client-node aborts a watch that saw no byte for requestTimeoutMs (30 s by default), which a
    // server sending bookmarks once a minute would trip; a dead connection is still noticed.
    (this as unknown as { requestTimeoutMs: number }).requestTimeoutMs = 90_000;
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const timeoutSeconds = 300 + Math.floor(Math.random() * 300);
    return super.watch(path, { ...queryParams, allowWatchBookmarks: true, timeoutSeconds }, callback, done);
  }
}
