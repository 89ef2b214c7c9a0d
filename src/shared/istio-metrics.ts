/**
 * Istio's standard traffic metrics, one definition for every component that reports them (agent,
 * waypoint, ingress gateway): the label table, the families, and the one builder that turns a
 * source, a destination and a service into a full label set. A workload gets the same label values
 * whoever reports it, because every component describes it through `peerOfWorkload`.
 * Invariants: every label is always present ("unknown" when not known, as Istio does); label
 * values come from config (workloads, services, identities), never from request text, so the
 * series stay bounded.
 */
import type { Service, Workload } from './model.js';
import { ISTIO_BUILD_METRIC, SeriesCounter, SeriesHistogram, UNKNOWN, type Registry } from './metrics.js';

export { ISTIO_BUILD_METRIC } from './metrics.js';

/** The labels of Istio's TCP metrics (ztunnel's CommonTrafficLabels, Envoy's TCP stats), in order. */
export const ISTIO_TCP_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

/** The labels of Istio's HTTP/gRPC metrics: the TCP set plus the response codes. */
export const ISTIO_HTTP_LABELS = [...ISTIO_TCP_LABELS, 'response_code', 'grpc_response_status'] as const;

export type IstioTcpLabel = (typeof ISTIO_TCP_LABELS)[number];
export type IstioHttpLabel = (typeof ISTIO_HTTP_LABELS)[number];
export type IstioTcpLabels = Record<IstioTcpLabel, string>;
export type IstioHttpLabels = Record<IstioHttpLabel, string>;

export const ISTIO_TCP_METRICS = {
  opened: 'istio_tcp_connections_opened_total',
  closed: 'istio_tcp_connections_closed_total',
  sent: 'istio_tcp_sent_bytes_total',
  received: 'istio_tcp_received_bytes_total',
} as const;

export const ISTIO_HTTP_METRICS = {
  requests: 'istio_requests_total',
  duration: 'istio_request_duration_milliseconds',
  requestBytes: 'istio_request_bytes',
  responseBytes: 'istio_response_bytes',
} as const;


/** ztunnel's config-stream (xDS) counters, which the agent and the waypoint export. */
export const ISTIO_XDS_METRICS = {
  messages: 'istio_xds_message_total',
  messageBytes: 'istio_xds_message_bytes_total',
  terminations: 'istio_xds_connection_terminations_total',
} as const;

/** ztunnel's DNS proxy metrics (the agent's, src/agent/dns/metrics.ts) and their labels. */
export const ISTIO_DNS_METRICS = {
  requests: 'istio_dns_requests_total',
  upstreamRequests: 'istio_dns_upstream_requests_total',
  upstreamFailures: 'istio_dns_upstream_failures_total',
  upstreamDuration: 'istio_dns_upstream_request_duration_seconds',
} as const;
export const ISTIO_DNS_LABELS = ['request_query_type', 'request_protocol', 'source_canonical_service', 'source_canonical_revision'] as const;

/**
 * Every `istio_*` metric an Ambit component exports, with its exact label names (histograms: the
 * `_bucket` series add `le`). The end-to-end tests check every scraped series against this table.
 */
export const ISTIO_METRIC_LABELS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  ...Object.fromEntries(Object.values(ISTIO_TCP_METRICS).map((n) => [n, ISTIO_TCP_LABELS])),
  ...Object.fromEntries(Object.values(ISTIO_HTTP_METRICS).map((n) => [n, ISTIO_HTTP_LABELS])),
  [ISTIO_BUILD_METRIC]: ['component', 'tag'],
  [ISTIO_XDS_METRICS.messages]: ['url'],
  [ISTIO_XDS_METRICS.messageBytes]: ['url'],
  [ISTIO_XDS_METRICS.terminations]: ['reason'],
  ...Object.fromEntries(Object.values(ISTIO_DNS_METRICS).map((n) => [n, ISTIO_DNS_LABELS])),
});

/** Who reports: the agent on the client side (`source`) or server side (`destination`), a waypoint, or a gateway (`source`, as Istio's gateways do). */
export type Reporter = 'source' | 'destination' | 'waypoint';

/** The eight labels that describe one end of a connection (`source_*` or `destination_*`). */
export interface PeerLabels {
  workload: string;
  namespace: string;
  principal: string;
  app: string;
  version: string;
  canonicalService: string;
  canonicalRevision: string;
  cluster: string;
}

/** destination_service, its name and its namespace. */
export interface ServiceLabels {
  service: string;
  name: string;
  namespace: string;
}

