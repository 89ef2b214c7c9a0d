/**
 * Circuit breaking per destination (Istio DestinationRule): connection-pool limits that reject
 * with 503 and response flag UO once the active and pending slots are full, and outlier detection
 * that ejects endpoints returning consecutive 5xx / gateway errors (balance.ts consults it when
 * picking an endpoint). pool-gate.ts makes the pool a layer of the dispatch stack.
 */
import type { ConnectionPoolPolicy, OutlierDetectionPolicy } from '../../shared/routes.js';

export type Release = () => void;

export type GateEntry =
  | {
      ok: true;
      /** Resolves when a slot is free. */
      ready: Promise<Release>;
      /** Leave the queue (or free the slot). */
      cancel: () => void;
      /** Set when a slot was free at once (the common case: no waiting, no promise turn). */
      immediate?: Release;
    }
  | { ok: false };

/**
 * Concurrency gate: up to min(maxConnections, http2MaxRequests) requests in flight, then up to
 * http1MaxPendingRequests waiting; beyond that enter() refuses (the caller answers 503 UO).
 */
export class ConnectionPoolGate {
  readonly maxActive: number;
  readonly maxPending: number;
  private active = 0;
  private readonly queue: Array<(r: Release) => void> = [];

  constructor(policy: ConnectionPoolPolicy | undefined) {
    this.maxActive = Math.min(policy?.maxConnections ?? Infinity, policy?.http2MaxRequests ?? Infinity);
    this.maxPending = policy?.http1MaxPendingRequests ?? (this.maxActive === Infinity ? Infinity : 1024);
  }

  get activeCount(): number {
    return this.active;
  }

  get pendingCount(): number {
    return this.queue.length;
  }

  enter(): GateEntry {
    if (this.active < this.maxActive) {
      this.active++;
      const release = this.releaser();
      return { ok: true, ready: Promise.resolve(release), cancel: release, immediate: release };
    }
    if (this.queue.length >= this.maxPending) return { ok: false };
    let waiter!: (r: Release) => void;
    let granted: Release | undefined;
    const ready = new Promise<Release>((resolve) => {
      waiter = (r) => {
        granted = r;
        resolve(r);
      };
    });
    this.queue.push(waiter);
    const cancel = (): void => {
      if (granted) return granted();
      const i = this.queue.indexOf(waiter);
      if (i >= 0) this.queue.splice(i, 1);
    };
    return { ok: true, ready, cancel };
  }

  private releaser(): Release {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.queue.shift();
      if (next) next(this.releaser());
      else this.active--;
    };
  }
}

/** How a try to an endpoint ended, as outlier detection counts it. */
export type EndpointResult = 'success' | '5xx' | 'gateway-error';

/** Maps a response status or a connection failure to an EndpointResult. */
export function classifyResult(status: number | 'connect-failure' | 'reset' | 'timeout'): EndpointResult {
  if (typeof status !== 'number') return 'gateway-error';
  if (status === 502 || status === 503 || status === 504) return 'gateway-error';
  return status >= 500 ? '5xx' : 'success';
}

interface EndpointState {
  consecutive5xx: number;
  consecutiveGateway: number;
  ejectedUntil: number;
  ejections: number;
}

const MAX_EJECTION_MS = 300_000;

/**
 * Consecutive-error outlier detection (Envoy semantics): a gateway error also counts as a 5xx; a
 * success resets both counters; ejection lasts baseEjectionTime × times ejected (capped at 300 s,
 * or the base when larger); a new ejection is allowed while the ejected share is below
 * maxEjectionPercent. When every endpoint is ejected, filter() returns them all (panic mode).
 */
export class OutlierDetector {
  private readonly states = new Map<string, EndpointState>();

  constructor(
    private readonly policy: OutlierDetectionPolicy,
    private readonly now: () => number = Date.now,
  ) {}

  private state(endpoint: string): EndpointState {
    let s = this.states.get(endpoint);
    if (!s) {
      s = { consecutive5xx: 0, consecutiveGateway: 0, ejectedUntil: 0, ejections: 0 };
      this.states.set(endpoint, s);
    }
    return s;
  }

  isEjected(endpoint: string): boolean {
    const s = this.states.get(endpoint);
    return s !== undefined && s.ejectedUntil > this.now();
  }

  ejectedCount(endpoints: readonly string[]): number {
    return endpoints.filter((e) => this.isEjected(e)).length;
  }

  /** Records one result; returns true when this result ejected the endpoint. */
  record(endpoint: string, result: EndpointResult, allEndpoints: readonly string[]): boolean {
    const s = this.state(endpoint);
    if (result === 'success') {
      s.consecutive5xx = 0;
      s.consecutiveGateway = 0;
      return false;
    }
    s.consecutive5xx++;
    if (result === 'gateway-error') s.consecutiveGateway++;
    if (this.isEjected(endpoint)) return false;
    const c5 = this.policy.consecutive5xxErrors;
    const cg = this.policy.consecutiveGatewayErrors;
    const trip = (c5 !== undefined && c5 > 0 && s.consecutive5xx >= c5) || (cg !== undefined && cg > 0 && s.consecutiveGateway >= cg);
    if (!trip) return false;
    const total = Math.max(1, allEndpoints.length);
    if ((this.ejectedCount(allEndpoints) / total) * 100 >= this.policy.maxEjectionPercent) return false;
    s.ejections++;
    const ms = Math.min(this.policy.baseEjectionTimeMs * s.ejections, Math.max(this.policy.baseEjectionTimeMs, MAX_EJECTION_MS));
    s.ejectedUntil = this.now() + ms;
    s.consecutive5xx = 0;
    s.consecutiveGateway = 0;
    return true;
  }

  /** Endpoints not ejected; all of them when every one is ejected (panic). */
  filter<T>(endpoints: readonly T[], key: (e: T) => string): T[] {
    const healthy = endpoints.filter((e) => !this.isEjected(key(e)));
    return healthy.length > 0 ? healthy : [...endpoints];
  }
}
