/**
 * The client local mode's own cluster components (controllers, node runtimes, kube-proxy rules,
 * supervisors) use to talk to local mode's API server: plain JSON over HTTPS with the server's CA
 * and one bearer token each (read anew per request, so a rotated token file is picked up), and a
 * list + watch informer as client-go's reflector runs it (resume from the last resourceVersion,
 * bookmarks, relist on 410 Gone, reconnect with capped backoff, the cache kept meanwhile).
 *
 * Invariants: an Informer delivers events in the order the server sent them, one at a time; after
 * stop() no callback fires and no request or timer is left.
 */
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import { AmbitError, errorMessage, isAmbitError } from '../shared/errors.js';
import { readAnswerText, readJsonLines } from '../shared/json-http.js';
import type { Logger } from '../shared/log.js';
import type { KubeObject } from '../controller/objects.js';

export interface KubeClientOptions {
  /** `https://host:port`. */
  server: string;
  caPem: string;
  /** The bearer token; called for every request. */
  token: () => string;
  /** Per-request deadline (watches excepted); default 30 s. */
  timeoutMs?: number;
}

export interface KubeRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  /** Default application/json. */
  contentType?: string;
}

/** HTTP status and Status reason of a failed request. */
export function kubeFailure(e: unknown): { status: number; reason: string } | undefined {
  if (!isAmbitError(e, 'AMBIT_ERR_APISERVER_REQUEST')) return undefined;
  const status = e.details?.['status'];
  return typeof status === 'number' ? { status, reason: String(e.details?.['reason'] ?? '') } : undefined;
}

export const isNotFound = (e: unknown): boolean => kubeFailure(e)?.status === 404;
export const isConflict = (e: unknown): boolean => kubeFailure(e)?.status === 409 && kubeFailure(e)?.reason !== 'AlreadyExists';
export const isAlreadyExists = (e: unknown): boolean => kubeFailure(e)?.reason === 'AlreadyExists';

const MAX_BODY_BYTES = 64 * 1024 * 1024;

export class KubeClient {
  constructor(private readonly opts: KubeClientOptions) {}

  get server(): string {
    return this.opts.server;
  }

