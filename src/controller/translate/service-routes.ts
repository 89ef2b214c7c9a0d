/**
 * Services and DestinationRules → mesh route configs: one config per Service (its hostname,
 * aliases, ports and waypoint), and the traffic policy (connection pool, outlier detection,
 * subsets) of the oldest DestinationRule for each host.
 */
import { isIP } from 'node:net';
import type { KubeObject } from '../objects.js';
import type { ConnectionPoolPolicy, OutlierDetectionPolicy, RouteConfig, Subset, TrafficPolicy } from '../../shared/routes.js';
import { detectPortProtocol } from './protocol.js';
import { condition, durationMs, Invalid, resolveHost, serviceHostname, translateObject, type RouteContext } from './route-context.js';
import { asArray, asRecord, asString, asStrings, compareAge, nsOf } from './util.js';
import { requestedWaypoint } from './waypoints.js';
import { allocatedEntryAddresses } from './address-allocation.js';
import { cidrProblem } from '../../shared/validate.js';

/**
 * Service configs as last built, by Service object (the store's are frozen, and a retranslate sees
 * mostly the same ones), with the namespace object and cluster domain they were built with.
 */
const serviceConfigs = new WeakMap<KubeObject, { namespace: KubeObject | undefined; clusterDomain: string; cfg: RouteConfig }>();

/**
 * A Service's mesh config, before routes and policies are added to it: a fresh object each call
 * (steps after this one fill it in), whose `aliases` and `ports` lists are the ones built the
 * last time for the same frozen Service, namespace and cluster domain (never modified).
 */
export function serviceConfig(ctx: RouteContext, svc: KubeObject): RouteConfig {
  const namespace = ctx.namespaces.get(nsOf(svc));
  const cached = serviceConfigs.get(svc);
  if (cached && cached.namespace === namespace && cached.clusterDomain === ctx.opts.clusterDomain) return { ...cached.cfg, routes: [], authorization: [] };
  const cfg = buildServiceConfig(ctx, svc);
  if (Object.isFrozen(svc)) serviceConfigs.set(svc, { namespace, clusterDomain: ctx.opts.clusterDomain, cfg: { ...cfg, routes: [], authorization: [] } });
  return cfg;
}

function buildServiceConfig(ctx: RouteContext, svc: KubeObject): RouteConfig {
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

/**
 * The hosts of a ServiceEntry with addresses to serve (resolution STATIC, DNS, DNS_ROUND_ROBIN;
 * NONE and DYNAMIC_DNS only when the entry names its addresses, exact or ranges; wildcard hosts
 * likewise) as mesh configs, so VirtualServices, DestinationRules and a bound waypoint serve
 * them as they serve a Service.
 */
export function serviceEntryConfigs(ctx: RouteContext, se: KubeObject): RouteConfig[] {
  const spec = asRecord(se.spec);
  const resolution = asString(spec['resolution']) ?? 'NONE';
  // Ranges count where the model serves them (every resolution Istio accepts them with).
  const rangesServed = resolution === 'STATIC' || resolution === 'NONE' || resolution === 'DYNAMIC_DNS';
  const named = asStrings(spec['addresses']).some((a) => isIP(a) !== 0 || (rangesServed && cidrProblem(a) === undefined));
  if ((resolution === 'NONE' || resolution === 'DYNAMIC_DNS') && !named) return [];
  const ns = nsOf(se);
  const ports = asArray(spec['ports'])
    .map(asRecord)
    .map((p) => ({ port: typeof p['number'] === 'number' ? p['number'] : 0, protocol: detectPortProtocol({ name: asString(p['name']) ?? '', appProtocol: asString(p['protocol']) ?? 'TCP' }) }))
    .filter((p) => p.port > 0);
  const wp = requestedWaypoint(se, ctx.namespaces.get(ns));
  const addresses = asStrings(spec['addresses']).filter((a) => isIP(a) !== 0);
  const allocated = addresses.length === 0 ? allocatedEntryAddresses(ctx.serviceEntries) : undefined;
  return asStrings(spec['hosts'])
    .map((h) => h.toLowerCase())
    // A wildcard host is served only on the entry's own addresses (none are allocated for it).
    .filter((h) => !h.startsWith('*') || named)
    .map((hostname) => ({
      name: `${ns}/${hostname}`,
      namespace: ns,
      hostname,
      aliases: allocated ? [...(allocated.get(`${ns}/${hostname}`) ?? [])] : addresses,
      ports,
      routes: [],
      authorization: [],
      ...(wp && wp !== 'none' ? { waypoint: wp.key } : {}),
    }));
}

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

export function subsetLabels(ctx: RouteContext, host: string, subset: string | undefined, owner: string): Record<string, string> | undefined {
  if (!subset) return undefined;
  const dr = ctx.destinationRules.get(host);
  const found = dr ? asArray(asRecord(dr.spec)['subsets']).map(asRecord).find((s) => s['name'] === subset) : undefined;
  if (!found) throw new Invalid('SubsetNotFound', `${owner}: subset ${JSON.stringify(subset)} of host ${host} is not defined by any DestinationRule`);
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(asRecord(found['labels']))) if (typeof v === 'string') labels[k] = v;
  return labels;
}

/** The oldest DestinationRule of each host sets its traffic policy; a younger one for the same host gets a Conflicted condition. */
export function translateDestinationRules(ctx: RouteContext, list: readonly KubeObject[]): void {
  for (const dr of [...list].sort(compareAge)) {
    translateObject(ctx, dr, () => {
      const host = resolveHost(asString(asRecord(dr.spec)['host']) ?? '', nsOf(dr), ctx.opts.clusterDomain);
      if (!host) throw new Invalid('InvalidHost', 'spec.host must be set');
      const tp = trafficPolicyOf(dr);
      const older = ctx.destinationRules.get(host);
      if (older) {
        condition(ctx, dr, 'Conflicted', `host ${host} already has the older DestinationRule ${nsOf(older)}/${older.metadata.name}; this one is ignored`);
        return;
      }
      ctx.destinationRules.set(host, dr);
      const cfg = ctx.mesh.get(host);
      if (cfg) cfg.trafficPolicy = tp;
      else condition(ctx, dr, 'PartiallyApplied', `host ${host} is not a known Service; the policy applies once it exists`);
    });
  }
}
