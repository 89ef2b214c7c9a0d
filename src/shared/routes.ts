/**
 * The route model the controller pushes to waypoints and ingress gateways: per service hostname an
 * ordered list of HTTP routes, the destination's traffic policy (DestinationRule), a local rate
 * limit and the L7 authorization policies attached to it. Plain JSON data; receivers validate it
 * with validateRouteConfig() before use and keep the last good config when it fails.
 */
import type { StringMatch } from './model.js';
import { Issues, isRecord, type Issue } from './validate.js';

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

export function isRetryOnToken(v: string): boolean {
  return RETRY_ON.has(v);
}

function isInt(v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

function isPercent(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 100;
}

function stringMap(issues: Issues, v: unknown, path: string): void {
  if (v === undefined) return;
  if (!isRecord(v)) return issues.add(path, 'must be a map of strings', v);
  for (const [k, x] of Object.entries(v)) if (typeof x !== 'string') issues.add(`${path}.${k}`, 'must be a string', x);
}

function stringList(issues: Issues, v: unknown, path: string, required = false): void {
  if (v === undefined && !required) return;
  if (!Array.isArray(v)) return issues.add(path, 'must be a list of strings', v);
  v.forEach((x, i) => {
    if (typeof x !== 'string') issues.add(`${path}[${i}]`, 'must be a string', x);
  });
}

function stringMatcher(issues: Issues, v: unknown, path: string, allowPresent: boolean): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object with exact, prefix or regex', v);
  const keys = Object.keys(v);
  if (keys.length !== 1) return issues.add(path, 'must set exactly one of exact, prefix, regex' + (allowPresent ? ', present' : ''), v);
  const k = keys[0]!;
  const x = v[k];
  if (k === 'present' && allowPresent) {
    if (typeof x !== 'boolean') issues.add(`${path}.present`, 'must be a boolean', x);
    return;
  }
  if (k !== 'exact' && k !== 'prefix' && k !== 'regex') return issues.add(path, `unknown matcher ${JSON.stringify(k)}`, v);
  if (typeof x !== 'string') return issues.add(`${path}.${k}`, 'must be a string', x);
  if (k === 'regex') {
    try {
      new RegExp(`^(?:${x})$`);
    } catch {
      issues.add(`${path}.regex`, 'must be a valid regular expression', x);
    }
  }
}

function authzMatches(issues: Issues, v: unknown, path: string): void {
  if (v === undefined) return;
  if (!Array.isArray(v)) return issues.add(path, 'must be a list', v);
  v.forEach((m, i) => {
    const p = `${path}[${i}]`;
    if (!isRecord(m) || Object.keys(m).length !== 1) return issues.add(p, 'must set exactly one of exact, prefix, suffix, presence', m);
    const [k, x] = Object.entries(m)[0]!;
    if (k === 'presence') {
      if (x !== true) issues.add(`${p}.presence`, 'must be true', x);
    } else if (k === 'exact' || k === 'prefix' || k === 'suffix') {
      if (typeof x !== 'string') issues.add(`${p}.${k}`, 'must be a string', x);
    } else issues.add(p, `unknown matcher ${JSON.stringify(k)}`, m);
  });
}

function intList(issues: Issues, v: unknown, path: string, min: number, max: number): void {
  if (v === undefined) return;
  if (!Array.isArray(v)) return issues.add(path, 'must be a list of integers', v);
  v.forEach((x, i) => {
    if (!isInt(x, min, max)) issues.add(`${path}[${i}]`, `must be an integer ${min}..${max}`, x);
  });
}

function headerOps(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object with set, add, remove', v);
  stringMap(issues, v['set'], `${path}.set`);
  stringMap(issues, v['add'], `${path}.add`);
  stringList(issues, v['remove'], `${path}.remove`);
}

