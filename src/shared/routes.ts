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
  /** Only requests whose caller's mTLS identity is of this namespace (Istio sourceNamespace). */
  sourceNamespace?: string;
  /** Only requests from a mesh workload (its address and identity verified) carrying these labels (Istio sourceLabels). */
  sourceLabels?: Record<string, string>;
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
  /**
   * Set for a backend the route may not use (Gateway API RefNotPermitted): requests picked for it
   * get a 500, as the Gateway API requires, instead of reaching another backend.
   */
  refused?: true;
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

/**
 * Istio HTTPRedirect: a 3xx whose Location is the request URL with the set parts replaced. `uri`
 * replaces the whole path (with the request's query kept unless `uri` has its own); `port` and
 * `derivePort` are exclusive.
 */
export interface RedirectPolicy {
  /** 301, 302, 303, 307 or 308. */
  code: number;
  scheme?: string;
  authority?: string;
  port?: number;
  /** FROM_REQUEST_PORT keeps the port the request was addressed to; FROM_PROTOCOL_DEFAULT drops it. */
  derivePort?: 'FROM_REQUEST_PORT' | 'FROM_PROTOCOL_DEFAULT';
  uri?: string;
}

/** Istio CorsPolicy, as Envoy's CORS filter applies it. */
export interface CorsPolicy {
  /** Origins allowed; an `exact: "*"` entry allows any origin. */
  allowOrigins: StringMatcher[];
  allowMethods: string[];
  allowHeaders: string[];
  exposeHeaders: string[];
  maxAgeSeconds?: number;
  allowCredentials?: boolean;
  /** Preflights from origins not allowed: FORWARD (default) passes them on; IGNORE answers 200 with no CORS headers. */
  unmatchedPreflights: 'FORWARD' | 'IGNORE';
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
  /** Fixed reply instead of a backend (Istio directResponse). */
  directResponse?: { status: number; body?: string };
  /** A redirect instead of a backend (Istio redirect). */
  redirect?: RedirectPolicy;
  cors?: CorsPolicy;
}

/**
 * A route for connections the waypoint carries as bytes (Istio VirtualService `tcp`/`tls`,
 * Gateway API TCPRoute/TLSRoute): the first route whose match holds picks a backend by weight for
 * the whole connection. A match holds when each field it sets does; no match entries match all.
 */
