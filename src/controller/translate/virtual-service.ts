/**
 * Istio VirtualServices → HTTP routes of mesh configs (bound to `mesh`) and of ingress configs
 * (bound to Istio Gateways): matches, header operations, retries, faults, rewrites, mirrors,
 * direct responses, redirects and CORS policies. The oldest VirtualService claims a host; an HTTPRoute on it takes precedence.
 */
import type { KubeObject } from '../objects.js';
import { DEFAULT_RETRY_BUDGET, emptyHeaderOps, isRetryOnToken, type CorsPolicy, type FaultPolicy, type HeaderOps, type HttpRoute, type L4Route, type MirrorPolicy, type RedirectPolicy, type RetryPolicy, type RouteBackend, type RouteConfig, type RouteMatch, type StringMatcher } from '../../shared/routes.js';
import { gatewayAllowsHost } from './istio-gateway.js';
import { condition, durationMs, firstPort, ingressConfig, Invalid, percentValue, resolveHost, translateObject, type RouteContext } from './route-context.js';
import { subsetLabels } from './service-routes.js';
import { asArray, asRecord, asString, asStrings, compareAge, nsOf } from './util.js';
import { cidrProblem } from '../../shared/validate.js';

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

/**
 * A match during translation: `gateways` (Istio `match.gateways`: `mesh` or `ns/name`) says
 * where it applies; it is decided here, per place the VirtualService is bound, and never sent.
 */
type BoundMatch<M> = M & { gateways?: string[] };

/** `match.gateways` names resolved as the top-level `gateways` are (`mesh`, or `ns/name` in the VirtualService's namespace). */
function matchGateways(r: Record<string, unknown>, vs: KubeObject): string[] | undefined {
  if (r['gateways'] === undefined) return undefined;
  return asStrings(r['gateways']).map((g) => (g === MESH || g.includes('/') ? g : `${nsOf(vs)}/${g}`));
}

/**
 * The matches of a rule at one place (`mesh` or a gateway): those without `gateways` and those
 * naming it, stripped of the list; undefined when the rule had matches and none applies there.
 */
function matchesAt<M>(match: ReadonlyArray<BoundMatch<M>>, place: string): M[] | undefined {
  if (match.length === 0) return [];
  const out: M[] = [];
  for (const m of match) {
    if (m.gateways !== undefined && !m.gateways.includes(place)) continue;
    const { gateways: _g, ...rest } = m;
    out.push(rest as M);
  }
  return out.length > 0 ? out : undefined;
}

/**
 * The rules of a list that apply at `place`, each with its matches for there: a copy of its own
 * per place. The first place a rule goes to takes its parts as they are (the rule itself is never
 * sent, only its copies); a later place gets a deep copy, so no two configs share a route's parts.
 */
function rulesAt<R extends { match: readonly object[] }>(rules: readonly R[], place: string, placed: Set<object>): R[] {
  const out: R[] = [];
  for (const r of rules) {
    const match = matchesAt(r.match as ReadonlyArray<BoundMatch<object>>, place);
    if (match === undefined) continue;
    out.push({ ...(placed.has(r) ? structuredClone(r) : r), match });
    placed.add(r);
  }
  return out;
}

