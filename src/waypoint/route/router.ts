/**
 * Pure routing: request (authority, path, method, headers) + route configs → the config and the
 * HTTP route that serves it, or the reason nothing does (404). No sockets, no clocks.
 */
import type { HeaderMatcher, HttpRoute, QueryParamMatcher, RouteConfig, RouteMatch, StringMatcher } from '../../shared/routes.js';
import { callerMatches, emptyHeaderOps, type RouteCaller } from '../../shared/routes.js';

export type HeaderValue = string | string[] | undefined;
export type RequestHeaders = Record<string, HeaderValue>;

export interface RouteRequest {
  /** Host header / :authority, possibly with a port. */
  authority: string;
  /** Path with query string. */
  path: string;
  method: string;
  /** Lowercase names. */
  headers: RequestHeaders;
  /** Destination port the request arrived for (service port), when known. */
  port?: number;
  /**
   * Hostname of the Service the caller addressed (the tunnel's destination VIP), when known: its
   * routes apply whatever the Host header says, as Istio waypoints route by destination service.
   */
  service?: string;
  /**
   * Address of the pod the caller addressed, when it addressed a pod rather than a Service VIP (a
   * workload-bound waypoint): the request goes to that pod on `port` (original destination), and
   * no Service route applies; `service` (the pod's Service) still picks the config (policy).
   */
  workload?: string;
  /** Who the caller is, as far as verified (matches' sourceNamespace and sourceLabels). */
  caller?: RouteCaller;
}

export type RouteDecision =
  | { kind: 'route'; config: RouteConfig; route: HttpRoute }
  | { kind: 'no-route'; reason: 'unknown-host' | 'no-match'; config?: RouteConfig };

/** Index of route configs by host, for one listener scope (mesh, or one ingress gateway). */
export interface RouteTable {
  exact: Map<string, RouteConfig>;
  /** `*.suffix` hosts, longest suffix first. */
  wildcard: Array<{ suffix: string; config: RouteConfig }>;
  catchAll?: RouteConfig;
}

/** Host part of an authority, lowercase: `a.b:80` → `a.b`, `[::1]:80` → `::1`. */
export function hostOfAuthority(authority: string): string {
  const a = authority.trim().toLowerCase();
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    return end > 0 ? a.slice(1, end) : a;
  }
  const colon = a.lastIndexOf(':');
  if (colon > 0 && a.indexOf(':') === colon && /^\d+$/.test(a.slice(colon + 1))) return a.slice(0, colon);
  return a;
}

/** Builds the lookup for mesh configs (gateway undefined) or for the configs bound to `gateway`. */
export function buildRouteTable(configs: readonly RouteConfig[], gateway?: string): RouteTable {
  const table: RouteTable = { exact: new Map(), wildcard: [] };
  for (const c of configs) {
    if ((c.gateway ?? undefined) !== gateway) continue;
    for (const h of [c.hostname, ...c.aliases]) {
      const host = h.toLowerCase();
      if (host === '*') table.catchAll ??= c;
      else if (host.startsWith('*.')) table.wildcard.push({ suffix: host.slice(1), config: c });
      else if (!table.exact.has(host)) table.exact.set(host, c);
    }
  }
  table.wildcard.sort((a, b) => b.suffix.length - a.suffix.length);
  return table;
}

export function lookupConfig(table: RouteTable, authority: string): RouteConfig | undefined {
  const host = hostOfAuthority(authority);
  const exact = table.exact.get(host);
  if (exact) return exact;
  for (const w of table.wildcard) if (host.endsWith(w.suffix)) return w.config;
  return table.catchAll;
}

const regexCache = new Map<string, RegExp>();

function compile(pattern: string, ignoreCase: boolean): RegExp {
  const key = (ignoreCase ? 'i:' : 's:') + pattern;
  let re = regexCache.get(key);
  if (!re) {
    re = new RegExp(`^(?:${pattern})$`, ignoreCase ? 'i' : '');
    if (regexCache.size > 1000) regexCache.clear();
    regexCache.set(key, re);
  }
  return re;
}

