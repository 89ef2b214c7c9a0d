/**
 * Kubernetes/Istio/Gateway API objects → waypoint and ingress route config (pure). Reads Service,
 * Namespace, VirtualService, DestinationRule, HTTPRoute, GRPCRoute, Istio Gateway, Gateway API
 * Gateway and AuthorizationPolicy (targetRefs). An object that cannot be translated gets a
 * condition naming the problem; every other object is still translated.
 */
import { GROUP_GATEWAY_API, kindRef, objectKey, REF_GATEWAY_API_GATEWAY, REF_ISTIO_GATEWAY, type KubeObject } from './objects.js';
import { DEFAULT_TRANSLATE_OPTIONS, type TranslateCondition, type TranslateOptions } from './translate/index.js';
import { detectPortProtocol } from './translate/protocol.js';
import { asArray, asRecord, asString, asStrings, compareAge, compareStrings, nsOf, annotationsOf } from './translate/util.js';
import { requestedWaypoint, WAYPOINT_CLASSES } from './translate/waypoints.js';
import { tryParseDuration } from '../shared/duration.js';
import { formatIssue } from '../shared/validate.js';
import { emptyHeaderOps, isRetryOnToken, validateRouteConfig, type FaultPolicy, type GatewayServer, type HeaderMatcher, type HeaderOps, type HttpRoute, type L7AuthorizationPolicy, type L7Condition, type L7Operation, type L7Rule, type L7Source, type MirrorPolicy, type OutlierDetectionPolicy, type QueryParamMatcher, type RetryPolicy, type RouteBackend, type RouteConfig, type RouteMatch, type StringMatcher, type Subset, type TrafficPolicy, type ConnectionPoolPolicy, DEFAULT_RETRY_BUDGET } from '../shared/routes.js';
import { type StringMatch } from '../shared/model.js';

export interface TranslateRoutesResult {
  /** Mesh configs (one per Service) and ingress configs (one per gateway + host), sorted by name. */
  routes: RouteConfig[];
  /** Istio Gateway servers (ingress listeners). */
  gateways: GatewayServer[];
  conditions: TranslateCondition[];
}

export const CONDITION_ROUTES_ACCEPTED = 'Accepted';

/** Thrown inside one object's translation; becomes a condition and the object is skipped. */
class Invalid extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

interface Ctx {
  opts: TranslateOptions;
  conditions: TranslateCondition[];
  namespaces: Map<string, KubeObject>;
  /** hostname → Service object */
  services: Map<string, KubeObject>;
  /** hostname → DestinationRule (oldest first wins) */
  destinationRules: Map<string, KubeObject>;
  mesh: Map<string, RouteConfig>;
  ingress: Map<string, RouteConfig>;
  istioGateways: Map<string, KubeObject>;
  gatewayServers: GatewayServer[];
}

function condition(ctx: Ctx, obj: KubeObject, reason: string, message: string, status: 'True' | 'False' = 'False'): void {
  ctx.conditions.push({ objectKey: objectKey(obj), type: CONDITION_ROUTES_ACCEPTED, status, reason, message });
}

/** Istio host resolution: a name without dots is a service in `namespace`; anything else is as written. */
export function resolveHost(host: string, namespace: string, clusterDomain: string): string {
  const h = host.trim().toLowerCase();
  if (h === '*' || h.includes('.')) return h;
  return `${h}.${namespace}.svc.${clusterDomain}`;
}

function serviceHostname(name: string, namespace: string, clusterDomain: string): string {
  return `${name}.${namespace}.svc.${clusterDomain}`;
}

function durationMs(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  const ms = typeof v === 'string' ? tryParseDuration(v) : undefined;
  if (ms === undefined) throw new Invalid('InvalidDuration', `${what}: invalid duration ${JSON.stringify(v)}; use e.g. "250ms", "5s"`);
  return Math.round(ms);
}

function percentValue(v: unknown, fallback: number): number {
  const r = asRecord(v);
  if (typeof r['value'] === 'number') return r['value'];
  if (typeof v === 'number') return v;
  return fallback;
}

// ---------------------------------------------------------------------------------------------
// Services

function serviceConfig(ctx: Ctx, svc: KubeObject): RouteConfig {
  const ns = nsOf(svc);
  const name = svc.metadata.name;
  const hostname = serviceHostname(name, ns, ctx.opts.clusterDomain);
  const spec = asRecord(svc.spec);
  const vips = [...asStrings(spec['clusterIPs']), ...(asString(spec['clusterIP']) ? [asString(spec['clusterIP'])!] : [])].filter((ip) => ip !== 'None');
  const ports = asArray(spec['ports']).map((p) => {
    const r = asRecord(p);
    const port = typeof r['port'] === 'number' ? r['port'] : 0;
    return { port, protocol: detectPortProtocol({ name: asString(r['name']) ?? '', appProtocol: asString(r['appProtocol']) ?? '', protocol: asString(r['protocol']) ?? 'TCP' }) };
  });
  const cfg: RouteConfig = {
    name: `${ns}/${hostname}`,
    namespace: ns,
    hostname,
    aliases: [...new Set([name, `${name}.${ns}`, `${name}.${ns}.svc`, ...vips])],
    ports: ports.filter((p) => p.port > 0),
    routes: [],
    authorization: [],
  };
  const wp = requestedWaypoint(svc, ctx.namespaces.get(ns));
  if (wp && wp !== 'none') cfg.waypoint = wp.key;
  return cfg;
}

// ---------------------------------------------------------------------------------------------
// DestinationRule

function connectionPool(v: unknown): ConnectionPoolPolicy | undefined {
  const cp = asRecord(v);
  const tcp = asRecord(cp['tcp']);
  const h = asRecord(cp['http']);
  const out: ConnectionPoolPolicy = {};
  if (typeof tcp['maxConnections'] === 'number') out.maxConnections = tcp['maxConnections'];
  if (typeof h['http1MaxPendingRequests'] === 'number') out.http1MaxPendingRequests = h['http1MaxPendingRequests'];
  if (typeof h['http2MaxRequests'] === 'number') out.http2MaxRequests = h['http2MaxRequests'];
  if (typeof h['maxRequestsPerConnection'] === 'number') out.maxRequestsPerConnection = h['maxRequestsPerConnection'];
  return Object.keys(out).length > 0 ? out : undefined;
}