function vsMatch(v: unknown, where: string, vs: KubeObject): BoundMatch<RouteMatch> {
  const r = asRecord(v);
  const m: BoundMatch<RouteMatch> = { headers: [], queryParams: [] };
  const gateways = matchGateways(r, vs);
  if (gateways) m.gateways = gateways;
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
  if (r['sourceNamespace'] !== undefined) m.sourceNamespace = sourceNamespace(r, where);
  if (r['sourceLabels'] !== undefined) m.sourceLabels = sourceLabels(r, where);
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

/** A route's destinations as weighted backends (one destination: weight 1; weights unset: equal). */
function vsBackends(ctx: RouteContext, vs: KubeObject, v: unknown, where: string, owner: string): RouteBackend[] {
  const ns = nsOf(vs);
  const dests = asArray(v).map(asRecord);
  const anyWeight = dests.some((d) => typeof d['weight'] === 'number');
  return dests.map((d, j) => {
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
}

/** Match fields of `tcp`/`tls` routes Ambit cannot check: a route using them is left out (it would match more). */

/** Istio `match.destinationSubnets`: CIDRs (or single addresses) the connection's destination address is in. */
function destinationSubnets(r: Record<string, unknown>, where: string): string[] {
  const out: string[] = [];
  asArray(r['destinationSubnets']).forEach((v, i) => {
    const text = typeof v === 'string' ? (v.includes('/') ? v : `${v}/${v.includes(':') ? 128 : 32}`) : '';
    const problem = typeof v === 'string' ? cidrProblem(text) : 'is not a string';
    if (problem !== undefined) throw new Invalid('InvalidMatch', `${where}.destinationSubnets[${i}] ${JSON.stringify(v)}: ${problem}`);
    out.push(text);
  });
  return out;
}

/** Istio `match.sourceLabels`: label equalities the calling workload must carry. */
function sourceLabels(r: Record<string, unknown>, where: string): Record<string, string> {
  const raw = r['sourceLabels'];
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Invalid('InvalidMatch', `${where}.sourceLabels must map label names to values`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') throw new Invalid('InvalidMatch', `${where}.sourceLabels.${k} must be a string, found ${JSON.stringify(v)}`);
    out[k] = v;
  }
  return out;
}

/** Istio `match.sourceNamespace`: a namespace name, matched against the caller's mTLS identity. */
function sourceNamespace(r: Record<string, unknown>, where: string): string {
  const ns = r['sourceNamespace'];
  if (typeof ns !== 'string' || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns) || ns.length > 63) throw new Invalid('InvalidMatch', `${where}.sourceNamespace ${JSON.stringify(ns)} is not a namespace name`);
  return ns;
}

/** One `tcp` or `tls` route: port, SNI, caller and destination-subnet matches, weighted destinations. */
function vsL4Route(ctx: RouteContext, vs: KubeObject, v: unknown, where: string, tls: boolean): L4Route {
  const r = asRecord(v);
  const match: L4Route['match'] = [];
  for (const [j, m] of asArray(r['match']).map(asRecord).entries()) {
    const subnets = m['destinationSubnets'] !== undefined ? destinationSubnets(m, `${where}.match[${j}]`) : undefined;
    const gateways = matchGateways(m, vs);
    const from = m['sourceNamespace'] !== undefined ? sourceNamespace(m, `${where}.match[${j}]`) : undefined;
    const labels = m['sourceLabels'] !== undefined ? sourceLabels(m, `${where}.match[${j}]`) : undefined;
    match.push({ ...(typeof m['port'] === 'number' ? { port: m['port'] } : {}), ...(tls ? { sniHosts: asStrings(m['sniHosts']).map((h) => h.toLowerCase()) } : {}), ...(from ? { sourceNamespace: from } : {}), ...(labels ? { sourceLabels: labels } : {}), ...(subnets ? { destinationSubnets: subnets } : {}), ...(gateways ? { gateways } : {}) });
  }
  const backends = vsBackends(ctx, vs, r['route'], where, `VirtualService ${nsOf(vs)}/${vs.metadata.name} ${where}`);
  if (backends.length === 0) throw new Invalid('InvalidRoute', `${where}.route must name at least one destination`);
  return { name: `${nsOf(vs)}/${vs.metadata.name}.${where.slice('spec.'.length)}`, match, backends };
}

/** Istio HTTPRedirect (redirectCode 0 or unset is 301). */
function vsRedirect(v: unknown, where: string): RedirectPolicy {
  const r = asRecord(v);
  const code = typeof r['redirectCode'] === 'number' && r['redirectCode'] !== 0 ? r['redirectCode'] : 301;
  if (![301, 302, 303, 307, 308].includes(code)) throw new Invalid('InvalidRedirect', `${where}.redirectCode: ${code} is not a redirect status (301, 302, 303, 307 or 308)`);
  const out: RedirectPolicy = { code };
  for (const k of ['scheme', 'authority', 'uri'] as const) {
    const x = asString(r[k]);
    if (x !== undefined && x !== '') out[k] = x;
  }
  if (typeof r['port'] === 'number' && r['port'] !== 0) out.port = r['port'];
  const derive = asString(r['derivePort']);
  if (derive === 'FROM_REQUEST_PORT' || derive === 'FROM_PROTOCOL_DEFAULT') out.derivePort = derive;
  return out;
}

/** Istio CorsPolicy; `allowOrigin` (deprecated exact strings) joins `allowOrigins`. */
function vsCors(v: unknown, where: string): CorsPolicy {
  const r = asRecord(v);
  const allowOrigins: StringMatcher[] = [];
  asArray(r['allowOrigins']).forEach((m, j) => {
    const sm = istioStringMatch(m, `${where}.allowOrigins[${j}]`);
    if ('present' in sm) throw new Invalid('InvalidMatch', `${where}.allowOrigins[${j}]: use exact, prefix or regex`);
    allowOrigins.push(sm);
  });
  for (const o of asStrings(r['allowOrigin'])) allowOrigins.push({ exact: o });
  const out: CorsPolicy = {
    allowOrigins,
    allowMethods: asStrings(r['allowMethods']),
    allowHeaders: asStrings(r['allowHeaders']),
    exposeHeaders: asStrings(r['exposeHeaders']),
    unmatchedPreflights: r['unmatchedPreflights'] === 'IGNORE' ? 'IGNORE' : 'FORWARD',
  };
  const maxAge = durationMs(r['maxAge'], `${where}.maxAge`);
  if (maxAge !== undefined) out.maxAgeSeconds = Math.floor(maxAge / 1000);
  if (typeof r['allowCredentials'] === 'boolean') out.allowCredentials = r['allowCredentials'];
  return out;
}

function vsRoute(ctx: RouteContext, vs: KubeObject, v: unknown, i: number): HttpRoute {
  const ns = nsOf(vs);
  const where = `spec.http[${i}]`;
  const r = asRecord(v);
  const owner = `VirtualService ${ns}/${vs.metadata.name} ${where}`;
  const backends = vsBackends(ctx, vs, r['route'], where, owner);
  const direct = asRecord(r['directResponse']);
  if (backends.length === 0 && r['directResponse'] === undefined && r['redirect'] === undefined) throw new Invalid('InvalidRoute', `${where} needs route destinations, redirect or directResponse`);
  const headers = asRecord(r['headers']);
  const route: HttpRoute = {
    name: asString(r['name']) ?? `${ns}/${vs.metadata.name}.${i}`,
    match: asArray(r['match']).map((m, j) => vsMatch(m, `${where}.match[${j}]`, vs)),
    backends,
    headers: { request: vsHeaderOps(headers['request']), response: vsHeaderOps(headers['response']) },
  };
  if (r['directResponse'] !== undefined) route.directResponse = { status: typeof direct['status'] === 'number' ? direct['status'] : 200, ...(asString(asRecord(direct['body'])['string']) !== undefined ? { body: asString(asRecord(direct['body'])['string'])! } : {}) };
  if (r['redirect'] !== undefined) route.redirect = vsRedirect(r['redirect'], `${where}.redirect`);
  if (r['corsPolicy'] !== undefined) route.cors = vsCors(r['corsPolicy'], `${where}.corsPolicy`);
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

const MESH = 'mesh';

/** The rules of a VirtualService that apply at `place` (`mesh` or a gateway), added to its config there. */
function addRules(cfg: RouteConfig, place: string, routes: readonly HttpRoute[], tcpRoutes: readonly L4Route[], tlsRoutes: readonly L4Route[], placed: Set<object>): void {
  cfg.routes.push(...rulesAt(routes, place, placed));
  const tcp = rulesAt(tcpRoutes, place, placed);
  const tls = rulesAt(tlsRoutes, place, placed);
  if (tcp.length > 0) (cfg.tcpRoutes ??= []).push(...tcp);
  if (tls.length > 0) (cfg.tlsRoutes ??= []).push(...tls);
}

/** Gateway references of a VirtualService: `mesh` or `ns/name`. Empty list means mesh only. */
function vsGateways(vs: KubeObject): { mesh: boolean; gateways: string[] } {
  const list = asStrings(asRecord(vs.spec)['gateways']);
  if (list.length === 0) return { mesh: true, gateways: [] };
  const gateways: string[] = [];
  let mesh = false;
  for (const g of list) {
    if (g === MESH) mesh = true;
    else gateways.push(g.includes('/') ? g : `${nsOf(vs)}/${g}`);
  }
  return { mesh, gateways };
}

/** A VirtualService's rules as vsRoute and vsL4Route build them (never modified: rulesAt copies them). */
interface VsRules {
  routes: HttpRoute[];
  tcpRoutes: L4Route[];
  tlsRoutes: L4Route[];
}

/**
 * Rules built, by VirtualService object (the store's are frozen, and a retranslate sees mostly the
 * same ones), with what building them read of the run: the cluster domain, and the Service and
 * DestinationRule of each host looked up. Reused while those are the same objects, so a Service
 * change does not parse every VirtualService again.
 */
const vsRulesBuilt = new WeakMap<KubeObject, { clusterDomain: string; services: ReadonlyMap<string, KubeObject | undefined>; destinationRules: ReadonlyMap<string, KubeObject | undefined>; rules: VsRules | Invalid }>();

/** Whether `now` maps every host of `seen` to the object `seen` has (undefined: none). */
function sameReads(seen: ReadonlyMap<string, KubeObject | undefined>, now: ReadonlyMap<string, KubeObject>): boolean {
  for (const [host, obj] of seen) if (now.get(host) !== obj) return false;
  return true;
}

/** The rules of `vs` (throws the Invalid building them threw), built again only when what they read changed. */
function vsRules(ctx: RouteContext, vs: KubeObject): VsRules {
  const built = vsRulesBuilt.get(vs);
  const reused = built !== undefined && built.clusterDomain === ctx.opts.clusterDomain && sameReads(built.services, ctx.services) && sameReads(built.destinationRules, ctx.destinationRules);
  let rules: VsRules | Invalid;
  if (reused) rules = built.rules;
  else {
    const services = new Map<string, KubeObject | undefined>();
    const destinationRules = new Map<string, KubeObject | undefined>();
    let untracked = false;
    const recorded = (source: Map<string, KubeObject>, seen: Map<string, KubeObject | undefined>): Map<string, KubeObject> =>
      new Proxy(source, {
        get(target, prop): unknown {
          if (prop === 'get') return (host: string) => {
            const obj = target.get(host);
            seen.set(host, obj);
            return obj;
          };
          untracked = true;
          const v = Reflect.get(target, prop, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    const svcView = recorded(ctx.services, services);
    const drView = recorded(ctx.destinationRules, destinationRules);
    // Any other part of the run read while building makes the result one not to keep.
    const view = new Proxy(ctx, {
      get(target, prop, receiver): unknown {
        if (prop === 'services') return svcView;
        if (prop === 'destinationRules') return drView;
        if (prop !== 'opts') untracked = true;
        return Reflect.get(target, prop, receiver) as unknown;
      },
    });
    try {
      const spec = asRecord(vs.spec);
      const l4 = (k: 'tcp' | 'tls'): L4Route[] => asArray(spec[k]).map((t, i) => vsL4Route(view, vs, t, `spec.${k}[${i}]`, k === 'tls'));
      rules = { routes: asArray(spec['http']).map((h, i) => vsRoute(view, vs, h, i)), tcpRoutes: l4('tcp'), tlsRoutes: l4('tls') };
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      rules = e;
    }
    if (!untracked && Object.isFrozen(vs)) vsRulesBuilt.set(vs, { clusterDomain: ctx.opts.clusterDomain, services, destinationRules, rules });
  }
  if (rules instanceof Invalid) throw rules;
  return rules;
}

export function translateVirtualServices(ctx: RouteContext, list: readonly KubeObject[], httpRouteHosts: Set<string>): void {
  const claimed = new Map<string, string>();
  for (const vs of [...list].sort(compareAge)) {
    const ns = nsOf(vs);
    translateObject(ctx, vs, () => {
      const spec = asRecord(vs.spec);
      const hosts = asStrings(spec['hosts']).map((h) => resolveHost(h, ns, ctx.opts.clusterDomain));
      if (hosts.length === 0) throw new Invalid('InvalidHosts', 'spec.hosts must list at least one host');
      const { routes, tcpRoutes, tlsRoutes } = vsRules(ctx, vs);
      const binding = vsGateways(vs);
      const notes: string[] = [];
      for (const h of asArray(spec['http'])) if (asRecord(h)['delegate'] !== undefined) notes.push('delegate is not supported and is ignored');
      /** Rules already placed in a config (a later place copies them). */
      const placed = new Set<object>();
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
          addRules(cfg, MESH, routes, tcpRoutes, tlsRoutes, placed);
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
          // On a gateway a `port` match is the gateway server's port (its TCP and TLS listeners pick by it).
          addRules(ingressConfig(ctx, g, host), g, routes, tcpRoutes, tlsRoutes, placed);
        }
      }
      if (notes.length > 0) condition(ctx, vs, 'PartiallyApplied', notes.join('; '));
    });
  }
}