const known = (s: string | undefined): string => (s === undefined || s === '' ? UNKNOWN : s);

/**
 * The labels of one end from what is known of it. A known workload's app and version are its
 * canonical service and revision (as ztunnel reports them), its revision `latest` when unlabelled.
 */
export interface PeerInput {
  workload?: string | undefined;
  namespace?: string | undefined;
  principal?: string | undefined;
  canonicalService?: string | undefined;
  canonicalRevision?: string | undefined;
  cluster?: string | undefined;
}

export function peerLabels(p: PeerInput): PeerLabels {
  const canonicalService = known(p.canonicalService ?? p.workload);
  const canonicalRevision = p.canonicalRevision || (canonicalService !== UNKNOWN ? 'latest' : UNKNOWN);
  return {
    workload: known(p.workload),
    namespace: known(p.namespace),
    principal: known(p.principal),
    app: canonicalService,
    version: canonicalRevision,
    canonicalService,
    canonicalRevision,
    cluster: known(p.cluster),
  };
}

/** An end nothing is known of, or only its peer identity and namespace (from its certificate). */
export function unknownPeer(principal?: string, namespace?: string): PeerLabels {
  return peerLabels({ principal, namespace });
}

/** The cluster part of a workload uid `<cluster>//v1/Pod/<ns>/<name>`, or `unknown`. */
export function clusterOfUid(uid: string): string {
  const i = uid.indexOf('//');
  return i > 0 ? uid.slice(0, i) : UNKNOWN;
}

/**
 * One workload's labels, the same in every component: workload = its owner (Deployment) name,
 * cluster from its uid (the controller's cluster id), principal as given (the identity it proved,
 * or undefined when it proved none).
 */
export function peerOfWorkload(w: Workload | undefined, principal?: string): PeerLabels {
  if (!w) return unknownPeer(principal);
  return peerLabels({
    workload: w.workloadName || w.name,
    namespace: w.namespace,
    principal,
    canonicalService: w.canonicalName,
    canonicalRevision: w.canonicalRevision,
    cluster: clusterOfUid(w.uid),
  });
}

const NO_SERVICE: ServiceLabels = Object.freeze({ service: UNKNOWN, name: UNKNOWN, namespace: UNKNOWN });

/** A Service's labels; all `unknown` without one. */
export function serviceLabels(s: Pick<Service, 'hostname' | 'name' | 'namespace'> | undefined): ServiceLabels {
  return s ? { service: known(s.hostname), name: known(s.name), namespace: known(s.namespace) } : NO_SERVICE;
}

/**
 * The labels of a host a request or route named: the Service of that hostname when `lookup` knows
 * it, else a cluster-local name read as `<name>.<namespace>.svc...`, else an external host
 * (ServiceEntry-style: the host is the name, `namespace` the namespace of the config that named
 * it). An IP address or no host is `unknown`: a label never carries an address.
 */
export function serviceLabelsOfHost(host: string | undefined, lookup?: (host: string) => Pick<Service, 'hostname' | 'name' | 'namespace'> | undefined, namespace?: string): ServiceLabels {
  if (!host || isIpLiteral(host)) return NO_SERVICE;
  const svc = lookup?.(host);
  if (svc) return serviceLabels(svc);
  const parts = host.split('.');
  if (parts.length >= 3 && parts[2] === 'svc') return { service: host, name: parts[0]!, namespace: parts[1]! };
  return { service: host, name: host, namespace: known(namespace) };
}

function isIpLiteral(host: string): boolean {
  return /^\[?[0-9a-f:]*:[0-9a-f:.]*\]?$/i.test(host) || /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
}

export interface IstioLabelInput {
  reporter: Reporter;
  source: PeerLabels;
  destination: PeerLabels;
  service: ServiceLabels;
  protocol: 'tcp' | 'http' | 'grpc';
  /** Istio response flags (`-` when none): ztunnel's `DENY`/`CONNECT`..., Envoy's `NR`/`UH`.... */
  responseFlags?: string;
  /** The caller proved its identity with mutual TLS. */
  mtls: boolean;
}