export function matchString(m: StringMatcher, value: string, ignoreCase = false): boolean {
  const v = ignoreCase ? value.toLowerCase() : value;
  if ('exact' in m) return v === (ignoreCase ? m.exact.toLowerCase() : m.exact);
  if ('prefix' in m) return v.startsWith(ignoreCase ? m.prefix.toLowerCase() : m.prefix);
  return compile(m.regex, ignoreCase).test(value);
}

function headerText(v: HeaderValue): string | undefined {
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(',') : v;
}

function matchValue(m: HeaderMatcher['match'] | QueryParamMatcher['match'], value: string | undefined): boolean {
  if ('present' in m) return (value !== undefined) === m.present;
  if (value === undefined) return false;
  return matchString(m, value);
}

export function splitPath(path: string): { pathname: string; query: string } {
  const q = path.indexOf('?');
  return q < 0 ? { pathname: path, query: '' } : { pathname: path.slice(0, q), query: path.slice(q + 1) };
}

export function matchRequest(m: RouteMatch, req: RouteRequest): boolean {
  const { pathname, query } = splitPath(req.path);
  if (m.uri && !matchString(m.uri, pathname, m.ignoreUriCase === true)) return false;
  if (m.method && m.method !== req.method.toUpperCase()) return false;
  if (m.port !== undefined && req.port !== undefined && m.port !== req.port) return false;
  if ((m.sourceNamespace !== undefined || m.sourceLabels !== undefined) && !callerMatches(m, req.caller)) return false;
  for (const h of m.headers) {
    const ok = matchValue(h.match, headerText(req.headers[h.name]));
    if (ok === (h.invert === true)) return false;
  }
  if (m.queryParams.length > 0) {
    const params = new URLSearchParams(query);
    for (const q of m.queryParams) {
      if (!matchValue(q.match, params.get(q.name) ?? undefined)) return false;
    }
  }
  return true;
}

/** The route a config without routes uses: everything to the service itself on the request's port. */
export function defaultRoute(config: RouteConfig): HttpRoute {
  return {
    name: 'default',
    match: [],
    backends: [{ host: config.hostname, weight: 1 }],
    headers: { request: emptyHeaderOps(), response: emptyHeaderOps() },
  };
}

/** First route (in order) whose any match holds; routes with no match entries match everything. */
export function selectRoute(config: RouteConfig, req: RouteRequest): HttpRoute | undefined {
  if (config.routes.length === 0) return config.gateway ? undefined : defaultRoute(config);
  for (const r of config.routes) {
    if (r.match.length === 0 || r.match.some((m) => matchRequest(m, req))) return r;
  }
  return undefined;
}

/** The route for pod-addressed requests: everything to the pod itself, on the port it was sent to. */
export function originalDestinationRoute(address: string, port: number | undefined): HttpRoute {
  return {
    name: 'original-destination',
    match: [],
    backends: [{ host: address, weight: 1, ...(port !== undefined ? { port } : {}) }],
    headers: { request: emptyHeaderOps(), response: emptyHeaderOps() },
  };
}

export function routeRequest(table: RouteTable, req: RouteRequest): RouteDecision {
  const addressed = req.service !== undefined ? table.exact.get(req.service.toLowerCase()) : undefined;
  if (req.workload !== undefined) {
    // Never by Host here: a caller must not pick another service's policy for this pod.
    const own: RouteConfig = addressed ?? { name: `workload/${req.workload}`, namespace: '', hostname: req.workload, aliases: [], ports: [], routes: [], authorization: [] };
    return { kind: 'route', config: own, route: originalDestinationRoute(req.workload, req.port) };
  }
  const config = addressed ?? lookupConfig(table, req.authority);
  if (!config) return { kind: 'no-route', reason: 'unknown-host' };
  const route = selectRoute(config, req);
  if (!route) return { kind: 'no-route', reason: 'no-match', config };
  return { kind: 'route', config, route };
}