function backend(issues: Issues, v: unknown, path: string, needWeight: boolean): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (typeof v['host'] !== 'string' || v['host'].length === 0) issues.add(`${path}.host`, 'must be a non-empty hostname', v['host']);
  if (v['port'] !== undefined && !isInt(v['port'], 1, 65535)) issues.add(`${path}.port`, 'must be a port 1..65535', v['port']);
  if (v['subset'] !== undefined && typeof v['subset'] !== 'string') issues.add(`${path}.subset`, 'must be a string', v['subset']);
  stringMap(issues, v['subsetLabels'], `${path}.subsetLabels`);
  if (needWeight && !isInt(v['weight'], 0, 1_000_000)) issues.add(`${path}.weight`, 'must be an integer 0..1000000', v['weight']);
  if (!needWeight && !isPercent(v['percent'])) issues.add(`${path}.percent`, 'must be a number 0..100', v['percent']);
}

function retryPolicy(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (!isInt(v['attempts'], 0, 100)) issues.add(`${path}.attempts`, 'must be an integer 0..100', v['attempts']);
  if (v['perTryTimeoutMs'] !== undefined && !isInt(v['perTryTimeoutMs'], 1)) issues.add(`${path}.perTryTimeoutMs`, 'must be a positive integer', v['perTryTimeoutMs']);
  if (v['backoffMs'] !== undefined && !isInt(v['backoffMs'], 0)) issues.add(`${path}.backoffMs`, 'must be a non-negative integer', v['backoffMs']);
  stringList(issues, v['retryOn'], `${path}.retryOn`, true);
  if (Array.isArray(v['retryOn'])) {
    v['retryOn'].forEach((t, i) => {
      if (typeof t === 'string' && !RETRY_ON.has(t)) issues.add(`${path}.retryOn[${i}]`, `unknown retry condition; use one of ${[...RETRY_ON].join(', ')}`, t);
    });
  }
  if (!Array.isArray(v['retriableStatusCodes'])) issues.add(`${path}.retriableStatusCodes`, 'must be a list of integers', v['retriableStatusCodes']);
  else intList(issues, v['retriableStatusCodes'], `${path}.retriableStatusCodes`, 100, 599);
  if (v['retryNonIdempotent'] !== undefined && typeof v['retryNonIdempotent'] !== 'boolean') issues.add(`${path}.retryNonIdempotent`, 'must be a boolean', v['retryNonIdempotent']);
  const b = v['budget'];
  if (b !== undefined) {
    if (!isRecord(b)) issues.add(`${path}.budget`, 'must be an object', b);
    else {
      if (!isPercent(b['percent'])) issues.add(`${path}.budget.percent`, 'must be a number 0..100', b['percent']);
      if (!isInt(b['minConcurrency'], 0)) issues.add(`${path}.budget.minConcurrency`, 'must be a non-negative integer', b['minConcurrency']);
    }
  }
}

function faultPolicy(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  const d = v['delay'];
  if (d !== undefined) {
    if (!isRecord(d)) issues.add(`${path}.delay`, 'must be an object', d);
    else {
      if (!isPercent(d['percent'])) issues.add(`${path}.delay.percent`, 'must be a number 0..100', d['percent']);
      if (!isInt(d['fixedDelayMs'], 0)) issues.add(`${path}.delay.fixedDelayMs`, 'must be a non-negative integer', d['fixedDelayMs']);
    }
  }
  const a = v['abort'];
  if (a !== undefined) {
    if (!isRecord(a)) issues.add(`${path}.abort`, 'must be an object', a);
    else {
      if (!isPercent(a['percent'])) issues.add(`${path}.abort.percent`, 'must be a number 0..100', a['percent']);
      const hasHttp = a['httpStatus'] !== undefined;
      const hasGrpc = a['grpcStatus'] !== undefined;
      if (hasHttp === hasGrpc) issues.add(`${path}.abort`, 'must set exactly one of httpStatus, grpcStatus', a);
      if (hasHttp && !isInt(a['httpStatus'], 200, 599)) issues.add(`${path}.abort.httpStatus`, 'must be an HTTP status 200..599', a['httpStatus']);
      if (hasGrpc && !isInt(a['grpcStatus'], 0, 16)) issues.add(`${path}.abort.grpcStatus`, 'must be a gRPC status code 0..16', a['grpcStatus']);
    }
  }
}

