/**
 * Waypoint request metrics with Istio's names and labels (`reporter="waypoint"`), so Kiali and the
 * Istio dashboards read them, plus `ambit_*` counters for retries, timeouts, circuit breaking,
 * outlier ejections and injected faults. Labels are bounded: no IPs, ports or request ids.
 */
import { Counter, ISTIO_COMMON_LABELS, SeriesCounter, SeriesHistogram, UNKNOWN, type Registry } from '../shared/metrics.js';

export const ISTIO_HTTP_LABELS = [
  ...ISTIO_COMMON_LABELS,
  'response_code',
  'response_flags',
  'grpc_response_status',
  'connection_security_policy',
] as const;

export type IstioHttpLabel = (typeof ISTIO_HTTP_LABELS)[number];
export type IstioHttpLabels = Record<IstioHttpLabel, string>;

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
  /** Downstream went away. */
  DOWNSTREAM_RESET: 'DC',
} as const;

const DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000];

export interface WaypointMetrics {
  requests: SeriesCounter<IstioHttpLabel>;
  duration: SeriesHistogram<IstioHttpLabel>;
  requestBytes: SeriesHistogram<IstioHttpLabel>;
  responseBytes: SeriesHistogram<IstioHttpLabel>;
  retries: Counter<'destination_service' | 'route' | 'reason'>;
  timeouts: Counter<'destination_service' | 'route' | 'kind'>;
  circuitBreakerTrips: Counter<'destination_service' | 'reason'>;
  outlierEjections: Counter<'destination_service'>;
  faults: Counter<'destination_service' | 'route' | 'kind'>;
  policyDenials: Counter<'destination_service' | 'reason'>;
}

export function createWaypointMetrics(registry: Registry): WaypointMetrics {
  const labelNames = ISTIO_HTTP_LABELS;
  // Per-request series: bound once per label set (SeriesCounter/SeriesHistogram), not hashed per request.
  return {
    requests: new SeriesCounter({ name: 'istio_requests_total', help: 'Requests handled by the waypoint.', labelNames, registers: [registry] }),
    duration: new SeriesHistogram({ name: 'istio_request_duration_milliseconds', help: 'Request duration in milliseconds.', labelNames, buckets: DURATION_BUCKETS_MS, registers: [registry] }),
    requestBytes: new SeriesHistogram({ name: 'istio_request_bytes', help: 'Request size (headers and body) in bytes.', labelNames, buckets: SIZE_BUCKETS, registers: [registry] }),
    responseBytes: new SeriesHistogram({ name: 'istio_response_bytes', help: 'Response size (headers and body) in bytes.', labelNames, buckets: SIZE_BUCKETS, registers: [registry] }),
    retries: new Counter({ name: 'ambit_request_retries_total', help: 'Retries the waypoint made, by retry condition.', labelNames: ['destination_service', 'route', 'reason'], registers: [registry] }),
    timeouts: new Counter({ name: 'ambit_request_timeouts_total', help: 'Requests or tries that hit a timeout (kind: request|per_try).', labelNames: ['destination_service', 'route', 'kind'], registers: [registry] }),
    circuitBreakerTrips: new Counter({ name: 'ambit_circuit_breaker_trips_total', help: 'Requests refused by connection-pool limits or the retry budget.', labelNames: ['destination_service', 'reason'], registers: [registry] }),
    outlierEjections: new Counter({ name: 'ambit_outlier_ejections_total', help: 'Endpoints ejected by outlier detection.', labelNames: ['destination_service'], registers: [registry] }),
    faults: new Counter({ name: 'ambit_faults_injected_total', help: 'Injected faults (kind: delay|abort).', labelNames: ['destination_service', 'route', 'kind'], registers: [registry] }),
    policyDenials: new Counter({ name: 'ambit_policy_denials_total', help: 'Requests the waypoint refused (reason: rbac|rate_limited).', labelNames: ['destination_service', 'reason'], registers: [registry] }),
  };
}

/**
 * A full label set with every field "unknown" except the reporter: "waypoint" for a waypoint,
 * "source" for an ingress gateway (as Istio's gateways report: they are the requests' client side).
 */
export function baseLabels(reporter: 'waypoint' | 'source' = 'waypoint'): IstioHttpLabels {
  const out = {} as IstioHttpLabels;
  for (const l of ISTIO_HTTP_LABELS) out[l] = UNKNOWN;
  out.reporter = reporter;
  out.response_flags = RESPONSE_FLAGS.NONE;
  out.grpc_response_status = '';
  return out;
}

export interface RequestRecord {
  labels: IstioHttpLabels;
  durationMs: number;
  requestBytes: number;
  responseBytes: number;
}

/** Records one request in the four per-request series (one key per label set, built once). */
export function recordRequest(m: WaypointMetrics, r: RequestRecord): void {
  let key = '';
  for (const l of ISTIO_HTTP_LABELS) key += r.labels[l] + '\u0001';
  const labels = (): IstioHttpLabels => r.labels;
  m.requests.cell(key, labels).value++;
  m.duration.observe(m.duration.cell(key, labels), r.durationMs);
  m.requestBytes.observe(m.requestBytes.cell(key, labels), r.requestBytes);
  m.responseBytes.observe(m.responseBytes.cell(key, labels), r.responseBytes);
}

/** `reviews.bookinfo.svc.cluster.local` → name reviews, namespace bookinfo. */
export function serviceParts(host: string, fallbackNs: string | undefined): { name: string; namespace: string } {
  const parts = host.split('.');
  if (parts.length >= 3 && parts[2] === 'svc') return { name: parts[0]!, namespace: parts[1]! };
  return { name: parts[0] ?? host, namespace: fallbackNs ?? UNKNOWN };
}
