/**
 * Object identity across retranslates. Every retranslate builds new output objects, most of them
 * equal to the last ones; `keepUnchanged` puts the previous object back wherever the new one is
 * equal to it as JSON (same name, same content), and the previous array or map where all of it is
 * unchanged. The config server keeps each resource's encoding by object identity (xds/snapshot.ts),
 * so a change re-encodes, re-hashes and re-validates only the resources it changed, and a scope
 * whose inputs are all the previous ones keeps its snapshot (xds/scope.ts).
 * Invariant: translation output is never modified once handed over (the controller's contract),
 * so sharing an object between two translations is safe.
 */
import { authorizationResourceName, routeConfigResourceName, serviceResourceName, workloadResourceName } from '../../shared/resources.js';
import type { GatewayListener } from '../../shared/routes.js';
import type { MeshTranslation, TranslateResult } from './translate.js';

/**
 * Structural equality of JSON-shaped values (plain objects, arrays, strings, numbers, booleans,
 * null). Conservative: values it cannot compare as JSON (a Map, a Date, differing prototypes,
 * a key holding undefined on one side only) are unequal, which only costs a re-encoding.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const pa = Object.getPrototypeOf(a) as unknown;
  if ((pa !== Object.prototype && pa !== null) || Object.getPrototypeOf(b) !== pa) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

/**
 * `next` with each item equal to the previous item of the same name replaced by that item; the
 * previous array itself when every item is the previous one, in the same order.
 */
export function keepItems<T extends object>(prev: readonly T[], next: T[], name: (item: T) => string): T[] {
  // Usually the same names in the same order (updates): compare position by position.
  if (prev.length === next.length) {
    let aligned = true;
    let all = true;
    for (let i = 0; i < next.length && aligned; i++) {
      const p = prev[i]!;
      const n = next[i]!;
      if (p === n) continue;
      if (name(p) !== name(n)) aligned = false;
      else if (jsonEqual(p, n)) next[i] = p;
      else all = false;
    }
    if (aligned) return all ? (prev as T[]) : next;
  }
  const byName = new Map<string, T>();
  for (const p of prev) byName.set(name(p), p);
  let all = prev.length === next.length;
  for (let i = 0; i < next.length; i++) {
    const item = next[i]!;
    const old = byName.get(name(item));
    if (old !== undefined && old !== item && jsonEqual(old, item)) next[i] = old;
    if (all && next[i] !== prev[i]) all = false;
  }
  return all ? (prev as T[]) : next;
}

function keepModel(prev: TranslateResult, next: TranslateResult): TranslateResult {
  const workloads = keepItems(prev.workloads, next.workloads, workloadResourceName);
  const services = keepItems(prev.services, next.services, serviceResourceName);
  const authorizations = keepItems(prev.authorizations, next.authorizations, authorizationResourceName);
  const conditions = jsonEqual(prev.conditions, next.conditions) ? prev.conditions : next.conditions;
  if (workloads === prev.workloads && services === prev.services && authorizations === prev.authorizations && conditions === prev.conditions) return prev;
  return { workloads, services, authorizations, conditions };
}

function keepListeners(prev: ReadonlyMap<string, GatewayListener[]>, next: Map<string, GatewayListener[]>): Map<string, GatewayListener[]> {
  let all = prev.size === next.size;
  for (const [pod, ls] of next) {
    const old = prev.get(pod);
    if (old !== undefined && jsonEqual(old, ls)) next.set(pod, old);
    else all = false;
  }
  return all ? (prev as Map<string, GatewayListener[]>) : next;
}

/** `next` sharing every unchanged part of `prev` (see the file comment). */
export function keepUnchanged(prev: MeshTranslation, next: MeshTranslation): MeshTranslation {
  const model = keepModel(prev.model, next.model);
  const routeConfigs = keepItems(prev.routes.routes, next.routes.routes, routeConfigResourceName);
  const routes =
    routeConfigs === prev.routes.routes && jsonEqual(prev.routes.gateways, next.routes.gateways) && jsonEqual(prev.routes.conditions, next.routes.conditions)
      ? prev.routes
      : { ...next.routes, routes: routeConfigs };
  const byPod = keepListeners(prev.listeners.byPod, next.listeners.byPod);
  const listeners = byPod === prev.listeners.byPod && jsonEqual(prev.listeners.conditions, next.listeners.conditions) ? prev.listeners : { ...next.listeners, byPod };
  return { model, routes, listeners };
}