export interface L4Route {
  name: string;
  match: Array<{
    /** Only connections to this service port. */
    port?: number;
    /** TLS routes: the ClientHello SNI is one of these (`*.` wildcards allowed). */
    sniHosts?: string[];
    /** Only connections whose caller's mTLS identity is of this namespace (Istio sourceNamespace). */
    sourceNamespace?: string;
    /** Only connections from a mesh workload carrying these labels (Istio sourceLabels). */
    sourceLabels?: Record<string, string>;
    /** Only connections to an address in one of these CIDRs (Istio destinationSubnets). */
    destinationSubnets?: string[];
  }>;
  backends: RouteBackend[];
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
  /** JWT request principals (`<iss>/<sub>`, RequestAuthentication); none without a valid token. */
  requestPrincipals?: StringMatch[];
  notRequestPrincipals?: StringMatch[];
  /**
   * CIDRs or addresses the source address must (not) be in (Istio `ipBlocks`, `source.ip`): an
   * ingress gateway's downstream peer, a waypoint's client as the source agent forwarded it.
   */
  ipBlocks?: string[];
  notIpBlocks?: string[];
  /**
   * The same for the original client's address (Istio `remoteIpBlocks`, `remote.ip`): the source
   * address, or with trusted proxies in front (a gateway listener's, a waypoint config's
   * numTrustedProxies) the X-Forwarded-For entry they name.
   */
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
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

/**
 * A `when` condition on a request header (`request.headers[<name>]`) or, with `claim`, on a claim
 * of the request's valid JWT (`request.auth.claims[a][b]`: the path a, b; a list claim matches
 * when any element does). `header` is empty for a claim condition.
 */
export interface L7Condition {
  header: string;
  claim?: string[];
  values: StringMatch[];
  notValues: StringMatch[];
}

/**
 * One RequestAuthentication jwtRule, enforced by waypoints: a token found in the request (the
 * headers with their prefixes, then the query parameters) must verify against the rule of its
 * issuer, or the request gets 401; a request without a token goes on with no request principal.
 */
export interface JwtRule {
  issuer: string;
  /** When set, the token's `aud` must name one of them. */
  audiences: string[];
  /** Key source: the JWKS itself (JSON text), or a URL the waypoint fetches it from. */
  jwks?: string;
  jwksUri?: string;
  /** Header names (lowercase) and the prefix the token follows; default authorization "Bearer ". */
  fromHeaders: Array<{ name: string; prefix: string }>;
  /** Query parameters; default access_token (only when fromHeaders is also defaulted). */
  fromParams: string[];
  /** Header the verified payload (base64url JSON) is sent upstream in. */
  outputPayloadToHeader?: string;
  /** Keep the token in the request upstream (default: removed). */
  forwardOriginalToken: boolean;
  /** A selector RequestAuthentication on ingress gateway pods: only these pods (`ns/name`) apply it. */
  pods?: string[];
}

/** from (OR within) AND to (OR within) AND when (AND) AND fromAll (AND). Empty lists match everything. */
export interface L7Rule {
  from: L7Source[];
  to: L7Operation[];
  when: L7Condition[];
  /** Source conditions of `when` (`source.principal`, `source.ip`, ...): each must match, besides one of `from`. */
  fromAll?: L7Source[];
}

/**
 * An external authorizer from the mesh config's `extensionProviders` (Istio `envoyExtAuthzHttp` /
 * `envoyExtAuthzGrpc`), resolved by the controller. Requests a CUSTOM policy matches are checked
 * with it before DENY and ALLOW policies run.
 */
export interface ExtAuthzProvider {
  name: string;
  protocol: 'http' | 'grpc';
  /** Service hostname (or address) of the authorizer and its port. */
  service: string;
  port: number;
  /** Longest wait for its answer; Istio's default is 600s. */
  timeoutMs: number;
  /** A failed check (unreachable, timeout, 5xx, gRPC error) lets the request through. */
  failOpen: boolean;
  /** Status answered on a failed check when not failing open (default 403). */
  statusOnError?: number;
  /** HTTP only: prefix of the check request's path. */
  pathPrefix?: string;
  /** HTTP only: request headers sent in the check besides Host, Method, Path and Content-Length. */
  includeRequestHeadersInCheck?: StringMatch[];
  /** HTTP only: headers of an OK answer set on the upstream request (none when empty). */
  headersToUpstreamOnAllow?: StringMatch[];
  /** HTTP only: headers of a denial passed to the client (all but Host when absent). */
  headersToDownstreamOnDeny?: StringMatch[];
  /** HTTP only: headers of an OK answer set on the response to the client (none when absent). */
  headersToDownstreamOnAllow?: StringMatch[];
  /** HTTP only: fixed headers added to every check request (over the client's of the same name). */
  includeAdditionalHeadersInCheck?: Record<string, string>;
  /**
   * The request body goes in the check: the waypoint holds up to `maxRequestBytes` of it first; a
   * longer body is answered 413 unless `allowPartialMessage` (then its first bytes go, marked
   * partial). HTTP providers get it as the check request's body, gRPC ones as
   * `attributes.request.http.body` (`raw_body` with `packAsBytes`).
   */
  includeRequestBodyInCheck?: { maxRequestBytes: number; allowPartialMessage: boolean; packAsBytes: boolean };
}

export interface L7AuthorizationPolicy {
  /** `namespace/name` */
  name: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';
  /** CUSTOM only: the provider named in `provider.name`. */
  providerName?: string;
  /** CUSTOM only: that provider; absent when the mesh config has no usable one, and the policy then denies what it matches (Istio). */
  provider?: ExtAuthzProvider;
  /** No rules: ALLOW matches nothing, DENY/AUDIT match nothing (Istio). `[{}]`-style empty rule matches all. */
  rules: L7Rule[];
  dryRun: boolean;
  /** A selector policy on ingress gateway pods (Istio: policies selecting the gateway's pods): only these pods (`ns/name`) apply it. */
  pods?: string[];
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
  /** Routes of connections on TCP ports (VirtualService `tcp`, TCPRoute). */
  tcpRoutes?: L4Route[];
  /** Routes of TLS connections on TCP ports, by SNI (VirtualService `tls`, TLSRoute); checked before tcpRoutes. */
  tlsRoutes?: L4Route[];
  trafficPolicy?: TrafficPolicy;
  rateLimit?: LocalRateLimit;
  authorization: L7AuthorizationPolicy[];
  /** RequestAuthentication rules attached to this service (checked before authorization). */
  jwtRules?: JwtRule[];
  /** Telemetry knobs in force (Istio's Telemetry kind); absent: access log on, every new trace sampled, spans reported. */
  telemetry?: RouteTelemetry;
  /**
   * Mesh configs served by a waypoint: proxies in front of the callers whose X-Forwarded-For
   * entries the waypoint trusts for `remote.ip` (Istio gatewayTopology.numTrustedProxies of the
   * waypoint's `proxy.istio.io/config`, else the mesh's defaultConfig). Absent: none.
   */
  numTrustedProxies?: number;
}

/** Access-log and tracing knobs of one route config (Istio Telemetry `accessLogging`, `tracing`). */
export interface RouteTelemetry {
  /** false: no access-log line for these requests. */
  accessLog: boolean;
  /**
   * The `filter.expression`s of the enabled `accessLogging` entries (src/shared/access-filter.ts):
   * a line is written when one of them holds. Absent: every request is logged.
   */
  accessLogFilters?: string[];
  /** Istio Telemetry `metrics[].overrides`, in order, for the request metrics of these requests. */
  metricOverrides?: MetricOverride[];
  /**
   * The access log's format from the `envoyFileAccessLog` provider the Telemetry names
   * (src/shared/access-log-format.ts): an Envoy text line, or a JSON object of these labels.
   * Absent: Ambit's own JSON line.
   */
  accessLogFormat?: { text: string } | { labels: Record<string, string> };
  /** Percent (0-100) of requests that carry no trace decision for which a sampled trace starts. */
  samplingPercent: number;
  /** false: the waypoint reports no span (trace context still propagates). */
  reportSpans: boolean;
}

/** The request metric families a Telemetry metrics override can name. */
export const OVERRIDABLE_METRICS = ['requests', 'duration', 'requestBytes', 'responseBytes'] as const;
export type OverridableMetric = (typeof OVERRIDABLE_METRICS)[number];

/**
 * One Istio Telemetry `metrics[].overrides[]` entry as a proxy applies it to its request metrics
 * (`istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes`,
 * `istio_response_bytes`). Overrides apply in order; a later one wins for the same label.
 */
export interface MetricOverride {
  metrics: OverridableMetric[];
  /** Which reports it changes: SERVER (a waypoint's), CLIENT (a gateway's, reporter=source), or both. */
  mode: 'CLIENT_AND_SERVER' | 'CLIENT' | 'SERVER';
  /** true: these metrics are not recorded; false: recorded again (undone by a later override). */
  disabled?: boolean;
  /**
   * Standard labels changed: removed (recorded empty, which Prometheus reads as absent), or set
   * from an expression (src/shared/access-filter.ts syntax; its value as a string, `unknown` when
   * it cannot be evaluated).
   */
  tags?: Record<string, { remove: true } | { value: string }>;
}

/** Who a request or connection comes from, as far as route matches may use it (verified only). */
export interface RouteCaller {
  /** Namespace of the caller's mTLS identity. */
  namespace?: string;
  /** Labels of the mesh workload whose address and identity the caller presented. */
  labels?: Record<string, string>;
}

/** True when a match's sourceNamespace and sourceLabels (when set) hold for the caller. */
export function callerMatches(m: { sourceNamespace?: string; sourceLabels?: Record<string, string> }, caller: RouteCaller | undefined): boolean {
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== caller?.namespace) return false;
  if (m.sourceLabels !== undefined) {
    const labels = caller?.labels;
    if (!labels) return false;
    for (const [k, v] of Object.entries(m.sourceLabels)) if (labels[k] !== v) return false;
  }
  return true;
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
  tls?: { mode: 'SIMPLE' | 'MUTUAL' | 'OPTIONAL_MUTUAL' | 'PASSTHROUGH' | 'ISTIO_MUTUAL'; credentialName?: string };
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
  /**
   * A Gateway API TLS listener in Terminate mode: after the handshake its TLSRoutes pick the
   * backend by SNI (Istio's TLS servers that terminate route by `tcp` routes).
   */
  routeBySni?: boolean;
}

