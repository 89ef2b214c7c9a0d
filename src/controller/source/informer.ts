/**
 * One resource watched the way client-go's reflector does it, on client-node's informer
 * (ListWatch): list, then watch from the list's resourceVersion with bookmarks; a 410 Gone relists
 * (client-node does that itself, and reports objects missing from the new list as deleted); any
 * other error (API server unreachable, restarting, 5xx, a dropped stream) makes client-node's
 * informer stop, so this class restarts it with capped, jittered exponential backoff, resuming
 * from the last resourceVersion it saw. Objects stay in the cache while the server is away: a
 * restart never drops what was known.
 *
 * Invariants: after stop() no callback fires and no timer is left; `start()` resolves only once
 * the first list has been delivered (it keeps retrying until then, or until stop()).
 */
import { setImmediate as tick } from 'node:timers';
import * as k8s from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import type { Logger } from '../../shared/log.js';
import { Counter, Gauge } from '../../shared/metrics.js';
import { registerOnce } from '../../shared/xds/metric-util.js';
import type { KubeObject } from '../objects.js';
import type { KubeClient } from './kube-client.js';

export type InformerEvent = 'add' | 'update' | 'delete';

export interface InformerMetrics {
  errors: Counter<'resource'>;
  lists: Counter<'resource'>;
  synced: Gauge<'resource'>;
}

export function createInformerMetrics(registry: Registry): InformerMetrics {
  return {
    errors: registerOnce(registry, 'ambit_kube_watch_errors_total', () => new Counter({
      name: 'ambit_kube_watch_errors_total',
      help: 'List or watch failures of the controller\'s Kubernetes informers (each followed by a restart with backoff), by resource.',
      labelNames: ['resource'] as const,
      registers: [registry],
    })),
    lists: registerOnce(registry, 'ambit_kube_lists_total', () => new Counter({
      name: 'ambit_kube_lists_total',
      help: 'Full lists made by the controller\'s Kubernetes informers (the first one, and relists after 410 Gone), by resource.',
      labelNames: ['resource'] as const,
      registers: [registry],
    })),
    synced: registerOnce(registry, 'ambit_kube_informer_synced', () => new Gauge({
      name: 'ambit_kube_informer_synced',
      help: '1 once an informer delivered its first list, by resource; 0 while it has not (or was stopped).',
      labelNames: ['resource'] as const,
      registers: [registry],
    })),
  };
}

export interface ResourceInformerOptions {
  client: KubeClient;
  /** Collection path, e.g. `/api/v1/pods` or `/apis/security.istio.io/v1/authorizationpolicies`. */
  path: string;
  /** Written on list items, which the API server sends without them. */
  apiVersion: string;
  kind: string;
  /** Bounded name for logs and metrics (`pods`, `authorizationpolicies.security.istio.io`). */
  resource: string;
  labelSelector?: string;
  fieldSelector?: string;
  log: Logger;
  metrics?: InformerMetrics;
  /** Restart backoff: first delay and cap (default 500 ms, 30 s); each delay is jittered to 50-100 %. */
  backoff?: { initialMs: number; maxMs: number };
  random?: () => number;
}

type Callback = (obj: KubeObject) => void;

export class ResourceInformer {
  private readonly log: Logger;
  private readonly lw: k8s.ListWatch<k8s.KubernetesObject>;
  private readonly callbacks: Record<InformerEvent, Callback[]> = { add: [], update: [], delete: [] };
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly random: () => number;
  private stopped = false;
  private started = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private restarting = false;
  private rerun = false;
  private failures = 0;
  private lastErrorAt = 0;
  private isSynced = false;
  private syncWaiters: Array<() => void> = [];

  constructor(private readonly opts: ResourceInformerOptions) {
    this.log = opts.log.child({ component: 'informer', resource: opts.resource });
    this.backoff = opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
    this.random = opts.random ?? Math.random;
    this.lw = new k8s.ListWatch(opts.path, opts.client.clientNodeWatch(), () => this.listOnce(), false, opts.labelSelector, opts.fieldSelector);
    this.lw.on('add', (o) => this.emit('add', o));
    this.lw.on('update', (o) => this.emit('update', o));
    this.lw.on('delete', (o) => this.emit('delete', o));
    this.lw.on('error', (err) => this.onError(err));
  }