function routeMatch(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (v['uri'] !== undefined) stringMatcher(issues, v['uri'], `${path}.uri`, false);
  if (v['method'] !== undefined && (typeof v['method'] !== 'string' || !/^[A-Z]+$/.test(v['method']))) issues.add(`${path}.method`, 'must be an uppercase HTTP method', v['method']);
  if (v['port'] !== undefined && !isInt(v['port'], 1, 65535)) issues.add(`${path}.port`, 'must be a port 1..65535', v['port']);
  for (const key of ['headers', 'queryParams'] as const) {
    const list = v[key];
    if (!Array.isArray(list)) {
      issues.add(`${path}.${key}`, 'must be a list', list);
      continue;
    }
    list.forEach((h, i) => {
      const p = `${path}.${key}[${i}]`;
      if (!isRecord(h)) return issues.add(p, 'must be an object with name and match', h);
      if (typeof h['name'] !== 'string' || h['name'].length === 0) issues.add(`${p}.name`, 'must be a non-empty string', h['name']);
      else if (key === 'headers' && h['name'] !== h['name'].toLowerCase()) issues.add(`${p}.name`, 'must be lowercase', h['name']);
      stringMatcher(issues, h['match'], `${p}.match`, true);
    });
  }
}

function httpRoute(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (typeof v['name'] !== 'string') issues.add(`${path}.name`, 'must be a string', v['name']);
  if (!Array.isArray(v['match'])) issues.add(`${path}.match`, 'must be a list (empty matches every request)', v['match']);
  else v['match'].forEach((m, i) => routeMatch(issues, m, `${path}.match[${i}]`));
  const direct = v['directResponse'];
  if (direct !== undefined) {
    if (!isRecord(direct) || !isInt(direct['status'], 200, 599)) issues.add(`${path}.directResponse.status`, 'must be an HTTP status 200..599', isRecord(direct) ? direct['status'] : direct);
  }
  if (!Array.isArray(v['backends'])) issues.add(`${path}.backends`, 'must be a list', v['backends']);
  else {
    if (v['backends'].length === 0 && direct === undefined) issues.add(`${path}.backends`, 'must name at least one backend (or set directResponse)', v['backends']);
    v['backends'].forEach((b, i) => backend(issues, b, `${path}.backends[${i}]`, true));
    const total = v['backends'].reduce((s: number, b) => s + (isRecord(b) && isInt(b['weight']) ? b['weight'] : 0), 0);
    if (v['backends'].length > 0 && total === 0) issues.add(`${path}.backends`, 'weights must not all be zero', v['backends']);
  }
  const rw = v['rewrite'];
  if (rw !== undefined) {
    if (!isRecord(rw)) issues.add(`${path}.rewrite`, 'must be an object', rw);
    else {
      if (rw['uriPrefix'] !== undefined && typeof rw['uriPrefix'] !== 'string') issues.add(`${path}.rewrite.uriPrefix`, 'must be a string', rw['uriPrefix']);
      for (const k of ['authority', 'matchPrefix', 'fullPath']) {
        if (rw[k] !== undefined && typeof rw[k] !== 'string') issues.add(`${path}.rewrite.${k}`, 'must be a string', rw[k]);
      }
      if (rw['uriPrefix'] !== undefined && rw['fullPath'] !== undefined) issues.add(`${path}.rewrite`, 'must not set both uriPrefix and fullPath', rw);
    }
  }
  if (!isRecord(v['headers'])) issues.add(`${path}.headers`, 'must be an object with request and response', v['headers']);
  else {
    headerOps(issues, v['headers']['request'], `${path}.headers.request`);
    headerOps(issues, v['headers']['response'], `${path}.headers.response`);
  }
  if (v['mirror'] !== undefined) backend(issues, v['mirror'], `${path}.mirror`, false);
  if (v['timeoutMs'] !== undefined && !isInt(v['timeoutMs'], 1)) issues.add(`${path}.timeoutMs`, 'must be a positive integer', v['timeoutMs']);
  if (v['retries'] !== undefined) retryPolicy(issues, v['retries'], `${path}.retries`);
  if (v['fault'] !== undefined) faultPolicy(issues, v['fault'], `${path}.fault`);
}

