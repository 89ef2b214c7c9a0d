/**
 * Gateway API HTTPRoutes and GRPCRoutes → HTTP routes: attached to a Service (mesh, served by its
 * waypoint) or to a Gateway API Gateway (ingress). Rules are ordered by the Gateway API's
 * precedence (path kind and length, method, header and query matches, then age). TCPRoutes and
 * TLSRoutes attached to a Service → its L4 routes (one per rule, oldest route first).
 */
import { GROUP_GATEWAY_API, type KubeObject } from '../objects.js';
import { DEFAULT_RETRY_BUDGET, emptyHeaderOps, type HeaderMatcher, type HeaderOps, type HttpRoute, type L4Route, type QueryParamMatcher, type RetryPolicy, type RouteBackend, type RouteMatch, type StringMatcher } from '../../shared/routes.js';
import { condition, durationMs, firstPort, ingressConfig, Invalid, serviceHostname, translateObject, type RouteContext } from './route-context.js';
import { asArray, asRecord, asString, asStrings, compareAge, nsOf } from './util.js';
import { referencePermitted, refNotPermitted } from './reference-grant.js';
import { WAYPOINT_CLASSES } from './waypoints.js';
import { INGRESS_CLASSES, isIngressGateway } from './gateway-api-listeners.js';
import { listenerRefusal, pickedListeners, servedTlsMode } from './allowed-routes.js';

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

/** Gateway API header or query parameter matches (`name`, `value`, type Exact or RegularExpression). */
function gwValueMatches(v: unknown, where: string, lowerName: boolean): Array<HeaderMatcher & QueryParamMatcher> {
  return asArray(v).map((h, i) => {
    const r = asRecord(h);
    const name = asString(r['name']);
    const value = asString(r['value']);
    if (!name || value === undefined) throw new Invalid('InvalidMatch', `${where}[${i}] needs name and value`);
    return { name: lowerName ? name.toLowerCase() : name, match: asString(r['type']) === 'RegularExpression' ? { regex: value } : { exact: value } };
  });
}

/**
 * A route's backendRefs as backends. A reference to another namespace that no ReferenceGrant
 * allows is kept `refused` (its share of requests gets a 500) and noted in `notes`.
 */
export function gwBackends(ctx: RouteContext, route: KubeObject, v: unknown, where: string, notes: string[]): RouteBackend[] {
  const ns = nsOf(route);
  return asArray(v).map((b, i) => {
    const r = asRecord(b);
    const kind = asString(r['kind']) ?? 'Service';
    const group = asString(r['group']) ?? '';
    if (kind !== 'Service' || group !== '') throw new Invalid('Unsupported', `${where}[${i}]: backend kind ${group ? group + '/' : ''}${kind} is not supported (use a Service)`);
    const name = asString(r['name']);
    if (!name) throw new Invalid('InvalidBackend', `${where}[${i}].name must be set`);
    const toNamespace = asString(r['namespace']) ?? ns;
    const host = serviceHostname(name, toNamespace, ctx.opts.clusterDomain);
    const weight = typeof r['weight'] === 'number' ? r['weight'] : 1;
    const port = typeof r['port'] === 'number' ? { port: r['port'] } : {};
    const ref = { fromKind: route.kind, fromNamespace: ns, toNamespace, toName: name };
    if (!referencePermitted(ctx.referenceGrants, ref)) {
      notes.push(`${where}[${i}]: ${refNotPermitted(ref)}; its share of requests gets a 500`);
      return { host, weight, ...port, refused: true as const };
    }
    if (!ctx.services.has(host)) throw new Invalid('BackendNotFound', `${where}[${i}]: Service ${host} does not exist`);
    return { host, weight, ...port };
  });
}

function gwHeaderModifier(f: Record<string, unknown>): HeaderOps {
  const ops = emptyHeaderOps();
  for (const h of asArray(f['set']).map(asRecord)) if (asString(h['name']) && asString(h['value']) !== undefined) ops.set[asString(h['name'])!.toLowerCase()] = asString(h['value'])!;
  for (const h of asArray(f['add']).map(asRecord)) if (asString(h['name']) && asString(h['value']) !== undefined) ops.add[asString(h['name'])!.toLowerCase()] = asString(h['value'])!;
  ops.remove = asStrings(f['remove']).map((x) => x.toLowerCase());
  return ops;
}

