/**
 * Config to worker threads by difference (pure). A config change at 10,000 workloads used to post
 * the whole snapshot to every worker: a structured clone of every workload, ~20 ms to serialise on
 * the main thread and ~100 ms to deserialise on each worker, whose connections waited meanwhile.
 * Now the pool posts what changed since the snapshot it posted last, found by identity (the config
 * client keeps unchanged resources as the same objects), and each worker applies it to persistent
 * maps of its own, so a one-resource change costs one resource on every thread.
 * Invariant: every worker is sent the same messages in the same order (rpc notes are ordered), so
 * each worker's snapshot equals the pool's last posted one.
 */
import type { Authorization, Service, Workload } from '../../shared/model.js';
import { PersistentMap } from '../../shared/state/persistent-map.js';
import type { ConfigSnapshot } from '../../shared/state/workloads.js';

/** Keys gone and entries added or replaced. */
export interface MapDelta<V> {
  removed: string[];
  updated: Array<[string, V]>;
}

/** Per type, its delta; a type that did not change is absent. */
export interface ConfigDelta {
  workloads?: MapDelta<Workload>;
  services?: MapDelta<Service>;
  authorizations?: MapDelta<Authorization>;
}

/** What changed from `prev` to `next`, by identity of the values; undefined when the map is the same one. */
export function mapDelta<V>(prev: ReadonlyMap<string, V>, next: ReadonlyMap<string, V>): MapDelta<V> | undefined {
  if (prev === next) return undefined;
  const updated: Array<[string, V]> = [];
  for (const [k, v] of next) if (prev.get(k) !== v) updated.push([k, v]);
  const removed: string[] = [];
  // Same size and nothing new: nothing can have gone.
  if (prev.size !== next.size - countNew(prev, updated)) for (const k of prev.keys()) if (!next.has(k)) removed.push(k);
  return updated.length === 0 && removed.length === 0 ? undefined : { removed, updated };
}

function countNew<V>(prev: ReadonlyMap<string, V>, updated: ReadonlyArray<[string, V]>): number {
  let n = 0;
  for (const [k] of updated) if (!prev.has(k)) n++;
  return n;
}

/** The delta from `prev` to `next`, or undefined when nothing changed. */
export function configDelta(prev: ConfigSnapshot, next: ConfigSnapshot): ConfigDelta | undefined {
  const d: ConfigDelta = {};
  const w = mapDelta(prev.workloads, next.workloads);
  const s = mapDelta(prev.services, next.services);
  const a = mapDelta(prev.authorizations, next.authorizations);
  if (w) d.workloads = w;
  if (s) d.services = s;
  if (a) d.authorizations = a;
  return w || s || a ? d : undefined;
}

/** Entries a delta carries (to choose between a delta and a whole snapshot). */
export function deltaSize(d: ConfigDelta): number {
  let n = 0;
  for (const m of [d.workloads, d.services, d.authorizations]) if (m) n += m.removed.length + m.updated.length;
  return n;
}

/**
 * What the workers are sent when the config goes from `prev` (what they hold; undefined at first)
 * to `next`: nothing, the delta, or the whole snapshot (at first, or when most of it changed and
 * a delta would cost as much).
 */
export function workerConfigMessage(prev: ConfigSnapshot | undefined, next: ConfigSnapshot): { kind: 'none' } | { kind: 'delta'; delta: ConfigDelta } | { kind: 'full' } {
  if (!prev) return { kind: 'full' };
  const delta = configDelta(prev, next);
  if (!delta) return { kind: 'none' };
  const total = next.workloads.size + next.services.size + next.authorizations.size;
  return deltaSize(delta) <= total / 2 ? { kind: 'delta', delta } : { kind: 'full' };
}

/** A snapshot of persistent maps (what a worker keeps), from a whole one. */
export function persistentSnapshot(s: ConfigSnapshot): ConfigSnapshot {
  return { workloads: PersistentMap.of(s.workloads), services: PersistentMap.of(s.services), authorizations: PersistentMap.of(s.authorizations) };
}

/** `prev` (persistent maps) with `d` applied; `prev` is unchanged. */
export function applyConfigDelta(prev: ConfigSnapshot, d: ConfigDelta): ConfigSnapshot {
  const apply = <V>(m: ReadonlyMap<string, V>, md: MapDelta<V> | undefined): ReadonlyMap<string, V> => {
    if (!md) return m;
    const p = m instanceof PersistentMap ? (m as PersistentMap<string, V>) : PersistentMap.of(m);
    return p.withChanges(md.removed, md.updated);
  };
  return { workloads: apply(prev.workloads, d.workloads), services: apply(prev.services, d.services), authorizations: apply(prev.authorizations, d.authorizations) };
}
