/**
 * What every local controller is built on: a work queue of object keys (one pass per key however
 * often it is added meanwhile, keys processed one at a time, a failed pass retried with capped
 * backoff), plus the small facts about objects controllers share (controller owner, pod
 * readiness, label selectors). Controllers re-derive everything from their informers' caches on
 * each pass, so a lost or repeated event never leaves them wrong.
 */
import type { Logger } from '../../shared/log.js';
import type { KubeObject, OwnerReference } from '../../controller/objects.js';
import { labelSelectorFromObject, matchLabels } from '../apiserver/selectors.js';

export class WorkQueue {
  private readonly dirty = new Set<string>();
  private readonly attempts = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private running = false;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly name: string,
    private readonly sync: (key: string) => Promise<void>,
    private readonly log: Logger,
    private readonly maxDelayMs = 5000,
  ) {}

  add(key: string): void {
    if (this.stopped) return;
    this.dirty.add(key);
    if (!this.running) void this.drain();
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (!this.stopped && this.dirty.size > 0) {
      const key = this.dirty.values().next().value as string;
      this.dirty.delete(key);
      try {
        await this.sync(key);
        this.attempts.delete(key);
      } catch (e) {
        const n = (this.attempts.get(key) ?? 0) + 1;
        this.attempts.set(key, n);
        const wait = Math.min(this.maxDelayMs, 100 * 2 ** Math.min(n, 10));
        this.log.debug({ controller: this.name, key, attempt: n, err: e }, 'sync failed; retrying');
        if (n === 5) this.log.warn({ controller: this.name, key, err: e }, 'sync keeps failing; still retrying');
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.add(key);
        }, wait);
        this.timers.add(t);
      }
    }
    this.running = false;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves when no key is waiting or being processed (for tests and settling). */
  idle(): Promise<void> {
    if (!this.running && this.dirty.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.dirty.clear();
    for (const w of this.idleWaiters.splice(0)) w();
  }
}

export function nsName(o: Pick<KubeObject, 'metadata'>): string {
  return `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

export function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

/** The controller owner reference to `owner` (blocking its foreground deletion, as controllers set it). */
export function controllerRef(owner: KubeObject): OwnerReference {
  const ref = { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.metadata.name, uid: owner.metadata.uid ?? '', controller: true, blockOwnerDeletion: true };
  return ref;
}

/** The owner reference with `controller: true`, if any. */
export function controllerOf(o: Pick<KubeObject, 'metadata'>): { kind: string; name: string; uid?: string } | undefined {
  return (o.metadata.ownerReferences ?? []).find((r) => r.controller === true);
}

function rec(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function podPhase(pod: KubeObject): string {
  return String(rec(pod.status).phase ?? 'Pending');
}

/** A pod counts for its ReplicaSet while it is not finished and not being deleted. */
export function isPodActive(pod: KubeObject): boolean {
  const phase = podPhase(pod);
  return pod.metadata.deletionTimestamp === undefined && phase !== 'Succeeded' && phase !== 'Failed';
}

export function isPodReady(pod: KubeObject): boolean {
  const conds = Array.isArray(rec(pod.status).conditions) ? (rec(pod.status).conditions as Array<Record<string, unknown>>) : [];
  return conds.some((c) => c.type === 'Ready' && c.status === 'True');
}

export function podIp(pod: KubeObject): string | undefined {
  const ip = rec(pod.status).podIP;
  return typeof ip === 'string' && ip !== '' ? ip : undefined;
}

export function nodeNameOf(pod: KubeObject): string | undefined {
  const n = rec(pod.spec).nodeName;
  return typeof n === 'string' && n !== '' ? n : undefined;
}

/** Whether a metav1.LabelSelector object selects `labels` (an empty selector selects everything). */
export function selectorMatches(selector: unknown, labels: Record<string, string> | undefined): boolean {
  return matchLabels(labelSelectorFromObject(selector), labels);
}

/** Whether a Service's `spec.selector` map selects `labels` (an empty or missing selector selects nothing). */
export function serviceSelects(selector: unknown, labels: Record<string, string> | undefined): boolean {
  const sel = rec(selector) as Record<string, string>;
  if (Object.keys(sel).length === 0) return false;
  return Object.entries(sel).every(([k, v]) => labels?.[k] === v);
}

/** Stable JSON (sorted keys) for comparing what a controller would write with what is there. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export { rec };