function outlierDetection(v: unknown, where: string): OutlierDetectionPolicy | undefined {
  if (v === undefined) return undefined;
  const od = asRecord(v);
  const out: OutlierDetectionPolicy = {
    intervalMs: durationMs(od['interval'], `${where}.interval`) ?? 10_000,
    baseEjectionTimeMs: durationMs(od['baseEjectionTime'], `${where}.baseEjectionTime`) ?? 30_000,
    maxEjectionPercent: typeof od['maxEjectionPercent'] === 'number' ? od['maxEjectionPercent'] : 10,
  };
  const c5 = od['consecutive5xxErrors'] ?? od['consecutiveErrors'];
  out.consecutive5xxErrors = typeof c5 === 'number' ? c5 : 5;
  if (typeof od['consecutiveGatewayErrors'] === 'number') out.consecutiveGatewayErrors = od['consecutiveGatewayErrors'];
  return out;
}

function trafficPolicyOf(dr: KubeObject): TrafficPolicy {
  const spec = asRecord(dr.spec);
  const tp = asRecord(spec['trafficPolicy']);
  const out: TrafficPolicy = { subsets: [] };
  const cp = connectionPool(tp['connectionPool']);
  if (cp) out.connectionPool = cp;
  const od = outlierDetection(tp['outlierDetection'], 'spec.trafficPolicy.outlierDetection');
  if (od) out.outlierDetection = od;
  const seen = new Set<string>();
  asArray(spec['subsets']).forEach((s, i) => {
    const r = asRecord(s);
    const name = asString(r['name']);
    if (!name) throw new Invalid('InvalidSubset', `spec.subsets[${i}].name must be set`);
    if (seen.has(name)) throw new Invalid('InvalidSubset', `spec.subsets[${i}].name ${JSON.stringify(name)} is a duplicate`);
    seen.add(name);
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(asRecord(r['labels']))) if (typeof v === 'string') labels[k] = v;
    const subset: Subset = { name, labels };
    const stp = asRecord(r['trafficPolicy']);
    const scp = connectionPool(stp['connectionPool']);
    const sod = outlierDetection(stp['outlierDetection'], `spec.subsets[${i}].trafficPolicy.outlierDetection`);
    if (scp || sod) subset.trafficPolicy = { ...(scp ? { connectionPool: scp } : {}), ...(sod ? { outlierDetection: sod } : {}) };
    out.subsets.push(subset);
  });
  return out;
}

function subsetLabels(ctx: Ctx, host: string, subset: string | undefined, owner: string): Record<string, string> | undefined {
  if (!subset) return undefined;
  const dr = ctx.destinationRules.get(host);
  const found = dr ? asArray(asRecord(dr.spec)['subsets']).map(asRecord).find((s) => s['name'] === subset) : undefined;
  if (!found) throw new Invalid('SubsetNotFound', `${owner}: subset ${JSON.stringify(subset)} of host ${host} is not defined by any DestinationRule`);
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(asRecord(found['labels']))) if (typeof v === 'string') labels[k] = v;
  return labels;
}

// ---------------------------------------------------------------------------------------------
// VirtualService

const GRPC_CODES: Record<string, number> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

function istioStringMatch(v: unknown, where: string): StringMatcher | { present: boolean } {
  const r = asRecord(v);
  if (typeof r['exact'] === 'string') return { exact: r['exact'] };
  if (typeof r['prefix'] === 'string') return { prefix: r['prefix'] };
  if (typeof r['regex'] === 'string') {
    try {
      new RegExp(r['regex']);
    } catch {
      throw new Invalid('InvalidRegex', `${where}: invalid regex ${JSON.stringify(r['regex'])}`);
    }
    return { regex: r['regex'] };
  }
  if (Object.keys(r).length === 0) return { present: true };
  throw new Invalid('InvalidMatch', `${where}: use exact, prefix or regex (got ${JSON.stringify(v)})`);
}

function uriMatch(v: unknown, where: string): StringMatcher {
  const m = istioStringMatch(v, where);
  if ('present' in m) throw new Invalid('InvalidMatch', `${where}: uri needs exact, prefix or regex`);
  return m;
}

function vsMatch(v: unknown, where: string): RouteMatch {
  const r = asRecord(v);
  const m: RouteMatch = { headers: [], queryParams: [] };
  if (r['uri'] !== undefined) m.uri = uriMatch(r['uri'], `${where}.uri`);
  if (r['ignoreUriCase'] === true) m.ignoreUriCase = true;
  if (r['method'] !== undefined) {
    const mm = istioStringMatch(r['method'], `${where}.method`);
    if (!('exact' in mm)) throw new Invalid('Unsupported', `${where}.method: only exact method matches are supported`);
    m.method = mm.exact.toUpperCase();
  }
  if (typeof r['port'] === 'number') m.port = r['port'];
  for (const [name, hv] of Object.entries(asRecord(r['headers']))) m.headers.push({ name: name.toLowerCase(), match: istioStringMatch(hv, `${where}.headers.${name}`) });
  for (const [name, hv] of Object.entries(asRecord(r['withoutHeaders']))) m.headers.push({ name: name.toLowerCase(), match: istioStringMatch(hv, `${where}.withoutHeaders.${name}`), invert: true });
  for (const [name, qv] of Object.entries(asRecord(r['queryParams']))) m.queryParams.push({ name, match: istioStringMatch(qv, `${where}.queryParams.${name}`) });
  if (r['sourceLabels'] !== undefined || r['sourceNamespace'] !== undefined || r['gateways'] !== undefined) {
    throw new Invalid('Unsupported', `${where}: sourceLabels, sourceNamespace and gateways in a match are not supported by waypoints`);
  }
  return m;
}

function vsHeaderOps(v: unknown): HeaderOps {
  const r = asRecord(v);
  const ops = emptyHeaderOps();
  for (const [k, x] of Object.entries(asRecord(r['set']))) if (typeof x === 'string') ops.set[k.toLowerCase()] = x;
  for (const [k, x] of Object.entries(asRecord(r['add']))) if (typeof x === 'string') ops.add[k.toLowerCase()] = x;
  ops.remove = asStrings(r['remove']).map((x) => x.toLowerCase());
  return ops;
}

