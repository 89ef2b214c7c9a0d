/**
 * Per-destination state of the waypoint (a backend host and subset): its connection-pool gate,
 * outlier detector, retry budget and in-flight requests per endpoint, built from the
 * DestinationRule policy of the route config that names the host. State survives config pushes
 * that leave the policy unchanged (so ejections and budgets are not reset by every push), and is
 * rebuilt when the policy changes.
 */
import type { RetryBudget as RetryBudgetPolicy, RouteBackend, RouteConfig, TrafficPolicy } from '../../shared/routes.js';
import { RetryBudget } from '../dispatch/budget.js';
import { ConnectionPoolGate, OutlierDetector } from './breaker.js';

export interface DestinationState {
  policyKey: string;
  /** The route config the policy was read from; the key is recomputed only when it changes. */
  from: RouteConfig | undefined;
  gate: ConnectionPoolGate;
  outlier?: OutlierDetector;
  budget?: RetryBudget;
  budgetKey?: string;
  /** The policy object the budget was last checked against (configs are replaced, never changed in place). */
  budgetPolicy?: RetryBudgetPolicy;
  /** DestinationRule maxRequestsPerConnection: 1 turns off HTTP/1.1 keep-alive upstream. */
  closeAfterRequest: boolean;
  /** In-flight requests per endpoint key, for least-request picks. */
  active: Map<string, number>;
}

export class Destinations {
  private readonly states = new Map<string, DestinationState>();

  constructor(private readonly now: () => number) {}

  /** The state of `backend`, whose policy comes from `config` (the mesh config of its host, if any). */
  of(backend: RouteBackend, config: RouteConfig | undefined): DestinationState {
    const key = `${backend.host}|${backend.subset ?? ''}`;
    const known = this.states.get(key);
    // Configs are replaced, never changed in place (setRoutes clones): same object, same policy.
    if (known && known.from === config) return known;
    const tp: TrafficPolicy | undefined = config?.trafficPolicy;
    const subset = backend.subset ? tp?.subsets.find((s) => s.name === backend.subset) : undefined;
    const connectionPool = subset?.trafficPolicy?.connectionPool ?? tp?.connectionPool;
    const outlierDetection = subset?.trafficPolicy?.outlierDetection ?? tp?.outlierDetection;
    const policyKey = JSON.stringify([connectionPool, outlierDetection]);
    let st = known;
    if (!st || st.policyKey !== policyKey) {
      st = { policyKey, from: config, gate: new ConnectionPoolGate(connectionPool), closeAfterRequest: connectionPool?.maxRequestsPerConnection === 1, active: new Map() };
      if (outlierDetection) st.outlier = new OutlierDetector(outlierDetection, this.now);
      this.states.set(key, st);
    }
    st.from = config;
    return st;
  }

  /** Requests in flight and queued at each destination's connection pool (`host|subset`), for /debug and tests. */
  load(): Array<{ destination: string; active: number; pending: number }> {
    return [...this.states].map(([destination, st]) => ({ destination, active: st.gate.activeCount, pending: st.gate.pendingCount }));
  }
}

/** The destination's retry budget for `policy` (rebuilt when the budget settings change). */
export function retryBudgetOf(dest: DestinationState, policy: RetryBudgetPolicy): RetryBudget {
  if (dest.budget && dest.budgetPolicy === policy) return dest.budget;
  const key = JSON.stringify(policy);
  if (!dest.budget || dest.budgetKey !== key) {
    dest.budget = new RetryBudget(policy);
    dest.budgetKey = key;
  }
  dest.budgetPolicy = policy;
  return dest.budget;
}