function destinationPolicy(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  const cp = v['connectionPool'];
  if (cp !== undefined) {
    if (!isRecord(cp)) issues.add(`${path}.connectionPool`, 'must be an object', cp);
    else
      for (const k of ['maxConnections', 'http1MaxPendingRequests', 'http2MaxRequests', 'maxRequestsPerConnection']) {
        if (cp[k] !== undefined && !isInt(cp[k], 1)) issues.add(`${path}.connectionPool.${k}`, 'must be a positive integer', cp[k]);
      }
  }
  const od = v['outlierDetection'];
  if (od !== undefined) {
    if (!isRecord(od)) issues.add(`${path}.outlierDetection`, 'must be an object', od);
    else {
      for (const k of ['consecutive5xxErrors', 'consecutiveGatewayErrors']) {
        if (od[k] !== undefined && !isInt(od[k], 0)) issues.add(`${path}.outlierDetection.${k}`, 'must be a non-negative integer', od[k]);
      }
      for (const k of ['intervalMs', 'baseEjectionTimeMs']) {
        if (!isInt(od[k], 1)) issues.add(`${path}.outlierDetection.${k}`, 'must be a positive integer', od[k]);
      }
      if (!isPercent(od['maxEjectionPercent'])) issues.add(`${path}.outlierDetection.maxEjectionPercent`, 'must be a number 0..100', od['maxEjectionPercent']);
    }
  }
}

function trafficPolicy(issues: Issues, v: unknown, path: string): void {
  destinationPolicy(issues, v, path);
  if (!isRecord(v)) return;
  if (!Array.isArray(v['subsets'])) return issues.add(`${path}.subsets`, 'must be a list', v['subsets']);
  const seen = new Set<string>();
  v['subsets'].forEach((s, i) => {
    const p = `${path}.subsets[${i}]`;
    if (!isRecord(s)) return issues.add(p, 'must be an object', s);
    if (typeof s['name'] !== 'string' || s['name'].length === 0) issues.add(`${p}.name`, 'must be a non-empty string', s['name']);
    else if (seen.has(s['name'])) issues.add(`${p}.name`, 'is a duplicate subset name', s['name']);
    else seen.add(s['name']);
    stringMap(issues, s['labels'], `${p}.labels`);
    if (!isRecord(s['labels'])) issues.add(`${p}.labels`, 'must be a map of strings', s['labels']);
    if (s['trafficPolicy'] !== undefined) destinationPolicy(issues, s['trafficPolicy'], `${p}.trafficPolicy`);
  });
}

