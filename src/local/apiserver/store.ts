/**
 * The object store: every object by resource and `namespace/name`, one store-wide resourceVersion
 * counter, an index by uid, and per resource a bounded history of change events (the watch cache)
 * from which a watch resumes at an exact resourceVersion. Writes go to the state file before they
 * are visible; listeners are told synchronously after.
 *
 * Invariants:
 * - stored objects are never modified in place: a write stores a new object, so events and list
 *   results may share references (callers treat them as read-only and clone before changing);
 * - an object's metadata.resourceVersion is the counter value of its last write; the counter
 *   only grows, across restarts too;
 * - history(resource) holds every event with rv > floor(resource), in rv order.
 */
import type { HistoryEntry, LogRecord, Snapshot, StateFile } from './state-file.js';
import type { KubeObject } from './types.js';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: EventType;
  resource: string;
  rv: number;
  object: KubeObject;
  /** The state before this event (MODIFIED and DELETED). */
  prev?: KubeObject;
}

interface History {
  floor: number;
  events: StoreEvent[];
}

export interface StoreOptions {
  /** Events kept per resource for watches that resume (the real watch cache keeps ~100-1000). */
  historySize?: number;
  /** Told when a listener throws; the write that caused the event still succeeds. */
  onListenerError?: (e: unknown) => void;
}

export function objectKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

export class Store {
  private counter = 0;
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private readonly uids = new Map<string, { resource: string; key: string }>();
  private readonly histories = new Map<string, History>();
  private readonly listeners = new Set<(e: StoreEvent) => void>();
  private readonly historySize: number;
  private readonly onListenerError: (e: unknown) => void;

  constructor(
    private readonly file: StateFile | undefined,
    opts: StoreOptions = {},
  ) {
    this.historySize = opts.historySize ?? 1000;
    this.onListenerError = opts.onListenerError ?? (() => {});
  }

  /** Rebuilds the store from a snapshot and the log records after it. */
  load(snapshot: Snapshot | undefined, records: LogRecord[]): void {
    if (snapshot !== undefined) {
      this.counter = snapshot.rv;
      for (const [resource, list] of Object.entries(snapshot.objects)) {
        for (const o of list) this.setObject(resource, o);
      }
      for (const [resource, h] of Object.entries(snapshot.history ?? {})) {
        this.histories.set(resource, {
          floor: h.floor,
          events: h.events.map((e) => ({ type: e.type, resource, rv: e.rv, object: e.object })),
        });
      }
    }
    for (const rec of records) {
      const key = objectKey(rec.o.metadata.namespace, rec.o.metadata.name ?? '');
      const prev = this.objects.get(rec.r)?.get(key);
      if (rec.op === 'put') {
        this.setObject(rec.r, rec.o);
        this.remember({ type: prev === undefined ? 'ADDED' : 'MODIFIED', resource: rec.r, rv: rec.rv, object: rec.o, ...(prev ? { prev } : {}) });
      } else {
        this.unsetObject(rec.r, key);
        this.remember({ type: 'DELETED', resource: rec.r, rv: rec.rv, object: rec.o, ...(prev ? { prev } : {}) });
      }
      this.counter = Math.max(this.counter, rec.rv);
    }
    // Objects without any kept history (a snapshot written without it): complete from here on.
    for (const resource of this.objects.keys()) if (!this.histories.has(resource)) this.histories.set(resource, { floor: this.counter, events: [] });
    if (this.file?.needsCompaction) this.compact();
  }

  /** The latest resourceVersion of the whole store. */
  get rv(): number {
    return this.counter;
  }

  get(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.objects.get(resource)?.get(objectKey(namespace, name));
  }

  /** Objects of a resource (in one namespace when given), ordered by namespace then name. */
  list(resource: string, namespace?: string): KubeObject[] {
    const m = this.objects.get(resource);
    if (m === undefined) return [];
    const keys = [...m.keys()].sort();
    const out: KubeObject[] = [];
    for (const k of keys) {
      const o = m.get(k)!;
      if (namespace === undefined || namespace === '' || (o.metadata.namespace ?? '') === namespace) out.push(o);
    }
    return out;
  }

  /** Every resource id with at least one stored object. */
  resources(): string[] {
    return [...this.objects.keys()].filter((r) => (this.objects.get(r)?.size ?? 0) > 0);
  }