  private url(path: string, query?: Record<string, string | undefined>): URL {
    const url = new URL(this.opts.server.replace(/\/+$/, '') + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    return url;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { accept: 'application/json', authorization: `Bearer ${this.opts.token()}`, ...extra };
  }

  /** One request; the parsed body of a 2xx answer, else AMBIT_ERR_APISERVER_REQUEST with status and reason. */
  async request<T = unknown>(req: KubeRequest): Promise<T> {
    const url = this.url(req.path, req.query);
    const payload = req.body === undefined ? undefined : Buffer.from(typeof req.body === 'string' ? req.body : JSON.stringify(req.body));
    const headers = this.headers(payload ? { 'content-type': req.contentType ?? 'application/json', 'content-length': String(payload.length) } : {});
    const what = `${req.method} ${url.pathname}`;
    const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const r = request(url, { method: req.method, headers, ca: this.opts.caPem, timeout: this.opts.timeoutMs ?? 30_000, agent: false }, (m: IncomingMessage) => {
        readAnswerText(m, MAX_BODY_BYTES).then((text) => resolve({ status: m.statusCode ?? 0, text }), reject);
      });
      r.on('timeout', () => r.destroy(new Error('no answer in time')));
      r.on('error', reject);
      r.end(payload);
    }).catch((e: unknown) => {
      throw new AmbitError('AMBIT_ERR_APISERVER_REQUEST', `${what} to ${this.opts.server} failed: ${errorMessage(e)}; is the local API server running?`, { cause: e, details: { status: 0, reason: 'Unreachable' } });
    });
    let body: unknown;
    try {
      body = res.text === '' ? undefined : JSON.parse(res.text);
    } catch {
      body = res.text;
    }
    if (res.status >= 200 && res.status < 300) return body as T;
    const st = typeof body === 'object' && body !== null ? (body as { reason?: unknown; message?: unknown }) : {};
    const reason = typeof st.reason === 'string' ? st.reason : '';
    const message = typeof st.message === 'string' ? st.message : res.text.slice(0, 300);
    throw new AmbitError('AMBIT_ERR_APISERVER_REQUEST', `${what}: ${res.status}${reason ? ` ${reason}` : ''}: ${message}`, { details: { status: res.status, reason, body } });
  }

  get<T = KubeObject>(path: string): Promise<T> {
    return this.request<T>({ method: 'GET', path });
  }

  /** GET answering undefined for 404. */
  async getOptional<T = KubeObject>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  create<T = KubeObject>(collection: string, body: unknown): Promise<T> {
    return this.request<T>({ method: 'POST', path: collection, body });
  }

  /** JSON merge patch of an object (or its `/status`). */
  mergePatch<T = KubeObject>(path: string, patch: unknown): Promise<T> {
    return this.request<T>({ method: 'PATCH', path, body: patch, contentType: 'application/merge-patch+json' });
  }

  /** DELETE; 404 counts as done. */
  async delete(path: string, body?: Record<string, unknown>): Promise<void> {
    try {
      await this.request({ method: 'DELETE', path, ...(body ? { body } : {}) });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /**
   * Opens a watch stream; `onLine` gets each event, `onEnd` once when the stream ends or fails
   * (with the error). Returns a function that aborts it.
   */
  watch(path: string, query: Record<string, string | undefined>, onLine: (event: WatchEvent) => void, onEnd: (err?: unknown) => void): () => void {
    const url = this.url(path, { ...query, watch: 'true' });
    let ended = false;
    const end = (err?: unknown): void => {
      if (ended) return;
      ended = true;
      onEnd(err);
    };
    const r = request(url, { method: 'GET', headers: this.headers(), ca: this.opts.caPem, agent: false }, (m) => {
      if ((m.statusCode ?? 0) !== 200) {
        const chunks: Buffer[] = [];
        m.on('data', (c: Buffer) => chunks.push(c));
        m.on('end', () => {
          let reason = '';
          try {
            reason = String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { reason?: unknown }).reason ?? '');
          } catch {
            // not a Status
          }
          end(new AmbitError('AMBIT_ERR_APISERVER_REQUEST', `watch ${url.pathname}: ${m.statusCode} ${reason}`, { details: { status: m.statusCode, reason } }));
        });
        return;
      }
      readJsonLines(m, (v) => onLine(v as WatchEvent), { active: () => !ended, maxLineBytes: MAX_BODY_BYTES });
      m.on('end', () => end());
      m.on('error', (e) => end(e));
    });
    r.on('error', (e) => end(e));
    r.end();
    return () => {
      ended = true;
      r.destroy();
    };
  }
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubeObject & { code?: number };
}

export type InformerEventType = 'add' | 'update' | 'delete';

export interface InformerOptions {
  client: KubeClient;
  /** Collection path: `/api/v1/pods`, `/apis/apps/v1/deployments`. */
  path: string;
  /** Written on list items, which come without them. */
  apiVersion: string;
  kind: string;
  labelSelector?: string;
  fieldSelector?: string;
  log: Logger;
  /** Called for every change, in order, after the cache changed. */
  onEvent: (type: InformerEventType, obj: KubeObject, old?: KubeObject) => void;
  /** Restart backoff (default 200 ms doubling to 5 s). */
  backoff?: { initialMs: number; maxMs: number };
}

