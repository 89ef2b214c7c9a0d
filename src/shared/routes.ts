/**
 * The route model the controller pushes to waypoints and ingress gateways: per service hostname an
 * ordered list of HTTP routes, the destination's traffic policy (DestinationRule), a local rate
 * limit and the L7 authorization policies attached to it. Plain JSON data; validate-routes.ts
 * checks it (once before sending, once on receipt).
 */
import type { StringMatch } from './model.js';

export type StringMatcher = { exact: string } | { prefix: string } | { regex: string };

export interface HeaderMatcher {
  /** Lowercase header name. */
  name: string;
  match: StringMatcher | { present: boolean };
  /** Match when the header does NOT match (Istio withoutHeaders). */
  invert?: boolean;
}

export interface QueryParamMatcher {
  name: string;
  match: StringMatcher | { present: boolean };
}

/** Every set field must hold (AND). A route matches when any of its RouteMatch entries holds. */
export interface RouteMatch {
  uri?: StringMatcher;
  /** Uppercase method, e.g. GET. */
  method?: string;
  headers: HeaderMatcher[];
  queryParams: QueryParamMatcher[];
  /** Only match on this destination port (Istio match.port). */
  port?: number;
  /** Case-insensitive URI match (Istio ignoreUriCase). */
  ignoreUriCase?: boolean;
}

export interface RouteBackend {
  /** Service hostname, e.g. reviews.bookinfo.svc.cluster.local. */
  host: string;
  /** Service port; undefined means the port the request came in on. */
  port?: number;
  /** DestinationRule subset name, when any. */
  subset?: string;
  /** Endpoint labels the subset selects (resolved by the controller). */
  subsetLabels?: Record<string, string>;
  /** Integer weight; the route's weights need not sum to 100. */
  weight: number;
}

export interface HeaderOps {
  set: Record<string, string>;
  add: Record<string, string>;
  remove: string[];
}

export interface RetryBudget {
  /** Retries allowed as a percentage of requests (token bucket refilled by each request). */
  percent: number;
  /** Retries that may run concurrently even when the bucket is empty. */
  minConcurrency: number;
}

/**
 * The budget every translated retry policy gets (Istio's API has no field for one; Envoy as Istio
 * configures it has none). Retries may add at most as many tries as there were requests, plus 3
 * at once: an outage at most doubles the load on the backend (3 unbudgeted retries would
 * quadruple it), while a backend failing half its requests, which needs ~0.75 retries per request
 * to be hidden, still gets all of them.
 */
export const DEFAULT_RETRY_BUDGET: Readonly<RetryBudget> = Object.freeze({ percent: 100, minConcurrency: 3 });

export interface RetryPolicy {
  /** Retries after the first try (Istio `attempts`): 3 means up to 4 tries. */
  attempts: number;
  perTryTimeoutMs?: number;
  /** Envoy retry_on tokens: 5xx, gateway-error, reset, connect-failure, retriable-4xx,
   * refused-stream, retriable-status-codes, cancelled, deadline-exceeded, internal,
   * resource-exhausted, unavailable. */
  retryOn: string[];
  retriableStatusCodes: number[];
  /** Retry POST/PATCH and other non-idempotent methods too. */
  retryNonIdempotent?: boolean;
  budget?: RetryBudget;
  /** Base backoff between tries; jittered, capped at 10x. */
  backoffMs?: number;
}

export interface FaultPolicy {
  delay?: { percent: number; fixedDelayMs: number };
  abort?: { percent: number; httpStatus?: number; grpcStatus?: number };
}

export interface MirrorPolicy {
  host: string;
  port?: number;
  subset?: string;
  subsetLabels?: Record<string, string>;
  percent: number;
}

export interface HttpRoute {
  name: string;
  /** Empty means match every request. */
  match: RouteMatch[];
  backends: RouteBackend[];
  /**
   * uriPrefix replaces the matched URI prefix (the route's prefix match, or `matchPrefix` when
   * set, as Gateway API ReplacePrefixMatch needs); fullPath replaces the whole path.
   */
  rewrite?: { uriPrefix?: string; matchPrefix?: string; fullPath?: string; authority?: string };
  headers: { request: HeaderOps; response: HeaderOps };
  mirror?: MirrorPolicy;
  timeoutMs?: number;
  retries?: RetryPolicy;
  fault?: FaultPolicy;
  /** Fixed reply instead of a backend (Istio directResponse / redirect-free subset). */
  directResponse?: { status: number; body?: string };
}

export interface ConnectionPoolPolicy {
  /** tcp.maxConnections: concurrent upstream connections (HTTP/1: concurrent requests). */
  maxConnections?: number;
  /** http.http1MaxPendingRequests: requests that may wait for a connection. */
  http1MaxPendingRequests?: number;
  /** http.http2MaxRequests: concurrent requests to the destination. */
  http2MaxRequests?: number;
  /** http.maxRequestsPerConnection: 1 disables keep-alive. */
  maxRequestsPerConnection?: number;
}

export interface OutlierDetectionPolicy {
  consecutive5xxErrors?: number;
  consecutiveGatewayErrors?: number;
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionPercent: number;
}

export interface Subset {
  name: string;
  labels: Record<string, string>;
  trafficPolicy?: Omit<TrafficPolicy, 'subsets'>;
}

/** From the DestinationRule whose host is this service. */
export interface TrafficPolicy {
  connectionPool?: ConnectionPoolPolicy;
  outlierDetection?: OutlierDetectionPolicy;
  subsets: Subset[];
}

export interface LocalRateLimit {
  maxTokens: number;
  tokensPerFill: number;
  fillIntervalMs: number;
}

export interface L7Source {
  principals: StringMatch[];
  notPrincipals: StringMatch[];
  namespaces: StringMatch[];
  notNamespaces: StringMatch[];
}