  byUid(uid: string): { resource: string; object: KubeObject } | undefined {
    const loc = this.uids.get(uid);
    if (loc === undefined) return undefined;
    const o = this.objects.get(loc.resource)?.get(loc.key);
    return o === undefined ? undefined : { resource: loc.resource, object: o };
  }

  /** Stores `obj` (create or replace) under the next resourceVersion; returns the stored object. */
  put(resource: string, obj: KubeObject): KubeObject {
    const rv = this.counter + 1;
    const stored: KubeObject = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rv) } };
    this.file?.append({ rv, op: 'put', r: resource, o: stored });
    this.counter = rv;
    const key = objectKey(stored.metadata.namespace, stored.metadata.name ?? '');
    const prev = this.objects.get(resource)?.get(key);
    this.setObject(resource, stored);
    this.emit({ type: prev === undefined ? 'ADDED' : 'MODIFIED', resource, rv, object: stored, ...(prev ? { prev } : {}) });
    return stored;
  }

  /** Removes an object; the DELETED event carries its last state at the deletion's resourceVersion. */
  remove(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const key = objectKey(namespace, name);
    const prev = this.objects.get(resource)?.get(key);
    if (prev === undefined) return undefined;
    const rv = this.counter + 1;
    const last: KubeObject = { ...prev, metadata: { ...prev.metadata, resourceVersion: String(rv) } };
    this.file?.append({ rv, op: 'del', r: resource, o: last });
    this.counter = rv;
    this.unsetObject(resource, key);
    this.emit({ type: 'DELETED', resource, rv, object: last, prev });
    return last;
  }

  subscribe(fn: (e: StoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Events of `resource` after `rv`, or 'expired' when the history no longer reaches back that
   * far (the client must relist), or 'future' when rv is beyond the store.
   */
  eventsSince(resource: string, rv: number): StoreEvent[] | 'expired' | 'future' {
    if (rv > this.counter) return 'future';
    const h = this.histories.get(resource);
    if (h === undefined) return [];
    if (rv < h.floor) return 'expired';
    return h.events.filter((e) => e.rv > rv);
  }

  /** The oldest resourceVersion a watch on `resource` can resume from. */
  floorOf(resource: string): number {
    return this.histories.get(resource)?.floor ?? 0;
  }

  private setObject(resource: string, o: KubeObject): void {
    let m = this.objects.get(resource);
    if (m === undefined) {
      m = new Map();
      this.objects.set(resource, m);
    }
    const key = objectKey(o.metadata.namespace, o.metadata.name ?? '');
    m.set(key, o);
    if (o.metadata.uid) this.uids.set(o.metadata.uid, { resource, key });
  }

  private unsetObject(resource: string, key: string): void {
    const m = this.objects.get(resource);
    const o = m?.get(key);
    if (o === undefined) return;
    m!.delete(key);
    if (o.metadata.uid) this.uids.delete(o.metadata.uid);
  }

  private remember(e: StoreEvent): void {
    let h = this.histories.get(e.resource);
    if (h === undefined) {
      // A resource's first event: nothing happened to it before, so the history is complete.
      h = { floor: 0, events: [] };
      this.histories.set(e.resource, h);
    }
    h.events.push(e);
    if (h.events.length > this.historySize) {
      const dropped = h.events.splice(0, h.events.length - this.historySize);
      h.floor = dropped[dropped.length - 1]!.rv;
    }
  }

  private emit(e: StoreEvent): void {
    this.remember(e);
    for (const fn of [...this.listeners]) {
      try {
        fn(e);
      } catch (err) {
        // One watcher's failure must not fail the write that is already stored.
        this.onListenerError(err);
      }
    }
    if (this.file?.needsCompaction) this.compact();
  }

  /** The whole state as a snapshot (for compaction). */
  snapshot(): Snapshot {
    const objects: Record<string, KubeObject[]> = {};
    for (const [r, m] of this.objects) if (m.size > 0) objects[r] = [...m.values()];
    const history: Snapshot['history'] = {};
    for (const [r, h] of this.histories) {
      history[r] = { floor: h.floor, events: h.events.map((e): HistoryEntry => ({ type: e.type, rv: e.rv, object: e.object })) };
    }
    return { version: 1, rv: this.counter, objects, history };
  }

  compact(): void {
    this.file?.compact(this.snapshot());
  }
}