/** A TLS certificate an ingress listener presents for some hosts (from a kubernetes.io/tls Secret). */
export interface ListenerCertificate {
  /** Hosts (SNI names, `*.` wildcards, `*`) this certificate is for, from the Gateway server. */
  hosts: string[];
  /** `<namespace>/<name>` of the Secret it came from (for messages; never the material). */
  secret: string;
  certPem: string;
  keyPem: string;
  /** TLS MUTUAL: client certificates must chain to these CA certificates (the Secret's `ca.crt`). */
  caPem?: string;
  /** With caPem: revoked client certificates (the Secret's `ca.crl`, PEM X509 CRLs) are refused. */
  crlPem?: string;
}

/**
 * One port an ingress gateway pod listens on: the Gateway servers selecting the pod merged per
 * port. HTTP is plain HTTP/1.1 and h2c; HTTPS terminates TLS with the certificate whose hosts
 * match the client's SNI (the first one when none does), and with `caPem` certificates (MUTUAL)
 * requires a client certificate; TCP connections follow the gateway's `tcp` routes for the port;
 * TLS connections (PASSTHROUGH) are routed by the ClientHello's SNI with the `tls` routes and
 * passed through undecrypted. With `terminate`, TCP and TLS listeners first end TLS as HTTPS
 * does (same certificates, client-certificate and ISTIO_MUTUAL rules) and route the decrypted
 * bytes. Resource name `<pod ns>/<pod name>/<port>`.
 */
