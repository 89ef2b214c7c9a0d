/**
 * The request shell every Ambit Kubernetes client shares (the controller's, the node agent's and
 * local mode's components'): plain JSON requests and watch streams over node:http(s), the
 * credentials each client brings (a bearer token read per request, a client certificate, a CA, or
 * a hook that sets them), answers read with a size bound, and every failure as one AmbitError
 * naming the verb, path, HTTP status and the server's Status reason and message. Objects stay as
 * the API server wrote them. Callers branch on `kubeFailure(e)`, never on text.
 *
 * node:http(s) come through require (shared/node-builtins.ts): the agent loads this module, and an
 * ES import of node:http would load the bundled undici into it.
 */
import type { IncomingMessage, RequestOptions } from 'node:http';
import { nodeHttp, nodeHttps } from './node-builtins.js';
import { AmbitError, errorMessage, isAmbitError } from './errors.js';
import { readAnswerText, readJsonLines } from './json-http.js';

/** An API server and how to authenticate to it. */
export interface KubeEndpoint {
  /** `https://host:port` (or `http://` for a plain test server). */
  server: string;
  /** PEM of the CA the server's certificate chains to; undefined: the system roots. */
  caPem?: string;
  /** Skip checking the server's certificate (kubeconfig `insecure-skip-tls-verify`). */
  insecure?: boolean;
  /** The bearer token, read for every request (a rotated token file is picked up); undefined: none. */
  token?: () => string;
  certPem?: string;
  keyPem?: string;
}

/** The error code a client's failures carry (the controller and agent: KUBE_API; local mode: APISERVER_REQUEST). */
export type KubeErrorCode = 'AMBIT_ERR_KUBE_API' | 'AMBIT_ERR_APISERVER_REQUEST';

export interface KubeApiOptions {
  endpoint: KubeEndpoint;
  /** Sets credentials and TLS options on each request instead of `endpoint`'s (client-node's kubeconfig). */
  authorize?: (opts: RequestOptions & { headers: Record<string, string> }) => Promise<void>;
  errorCode: KubeErrorCode;
  /** Added to the message when the server cannot be reached ("is the API server reachable?"). */
  unreachableHint?: string;
  /** Per-request deadline (watches excepted); default 30 s. */
  timeoutMs?: number;
  /** Largest answer body read; default 64 MiB. */
  maxBodyBytes?: number;
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

/** One event of a watch stream. */
export interface KubeWatchEvent<T = unknown> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T & { code?: number };
}

/** HTTP status and Status reason of a failed request (status 0: the server was not reached). */
export interface KubeFailure {
  status: number;
  reason: string;
}

/** The status and reason of a failed Kubernetes request, or undefined for any other error. */
export function kubeFailure(e: unknown): KubeFailure | undefined {
  if (!isAmbitError(e, 'AMBIT_ERR_KUBE_API') && !isAmbitError(e, 'AMBIT_ERR_APISERVER_REQUEST')) return undefined;
  const status = e.details?.['status'];
  const reason = e.details?.['reason'];
  return typeof status === 'number' ? { status, reason: typeof reason === 'string' ? reason : '' } : undefined;
}

export const isNotFound = (e: unknown): boolean => kubeFailure(e)?.status === 404;
export const isConflict = (e: unknown): boolean => kubeFailure(e)?.status === 409 && kubeFailure(e)?.reason !== 'AlreadyExists';
export const isAlreadyExists = (e: unknown): boolean => kubeFailure(e)?.status === 409 && kubeFailure(e)?.reason === 'AlreadyExists';

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024;

/** Plain JSON requests to one API server; `O` is the type answers default to. */
export class KubeApi<O = unknown> {
  constructor(protected readonly api: KubeApiOptions) {}

  /** The API server's URL (for logs and messages). */
  get server(): string {
    return this.api.endpoint.server;
  }

