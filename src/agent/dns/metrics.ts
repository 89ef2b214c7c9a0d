/**
 * The DNS proxy's metrics under ztunnel's names and labels, so Istio's ztunnel dashboard reads
 * them: `istio_dns_requests_total` (every query a pod sent), `istio_dns_upstream_requests_total`
 * and `istio_dns_upstream_failures_total` (forwarded ones), and
 * `istio_dns_upstream_request_duration_seconds`. Labels: `request_query_type` (lowercase: `a`,
 * `aaaa`, ...), `request_protocol` (`udp`|`tcp`), `source_canonical_service` and
 * `source_canonical_revision` of the asking pod.
 */
import { Counter, Histogram, type Registry } from '../../shared/metrics.js';
import { ISTIO_DNS_LABELS, ISTIO_DNS_METRICS } from '../../shared/istio-metrics.js';

export type DnsLabelName = (typeof ISTIO_DNS_LABELS)[number];
export type DnsLabels = Record<DnsLabelName, string>;

/** ztunnel's buckets for the upstream duration, in seconds. */
export const DNS_DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.1, 1, 5];

export interface DnsMetrics {
  requests: Counter<DnsLabelName>;
  upstreamRequests: Counter<DnsLabelName>;
  upstreamFailures: Counter<DnsLabelName>;
  upstreamDuration: Histogram<DnsLabelName>;
}

export function createDnsMetrics(registry: Registry): DnsMetrics {
  const labelNames = [...ISTIO_DNS_LABELS];
  return {
    requests: new Counter({ name: ISTIO_DNS_METRICS.requests, help: 'Total number of DNS requests (unstable)', labelNames, registers: [registry] }),
    upstreamRequests: new Counter({
      name: ISTIO_DNS_METRICS.upstreamRequests,
      help: 'Total number of DNS requests forwarded to upstream (unstable)',
      labelNames,
      registers: [registry],
    }),
    upstreamFailures: new Counter({
      name: ISTIO_DNS_METRICS.upstreamFailures,
      help: 'Total number of DNS requests that failed to forward upstream (unstable)',
      labelNames,
      registers: [registry],
    }),
    upstreamDuration: new Histogram({
      name: ISTIO_DNS_METRICS.upstreamDuration,
      help: 'Total time in seconds Istio takes to get DNS response from upstream (unstable)',
      labelNames,
      buckets: DNS_DURATION_BUCKETS,
      registers: [registry],
    }),
  };
}