export interface GatewayListener {
  /** `<namespace>/<name>` of the gateway pod this listener is for. */
  pod: string;
  port: number;
  protocol: 'HTTP' | 'HTTPS' | 'TCP' | 'TLS';
  /** Gateways (`ns/name`) with a server on this port. */
  gateways: string[];
  hosts: string[];
  /** HTTPS and `terminate`: at least one (none with istioMutual); either all or none carry a `caPem`. */
  certificates: ListenerCertificate[];
  /**
   * TCP and TLS: the gateway terminates TLS, then routes the decrypted connection: TCP by the
   * port's `tcp` routes (Istio TLS servers in SIMPLE, MUTUAL, OPTIONAL_MUTUAL or ISTIO_MUTUAL
   * mode), TLS by the `tls` routes matching the handshake's SNI (Gateway API TLS listeners in
   * Terminate mode).
   */
  terminate?: boolean;
  /**
   * HTTPS (or `terminate`) with tls.mode ISTIO_MUTUAL: the gateway presents its own mesh certificate and requires a
   * client certificate with a SPIFFE identity of the mesh (which then is the request's principal).
   */
  istioMutual?: boolean;
  /** HTTP only: answer every request with a 301 to the same URL over https (Istio httpsRedirect). */
  httpsRedirect?: boolean;
  /**
   * HTTP and HTTPS: proxies in front of the gateway whose X-Forwarded-For entries are trusted
   * (Istio `gatewayTopology.numTrustedProxies` of the pod's `proxy.istio.io/config`): the client
   * address is the entry that many from the right.
   */
  numTrustedProxies?: number;
  /**
   * HTTPS with `caPem` certificates, tls.mode OPTIONAL_MUTUAL: a client certificate is requested
   * and, when the client sends one, must chain to the CA; a client without one is served too.
   */
  optionalClientCert?: boolean;
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