  /** Sends one request; resolves with the parsed body of a 2xx answer, else throws the client's error code. */
  async request<T = unknown>(req: KubeRequest): Promise<T> {
    const url = this.url(req.path, req.query);
    const what = `${req.method} ${url.pathname}`;
    const payload = req.body === undefined ? undefined : Buffer.from(typeof req.body === 'string' ? req.body : JSON.stringify(req.body));
    const extra: Record<string, string> = payload ? { 'content-type': req.contentType ?? 'application/json', 'content-length': String(payload.length) } : {};
    const timeoutMs = req.timeoutMs ?? this.api.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const opts = await this.options(req.method, extra);
    const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const r = this.transport(url).request(url, { ...opts, timeout: timeoutMs }, (m: IncomingMessage) => {
        readAnswerText(m, this.api.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES).then((text) => resolve({ status: m.statusCode ?? 0, text }), reject);
      });
      r.on('timeout', () => r.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      r.on('error', reject);
      r.end(payload);
    }).catch((e: unknown) => {
      throw this.unreachable(what, e);
    });
    let body: unknown;
    try {
      body = res.text === '' ? undefined : JSON.parse(res.text);
    } catch {
      body = undefined;
    }
    if (res.status >= 200 && res.status < 300) return body as T;
    throw this.failed(what, res.status, body, res.text);
  }

  get<T = O>(path: string): Promise<T> {
    return this.request<T>({ method: 'GET', path });
  }

  /** GET that answers undefined for 404. */
  async getOptional<T = O>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  create<T = O>(collectionPath: string, body: unknown): Promise<T> {
    return this.request<T>({ method: 'POST', path: collectionPath, body });
  }

  /** PUT (optimistic: the body's metadata.resourceVersion must be current, else 409 Conflict). */
  replace<T = O>(path: string, body: unknown): Promise<T> {
    return this.request<T>({ method: 'PUT', path, body });
  }

  /** JSON merge patch of an object (or its `/status`). */
  mergePatch<T = O>(path: string, patch: unknown): Promise<T> {
    return this.request<T>({ method: 'PATCH', path, body: patch, contentType: 'application/merge-patch+json' });
  }

  /**
   * Opens a watch stream of a collection (`watch=true` is added to `query`); `onEvent` gets each
   * event, `onEnd` once when the stream ends (undefined: the server closed it) or fails. Returns a
   * function that aborts it; nothing fires after that.
   */
  watch<T = unknown>(path: string, query: Record<string, string | undefined>, onEvent: (e: KubeWatchEvent<T>) => void, onEnd: (err?: unknown) => void): () => void {
    const url = this.url(path, { ...query, watch: 'true' });
    const what = `GET ${url.pathname} (watch)`;
    let ended = false;
    let req: ReturnType<typeof nodeHttp.request> | undefined;
    const end = (err?: unknown): void => {
      if (ended) return;
      ended = true;
      onEnd(err);
    };
    this.options('GET').then(
      (opts) => {
        if (ended) return;
        req = this.transport(url).request(url, { ...opts, timeout: 0 }, (m: IncomingMessage) => {
          if (m.statusCode !== 200) {
            readAnswerText(m, this.api.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES).then((text) => {
              let body: unknown;
              try {
                body = JSON.parse(text);
              } catch {
                body = undefined;
              }
              end(this.failed(what, m.statusCode ?? 0, body, text));
            }, end);
            return;
          }
          readJsonLines(m, (v) => onEvent(v as KubeWatchEvent<T>), { active: () => !ended, maxLineBytes: this.api.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES });
          m.on('end', () => end());
          m.on('error', (e) => end(e));
        });
        req.on('error', (e) => end(this.unreachable(what, e)));
        req.end();
      },
      (e: unknown) => end(e),
    );
    return () => {
      ended = true;
      req?.destroy();
    };
  }

  private url(path: string, query?: Record<string, string | undefined>): URL {
    const url = new URL(this.server.replace(/\/+$/, '') + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    return url;
  }

  private transport(url: URL): typeof nodeHttp {
    return url.protocol === 'http:' ? nodeHttp : (nodeHttps as unknown as typeof nodeHttp);
  }

  private async options(method: string, extra: Record<string, string> = {}): Promise<RequestOptions & { headers: Record<string, string> }> {
    const opts: RequestOptions & { headers: Record<string, string> } & Record<string, unknown> = { method, headers: { accept: 'application/json', ...extra } };
    // With a hook (the controller), Node's global keep-alive agent as before; else one connection per request.
    if (this.api.authorize) {
      try {
        await this.api.authorize(opts);
      } catch (e) {
        throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', `cannot apply credentials for ${this.server}: ${errorMessage(e)}`, { cause: e });
      }
      return opts;
    }
    opts.agent = false;
    const e = this.api.endpoint;
    const token = e.token?.();
    if (token) opts.headers['authorization'] = `Bearer ${token}`;
    if (e.caPem !== undefined) opts['ca'] = e.caPem;
    if (e.certPem !== undefined && e.keyPem !== undefined) Object.assign(opts, { cert: e.certPem, key: e.keyPem });
    if (e.insecure) opts['rejectUnauthorized'] = false;
    return opts;
  }

  private unreachable(what: string, e: unknown): AmbitError {
    if (e instanceof AmbitError) return e;
    const hint = this.api.unreachableHint ? `; ${this.api.unreachableHint}` : '';
    return new AmbitError(this.api.errorCode, `${what} to ${this.server} failed: ${errorMessage(e)}${hint}`, { cause: e, details: { status: 0, reason: 'Unreachable' } });
  }

  private failed(what: string, status: number, body: unknown, text: string): AmbitError {
    const st = typeof body === 'object' && body !== null ? (body as { reason?: unknown; message?: unknown }) : {};
    const reason = typeof st.reason === 'string' ? st.reason : '';
    const message = typeof st.message === 'string' ? st.message : text.slice(0, 300);
    return new AmbitError(this.api.errorCode, `${what}: ${status}${reason ? ` ${reason}` : ''}: ${message}`, { details: { status, reason, body } });
  }
}
