/**
 * Kubernetes/Istio/Gateway API objects → waypoint and ingress route configs (pure), in order:
 * Services (service-routes.ts), Istio Gateways (istio-gateway.ts), DestinationRules, Gateway API
 * routes (gateway-api.ts: HTTP, then TCP/TLS, whose routes come before a VirtualService's
 * tcp/tls routes), VirtualServices (virtual-service.ts), L7 authorization (authorization-l7.ts),
 * then Telemetry knobs (telemetry.ts). An object that cannot be translated gets a condition naming the problem;
 * every other object is still translated.
 */
import type { KubeObject } from '../objects.js';
import type { GatewayServer, RouteConfig } from '../../shared/routes.js';
import { translateAuthorization } from './authorization-l7.js';
import { translateRequestAuthentication } from './request-authentication.js';
import { translateTelemetry } from './telemetry.js';
import { translateGatewayRoutes, translateL4GatewayRoutes } from './gateway-api.js';
import { gatewayApiServers, isIngressGateway } from './gateway-api-listeners.js';
import { ingressGatewayPods, type GatewayPod } from './gateway-pods.js';
import { translateIstioGateway } from './istio-gateway.js';
import { buildIndex, type ObjectIndex, type TranslateCondition, type TranslateOptions } from './object-index.js';
import { translateObject, type RouteContext } from './route-context.js';
import { serviceConfig, serviceEntryConfigs, translateDestinationRules } from './service-routes.js';
import { compareAge, compareStrings, nsOf } from './util.js';
import { translateVirtualServices } from './virtual-service.js';
import { REF_GATEWAY_API_GATEWAY, REF_ISTIO_GATEWAY } from '../objects.js';
import { meshProxyDefaults } from './mesh-config.js';
import { trustedProxies } from './gateway-listeners.js';

export { CONDITION_ROUTES_ACCEPTED, resolveHost } from './route-context.js';

export interface TranslateRoutesResult {
  /** Mesh configs (one per Service) and ingress configs (one per gateway + host), sorted by name. */
  routes: RouteConfig[];
  /** Istio Gateway servers (ingress listeners). */
  gateways: GatewayServer[];
  conditions: TranslateCondition[];
}

/** Route configs and Istio Gateway servers of `objects` (builds its own index; see buildRoutes). */
export function translateRoutes(objects: readonly KubeObject[], opts: Partial<TranslateOptions> = {}): TranslateRoutesResult {
  return buildRoutes(buildIndex(objects, opts));
}

/** Translates the route-related objects of an index into RouteConfigs and Gateway servers; never throws on bad input. */
export function buildRoutes(idx: ObjectIndex): TranslateRoutesResult {
  return finishRoutes(routeBase(idx), idx, false);
}

/**
 * The route translation before the steps that only add to configs already built (L7
 * authorization, Telemetry, trusted proxy counts: see finishRoutes): every config with its routes
 * (uniquely named), the Gateway servers (sorted) and the conditions so far. Incremental
 * translation (incremental.ts) keeps it while the kinds it read are the same objects, so a change
 * of an AuthorizationPolicy or a Telemetry finishes the same base again instead of rebuilding it.
 * Never modified once returned when finished with `copy` (finishRoutes).
 */
export function routeBase(idx: ObjectIndex): RouteContext {
  const ctx: RouteContext = {
    opts: idx.opts,
    conditions: [],
    namespaces: idx.namespaces,
    services: new Map(),
    destinationRules: new Map(),
    mesh: new Map(),
    ingress: new Map(),
    istioGateways: new Map(),
    gatewayApiGateways: new Map(),
    gatewayServers: [],
    referenceGrants: idx.of('ReferenceGrant'),
    configMaps: idx.of('ConfigMap'),
    serviceEntries: idx.of('ServiceEntry'),
    gatewayPods: gatewayPodsOf(idx),
  };
  for (const svc of idx.of('Service')) {
    const cfg = serviceConfig(ctx, svc);
    ctx.services.set(cfg.hostname, svc);
    ctx.mesh.set(cfg.hostname, cfg);
  }
  // ServiceEntry hosts a Service does not have (oldest entry first, as the model takes them).
  for (const se of [...idx.of('ServiceEntry')].sort(compareAge)) {
    for (const cfg of serviceEntryConfigs(ctx, se)) if (!ctx.mesh.has(cfg.hostname)) ctx.mesh.set(cfg.hostname, cfg);
  }
  for (const gw of idx.of(REF_ISTIO_GATEWAY)) {
    translateObject(ctx, gw, () => {
      translateIstioGateway(ctx, gw);
      ctx.istioGateways.set(`${nsOf(gw)}/${gw.metadata.name}`, gw);
    });
  }
  const gwApi = ctx.gatewayApiGateways;
  for (const g of idx.of(REF_GATEWAY_API_GATEWAY)) gwApi.set(`${nsOf(g)}/${g.metadata.name}`, g);
  const ingress = gatewayApiServers(idx);
  ctx.gatewayServers.push(...ingress.servers);
  ctx.conditions.push(...ingress.conditions);

  translateDestinationRules(ctx, idx.of('DestinationRule'));
  const routeHosts = translateGatewayRoutes(ctx, [...idx.of('HTTPRoute'), ...idx.of('GRPCRoute')], gwApi);
  translateL4GatewayRoutes(ctx, [...idx.of('TCPRoute'), ...idx.of('TLSRoute')]);
  translateVirtualServices(ctx, idx.of('VirtualService'), routeHosts);
  translateRequestAuthentication(ctx, idx.of('RequestAuthentication'));
  nameRoutes(ctx);
  ctx.gatewayServers.sort((a, b) => compareStrings(`${a.gateway}:${a.port}`, `${b.gateway}:${b.port}`));
  return ctx;
}