/** Key of an object in an informer's cache. */
export function cacheKey(o: Pick<KubeObject, 'metadata'>): string {
  return `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

export class Informer {
  private readonly cache = new Map<string, KubeObject>();
  private rv = '';
  private abort: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private delayMs: number;
  private syncedResolve: (() => void) | undefined;
  private readonly synced: Promise<void>;
  private hasSynced = false;

  constructor(private readonly opts: InformerOptions) {
    this.delayMs = opts.backoff?.initialMs ?? 200;
    this.synced = new Promise((resolve) => (this.syncedResolve = resolve));
  }

  /** Starts listing and watching; resolves once the first list was delivered. */
  start(): Promise<void> {
    void this.relist();
    return this.synced;
  }

  get ready(): boolean {
    return this.hasSynced;
  }

  /** The cached objects. */
  list(): KubeObject[] {
    return [...this.cache.values()];
  }

  get(namespace: string | undefined, name: string): KubeObject | undefined {
    return this.cache.get(`${namespace ?? ''}/${name}`);
  }

  stop(): void {
    this.stopped = true;
    this.abort?.();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private selectors(): Record<string, string | undefined> {
    return { labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector };
  }

  private async relist(): Promise<void> {
    if (this.stopped) return;
    let list: { metadata?: { resourceVersion?: string }; items?: KubeObject[] };
    try {
      list = await this.opts.client.request({ method: 'GET', path: this.opts.path, query: this.selectors() });
    } catch (e) {
      this.retry('list', e, () => void this.relist());
      return;
    }
    if (this.stopped) return;
    const seen = new Set<string>();
    for (const item of list.items ?? []) {
      const obj: KubeObject = { ...item, apiVersion: this.opts.apiVersion, kind: this.opts.kind };
      const key = cacheKey(obj);
      seen.add(key);
      this.put(obj);
    }
    for (const [key, old] of [...this.cache]) {
      if (seen.has(key)) continue;
      this.cache.delete(key);
      this.emit('delete', old);
    }
    this.rv = list.metadata?.resourceVersion ?? '';
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.syncedResolve?.();
    }
    this.watch();
  }

  private put(obj: KubeObject): void {
    const key = cacheKey(obj);
    const old = this.cache.get(key);
    this.cache.set(key, obj);
    if (!old) this.emit('add', obj);
    else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.emit('update', obj, old);
  }

  private emit(type: InformerEventType, obj: KubeObject, old?: KubeObject): void {
    try {
      this.opts.onEvent(type, obj, old);
    } catch (e) {
      this.opts.log.error({ err: e, path: this.opts.path }, 'informer callback failed');
    }
  }

  private watch(): void {
    if (this.stopped) return;
    let relist = false;
    let sawEvent = false;
    this.abort = this.opts.client.watch(
      // client-go's reflector asks for a random 5-10 min server timeout; so do we.
      this.opts.path,
      { ...this.selectors(), resourceVersion: this.rv, allowWatchBookmarks: 'true', timeoutSeconds: String(240 + Math.floor(Math.random() * 120)) },
      (ev) => {
        if (this.stopped) return;
        if (ev.type === 'ERROR') {
          if (ev.object.code === 410) relist = true;
          return;
        }
        sawEvent = true;
        const rv = ev.object.metadata?.resourceVersion;
        if (ev.type === 'BOOKMARK') {
          if (rv) this.rv = rv;
          return;
        }
        const obj: KubeObject = { ...ev.object, apiVersion: ev.object.apiVersion ?? this.opts.apiVersion, kind: ev.object.kind ?? this.opts.kind };
        if (rv) this.rv = rv;
        if (ev.type === 'DELETED') {
          const key = cacheKey(obj);
          if (this.cache.delete(key)) this.emit('delete', obj);
        } else this.put(obj);
      },
      (err) => {
        this.abort = undefined;
        if (this.stopped) return;
        if (relist || (err !== undefined && kubeFailure(err)?.status === 410)) {
          this.rv = '';
          this.delayMs = this.opts.backoff?.initialMs ?? 200;
          void this.relist();
          return;
        }
        if (err === undefined) {
          // The server ended the stream (its timeout, or it is stopping): watch again, at once
          // when it delivered something, after the first backoff step when it did not.
          this.delayMs = this.opts.backoff?.initialMs ?? 200;
          if (sawEvent) this.watch();
          else this.timer = setTimeout(() => ((this.timer = undefined), this.watch()), this.delayMs);
          return;
        }
        if (sawEvent) this.delayMs = this.opts.backoff?.initialMs ?? 200;
        this.retry('watch', err, () => this.watch());
      },
    );
  }

  private retry(what: string, err: unknown, again: () => void): void {
    if (this.stopped) return;
    if (err !== undefined) this.opts.log.debug({ path: this.opts.path, err: err }, `${what} failed; retrying`);
    const wait = this.delayMs;
    this.delayMs = Math.min(this.opts.backoff?.maxMs ?? 5000, this.delayMs * 2);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      again();
    }, wait);
  }
}