function gwFilters(ctx: RouteContext, route: KubeObject, filters: unknown, where: string, out: HttpRoute, pathPrefix: string | undefined, notes: string[]): void {
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
        const [b] = gwBackends(ctx, route, [m['backendRef']], `${w}.requestMirror.backendRef`, notes);
        if (b!.refused) break;
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

/** parentRefs → mesh Service hosts (with the port a ref names) and ingress gateways (`ns/name`). */
function parents(ctx: RouteContext, route: KubeObject): { services: string[]; servicePorts: Array<number | undefined>; gateways: Array<{ key: string; ref: Record<string, unknown> }>; notes: string[] } {
  const out = { services: [] as string[], servicePorts: [] as Array<number | undefined>, gateways: [] as Array<{ key: string; ref: Record<string, unknown> }>, notes: [] as string[] };
  for (const p of asArray(asRecord(route.spec)['parentRefs']).map(asRecord)) {
    const kind = asString(p['kind']) ?? 'Gateway';
    const group = asString(p['group']) ?? (kind === 'Service' ? '' : GROUP_GATEWAY_API);
    const name = asString(p['name']) ?? '';
    const ns = asString(p['namespace']) ?? nsOf(route);
    if (kind === 'Service' && group === '') {
      const host = serviceHostname(name, ns, ctx.opts.clusterDomain);
      if (ctx.services.has(host)) {
        out.services.push(host);
        out.servicePorts.push(typeof p['port'] === 'number' ? p['port'] : undefined);
      } else out.notes.push(`parent Service ${ns}/${name} does not exist`);
    } else if (kind === 'Gateway' && group === GROUP_GATEWAY_API) out.gateways.push({ key: `${ns}/${name}`, ref: p });
    else out.notes.push(`parent ${group}/${kind} ${name} is not supported`);
  }
  return out;
}

/** The Gateway parentRefs of a TCPRoute or TLSRoute, with the listener they pick (sectionName, port). */
function gatewayParentRefs(route: KubeObject): Array<{ key: string; sectionName?: string; port?: number; ref: Record<string, unknown> }> {
  const out: Array<{ key: string; sectionName?: string; port?: number; ref: Record<string, unknown> }> = [];
  for (const p of asArray(asRecord(route.spec)['parentRefs']).map(asRecord)) {
    if ((asString(p['kind']) ?? 'Gateway') !== 'Gateway' || (asString(p['group']) ?? GROUP_GATEWAY_API) !== GROUP_GATEWAY_API) continue;
    const section = asString(p['sectionName']);
    out.push({ ref: p, key: `${asString(p['namespace']) ?? nsOf(route)}/${asString(p['name']) ?? ''}`, ...(section !== undefined ? { sectionName: section } : {}), ...(typeof p['port'] === 'number' ? { port: p['port'] } : {}) });
  }
  return out;
}

/** The ports of an ingress Gateway's listeners of `protocol` a parentRef picks; a note says why there are none. */
function ingressL4Ports(ctx: RouteContext, route: KubeObject, ref: { key: string; sectionName?: string; port?: number; ref: Record<string, unknown> }, protocol: 'TCP' | 'TLS', notes: string[]): number[] {
  const gw = ctx.gatewayApiGateways.get(ref.key);
  if (!gw) {
    notes.push(`parent Gateway ${ref.key} does not exist`);
    return [];
  }
  if (!isIngressGateway(gw)) {
    notes.push(`parent Gateway ${ref.key} is not an ingress Gateway (class ${INGRESS_CLASSES.join(' or ')}); attach the route to a Service for waypoints`);
    return [];
  }
  const refused = routeRefusal(ctx, gw, ref.ref, route);
  if (refused) {
    notes.push(refused);
    return [];
  }
  const ports: number[] = [];
  for (const l of asArray(asRecord(gw.spec)['listeners']).map(asRecord)) {
    if ((asString(l['protocol']) ?? '').toUpperCase() !== protocol || typeof l['port'] !== 'number') continue;
    if (protocol === 'TLS' && !servedTlsMode(l)) continue;
    if (ref.sectionName !== undefined && asString(l['name']) !== ref.sectionName) continue;
    if (ref.port !== undefined && l['port'] !== ref.port) continue;
    if (listenerRefusal(gw, l, route.kind, nsOf(route), ctx.namespaces) !== undefined) continue;
    if (!ports.includes(l['port'])) ports.push(l['port']);
  }
  if (ports.length === 0) {
    const which = `${ref.sectionName !== undefined ? ` named ${ref.sectionName}` : ''}${ref.port !== undefined ? ` on port ${ref.port}` : ''}`;
    notes.push(`parent Gateway ${ref.key} has no ${protocol === 'TLS' ? 'TLS listener in Passthrough or Terminate mode' : 'TCP listener'}${which}`);
  }
  return ports;
}

/**
 * Why no listener an ingress Gateway parentRef picks lets the route attach (allowedRoutes: its
 * namespace or kind), or undefined when one does, or when the ref picks no listener (the callers
 * say that in their own words).
 */
function routeRefusal(ctx: RouteContext, gw: KubeObject, parentRef: Record<string, unknown>, route: KubeObject): string | undefined {
  const picked = pickedListeners(gw, parentRef);
  if (picked.length === 0) return undefined;
  const why = picked.map((l) => listenerRefusal(gw, l, route.kind, nsOf(route), ctx.namespaces));
  if (why.some((w) => w === undefined)) return undefined;
  return `parent Gateway ${nsOf(gw)}/${gw.metadata.name}: not allowed by its listeners (${[...new Set(why)].join('; ')})`;
}

/**
 * The ports an HTTPRoute or GRPCRoute attached to an ingress Gateway through `parentRef` is served
 * on: those of the listeners the ref picks that allow it; `all` when that is every HTTP(S)
 * listener of the Gateway (the route needs no port match). A refusal says why there are none.
 */
function httpAttachPorts(ctx: RouteContext, gw: KubeObject, parentRef: Record<string, unknown>, route: KubeObject): { ports: number[]; all: boolean } | { refused: string } {
  const key = `${nsOf(gw)}/${gw.metadata.name}`;
  const picked = pickedListeners(gw, parentRef);
  if (picked.length === 0) {
    const section = asString(parentRef['sectionName']);
    const port = typeof parentRef['port'] === 'number' ? parentRef['port'] : undefined;
    return { refused: `parent Gateway ${key} has no listener${section !== undefined ? ` named ${section}` : ''}${port !== undefined ? ` on port ${port}` : ''}` };
  }
  const refused = routeRefusal(ctx, gw, parentRef, route);
  if (refused) return { refused };
  const ports = [...new Set(picked.filter((l) => listenerRefusal(gw, l, route.kind, nsOf(route), ctx.namespaces) === undefined).map((l) => l['port']).filter((p): p is number => typeof p === 'number'))];
  const httpPorts = new Set(asArray(gw.spec?.['listeners']).map(asRecord).filter((l) => ['HTTP', 'HTTPS'].includes((asString(l['protocol']) ?? '').toUpperCase())).map((l) => l['port']));
  return { ports, all: [...httpPorts].every((p) => ports.includes(p as number)) };
}

/** `ranked` limited to `ports` (each match, or a match-all route, gets one copy per port). */
function onPorts(ranked: readonly RankedRoute[], ports: readonly number[]): RankedRoute[] {
  return ranked.map((r) => {
    const base = r.route.match.length > 0 ? r.route.match : [{ headers: [], queryParams: [] }];
    return { ...r, route: { ...structuredClone(r.route), match: ports.flatMap((port) => base.map((m) => ({ ...structuredClone(m), port }))) } };
  });
}

export function translateGatewayRoutes(ctx: RouteContext, list: readonly KubeObject[], gwApiGateways: Map<string, KubeObject>): Set<string> {
  const byHost = new Map<string, RankedRoute[]>();
  const hosts = new Set<string>();
  let order = 0;
  for (const obj of [...list].sort(compareAge)) {
    const ns = nsOf(obj);
    const grpc = obj.kind === 'GRPCRoute';
    translateObject(ctx, obj, () => {
      const spec = asRecord(obj.spec);
      const ranked: RankedRoute[] = [];
      const notes: string[] = [];
      asArray(spec['rules']).forEach((rule, i) => {
        const r = asRecord(rule);
        const where = `spec.rules[${i}]`;
        const backends = gwBackends(ctx, obj, r['backendRefs'], `${where}.backendRefs`, notes);
        if (backends.length === 0) throw new Invalid('InvalidBackend', `${where}.backendRefs must name at least one Service`);
        const matches = asArray(r['matches']);
        const list = matches.length > 0 ? matches : [{}];
        list.forEach((m, j) => {
          const mr = asRecord(m);
          const mw = `${where}.matches[${j}]`;
          const match: RouteMatch = { headers: gwValueMatches(mr['headers'], `${mw}.headers`, true), queryParams: grpc ? [] : gwValueMatches(mr['queryParams'], `${mw}.queryParams`, false) };
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
          gwFilters(ctx, obj, r['filters'], `${where}.filters`, hr, prefix, notes);
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
      notes.push(...par.notes);
      for (const host of par.services) {
        hosts.add(host);
        const l = byHost.get(host) ?? [];
        l.push(...ranked);
        byHost.set(host, l);
      }
      for (const { key: g, ref } of par.gateways) {
        const gw = gwApiGateways.get(g);
        if (!gw) {
          notes.push(`parent Gateway ${g} does not exist`);
          continue;
        }
        if (WAYPOINT_CLASSES.includes(asString(asRecord(gw.spec)['gatewayClassName']) ?? '')) {
          notes.push(`parent Gateway ${g} is a waypoint; attach routes to a Service instead`);
          continue;
        }
        let attached: readonly RankedRoute[] = ranked;
        if (isIngressGateway(gw)) {
          const on = httpAttachPorts(ctx, gw, ref, obj);
          if ('refused' in on) {
            notes.push(on.refused);
            continue;
          }
          if (!on.all) attached = onPorts(ranked, on.ports);
        }
        const hostnames = asStrings(spec['hostnames']);
        for (const h of hostnames.length > 0 ? hostnames : ['*']) {
          const key = `gw:${g}/${h.toLowerCase()}`;
          const l = byHost.get(key) ?? [];
          l.push(...attached);
          byHost.set(key, l);
        }
      }
      if (notes.length > 0) condition(ctx, obj, 'PartiallyApplied', notes.join('; '));
    });
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

/**
 * TCPRoutes and TLSRoutes (oldest first) → L4 routes of the Services they attach to: each rule
 * picks among its backendRefs by weight; a TLSRoute matches its hostnames by SNI (none: any), a
 * parentRef port limits the route to that port. Attached to an ingress Gateway (class istio or
 * ambit) they become the `tcp`/`tls` routes of its TCP listeners (TCPRoute) or TLS Passthrough
 * listeners (TLSRoute; Passthrough, or Terminate: routed by the handshake's SNI), limited to the listener's port (a parentRef's sectionName or port picks
 * listeners), served as the Istio Gateway's TCP and TLS servers are (decision 50).
 */
export function translateL4GatewayRoutes(ctx: RouteContext, list: readonly KubeObject[]): void {
  for (const obj of [...list].sort(compareAge)) {
    const ns = nsOf(obj);
    const tls = obj.kind === 'TLSRoute';
    translateObject(ctx, obj, () => {
      const spec = asRecord(obj.spec);
      const notes: string[] = [];
      const sniHosts = asStrings(spec['hostnames']).map((h) => h.toLowerCase());
      const rules = asArray(spec['rules']).map((rule, i) => {
        const where = `spec.rules[${i}]`;
        const backends = gwBackends(ctx, obj, asRecord(rule)['backendRefs'], `${where}.backendRefs`, notes);
        if (backends.length === 0) throw new Invalid('InvalidBackend', `${where}.backendRefs must name at least one Service`);
        return { name: `${ns}/${obj.metadata.name}.${i}`, backends };
      });
      if (rules.length > 1) notes.push(`only spec.rules[0] is used: ${obj.kind} rules have no matches, so the first takes every connection`);
      const par = parents(ctx, obj);
      notes.push(...par.notes);
      for (const ref of gatewayParentRefs(obj)) {
        const ports = ingressL4Ports(ctx, obj, ref, tls ? 'TLS' : 'TCP', notes);
        if (ports.length === 0) continue;
        const cfg = ingressConfig(ctx, ref.key, tls && sniHosts.length > 0 ? sniHosts[0]! : '*');
        const match = ports.map((port) => ({ port, ...(tls ? { sniHosts: sniHosts.length > 0 ? sniHosts : ['*'] } : {}) }));
        const out: L4Route[] = rules.map((r) => ({ name: r.name, match: structuredClone(match), backends: structuredClone(r.backends) }));
        if (tls) (cfg.tlsRoutes ??= []).push(...out);
        else (cfg.tcpRoutes ??= []).push(...out);
      }
      par.services.forEach((host, k) => {
        const port = par.servicePorts[k];
        const match = port !== undefined || tls ? [{ ...(port !== undefined ? { port } : {}), ...(tls ? { sniHosts: sniHosts.length > 0 ? sniHosts : ['*'] } : {}) }] : [];
        const cfg = ctx.mesh.get(host)!;
        const out: L4Route[] = rules.map((r) => ({ name: r.name, match: structuredClone(match), backends: structuredClone(r.backends) }));
        if (tls) (cfg.tlsRoutes ??= []).push(...out);
        else (cfg.tcpRoutes ??= []).push(...out);
      });
      if (notes.length > 0) condition(ctx, obj, 'PartiallyApplied', notes.join('; '));
    });
  }
}