function authzPolicy(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (typeof v['name'] !== 'string' || !v['name'].includes('/')) issues.add(`${path}.name`, 'must be namespace/name', v['name']);
  if (v['action'] !== 'ALLOW' && v['action'] !== 'DENY' && v['action'] !== 'AUDIT') issues.add(`${path}.action`, 'must be ALLOW, DENY or AUDIT', v['action']);
  if (typeof v['dryRun'] !== 'boolean') issues.add(`${path}.dryRun`, 'must be a boolean', v['dryRun']);
  if (!Array.isArray(v['rules'])) return issues.add(`${path}.rules`, 'must be a list', v['rules']);
  v['rules'].forEach((r, i) => {
    const p = `${path}.rules[${i}]`;
    if (!isRecord(r)) return issues.add(p, 'must be an object with from, to, when', r);
    for (const key of ['from', 'to', 'when'] as const) {
      const list = r[key];
      if (!Array.isArray(list)) {
        issues.add(`${p}.${key}`, 'must be a list', list);
        continue;
      }
      list.forEach((x, j) => {
        const q = `${p}.${key}[${j}]`;
        if (!isRecord(x)) return issues.add(q, 'must be an object', x);
        if (key === 'from') for (const f of ['principals', 'notPrincipals', 'namespaces', 'notNamespaces']) authzMatches(issues, x[f], `${q}.${f}`);
        if (key === 'to') {
          for (const f of ['hosts', 'notHosts', 'paths', 'notPaths']) authzMatches(issues, x[f], `${q}.${f}`);
          stringList(issues, x['methods'], `${q}.methods`);
          stringList(issues, x['notMethods'], `${q}.notMethods`);
          intList(issues, x['ports'], `${q}.ports`, 1, 65535);
          intList(issues, x['notPorts'], `${q}.notPorts`, 1, 65535);
        }
        if (key === 'when') {
          if (typeof x['header'] !== 'string' || x['header'].length === 0) issues.add(`${q}.header`, 'must be a non-empty header name', x['header']);
          authzMatches(issues, x['values'], `${q}.values`);
          authzMatches(issues, x['notValues'], `${q}.notValues`);
        }
      });
    }
  });
}

/** Checks a pushed RouteConfig; returns every problem with its path (empty when valid). */
export function validateRouteConfig(value: unknown, path = 'routeConfig'): Issue[] {
  const issues = new Issues();
  if (!isRecord(value)) {
    issues.add(path, 'must be an object', value);
    return issues.list;
  }
  for (const k of ['name', 'namespace', 'hostname'] as const) {
    if (typeof value[k] !== 'string' || value[k].length === 0) issues.add(`${path}.${k}`, 'must be a non-empty string', value[k]);
  }
  stringList(issues, value['aliases'], `${path}.aliases`, true);
  if (value['gateway'] !== undefined && (typeof value['gateway'] !== 'string' || !value['gateway'].includes('/'))) issues.add(`${path}.gateway`, 'must be namespace/name', value['gateway']);
  if (value['waypoint'] !== undefined && (typeof value['waypoint'] !== 'string' || !value['waypoint'].includes('/'))) issues.add(`${path}.waypoint`, 'must be namespace/name', value['waypoint']);
  if (!Array.isArray(value['ports'])) issues.add(`${path}.ports`, 'must be a list', value['ports']);
  else
    value['ports'].forEach((p, i) => {
      if (!isRecord(p) || !isInt(p['port'], 1, 65535) || typeof p['protocol'] !== 'string') issues.add(`${path}.ports[${i}]`, 'must be { port: 1..65535, protocol: string }', p);
    });
  if (!Array.isArray(value['routes'])) issues.add(`${path}.routes`, 'must be a list', value['routes']);
  else {
    const names = new Set<string>();
    value['routes'].forEach((r, i) => {
      httpRoute(issues, r, `${path}.routes[${i}]`);
      if (isRecord(r) && typeof r['name'] === 'string') {
        if (names.has(r['name'])) issues.add(`${path}.routes[${i}].name`, 'is a duplicate route name', r['name']);
        names.add(r['name']);
      }
    });
  }
  if (value['trafficPolicy'] !== undefined) trafficPolicy(issues, value['trafficPolicy'], `${path}.trafficPolicy`);
  const rl = value['rateLimit'];
  if (rl !== undefined) {
    if (!isRecord(rl)) issues.add(`${path}.rateLimit`, 'must be an object', rl);
    else
      for (const k of ['maxTokens', 'tokensPerFill', 'fillIntervalMs']) {
        if (!isInt(rl[k], 1)) issues.add(`${path}.rateLimit.${k}`, 'must be a positive integer', rl[k]);
      }
  }
  if (!Array.isArray(value['authorization'])) issues.add(`${path}.authorization`, 'must be a list', value['authorization']);
  else value['authorization'].forEach((a, i) => authzPolicy(issues, a, `${path}.authorization[${i}]`));
  return issues.list;
}

