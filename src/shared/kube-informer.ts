/**
 * A list + watch cache of one collection, as client-go's reflector runs it: list, then watch from
 * the list's resourceVersion with bookmarks and a random 4-6 min server timeout; resume from the
 * last resourceVersion when a stream ends, relist on 410 Gone, retry failures with capped backoff,
 * the cache kept meanwhile. Used by local mode's components and the node agent's pod watch.
 *
 * Invariants: events are delivered in the order the server sent them, one at a time, after the
 * cache changed; after stop() no callback fires and no request or timer is left.
 */
import type { KubeApi } from './kube-api.js';
import { kubeFailure } from './kube-api.js';
import type { Logger } from './log.js';

/** What the informer reads of an object. */
export interface InformerObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export type InformerEventType = 'add' | 'update' | 'delete';

export interface InformerOptions<T extends InformerObject> {
  client: KubeApi<unknown>;
  /** Collection path: `/api/v1/pods`, `/apis/apps/v1/deployments`. */
  path: string;
  /** Written on list items, which come without them (none: left as they are). */
  apiVersion?: string;
  kind?: string;
  labelSelector?: string;
  fieldSelector?: string;
  log: Logger;
  /** Called for every change, in order, after the cache changed. */
  onEvent: (type: InformerEventType, obj: T, old?: T) => void;
  /** Called for each failed list or watch (then retried after the backoff); default: logged at debug. */
  onError?: (what: 'list' | 'watch', err: unknown, retryInMs: number) => void;
  /** Restart backoff (default 200 ms doubling to 5 s). */
  backoff?: { initialMs: number; maxMs: number };
}

/** Key of an object in an informer's cache (`namespace/name`, `/name` for cluster objects). */
export function cacheKey(o: InformerObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}

export class Informer<T extends InformerObject> {
  private readonly cache = new Map<string, T>();
  private rv = '';
  private abort: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private delayMs: number;
  private syncedResolve: (() => void) | undefined;
  private readonly synced: Promise<void>;
  private hasSynced = false;

  constructor(private readonly opts: InformerOptions<T>) {
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
  list(): T[] {
    return [...this.cache.values()];
  }

  get(namespace: string | undefined, name: string): T | undefined {
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
    let list: { metadata?: { resourceVersion?: string }; items?: T[] } | undefined;
    try {
      list = await this.opts.client.request({ method: 'GET', path: this.opts.path, query: this.selectors() });
    } catch (e) {
      this.retry('list', e, () => void this.relist());
      return;
    }
    if (this.stopped) return;
    const seen = new Set<string>();
    for (const item of Array.isArray(list?.items) ? list.items : []) {
      if (!item?.metadata?.name) continue;
      const obj: T = this.typed(item);
      const key = cacheKey(obj);
      seen.add(key);
      this.put(obj);
    }
    for (const [key, old] of [...this.cache]) {
      if (seen.has(key)) continue;
      this.cache.delete(key);
      this.emit('delete', old);
    }
    this.rv = list?.metadata?.resourceVersion ?? '';
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.syncedResolve?.();
    }
    this.watch();
  }

  private put(obj: T): void {
    const key = cacheKey(obj);
    const old = this.cache.get(key);
    this.cache.set(key, obj);
    if (!old) this.emit('add', obj);
    else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit('update', obj, old);
  }

  private emit(type: InformerEventType, obj: T, old?: T): void {
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
    this.abort = this.opts.client.watch<T>(
      // client-go's reflector asks for a random 5-10 min server timeout; so do we.
      this.opts.path,
      { ...this.selectors(), resourceVersion: this.rv, allowWatchBookmarks: 'true', timeoutSeconds: String(240 + Math.floor(Math.random() * 120)) },
      (ev) => {
        if (this.stopped) return;
        if (typeof ev !== 'object' || ev === null) return;
        if (ev.type === 'ERROR') {
          if (ev.object?.code === 410) relist = true;
          return;
        }
        sawEvent = true;
        const rv = ev.object.metadata?.resourceVersion;
        if (ev.type === 'BOOKMARK') {
          if (rv) this.rv = rv;
          return;
        }
        if (rv) this.rv = rv;
        if (!ev.object?.metadata?.name) return;
        const obj: T = this.typed(ev.object);
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

  /** The object with the informer's apiVersion and kind where it has none (list items). */
  private typed(o: T): T {
    const { apiVersion, kind } = this.opts;
    if ((apiVersion === undefined || o.apiVersion !== undefined) && (kind === undefined || o.kind !== undefined)) return o;
    return { ...o, apiVersion: o.apiVersion ?? apiVersion, kind: o.kind ?? kind };
  }

  private retry(what: 'list' | 'watch', err: unknown, again: () => void): void {
    if (this.stopped) return;
    const wait = this.delayMs;
    if (this.opts.onError) this.opts.onError(what, err, wait);
    else if (err !== undefined) this.opts.log.debug({ path: this.opts.path, err: err }, `${what} failed; retrying`);
    this.delayMs = Math.min(this.opts.backoff?.maxMs ?? 5000, this.delayMs * 2);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      again();
    }, wait);
  }
}