/** The full label set of Istio's TCP metrics. */
export function istioTcpLabels(i: IstioLabelInput): IstioTcpLabels {
  const s = i.source;
  const d = i.destination;
  return {
    reporter: i.reporter,
    source_workload: s.workload,
    source_canonical_service: s.canonicalService,
    source_canonical_revision: s.canonicalRevision,
    source_workload_namespace: s.namespace,
    source_principal: s.principal,
    source_app: s.app,
    source_version: s.version,
    source_cluster: s.cluster,
    destination_service: i.service.service,
    destination_service_namespace: i.service.namespace,
    destination_service_name: i.service.name,
    destination_workload: d.workload,
    destination_canonical_service: d.canonicalService,
    destination_canonical_revision: d.canonicalRevision,
    destination_workload_namespace: d.namespace,
    destination_principal: d.principal,
    destination_app: d.app,
    destination_version: d.version,
    destination_cluster: d.cluster,
    request_protocol: i.protocol,
    response_flags: i.responseFlags ?? '-',
    connection_security_policy: i.mtls ? 'mutual_tls' : UNKNOWN,
  };
}

/** The full label set of Istio's request metrics; `grpcStatus` is empty for plain HTTP (as Envoy reports it). */
export function istioHttpLabels(i: IstioLabelInput & { responseCode: number; grpcStatus?: string }): IstioHttpLabels {
  return { ...istioTcpLabels(i), response_code: String(i.responseCode), grpc_response_status: i.grpcStatus ?? '' };
}

/** The map key of a label set: its values in `names` order. */
export function labelKey<L extends string>(labels: Readonly<Record<L, string>>, names: readonly L[]): string {
  let key = '';
  for (const n of names) key += labels[n] + '\u0001';
  return key;
}

export interface IstioTcpMetrics {
  opened: SeriesCounter<IstioTcpLabel>;
  closed: SeriesCounter<IstioTcpLabel>;
  sent: SeriesCounter<IstioTcpLabel>;
  received: SeriesCounter<IstioTcpLabel>;
}

/** Istio's four TCP counters in `registry` (bound series: byte counters move per chunk). */
export function createIstioTcpMetrics(registry: Registry): IstioTcpMetrics {
  const counter = (name: string, help: string): SeriesCounter<IstioTcpLabel> => new SeriesCounter({ name, help, labelNames: ISTIO_TCP_LABELS, registers: [registry] });
  return {
    opened: counter(ISTIO_TCP_METRICS.opened, 'TCP connections opened.'),
    closed: counter(ISTIO_TCP_METRICS.closed, 'TCP connections closed.'),
    sent: counter(ISTIO_TCP_METRICS.sent, 'Bytes sent toward the connection initiator (response direction).'),
    received: counter(ISTIO_TCP_METRICS.received, 'Bytes received from the connection initiator (request direction).'),
  };
}

export interface IstioHttpMetrics {
  requests: SeriesCounter<IstioHttpLabel>;
  duration: SeriesHistogram<IstioHttpLabel>;
  requestBytes: SeriesHistogram<IstioHttpLabel>;
  responseBytes: SeriesHistogram<IstioHttpLabel>;
}

/** Istio's bucket bounds for request duration (ms) and sizes (bytes). */
const DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000];

/** Istio's four request metrics in `registry`. */
export function createIstioHttpMetrics(registry: Registry): IstioHttpMetrics {
  const labelNames = ISTIO_HTTP_LABELS;
  const registers = [registry];
  return {
    requests: new SeriesCounter({ name: ISTIO_HTTP_METRICS.requests, help: 'Requests handled.', labelNames, registers }),
    duration: new SeriesHistogram({ name: ISTIO_HTTP_METRICS.duration, help: 'Request duration in milliseconds.', labelNames, buckets: DURATION_BUCKETS_MS, registers }),
    requestBytes: new SeriesHistogram({ name: ISTIO_HTTP_METRICS.requestBytes, help: 'Request size (headers and body) in bytes.', labelNames, buckets: SIZE_BUCKETS, registers }),
    responseBytes: new SeriesHistogram({ name: ISTIO_HTTP_METRICS.responseBytes, help: 'Response size (headers and body) in bytes.', labelNames, buckets: SIZE_BUCKETS, registers }),
  };
}

/** Records one request in the four request series. */
export function recordIstioRequest(m: IstioHttpMetrics, labels: IstioHttpLabels, r: { durationMs: number; requestBytes: number; responseBytes: number }): void {
  const key = labelKey(labels, ISTIO_HTTP_LABELS);
  const get = (): IstioHttpLabels => labels;
  m.requests.cell(key, get).value++;
  m.duration.observe(m.duration.cell(key, get), r.durationMs);
  m.requestBytes.observe(m.requestBytes.cell(key, get), r.requestBytes);
  m.responseBytes.observe(m.responseBytes.cell(key, get), r.responseBytes);
}