function vsRetries(v: unknown, where: string): RetryPolicy | undefined {
  if (v === undefined) return undefined;
  const r = asRecord(v);
  const attempts = typeof r['attempts'] === 'number' ? r['attempts'] : 2;
  const tokens = (asString(r['retryOn']) ?? 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  const retryOn: string[] = [];
  const codes: number[] = [];
  for (const t of tokens) {
    if (/^\d{3}$/.test(t)) codes.push(Number(t));
    else if (isRetryOnToken(t)) retryOn.push(t);
    else throw new Invalid('InvalidRetry', `${where}.retryOn: unknown condition ${JSON.stringify(t)}`);
  }
  if (codes.length > 0 && !retryOn.includes('retriable-status-codes')) retryOn.push('retriable-status-codes');
  const out: RetryPolicy = { attempts, retryOn, retriableStatusCodes: codes.length > 0 ? codes : retryOn.includes('retriable-status-codes') ? [503] : [], budget: { ...DEFAULT_RETRY_BUDGET } };
  const perTry = durationMs(r['perTryTimeout'], `${where}.perTryTimeout`);
  if (perTry !== undefined) out.perTryTimeoutMs = perTry;
  if (r['retryRemoteLocalities'] !== undefined) out.retryNonIdempotent = false;
  return out;
}

function vsFault(v: unknown, where: string): FaultPolicy | undefined {
  if (v === undefined) return undefined;
  const r = asRecord(v);
  const out: FaultPolicy = {};
  if (r['delay'] !== undefined) {
    const d = asRecord(r['delay']);
    const ms = durationMs(d['fixedDelay'], `${where}.delay.fixedDelay`);
    if (ms === undefined) throw new Invalid('InvalidFault', `${where}.delay.fixedDelay must be set`);
    out.delay = { percent: percentValue(d['percentage'], typeof d['percent'] === 'number' ? d['percent'] : 100), fixedDelayMs: ms };
  }
  if (r['abort'] !== undefined) {
    const a = asRecord(r['abort']);
    const percent = percentValue(a['percentage'], typeof a['percent'] === 'number' ? a['percent'] : 100);
    if (typeof a['httpStatus'] === 'number') out.abort = { percent, httpStatus: a['httpStatus'] };
    else if (a['grpcStatus'] !== undefined) {
      const g = typeof a['grpcStatus'] === 'number' ? a['grpcStatus'] : GRPC_CODES[String(a['grpcStatus']).toUpperCase()];
      if (g === undefined) throw new Invalid('InvalidFault', `${where}.abort.grpcStatus: unknown gRPC status ${JSON.stringify(a['grpcStatus'])}`);
      out.abort = { percent, grpcStatus: g };
    } else throw new Invalid('InvalidFault', `${where}.abort needs httpStatus or grpcStatus`);
  }
  return out;
}

function vsRoute(ctx: Ctx, vs: KubeObject, v: unknown, i: number): HttpRoute {
  const ns = nsOf(vs);
  const where = `spec.http[${i}]`;
  const r = asRecord(v);
  const owner = `VirtualService ${ns}/${vs.metadata.name} ${where}`;
  if (r['redirect'] !== undefined) throw new Invalid('Unsupported', `${where}.redirect is not supported by ambit waypoints yet`);
  const dests = asArray(r['route']).map(asRecord);
  const anyWeight = dests.some((d) => typeof d['weight'] === 'number');
  const backends: RouteBackend[] = dests.map((d, j) => {
    const dest = asRecord(d['destination']);
    const hostRaw = asString(dest['host']);
    if (!hostRaw) throw new Invalid('InvalidDestination', `${where}.route[${j}].destination.host must be set`);
    const host = resolveHost(hostRaw, ns, ctx.opts.clusterDomain);
    const port = asRecord(dest['port'])['number'];
    const subset = asString(dest['subset']);
    const labels = subsetLabels(ctx, host, subset, owner);
    const weight = dests.length === 1 ? 1 : anyWeight ? (typeof d['weight'] === 'number' ? d['weight'] : 0) : 1;
    return { host, weight, ...(typeof port === 'number' ? { port } : {}), ...(subset ? { subset } : {}), ...(labels ? { subsetLabels: labels } : {}) };
  });
  const direct = asRecord(r['directResponse']);
  if (backends.length === 0 && r['directResponse'] === undefined) throw new Invalid('InvalidRoute', `${where} needs route destinations or directResponse`);
  const headers = asRecord(r['headers']);
  const route: HttpRoute = {
    name: asString(r['name']) ?? `${ns}/${vs.metadata.name}.${i}`,
    match: asArray(r['match']).map((m, j) => vsMatch(m, `${where}.match[${j}]`)),
    backends,
    headers: { request: vsHeaderOps(headers['request']), response: vsHeaderOps(headers['response']) },
  };
  if (r['directResponse'] !== undefined) route.directResponse = { status: typeof direct['status'] === 'number' ? direct['status'] : 200, ...(asString(asRecord(direct['body'])['string']) !== undefined ? { body: asString(asRecord(direct['body'])['string'])! } : {}) };
  const rw = asRecord(r['rewrite']);
  if (r['rewrite'] !== undefined) {
    route.rewrite = {};
    if (typeof rw['uri'] === 'string') route.rewrite.uriPrefix = rw['uri'];
    if (typeof rw['authority'] === 'string') route.rewrite.authority = rw['authority'];
  }
  if (r['mirror'] !== undefined) {
    const m = asRecord(r['mirror']);
    const host = resolveHost(asString(m['host']) ?? '', ns, ctx.opts.clusterDomain);
    const subset = asString(m['subset']);
    const labels = subsetLabels(ctx, host, subset, owner);
    const port = asRecord(m['port'])['number'];
    const mirror: MirrorPolicy = { host, percent: percentValue(r['mirrorPercentage'], 100), ...(subset ? { subset } : {}), ...(labels ? { subsetLabels: labels } : {}) };
    const svcPort = typeof port === 'number' ? port : firstPort(ctx, host);
    if (svcPort !== undefined) mirror.port = svcPort;
    route.mirror = mirror;
  }
  const timeout = durationMs(r['timeout'], `${where}.timeout`);
  if (timeout !== undefined && timeout > 0) route.timeoutMs = timeout;
  const retries = vsRetries(r['retries'], `${where}.retries`);
  if (retries) route.retries = retries;
  const fault = vsFault(r['fault'], `${where}.fault`);
  if (fault) route.fault = fault;
  return route;
}

function firstPort(ctx: Ctx, host: string): number | undefined {
  const svc = ctx.services.get(host);
  const p = asRecord(asArray(asRecord(svc?.spec)['ports'])[0])['port'];
  return typeof p === 'number' ? p : undefined;
}

/** Gateway references of a VirtualService: `mesh` or `ns/name`. Empty list means mesh only. */
function vsGateways(vs: KubeObject): { mesh: boolean; gateways: string[] } {
  const list = asStrings(asRecord(vs.spec)['gateways']);
  if (list.length === 0) return { mesh: true, gateways: [] };
  const gateways: string[] = [];
  let mesh = false;
  for (const g of list) {
    if (g === 'mesh') mesh = true;
    else gateways.push(g.includes('/') ? g : `${nsOf(vs)}/${g}`);
  }
  return { mesh, gateways };
}

function gatewayAllowsHost(gw: KubeObject, host: string, vsNs: string): boolean {
  for (const s of asArray(asRecord(gw.spec)['servers'])) {
    for (const h of asStrings(asRecord(s)['hosts'])) {
      const [ns, name] = h.includes('/') ? [h.slice(0, h.indexOf('/')), h.slice(h.indexOf('/') + 1)] : ['*', h];
      if (ns !== '*' && ns !== '.' && ns !== vsNs) continue;
      if (ns === '.' && nsOf(gw) !== vsNs) continue;
      if (name === '*' || name === host) return true;
      if (name.startsWith('*.') && host.endsWith(name.slice(1))) return true;
      if (host.startsWith('*.') && name.endsWith(host.slice(1))) return true;
    }
  }
  return false;
}

function ingressConfig(ctx: Ctx, gatewayKey: string, host: string): RouteConfig {
  const name = `${gatewayKey}/${host}`;
  let cfg = ctx.ingress.get(name);
  if (!cfg) {
    const gw = ctx.istioGateways.get(gatewayKey);
    const ports = gw
      ? asArray(asRecord(gw.spec)['servers']).map((s) => {
          const p = asRecord(asRecord(s)['port']);
          return { port: typeof p['number'] === 'number' ? p['number'] : 0, protocol: (asString(p['protocol']) ?? 'HTTP').toLowerCase() };
        })
      : [];
    cfg = { name, namespace: gatewayKey.split('/')[0]!, hostname: host, aliases: [], gateway: gatewayKey, ports: ports.filter((p) => p.port > 0), routes: [], authorization: [] };
    ctx.ingress.set(name, cfg);
  }
  return cfg;
}

function translateVirtualServices(ctx: Ctx, list: KubeObject[], httpRouteHosts: Set<string>): void {
  const claimed = new Map<string, string>();
  for (const vs of [...list].sort(compareAge)) {
    const ns = nsOf(vs);
    try {
      const spec = asRecord(vs.spec);
      const hosts = asStrings(spec['hosts']).map((h) => resolveHost(h, ns, ctx.opts.clusterDomain));
      if (hosts.length === 0) throw new Invalid('InvalidHosts', 'spec.hosts must list at least one host');
      const routes = asArray(spec['http']).map((h, i) => vsRoute(ctx, vs, h, i));
      const binding = vsGateways(vs);
      const notes: string[] = [];
      for (const k of ['tcp', 'tls', 'delegate'] as const) {
        if (spec[k] !== undefined) notes.push(`spec.${k} is not supported by ambit waypoints yet and is ignored`);
      }
      if (binding.mesh) {
        for (const host of hosts) {
          const cfg = ctx.mesh.get(host);
          if (!cfg) {
            notes.push(`host ${host} is not a known Service; mesh routes for it are ignored`);
            continue;
          }
          if (httpRouteHosts.has(host)) {
            notes.push(`host ${host} also has an HTTPRoute, which takes precedence`);
            continue;
          }
          const owner = claimed.get(host);
          if (owner) {
            notes.push(`host ${host} is already routed by the older VirtualService ${owner}`);
            continue;
          }
          claimed.set(host, `${ns}/${vs.metadata.name}`);
          cfg.routes.push(...structuredClone(routes));
        }
      }
      for (const g of binding.gateways) {
        const gw = ctx.istioGateways.get(g);
        if (!gw) {
          notes.push(`gateway ${g} does not exist`);
          continue;
        }
        for (const host of hosts) {
          if (!gatewayAllowsHost(gw, host, ns)) {
            notes.push(`gateway ${g} does not serve host ${host}`);
            continue;
          }
          ingressConfig(ctx, g, host).routes.push(...structuredClone(routes));
        }
      }
      if (notes.length > 0) condition(ctx, vs, 'PartiallyApplied', notes.join('; '));
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      condition(ctx, vs, e.reason, `VirtualService ${ns}/${vs.metadata.name} not applied: ${e.message}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Gateway API routes

interface RankedRoute {
  route: HttpRoute;
  rank: [number, number, number, number, number];
  age: KubeObject;
  order: number;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function gwPathMatch(v: unknown, where: string): { uri?: StringMatcher; rank: [number, number] } {
  const p = asRecord(v);
  const type = asString(p['type']) ?? 'PathPrefix';
  const value = asString(p['value']) ?? '/';
  if (!value.startsWith('/') && type !== 'RegularExpression') throw new Invalid('InvalidMatch', `${where}.value must start with "/"`);
  if (type === 'Exact') return { uri: { exact: value }, rank: [2, value.length] };
  if (type === 'RegularExpression') return { uri: { regex: value }, rank: [0, value.length] };
  if (type !== 'PathPrefix') throw new Invalid('InvalidMatch', `${where}.type ${JSON.stringify(type)} is not Exact, PathPrefix or RegularExpression`);
  const trimmed = value.replace(/\/+$/, '');
  if (trimmed === '') return { uri: { prefix: '/' }, rank: [1, 1] };
  // Gateway API prefixes match whole path elements: /foo matches /foo and /foo/bar, not /foobar.
  return { uri: { regex: `${escapeRegex(trimmed)}(/.*)?` }, rank: [1, trimmed.length] };
}

function gwHeaderMatches(v: unknown, where: string): HeaderMatcher[] {
  return asArray(v).map((h, i) => {
    const r = asRecord(h);
    const name = asString(r['name']);
    const value = asString(r['value']);
    if (!name || value === undefined) throw new Invalid('InvalidMatch', `${where}[${i}] needs name and value`);
    return { name: name.toLowerCase(), match: asString(r['type']) === 'RegularExpression' ? { regex: value } : { exact: value } };
  });
}

function gwQueryMatches(v: unknown, where: string): QueryParamMatcher[] {
  return asArray(v).map((h, i) => {
    const r = asRecord(h);
    const name = asString(r['name']);
    const value = asString(r['value']);
    if (!name || value === undefined) throw new Invalid('InvalidMatch', `${where}[${i}] needs name and value`);
    return { name, match: asString(r['type']) === 'RegularExpression' ? { regex: value } : { exact: value } };
  });
}

function gwBackends(ctx: Ctx, route: KubeObject, v: unknown, where: string): RouteBackend[] {
  const ns = nsOf(route);
  return asArray(v).map((b, i) => {
    const r = asRecord(b);
    const kind = asString(r['kind']) ?? 'Service';
    const group = asString(r['group']) ?? '';
    if (kind !== 'Service' || group !== '') throw new Invalid('Unsupported', `${where}[${i}]: backend kind ${group ? group + '/' : ''}${kind} is not supported (use a Service)`);
    const name = asString(r['name']);
    if (!name) throw new Invalid('InvalidBackend', `${where}[${i}].name must be set`);
    const host = serviceHostname(name, asString(r['namespace']) ?? ns, ctx.opts.clusterDomain);
    if (!ctx.services.has(host)) throw new Invalid('BackendNotFound', `${where}[${i}]: Service ${host} does not exist`);
    const weight = typeof r['weight'] === 'number' ? r['weight'] : 1;
    return { host, weight, ...(typeof r['port'] === 'number' ? { port: r['port'] } : {}) };
  });
}

function gwHeaderModifier(f: Record<string, unknown>): HeaderOps {
  const ops = emptyHeaderOps();
  for (const h of asArray(f['set']).map(asRecord)) if (asString(h['name']) && asString(h['value']) !== undefined) ops.set[asString(h['name'])!.toLowerCase()] = asString(h['value'])!;
  for (const h of asArray(f['add']).map(asRecord)) if (asString(h['name']) && asString(h['value']) !== undefined) ops.add[asString(h['name'])!.toLowerCase()] = asString(h['value'])!;
  ops.remove = asStrings(f['remove']).map((x) => x.toLowerCase());
  return ops;
}

function gwFilters(ctx: Ctx, route: KubeObject, filters: unknown, where: string, out: HttpRoute, pathPrefix: string | undefined): void {
  asArray(filters).forEach((f, i) => {
    const r = asRecord(f);
    const type = asString(r['type']);
    const w = `${where}[${i}]`;
    switch (type) {
      case 'RequestHeaderModifier':
        out.headers.request = gwHeaderModifier(asRecord(r['requestHeaderModifier']));
        break;
      case 'ResponseHeaderModifier':
        out.headers.response = gwHeaderModifier(asRecord(r['responseHeaderModifier']));
        break;
      case 'URLRewrite': {
        const u = asRecord(r['urlRewrite']);
        out.rewrite = {};
        if (typeof u['hostname'] === 'string') out.rewrite.authority = u['hostname'];
        const p = asRecord(u['path']);
        if (p['type'] === 'ReplacePrefixMatch') {
          if (pathPrefix === undefined) throw new Invalid('InvalidFilter', `${w}: ReplacePrefixMatch needs a PathPrefix match`);
          out.rewrite.uriPrefix = asString(p['replacePrefixMatch']) ?? '/';
          out.rewrite.matchPrefix = pathPrefix;
        } else if (p['type'] === 'ReplaceFullPath') {
          out.rewrite.fullPath = asString(p['replaceFullPath']) ?? '/';
        }
        break;
      }
      case 'RequestMirror': {
        const m = asRecord(r['requestMirror']);
        const [b] = gwBackends(ctx, route, [m['backendRef']], `${w}.requestMirror.backendRef`);
        const percent = typeof m['percent'] === 'number' ? m['percent'] : 100;
        const port = b!.port ?? firstPort(ctx, b!.host);
        out.mirror = { host: b!.host, percent, ...(port !== undefined ? { port } : {}) };
        break;
      }
      default:
        throw new Invalid('Unsupported', `${w}: filter type ${JSON.stringify(type)} is not supported`);
    }
  });
}

function gwRetry(v: unknown, where: string): RetryPolicy | undefined {
  if (v === undefined) return undefined;
  const r = asRecord(v);
  const codes = asArray(r['codes']).filter((c): c is number => typeof c === 'number');
  const out: RetryPolicy = {
    attempts: typeof r['attempts'] === 'number' ? r['attempts'] : 2,
    retryOn: ['connect-failure', 'refused-stream', ...(codes.length > 0 ? ['retriable-status-codes'] : [])],
    retriableStatusCodes: codes,
    budget: { ...DEFAULT_RETRY_BUDGET },
  };
  const backoff = durationMs(r['backoff'], `${where}.backoff`);
  if (backoff !== undefined) out.backoffMs = backoff;
  return out;
}

/** parentRefs → mesh Service hosts and ingress gateways (`ns/name`). */
function parents(ctx: Ctx, route: KubeObject): { services: string[]; gateways: string[]; notes: string[] } {
  const out = { services: [] as string[], gateways: [] as string[], notes: [] as string[] };
  for (const p of asArray(asRecord(route.spec)['parentRefs']).map(asRecord)) {
    const kind = asString(p['kind']) ?? 'Gateway';
    const group = asString(p['group']) ?? (kind === 'Service' ? '' : GROUP_GATEWAY_API);
    const name = asString(p['name']) ?? '';
    const ns = asString(p['namespace']) ?? nsOf(route);
    if (kind === 'Service' && group === '') {
      const host = serviceHostname(name, ns, ctx.opts.clusterDomain);
      if (ctx.services.has(host)) out.services.push(host);
      else out.notes.push(`parent Service ${ns}/${name} does not exist`);
    } else if (kind === 'Gateway' && group === GROUP_GATEWAY_API) out.gateways.push(`${ns}/${name}`);
    else out.notes.push(`parent ${group}/${kind} ${name} is not supported`);
  }
  return out;
}

function translateGatewayRoutes(ctx: Ctx, list: KubeObject[], gwApiGateways: Map<string, KubeObject>): Set<string> {
  const byHost = new Map<string, RankedRoute[]>();
  const hosts = new Set<string>();
  let order = 0;
  for (const obj of [...list].sort(compareAge)) {
    const ns = nsOf(obj);
    const grpc = obj.kind === 'GRPCRoute';
    try {
      const spec = asRecord(obj.spec);
      const ranked: RankedRoute[] = [];
      asArray(spec['rules']).forEach((rule, i) => {
        const r = asRecord(rule);
        const where = `spec.rules[${i}]`;
        const backends = gwBackends(ctx, obj, r['backendRefs'], `${where}.backendRefs`);
        if (backends.length === 0) throw new Invalid('InvalidBackend', `${where}.backendRefs must name at least one Service`);
        const matches = asArray(r['matches']);
        const list = matches.length > 0 ? matches : [{}];
        list.forEach((m, j) => {
          const mr = asRecord(m);
          const mw = `${where}.matches[${j}]`;
          const match: RouteMatch = { headers: gwHeaderMatches(mr['headers'], `${mw}.headers`), queryParams: grpc ? [] : gwQueryMatches(mr['queryParams'], `${mw}.queryParams`) };
          let rankPath: [number, number] = [1, 1];
          let prefix: string | undefined;
          if (grpc) {
            const meth = asRecord(mr['method']);
            const svc = asString(meth['service']);
            const method = asString(meth['method']);
            const type = asString(meth['type']) ?? 'Exact';
            if (svc && method) match.uri = type === 'RegularExpression' ? { regex: `/${svc}/${method}` } : { exact: `/${svc}/${method}` };
            else if (svc) match.uri = type === 'RegularExpression' ? { regex: `/${svc}/[^/]+` } : { prefix: `/${svc}/` };
            else if (method) match.uri = type === 'RegularExpression' ? { regex: `/[^/]+/${method}` } : { regex: `/[^/]+/${escapeRegex(method)}` };
            rankPath = [match.uri && 'exact' in match.uri ? 2 : 1, (svc?.length ?? 0) + (method?.length ?? 0)];
            match.method = 'POST';
          } else {
            if (mr['path'] !== undefined || matches.length === 0) {
              const pm = gwPathMatch(mr['path'], `${mw}.path`);
              if (pm.uri) match.uri = pm.uri;
              rankPath = pm.rank;
              const pv = asRecord(mr['path']);
              if ((asString(pv['type']) ?? 'PathPrefix') === 'PathPrefix') prefix = asString(pv['value']) ?? '/';
            } else prefix = '/';
            if (typeof mr['method'] === 'string') match.method = mr['method'].toUpperCase();
          }
          const hr: HttpRoute = {
            name: `${ns}/${obj.metadata.name}.${i}.${j}`,
            match: matches.length > 0 || grpc ? [match] : [],
            backends: structuredClone(backends),
            headers: { request: emptyHeaderOps(), response: emptyHeaderOps() },
          };
          if (matches.length === 0 && !grpc && match.uri && !('prefix' in match.uri && match.uri.prefix === '/')) hr.match = [match];
          gwFilters(ctx, obj, r['filters'], `${where}.filters`, hr, prefix);
          const timeouts = asRecord(r['timeouts']);
          const t = durationMs(timeouts['request'], `${where}.timeouts.request`);
          if (t !== undefined && t > 0) hr.timeoutMs = t;
          const bt = durationMs(timeouts['backendRequest'], `${where}.timeouts.backendRequest`);
          const retry = gwRetry(r['retry'], `${where}.retry`);
          if (retry) hr.retries = retry;
          if (bt !== undefined && bt > 0) hr.retries = { ...(hr.retries ?? { attempts: 0, retryOn: [], retriableStatusCodes: [] }), perTryTimeoutMs: bt };
          const methodRank = match.method && !grpc ? 1 : 0;
          ranked.push({ route: hr, rank: [rankPath[0], rankPath[1], methodRank, match.headers.length, match.queryParams.length], age: obj, order: order++ });
        });
      });
      const par = parents(ctx, obj);
      const notes = [...par.notes];
      for (const host of par.services) {
        hosts.add(host);
        const l = byHost.get(host) ?? [];
        l.push(...ranked);
        byHost.set(host, l);
      }
      for (const g of par.gateways) {
        const gw = gwApiGateways.get(g);
        if (!gw) {
          notes.push(`parent Gateway ${g} does not exist`);
          continue;
        }
        if (WAYPOINT_CLASSES.includes(asString(asRecord(gw.spec)['gatewayClassName']) ?? '')) {
          notes.push(`parent Gateway ${g} is a waypoint; attach routes to a Service instead`);
          continue;
        }
        const hostnames = asStrings(spec['hostnames']);
        for (const h of hostnames.length > 0 ? hostnames : ['*']) {
          const key = `gw:${g}/${h.toLowerCase()}`;
          const l = byHost.get(key) ?? [];
          l.push(...ranked);
          byHost.set(key, l);
        }
      }
      if (notes.length > 0) condition(ctx, obj, 'PartiallyApplied', notes.join('; '));
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      condition(ctx, obj, e.reason, `${obj.kind} ${ns}/${obj.metadata.name} not applied: ${e.message}`);
    }
  }
  for (const [key, ranked] of byHost) {
    ranked.sort((a, b) => {
      for (let k = 0; k < a.rank.length; k++) if (a.rank[k] !== b.rank[k]) return b.rank[k]! - a.rank[k]!;
      return compareAge(a.age, b.age) || a.order - b.order;
    });
    const routes = ranked.map((x) => x.route);
    if (key.startsWith('gw:')) {
      const rest = key.slice(3);
      const parts = rest.split('/');
      const cfg = ingressConfig(ctx, `${parts[0]}/${parts[1]}`, parts.slice(2).join('/'));
      cfg.routes.push(...routes);
    } else ctx.mesh.get(key)!.routes.push(...routes);
  }
  return hosts;
}

// ---------------------------------------------------------------------------------------------
// AuthorizationPolicy (targetRefs → waypoint)

function authzValue(v: string): StringMatch {
  if (v === '*') return { presence: true };
  if (v.endsWith('*')) return { prefix: v.slice(0, -1) };
  if (v.startsWith('*')) return { suffix: v.slice(1) };
  return { exact: v };
}

function authzValues(v: unknown): StringMatch[] {
  return asStrings(v).map(authzValue);
}

function portList(v: unknown, where: string): number[] {
  return asStrings(v).map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Invalid('InvalidPolicy', `${where}: ${JSON.stringify(p)} is not a port`);
    return n;
  });
}

const L4_ONLY_SOURCE = ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks', 'requestPrincipals', 'notRequestPrincipals', 'serviceAccounts', 'notServiceAccounts'];

/** One Istio rule, or undefined when it cannot match (an ALLOW rule using attributes we lack). */
function authzRule(v: unknown, action: string, where: string, unsupported: string[]): L7Rule | undefined {
  const r = asRecord(v);
  let impossible = false;
  const from: L7Source[] = asArray(r['from']).map((f, i) => {
    const s = asRecord(asRecord(f)['source']);
    for (const k of L4_ONLY_SOURCE) {
      if (s[k] !== undefined) {
        unsupported.push(`${where}.from[${i}].source.${k}`);
        if (action === 'ALLOW') impossible = true;
      }
    }
    return { principals: authzValues(s['principals']), notPrincipals: authzValues(s['notPrincipals']), namespaces: authzValues(s['namespaces']), notNamespaces: authzValues(s['notNamespaces']) };
  });
  const to: L7Operation[] = asArray(r['to']).map((t, i) => {
    const o = asRecord(asRecord(t)['operation']);
    return {
      hosts: authzValues(o['hosts']).map((m) => ('exact' in m ? { exact: m.exact.toLowerCase() } : m)),
      notHosts: authzValues(o['notHosts']),
      paths: authzValues(o['paths']),
      notPaths: authzValues(o['notPaths']),
      methods: asStrings(o['methods']).map((x) => x.toUpperCase()),
      notMethods: asStrings(o['notMethods']).map((x) => x.toUpperCase()),
      ports: portList(o['ports'], `${where}.to[${i}].operation.ports`),
      notPorts: portList(o['notPorts'], `${where}.to[${i}].operation.notPorts`),
    };
  });
  const when: L7Condition[] = [];
  asArray(r['when']).forEach((c, i) => {
    const cr = asRecord(c);
    const key = asString(cr['key']) ?? '';
    const values = authzValues(cr['values']);
    const notValues = authzValues(cr['notValues']);
    const header = /^request\.headers\[(.+)\]$/.exec(key);
    if (header) when.push({ header: header[1]!.toLowerCase(), values, notValues });
    else if (key === 'source.namespace') from.push({ principals: [], notPrincipals: [], namespaces: values, notNamespaces: notValues });
    else if (key === 'source.principal') from.push({ principals: values, notPrincipals: notValues, namespaces: [], notNamespaces: [] });
    else {
      unsupported.push(`${where}.when[${i}] key ${JSON.stringify(key)}`);
      if (action === 'ALLOW') impossible = true;
    }
  });
  // source.* conditions from `when` are ANDed with `from`, so they must each hold on their own.
  if (impossible) return undefined;
  return { from, to, when };
}

function targetServices(ctx: Ctx, ap: KubeObject): { services: string[]; notes: string[] } {
  const spec = asRecord(ap.spec);
  const refs = [...asArray(spec['targetRefs']), ...(spec['targetRef'] !== undefined ? [spec['targetRef']] : [])].map(asRecord);
  const out = { services: [] as string[], notes: [] as string[] };
  const ns = nsOf(ap);
  for (const ref of refs) {
    const kind = asString(ref['kind']);
    const name = asString(ref['name']) ?? '';
    const group = asString(ref['group']) ?? '';
    if (kind === 'Service' && group === '') {
      const host = serviceHostname(name, ns, ctx.opts.clusterDomain);
      if (ctx.mesh.has(host)) out.services.push(host);
      else out.notes.push(`target Service ${ns}/${name} does not exist`);
    } else if (kind === 'Gateway' && (group === GROUP_GATEWAY_API || group === '')) {
      const key = `${ns}/${name}`;
      const bound = [...ctx.mesh.values()].filter((c) => c.waypoint === key).map((c) => c.hostname);
      if (bound.length === 0) out.notes.push(`no Service uses waypoint ${key}`);
      out.services.push(...bound);
    } else out.notes.push(`target ${group ? group + '/' : ''}${kind} ${name} is not supported`);
  }
  return out;
}

function translateAuthorization(ctx: Ctx, list: KubeObject[]): void {
  for (const ap of [...list].sort(compareAge)) {
    const spec = asRecord(ap.spec);
    if (spec['targetRefs'] === undefined && spec['targetRef'] === undefined) continue; // selector policies are L4, enforced by agents
    try {
      const action = asString(spec['action']) ?? 'ALLOW';
      if (action === 'CUSTOM') throw new Invalid('Unsupported', 'action CUSTOM (external authorization) is not supported');
      if (action !== 'ALLOW' && action !== 'DENY' && action !== 'AUDIT') throw new Invalid('InvalidPolicy', `action ${JSON.stringify(action)} is not ALLOW, DENY or AUDIT`);
      const unsupported: string[] = [];
      const rules: L7Rule[] = [];
      asArray(spec['rules']).forEach((r, i) => {
        const rule = authzRule(r, action, `spec.rules[${i}]`, unsupported);
        if (rule) rules.push(rule);
      });
      const policy: L7AuthorizationPolicy = { name: `${nsOf(ap)}/${ap.metadata.name}`, action, rules, dryRun: annotationsOf(ap)['istio.io/dry-run'] === 'true' };
      const targets = targetServices(ctx, ap);
      for (const host of targets.services) ctx.mesh.get(host)?.authorization.push(structuredClone(policy));
      const notes = [...targets.notes];
      if (unsupported.length > 0) notes.push(`unsupported attributes ${unsupported.join(', ')}; ${action === 'ALLOW' ? 'rules using them match nothing' : 'they are ignored, so the rule matches more'} (fail closed)`);
      if (notes.length > 0) condition(ctx, ap, 'PartiallyApplied', notes.join('; '));
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      condition(ctx, ap, e.reason, `AuthorizationPolicy ${nsOf(ap)}/${ap.metadata.name} not applied: ${e.message}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Istio Gateway

function translateIstioGateway(ctx: Ctx, gw: KubeObject): void {
  const key = `${nsOf(gw)}/${gw.metadata.name}`;
  const spec = asRecord(gw.spec);
  const selector: Record<string, string> = {};
  for (const [k, v] of Object.entries(asRecord(spec['selector']))) if (typeof v === 'string') selector[k] = v;
  const servers: GatewayServer[] = [];
  asArray(spec['servers']).forEach((s, i) => {
    const r = asRecord(s);
    const p = asRecord(r['port']);
    const port = p['number'];
    const protocol = (asString(p['protocol']) ?? '').toUpperCase();
    if (typeof port !== 'number' || port < 1 || port > 65535) throw new Invalid('InvalidServer', `spec.servers[${i}].port.number must be a port`);
    if (!['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'TLS', 'TCP'].includes(protocol)) throw new Invalid('InvalidServer', `spec.servers[${i}].port.protocol ${JSON.stringify(protocol)} is not HTTP, HTTPS, HTTP2, GRPC, TLS or TCP`);
    const server: GatewayServer = { gateway: key, index: i, port, protocol: protocol as GatewayServer['protocol'], hosts: asStrings(r['hosts']), selector };
    if (asString(p['name'])) server.name = asString(p['name'])!;
    const tls = asRecord(r['tls']);
    const plain = protocol === 'HTTP' || protocol === 'HTTP2' || protocol === 'GRPC';
    if (plain && tls['httpsRedirect'] === true && tls['mode'] === undefined && tls['credentialName'] === undefined) {
      // Istio's `tls: { httpsRedirect: true }` on a plain server: answer 301 to https.
      server.httpsRedirect = true;
    } else if (r['tls'] !== undefined) {
      const mode = (asString(tls['mode']) ?? 'SIMPLE') as NonNullable<GatewayServer['tls']>['mode'];
      server.tls = { mode, ...(asString(tls['credentialName']) ? { credentialName: asString(tls['credentialName'])! } : {}) };
      if ((protocol === 'HTTPS' || mode === 'SIMPLE' || mode === 'MUTUAL') && mode !== 'PASSTHROUGH' && mode !== 'ISTIO_MUTUAL' && !server.tls.credentialName) {
        throw new Invalid('InvalidServer', `spec.servers[${i}].tls.credentialName must name a Secret for mode ${mode}`);
      }
    } else if (protocol === 'HTTPS') throw new Invalid('InvalidServer', `spec.servers[${i}]: HTTPS needs tls with a credentialName`);
    servers.push(server);
  });
  ctx.gatewayServers.push(...servers);
}

// ---------------------------------------------------------------------------------------------

/** Translates route-related objects into RouteConfigs and Gateway servers; never throws on bad input. */
export function translateRoutes(objects: readonly KubeObject[], opts: Partial<TranslateOptions> = {}): TranslateRoutesResult {
  const ctx: Ctx = {
    opts: { ...DEFAULT_TRANSLATE_OPTIONS, ...opts },
    conditions: [],
    namespaces: new Map(),
    services: new Map(),
    destinationRules: new Map(),
    mesh: new Map(),
    ingress: new Map(),
    istioGateways: new Map(),
    gatewayServers: [],
  };
  const byKind = new Map<string, KubeObject[]>();
  for (const o of objects) {
    const ref = kindRef(o);
    const l = byKind.get(ref) ?? [];
    l.push(o);
    byKind.set(ref, l);
  }
  const of = (ref: string): KubeObject[] => [...(byKind.get(ref) ?? [])].sort((a, b) => compareStrings(`${nsOf(a)}/${a.metadata.name}`, `${nsOf(b)}/${b.metadata.name}`));

  for (const n of of('Namespace')) ctx.namespaces.set(n.metadata.name, n);
  for (const svc of of('Service')) {
    const cfg = serviceConfig(ctx, svc);
    ctx.services.set(cfg.hostname, svc);
    ctx.mesh.set(cfg.hostname, cfg);
  }
  for (const gw of of(REF_ISTIO_GATEWAY)) {
    try {
      translateIstioGateway(ctx, gw);
      ctx.istioGateways.set(`${nsOf(gw)}/${gw.metadata.name}`, gw);
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      condition(ctx, gw, e.reason, `Gateway ${nsOf(gw)}/${gw.metadata.name} not applied: ${e.message}`);
    }
  }
  const gwApi = new Map<string, KubeObject>();
  for (const g of of(REF_GATEWAY_API_GATEWAY)) gwApi.set(`${nsOf(g)}/${g.metadata.name}`, g);

  for (const dr of of('DestinationRule').sort(compareAge)) {
    try {
      const host = resolveHost(asString(asRecord(dr.spec)['host']) ?? '', nsOf(dr), ctx.opts.clusterDomain);
      if (!host) throw new Invalid('InvalidHost', 'spec.host must be set');
      const tp = trafficPolicyOf(dr);
      if (ctx.destinationRules.has(host)) {
        const older = ctx.destinationRules.get(host)!;
        condition(ctx, dr, 'Conflicted', `host ${host} already has the older DestinationRule ${nsOf(older)}/${older.metadata.name}; this one is ignored`);
        continue;
      }
      ctx.destinationRules.set(host, dr);
      const cfg = ctx.mesh.get(host);
      if (cfg) cfg.trafficPolicy = tp;
      else condition(ctx, dr, 'PartiallyApplied', `host ${host} is not a known Service; the policy applies once it exists`);
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      condition(ctx, dr, e.reason, `DestinationRule ${nsOf(dr)}/${dr.metadata.name} not applied: ${e.message}`);
    }
  }

  const routeHosts = translateGatewayRoutes(ctx, [...of('HTTPRoute'), ...of('GRPCRoute')], gwApi);
  translateVirtualServices(ctx, of('VirtualService'), routeHosts);
  translateAuthorization(ctx, of('AuthorizationPolicy'));

  const routes: RouteConfig[] = [];
  for (const cfg of [...ctx.mesh.values(), ...ctx.ingress.values()]) {
    const names = new Set<string>();
    for (const r of cfg.routes) {
      let n = r.name;
      for (let k = 2; names.has(n); k++) n = `${r.name}#${k}`;
      r.name = n;
      names.add(n);
    }
    const issues = validateRouteConfig(cfg, cfg.name);
    if (issues.length > 0) {
      const svc = ctx.services.get(cfg.hostname);
      const owner = svc ?? ctx.istioGateways.get(cfg.gateway ?? '');
      if (owner) condition(ctx, owner, 'InvalidRouteConfig', `route config ${cfg.name} is invalid and was not produced: ${issues.slice(0, 5).map(formatIssue).join('; ')}`);
      continue;
    }
    routes.push(cfg);
  }
  routes.sort((a, b) => compareStrings(a.name, b.name));
  ctx.gatewayServers.sort((a, b) => compareStrings(`${a.gateway}:${a.port}`, `${b.gateway}:${b.port}`));
  return { routes, gateways: ctx.gatewayServers, conditions: ctx.conditions };
}