/** Checks a GatewayServer. */
export function validateGatewayServer(value: unknown, path = 'gatewayServer'): Issue[] {
  const issues = new Issues();
  if (!isRecord(value)) {
    issues.add(path, 'must be an object', value);
    return issues.list;
  }
  if (typeof value['gateway'] !== 'string' || !value['gateway'].includes('/')) issues.add(`${path}.gateway`, 'must be namespace/name', value['gateway']);
  if (!isInt(value['port'], 1, 65535)) issues.add(`${path}.port`, 'must be a port 1..65535', value['port']);
  if (!['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'TLS', 'TCP'].includes(String(value['protocol']))) issues.add(`${path}.protocol`, 'must be HTTP, HTTPS, HTTP2, GRPC, TLS or TCP', value['protocol']);
  stringList(issues, value['hosts'], `${path}.hosts`, true);
  stringMap(issues, value['selector'], `${path}.selector`);
  return issues.list;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;
const PEM_KEY = /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----[\s\S]+?-----END ([A-Z]+ )?PRIVATE KEY-----/;

/**
 * Checks a GatewayListener. Issues about certificate or key text never carry the text itself
 * (issues are logged), only what is wrong with it.
 */
export function validateGatewayListener(value: unknown, path = 'gatewayListener'): Issue[] {
  const issues = new Issues();
  if (!isRecord(value)) {
    issues.add(path, 'must be an object', value);
    return issues.list;
  }
  if (typeof value['pod'] !== 'string' || !/^[^/]+\/[^/]+$/.test(value['pod'])) issues.add(`${path}.pod`, 'must be namespace/name', value['pod']);
  if (!isInt(value['port'], 1, 65535)) issues.add(`${path}.port`, 'must be a port 1..65535', value['port']);
  if (value['protocol'] !== 'HTTP' && value['protocol'] !== 'HTTPS') issues.add(`${path}.protocol`, 'must be HTTP or HTTPS', value['protocol']);
  stringList(issues, value['gateways'], `${path}.gateways`, true);
  stringList(issues, value['hosts'], `${path}.hosts`, true);
  if (value['httpsRedirect'] !== undefined && typeof value['httpsRedirect'] !== 'boolean') issues.add(`${path}.httpsRedirect`, 'must be a boolean', value['httpsRedirect']);
  if (value['httpsRedirect'] === true && value['protocol'] !== 'HTTP') issues.add(`${path}.httpsRedirect`, 'is only valid for HTTP', value['httpsRedirect']);
  const certs = value['certificates'];
  if (!Array.isArray(certs)) issues.add(`${path}.certificates`, 'must be a list', typeof certs);
  else {
    if (value['protocol'] === 'HTTPS' && certs.length === 0) issues.add(`${path}.certificates`, 'must hold at least one certificate for HTTPS');
    if (value['protocol'] === 'HTTP' && certs.length > 0) issues.add(`${path}.certificates`, 'must be empty for HTTP');
    certs.forEach((c, i) => {
      const cp = `${path}.certificates[${i}]`;
      if (!isRecord(c)) return issues.add(cp, 'must be an object');
      stringList(issues, c['hosts'], `${cp}.hosts`, true);
      if (typeof c['secret'] !== 'string' || !c['secret'].includes('/')) issues.add(`${cp}.secret`, 'must be namespace/name', c['secret']);
      if (typeof c['certPem'] !== 'string' || !PEM_CERT.test(c['certPem'])) issues.add(`${cp}.certPem`, 'must hold a PEM certificate');
      if (typeof c['keyPem'] !== 'string' || !PEM_KEY.test(c['keyPem'])) issues.add(`${cp}.keyPem`, 'must hold a PEM private key');
    });
  }
  return issues.list;
}