  on(event: InformerEvent, cb: Callback): void {
    this.callbacks[event].push(cb);
  }

  /** True once the first list was delivered. */
  get synced(): boolean {
    return this.isSynced;
  }

  /** What the informer holds now (the API server's objects, as last seen). */
  objects(namespace?: string): KubeObject[] {
    return this.lw.list(namespace) as unknown as KubeObject[];
  }

  get(name: string, namespace?: string): KubeObject | undefined {
    return this.lw.get(name, namespace) as unknown as KubeObject | undefined;
  }

  /** Starts listing and watching (once); resolves once the first list is delivered (or stop() is called). */
  start(): Promise<void> {
    if (!this.started) {
      this.started = true;
      this.stopped = false;
      void this.run();
    }
    return this.whenSynced();
  }

  /** Resolves once the first list is delivered (at once if it was), or when stop() is called. */
  whenSynced(): Promise<void> {
    return new Promise<void>((resolve) => (this.isSynced || this.stopped ? resolve() : this.syncWaiters.push(resolve)));
  }

  /** Stops watching; the cache keeps its objects. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.opts.metrics?.synced.set({ resource: this.opts.resource }, 0);
    for (const w of this.syncWaiters.splice(0)) w();
    await this.lw.stop();
  }

  private async run(): Promise<void> {
    if (this.stopped) return;
    if (this.restarting) {
      this.rerun = true;
      return;
    }
    this.restarting = true;
    try {
      await this.lw.start();
    } catch (e) {
      this.onError(e);
    } finally {
      this.restarting = false;
      if (this.rerun) {
        this.rerun = false;
        void this.run();
      }
    }
  }

  private async listOnce(): Promise<k8s.KubernetesListObject<k8s.KubernetesObject>> {
    const q: Record<string, string | undefined> = { labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector };
    const list = await this.opts.client.request<{ metadata?: { resourceVersion?: string }; items?: Array<Record<string, unknown>> }>({ method: 'GET', path: this.opts.path, query: q });
    this.opts.metrics?.lists.inc({ resource: this.opts.resource });
    const items = (list?.items ?? []).map((i) => ({ ...i, apiVersion: this.opts.apiVersion, kind: this.opts.kind }));
    // client-node delivers the items right after this promise settles, before any macrotask.
    tick(() => this.markSynced());
    return { apiVersion: this.opts.apiVersion, kind: `${this.opts.kind}List`, metadata: { resourceVersion: list?.metadata?.resourceVersion ?? '' }, items } as k8s.KubernetesListObject<k8s.KubernetesObject>;
  }

  private markSynced(): void {
    this.failures = 0;
    if (this.isSynced || this.stopped) return;
    this.isSynced = true;
    this.opts.metrics?.synced.set({ resource: this.opts.resource }, 1);
    for (const w of this.syncWaiters.splice(0)) w();
  }

  private emit(event: InformerEvent, obj: k8s.KubernetesObject): void {
    if (this.stopped) return;
    // Watch events carry apiVersion/kind; relisted items got them in list().
    const o = obj as unknown as KubeObject;
    for (const cb of this.callbacks[event]) {
      try {
        cb(o);
      } catch (e) {
        this.log.error({ err: e, event }, 'informer callback failed');
      }
    }
  }

  /** client-node's informer stopped on an error: restart it after a backoff. */
  private onError(err: unknown): void {
    if (this.stopped) return;
    this.opts.metrics?.errors.inc({ resource: this.opts.resource });
    const now = Date.now();
    // A watch that ran fine for a while starts its backoff over.
    if (now - this.lastErrorAt > 2 * this.backoff.maxMs) this.failures = 0;
    this.lastErrorAt = now;
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.failures);
    this.failures = Math.min(this.failures + 1, 30);
    const delayMs = Math.round(base * (0.5 + this.random() / 2));
    const level = this.failures <= 1 ? 'info' : 'warn';
    this.log[level]({ err: err, retryInMs: delayMs, attempt: this.failures }, 'list/watch failed; restarting from the last resourceVersion');
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void this.run();
    }, delayMs);
    this.restartTimer.unref();
  }
}
