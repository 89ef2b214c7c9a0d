/**
 * Watches: from the store's per-resource history and live events, the stream a client asked
 * for — synthetic ADDED for the current state (resourceVersion unset or "0", or watch-list with
 * sendInitialEvents and its closing BOOKMARK), otherwise exactly the changes after the given
 * resourceVersion; selector transitions become ADDED/DELETED as the watch cache does; BOOKMARKs
 * when asked; a too-old resourceVersion is one ERROR 410 Expired event, then the end.
 */
import type { Registry } from './registry.js';
import type { ResourceDef } from './resources.js';
import { badRequest, expired, fieldError, invalid, timeout, type Status } from './status.js';
import type { StoreEvent } from './store.js';
import type { KubeObject } from './types.js';

export interface WatchOptions {
  resourceVersion?: string;
  resourceVersionMatch?: string;
  labelSelector?: string;
  fieldSelector?: string;
  allowWatchBookmarks: boolean;
  sendInitialEvents?: boolean;
  timeoutSeconds?: number;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchEvent {
  type: WatchEventType;
  object: KubeObject | Status;
}

export interface WatchSink {
  send(e: WatchEvent): void;
  end(): void;
}

/** Bookmarks go out this often when asked for (the real server sends about one a minute). */
const BOOKMARK_INTERVAL_MS = 30_000;
/** Without timeoutSeconds a watch ends after a random [min, 2×min] (the real --min-request-timeout, 1800 s). */
export const DEFAULT_MIN_REQUEST_TIMEOUT_S = 1800;

export const INITIAL_EVENTS_END = 'k8s.io/initial-events-end';

export interface Watch {
  /** Starts streaming to `sink`; returns stop(). */
  start(sink: WatchSink): () => void;
}

/** Validates the request (throwing ApiErrors before any byte is sent) and returns the watch. */
export function prepareWatch(
  registry: Registry,
  def: ResourceDef,
  version: string,
  namespace: string,
  opts: WatchOptions,
  minRequestTimeoutS = DEFAULT_MIN_REQUEST_TIMEOUT_S,
  random: () => number = Math.random,
): Watch {
  const match = registry.matcher(def, version, opts.labelSelector, opts.fieldSelector);
  const store = registry.store;
  const rvText = opts.resourceVersion ?? '';
  if (opts.sendInitialEvents !== undefined) {
    const errs = [];
    if (opts.resourceVersionMatch !== 'NotOlderThan') {
      errs.push(fieldError('Forbidden', 'resourceVersionMatch', undefined, 'sendInitialEvents requires setting resourceVersionMatch to NotOlderThan'));
    }
    if (opts.sendInitialEvents && !opts.allowWatchBookmarks) {
      errs.push(fieldError('Forbidden', 'allowWatchBookmarks', undefined, 'allowWatchBookmarks must be set to true when sendInitialEvents is true'));
    }
    if (errs.length > 0) throw invalid({ group: 'meta.k8s.io', kind: 'ListOptions' }, '', errs);
  } else if (opts.resourceVersionMatch !== undefined && opts.resourceVersionMatch !== '') {
    throw invalid({ group: 'meta.k8s.io', kind: 'ListOptions' }, '', [
      fieldError('Forbidden', 'resourceVersionMatch', undefined, 'resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided'),
    ]);
  }
  if (rvText !== '' && !/^\d+$/.test(rvText)) throw badRequest(`invalid resource version "${rvText}": strconv.ParseUint: parsing "${rvText}": invalid syntax`);
  const fromRv = rvText === '' ? 0 : Number(rvText);
  if (fromRv > store.rv) throw timeout(`Too large resource version: ${fromRv}, current: ${store.rv}`, 1);
  const initial = opts.sendInitialEvents === true || (opts.sendInitialEvents === undefined && (rvText === '' || rvText === '0'));
  const inNamespace = (o: KubeObject): boolean => !def.namespaced || namespace === '' || o.metadata.namespace === namespace;
  const view = (o: KubeObject): KubeObject => registry.toVersion(def, o, version);
  const bookmark = (rv: number, initialEnd = false): WatchEvent => ({
    type: 'BOOKMARK',
    object: {
      kind: def.kind,
      apiVersion: def.group === '' ? version : `${def.group}/${version}`,
      metadata: initialEnd ? { resourceVersion: String(rv), annotations: { [INITIAL_EVENTS_END]: 'true' } } : { resourceVersion: String(rv) },
    },
  });

  /** What a store event means for this watch (selector transitions included), if anything. */
  const translate = (e: StoreEvent): WatchEvent | undefined => {
    if (e.resource !== def.id) return undefined;
    if (!inNamespace(e.object)) return undefined;
    const now = e.type !== 'DELETED' && match(e.object);
    const before = e.prev !== undefined && match(e.prev);
    if (e.type === 'DELETED') return before ? { type: 'DELETED', object: view(e.object) } : undefined;
    if (now && (e.type === 'ADDED' || !before)) return { type: 'ADDED', object: view(e.object) };
    if (now && before) return { type: 'MODIFIED', object: view(e.object) };
    if (!now && before) {
      const last = { ...e.prev!, metadata: { ...e.prev!.metadata, resourceVersion: String(e.rv) } };
      return { type: 'DELETED', object: view(last) };
    }
    return undefined;
  };

  return {
    start(sink: WatchSink): () => void {
      let stopped = false;
      const timers: NodeJS.Timeout[] = [];
      let unsubscribe = (): void => {};
      const stop = (): void => {
        if (stopped) return;
        stopped = true;
        unsubscribe();
        for (const t of timers) clearTimeout(t);
      };
      const finish = (): void => {
        if (stopped) return;
        stop();
        sink.end();
      };
      if (initial) {
        const startRv = store.rv;
        for (const o of store.list(def.id, def.namespaced && namespace !== '' ? namespace : undefined)) {
          if (match(o)) sink.send({ type: 'ADDED', object: view(o) });
        }
        if (opts.sendInitialEvents === true) sink.send(bookmark(startRv, true));
      } else {
        const backlog = store.eventsSince(def.id, fromRv);
        if (backlog === 'expired' || backlog === 'future') {
          const err = expired(`too old resource version: ${fromRv} (${store.floorOf(def.id) + 1})`);
          sink.send({ type: 'ERROR', object: err.status });
          sink.end();
          return () => {};
        }
        for (const e of backlog) {
          const w = translate(e);
          if (w) sink.send(w);
        }
      }
      unsubscribe = store.subscribe((e) => {
        if (stopped) return;
        const w = translate(e);
        if (w) sink.send(w);
      });
      if (opts.allowWatchBookmarks) {
        const tick = (): void => {
          if (stopped) return;
          sink.send(bookmark(store.rv));
          timers.push(setTimeout(tick, BOOKMARK_INTERVAL_MS).unref());
        };
        timers.push(setTimeout(tick, BOOKMARK_INTERVAL_MS).unref());
      }
      const timeoutS = opts.timeoutSeconds ?? minRequestTimeoutS * (1 + random());
      timers.push(
        setTimeout(() => {
          if (opts.allowWatchBookmarks && !stopped) sink.send(bookmark(store.rv));
          finish();
        }, Math.max(0, timeoutS * 1000)).unref(),
      );
      return stop;
    },
  };
}
