/**
 * Waypoint request metrics with Istio's names and labels (`reporter="waypoint"`), so Kiali and the
 * Istio dashboards read them, plus `ambit_*` counters for retries, timeouts, circuit breaking,
 * outlier ejections and injected faults. Labels are bounded: no IPs, ports or request ids.
 */
import { Counter, type Registry } from '../shared/metrics.js';
import { createIstioHttpMetrics, type IstioHttpMetrics } from '../shared/istio-metrics.js';

export { ISTIO_HTTP_LABELS, type IstioHttpLabel, type IstioHttpLabels } from '../shared/istio-metrics.js';

/** Envoy response flags the waypoint sets. */
export const RESPONSE_FLAGS = {
  NONE: '-',
  /** No route configured. */
  NO_ROUTE: 'NR',
  /** Upstream overflow: circuit breaker / pool limit. */
  UPSTREAM_OVERFLOW: 'UO',
  /** No healthy upstream. */
  NO_HEALTHY_UPSTREAM: 'UH',
  /** Upstream connection failure. */
  UPSTREAM_CONNECT_FAILURE: 'UF',
  /** Upstream request timeout. */
  UPSTREAM_TIMEOUT: 'UT',
  /** Upstream reset. */
  UPSTREAM_RESET: 'UR',
  /** Retry limit exceeded after upstream failures. */
  UPSTREAM_RETRY_LIMIT: 'URX',
  /** Fault injection abort / delay. */
  FAULT_ABORT: 'FI',
  FAULT_DELAY: 'DI',
  /** Local rate limited. */
  RATE_LIMITED: 'RL',
  /** Denied by RBAC. */
  RBAC_DENIED: 'RBAC',
  /** Denied by the external authorization service (CUSTOM policy). */
  EXT_AUTHZ_DENIED: 'UAEX',
  /** Downstream went away. */
  DOWNSTREAM_RESET: 'DC',
} as const;

export interface WaypointMetrics extends IstioHttpMetrics {
  retries: Counter<'destination_service' | 'route' | 'reason'>;
  timeouts: Counter<'destination_service' | 'route' | 'kind'>;
  circuitBreakerTrips: Counter<'destination_service' | 'reason'>;
  outlierEjections: Counter<'destination_service'>;
  faults: Counter<'destination_service' | 'route' | 'kind'>;
  policyDenials: Counter<'destination_service' | 'reason'>;
}

export function createWaypointMetrics(registry: Registry): WaypointMetrics {
  return {
    ...createIstioHttpMetrics(registry),
    retries: new Counter({ name: 'ambit_request_retries_total', help: 'Retries the waypoint made, by retry condition.', labelNames: ['destination_service', 'route', 'reason'], registers: [registry] }),
    timeouts: new Counter({ name: 'ambit_request_timeouts_total', help: 'Requests or tries that hit a timeout (kind: request|per_try).', labelNames: ['destination_service', 'route', 'kind'], registers: [registry] }),
    circuitBreakerTrips: new Counter({ name: 'ambit_circuit_breaker_trips_total', help: 'Requests refused by connection-pool limits or the retry budget.', labelNames: ['destination_service', 'reason'], registers: [registry] }),
    outlierEjections: new Counter({ name: 'ambit_outlier_ejections_total', help: 'Endpoints ejected by outlier detection.', labelNames: ['destination_service'], registers: [registry] }),
    faults: new Counter({ name: 'ambit_faults_injected_total', help: 'Injected faults (kind: delay|abort).', labelNames: ['destination_service', 'route', 'kind'], registers: [registry] }),
    policyDenials: new Counter({ name: 'ambit_policy_denials_total', help: 'Requests the waypoint refused (reason: jwt|ext_authz|rbac|rate_limited).', labelNames: ['destination_service', 'reason'], registers: [registry] }),
  };
}