/** Ingress gateway pods of `idx`, read on first call (route-context.ts). */
function gatewayPodsOf(idx: ObjectIndex): () => ReadonlyMap<string, GatewayPod> {
  let pods: ReadonlyMap<string, GatewayPod> | undefined;
  return () => (pods ??= idx.of(REF_ISTIO_GATEWAY).length > 0 || idx.gateways.some(isIngressGateway) ? ingressGatewayPods(idx) : new Map());
}

/**
 * The last steps of route translation over a base (routeBase): L7 authorization, Telemetry and
 * trusted proxy counts, which only add to the configs (`authorization`, `telemetry`,
 * `numTrustedProxies`) and to the conditions. With `copy` the base stays as it was: each config
 * is a shallow copy with an `authorization` list of its own (its other parts are the base's, read
 * only), and the conditions a new list; without, the base's own configs are finished.
 */
export function finishRoutes(base: RouteContext, idx: ObjectIndex, copy: boolean): TranslateRoutesResult {
  const copied = (m: ReadonlyMap<string, RouteConfig>): Map<string, RouteConfig> => {
    const out = new Map<string, RouteConfig>();
    for (const [k, cfg] of m) out.set(k, { ...cfg, authorization: [...cfg.authorization] });
    return out;
  };
  const ctx: RouteContext = copy ? { ...base, conditions: [...base.conditions], mesh: copied(base.mesh), ingress: copied(base.ingress), gatewayPods: gatewayPodsOf(idx) } : base;
  translateAuthorization(ctx, idx.of('AuthorizationPolicy'));
  translateTelemetry(ctx, idx.of('Telemetry'));
  waypointTrustedProxies(ctx);
  const routes = [...ctx.mesh.values(), ...ctx.ingress.values()].sort((a, b) => compareStrings(a.name, b.name));
  return { routes, gateways: copy ? [...base.gatewayServers] : ctx.gatewayServers, conditions: ctx.conditions };
}

/**
 * Each waypoint-served mesh config gets its waypoint's trusted proxy count: the waypoint Gateway's
 * `proxy.istio.io/config` gatewayTopology.numTrustedProxies (Istio copies it to the waypoint
 * pod), else the mesh's defaultConfig; a count of 0 is left out.
 */
function waypointTrustedProxies(ctx: RouteContext): void {
  const meshDefault = meshProxyDefaults(ctx.configMaps, ctx.opts.rootNamespace).numTrustedProxies ?? 0;
  for (const cfg of ctx.mesh.values()) {
    if (cfg.waypoint === undefined) continue;
    const gw = ctx.gatewayApiGateways.get(cfg.waypoint);
    const n = gw ? trustedProxies(gw, meshDefault) : meshDefault;
    if (n > 0) cfg.numTrustedProxies = n;
  }
}

/**
 * Names each config's routes uniquely (`name#2`, ...). Configs are validated once, by the config
 * server before it sends them (an invalid one is not sent: the last good version stays, logged
 * and counted in ambit_config_invalid_resources_total).
 */
function nameRoutes(ctx: RouteContext): void {
  for (const cfg of [...ctx.mesh.values(), ...ctx.ingress.values()]) {
    const names = new Set<string>();
    for (const r of cfg.routes) {
      let n = r.name;
      for (let k = 2; names.has(n); k++) n = `${r.name}#${k}`;
      r.name = n;
      names.add(n);
    }
  }
}