export interface L7Operation {
  hosts: StringMatch[];
  notHosts: StringMatch[];
  paths: StringMatch[];
  notPaths: StringMatch[];
  methods: string[];
  notMethods: string[];
  ports: number[];
  notPorts: number[];
}

/** `when` condition on a request header: `request.headers[<name>]`. */
export interface L7Condition {
  header: string;
  values: StringMatch[];
  notValues: StringMatch[];
}

/** from (OR within) AND to (OR within) AND when (AND). Empty lists match everything. */
export interface L7Rule {
  from: L7Source[];
  to: L7Operation[];
  when: L7Condition[];
}

export interface L7AuthorizationPolicy {
  /** `namespace/name` */
  name: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  /** No rules: ALLOW matches nothing, DENY/AUDIT match nothing (Istio). `[{}]`-style empty rule matches all. */
  rules: L7Rule[];
  dryRun: boolean;
}

/** Route config of one service (mesh) or one host on one ingress gateway. */
export interface RouteConfig {
  /** `<namespace>/<hostname>` for mesh; `<gw namespace>/<gw name>/<hostname>` for a gateway. */
  name: string;
  namespace: string;
  /** The service hostname (mesh) or the host the gateway serves (may start with `*.`). */
  hostname: string;
  /** Authorities that select this config besides `hostname` (short names, VIPs). */
  aliases: string[];
  /** Ingress gateway binding `<namespace>/<name>`; absent for mesh (waypoint) routes. */
  gateway?: string;
  /** Waypoint `<namespace>/<name>` the service is bound to (istio.io/use-waypoint); mesh configs only. */
  waypoint?: string;
  /** Ports this config applies to; empty means all. Protocol per port (http, http2, grpc, tcp). */
  ports: Array<{ port: number; protocol: string }>;
  routes: HttpRoute[];
  trafficPolicy?: TrafficPolicy;
  rateLimit?: LocalRateLimit;
  authorization: L7AuthorizationPolicy[];
}

/** An Istio Gateway server: the listener an ingress gateway opens. */
export interface GatewayServer {
  /** `<namespace>/<name>` of the Gateway. */
  gateway: string;
  /** Position in the Gateway's `spec.servers` (for messages). */
  index?: number;
  port: number;
  name?: string;
  protocol: 'HTTP' | 'HTTPS' | 'HTTP2' | 'GRPC' | 'TLS' | 'TCP';
  hosts: string[];
  tls?: { mode: 'SIMPLE' | 'MUTUAL' | 'PASSTHROUGH' | 'ISTIO_MUTUAL'; credentialName?: string };
  /** A plain server with `tls.httpsRedirect: true`: every request gets a 301 to https. */
  httpsRedirect?: boolean;
  /** Workload selector of the Gateway (which gateway pods serve it). */
  selector: Record<string, string>;
  /** Only pods of this namespace serve it (Gateway API Gateways are served by their own pods). */
  namespace?: string;
  /** The object its problems are reported on, when not the Istio Gateway `gateway` names (objectKey form). */
  objectKey?: string;
  /** The Gateway API listener it comes from. */
  listener?: string;
}

/** A TLS certificate an ingress listener presents for some hosts (from a kubernetes.io/tls Secret). */
export interface ListenerCertificate {
  /** Hosts (SNI names, `*.` wildcards, `*`) this certificate is for, from the Gateway server. */
  hosts: string[];
  /** `<namespace>/<name>` of the Secret it came from (for messages; never the material). */
  secret: string;
  certPem: string;
  keyPem: string;
}

/**
 * One port an ingress gateway pod listens on: the Gateway servers selecting the pod merged per
 * port. HTTP is plain HTTP/1.1 and h2c; HTTPS terminates TLS with the certificate whose hosts
 * match the client's SNI (the first one when none does). Resource name `<pod ns>/<pod name>/<port>`.
 */
export interface GatewayListener {
  /** `<namespace>/<name>` of the gateway pod this listener is for. */
  pod: string;
  port: number;
  protocol: 'HTTP' | 'HTTPS';
  /** Gateways (`ns/name`) with a server on this port. */
  gateways: string[];
  hosts: string[];
  /** HTTPS only: at least one. */
  certificates: ListenerCertificate[];
  /** HTTP only: answer every request with a 301 to the same URL over https (Istio httpsRedirect). */
  httpsRedirect?: boolean;
}

/** The certificate a listener presents for an SNI name: exact host, then wildcard, then the first. */
export function certificateFor(certs: readonly ListenerCertificate[], serverName: string | undefined): ListenerCertificate | undefined {
  const sni = (serverName ?? '').toLowerCase();
  if (sni) {
    const exact = certs.find((c) => c.hosts.some((h) => h.toLowerCase() === sni));
    if (exact) return exact;
    const wild = certs.find((c) => c.hosts.some((h) => h === '*' || (h.startsWith('*.') && sni.endsWith(h.slice(1).toLowerCase()))));
    if (wild) return wild;
  }
  return certs[0];
}

export function routeConfigName(namespace: string, hostname: string, gateway?: string): string {
  return gateway ? `${gateway}/${hostname}` : `${namespace}/${hostname}`;
}

export function emptyHeaderOps(): HeaderOps {
  return { set: {}, add: {}, remove: [] };
}

// ---------------------------------------------------------------------------------------------
// validation

const RETRY_ON = new Set([
  '5xx',
  'gateway-error',
  'reset',
  'connect-failure',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'envoy-ratelimited',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
]);

/** The retry_on conditions a RetryPolicy may name. */
export const RETRY_ON_TOKENS: readonly string[] = [...RETRY_ON];

export function isRetryOnToken(v: string): boolean {
  return RETRY_ON.has(v);
}
