/**
 * Endpoint choice, for the agent and the waypoint. The agent's LoadBalancer: round robin per
 * service over the endpoints that are not ejected, narrowed to the best locality tier the
 * service's routingPreference asks for. The waypoint's pickLeastRequest: Istio's default
 * LEAST_REQUEST (power of two choices over requests in flight), after its breaker has removed
 * ejected endpoints.
 * Invariants: an endpoint that failed to connect n times in a row is skipped for
 * min(maxEjectMs, baseEjectMs·2^(n-1)) (jittered); a success clears its record; when every
 * candidate is ejected all of them are used again (better a likely failure than a certain one).
 */
import type { Service, Workload } from './model.js';
import type { Endpoint } from './state/workloads.js';

export interface BalancerOptions {
  now?: () => number;
  random?: () => number;
  baseEjectMs?: number;
  maxEjectMs?: number;
}

interface Ejection {
  failures: number;
  until: number;
}

export function endpointKey(e: Pick<Endpoint, 'address' | 'port'>): string {
  return `${e.address}|${e.port}`;
}

export class LoadBalancer {
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly baseEjectMs: number;
  private readonly maxEjectMs: number;
  private readonly cursors = new Map<string, number>();
  private readonly ejections = new Map<string, Ejection>();

  constructor(opts: BalancerOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.baseEjectMs = opts.baseEjectMs ?? 1000;
    this.maxEjectMs = opts.maxEjectMs ?? 60_000;
  }

  /** Picks one of `candidates` for a connection from `src` to `service`; undefined when there are none. */
  pick(service: Pick<Service, 'namespace' | 'hostname' | 'routingPreference'>, candidates: readonly Endpoint[], src?: Workload): Endpoint | undefined {
    if (candidates.length === 0) return undefined;
    const now = this.now();
    const live = candidates.filter((c) => !this.isEjected(endpointKey(c), now));
    const pool = preferLocality(live.length > 0 ? live : [...candidates], service.routingPreference, src);
    const key = `${service.namespace}/${service.hostname}`;
    let cursor = this.cursors.get(key);
    if (cursor === undefined) cursor = Math.floor(this.random() * 1_000_000);
    this.cursors.set(key, (cursor + 1) % 1_000_000_007);
    return pool[cursor % pool.length];
  }

  /** Records a failed connect to `e`; it is ejected with exponential backoff. */
  reportFailure(e: Pick<Endpoint, 'address' | 'port'>): void {
    const key = endpointKey(e);
    const failures = (this.ejections.get(key)?.failures ?? 0) + 1;
    const ceiling = Math.min(this.maxEjectMs, this.baseEjectMs * 2 ** Math.min(failures - 1, 30));
    const ms = Math.floor(ceiling / 2 + (this.random() * ceiling) / 2);
    this.ejections.set(key, { failures, until: this.now() + ms });
  }

  reportSuccess(e: Pick<Endpoint, 'address' | 'port'>): void {
    this.ejections.delete(endpointKey(e));
  }

  isEjected(key: string, now = this.now()): boolean {
    const ej = this.ejections.get(key);
    return ej !== undefined && ej.until > now;
  }

  /** Forgets state of endpoints and services no longer present (call on config change). */
  prune(liveEndpointKeys: ReadonlySet<string>, liveServiceKeys: ReadonlySet<string>): void {
    for (const k of this.ejections.keys()) if (!liveEndpointKeys.has(k)) this.ejections.delete(k);
    for (const k of this.cursors.keys()) if (!liveServiceKeys.has(k)) this.cursors.delete(k);
  }
}

/**
 * Narrows candidates to the best locality tier. `preference` is most specific first (model.ts):
 * endpoints matching every scope, else every scope but the most specific, ..., else anything.
 */
export function preferLocality(candidates: Endpoint[], preference: readonly string[], src?: Workload): Endpoint[] {
  if (!src || preference.length === 0) return candidates;
  for (let from = 0; from < preference.length; from++) {
    const scopes = preference.slice(from);
    const tier = candidates.filter((c) => scopes.every((s) => sameScope(s, c.workload, src)));
    if (tier.length > 0) return tier;
  }
  return candidates;
}

function sameScope(scope: string, a: Workload, b: Workload): boolean {
  switch (scope) {
    case 'node':
      return a.node === b.node;
    case 'zone':
      return !!a.locality && !!b.locality && a.locality.region === b.locality.region && a.locality.zone === b.locality.zone;
    case 'region':
      return !!a.locality && !!b.locality && a.locality.region === b.locality.region;
    default:
      return true;
  }
}

/**
 * Least-request endpoint choice (Istio's default LEAST_REQUEST): two random candidates, the one
 * with fewer requests in flight (`active`, by endpoint key) wins.
 */
export function pickLeastRequest<T extends { key: string }>(pool: readonly T[], active: ReadonlyMap<string, number>, random: () => number): T | undefined {
  if (pool.length <= 1) return pool[0];
  const a = pool[Math.min(pool.length - 1, Math.floor(random() * pool.length))]!;
  let b = pool[Math.min(pool.length - 1, Math.floor(random() * pool.length))]!;
  if (b === a) b = pool[(pool.indexOf(a) + 1) % pool.length]!;
  return (active.get(b.key) ?? 0) < (active.get(a.key) ?? 0) ? b : a;
}
