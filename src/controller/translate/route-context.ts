/**
 * What the route translation steps share: the context of one run (the Services by hostname, the
 * DestinationRules, the mesh and ingress route configs being built, the conditions), the Invalid
 * error an object's translation throws to be skipped with a condition, and small readers (host
 * resolution, durations, percentages).
 */
import { objectKey, type KubeObject } from '../objects.js';
import type { GatewayServer, RouteConfig } from '../../shared/routes.js';
import { tryParseDuration } from '../../shared/duration.js';
import type { TranslateCondition, TranslateOptions } from './object-index.js';
import type { GatewayPod } from './gateway-pods.js';
import { asArray, asRecord, asString, nsOf } from './util.js';

export const CONDITION_ROUTES_ACCEPTED = 'Accepted';

/** Thrown inside one object's translation; becomes a condition and the object is skipped. */
export class Invalid extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** State shared by the route translation steps of one retranslate. */
export interface RouteContext {
  opts: TranslateOptions;
  conditions: TranslateCondition[];
  namespaces: ReadonlyMap<string, KubeObject>;
  /** hostname → Service object */
  services: Map<string, KubeObject>;
  /** hostname → DestinationRule (oldest first wins) */
  destinationRules: Map<string, KubeObject>;
  mesh: Map<string, RouteConfig>;
  ingress: Map<string, RouteConfig>;
  istioGateways: Map<string, KubeObject>;
  /** Gateway API Gateways by `ns/name` (their listeners give ingress configs their ports). */
  gatewayApiGateways: Map<string, KubeObject>;
  gatewayServers: GatewayServer[];
  /** Gateway API ReferenceGrants (cross-namespace backendRefs need one). */
  referenceGrants: readonly KubeObject[];
  /** ConfigMaps (the mesh config `istio` in the root namespace among them). */
  configMaps: readonly KubeObject[];
  /** ServiceEntries (their hosts may serve extension providers). */
  serviceEntries: readonly KubeObject[];
  /**
   * Ingress gateway pods by `ns/name` (selector policies that select them are enforced there).
   * Computed on first call: Pods are read only when a selector policy asks and an ingress
   * Gateway exists, so route translation does not depend on pods otherwise (incremental.ts).
   */
  gatewayPods: () => ReadonlyMap<string, GatewayPod>;
}

export function condition(ctx: RouteContext, obj: KubeObject, reason: string, message: string, status: 'True' | 'False' = 'False'): void {
  ctx.conditions.push({ objectKey: objectKey(obj), type: CONDITION_ROUTES_ACCEPTED, status, reason, message });
}

/**
 * Runs the translation of one object; an Invalid it throws becomes a condition naming the object
 * (`<Kind> <ns>/<name> not applied: ...`) and the object is skipped. Other errors propagate.
 */
export function translateObject(ctx: RouteContext, obj: KubeObject, translateIt: () => void): void {
  try {
    translateIt();
  } catch (e) {
    if (!(e instanceof Invalid)) throw e;
    condition(ctx, obj, e.reason, `${obj.kind} ${nsOf(obj)}/${obj.metadata.name} not applied: ${e.message}`);
  }
}

/** Istio host resolution: a name without dots is a service in `namespace`; anything else is as written. */
export function resolveHost(host: string, namespace: string, clusterDomain: string): string {
  const h = host.trim().toLowerCase();
  if (h === '*' || h.includes('.')) return h;
  return `${h}.${namespace}.svc.${clusterDomain}`;
}

export function serviceHostname(name: string, namespace: string, clusterDomain: string): string {
  return `${name}.${namespace}.svc.${clusterDomain}`;
}

export function durationMs(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  const ms = typeof v === 'string' ? tryParseDuration(v) : undefined;
  if (ms === undefined) throw new Invalid('InvalidDuration', `${what}: invalid duration ${JSON.stringify(v)}; use e.g. "250ms", "5s"`);
  return Math.round(ms);
}

export function percentValue(v: unknown, fallback: number): number {
  const r = asRecord(v);
  if (typeof r['value'] === 'number') return r['value'];
  if (typeof v === 'number') return v;
  return fallback;
}

export function firstPort(ctx: RouteContext, host: string): number | undefined {
  const svc = ctx.services.get(host);
  const p = asRecord(asArray(asRecord(svc?.spec)['ports'])[0])['port'];
  return typeof p === 'number' ? p : undefined;
}

export function ingressConfig(ctx: RouteContext, gatewayKey: string, host: string): RouteConfig {
  const name = `${gatewayKey}/${host}`;
  let cfg = ctx.ingress.get(name);
  if (!cfg) {
    const gw = ctx.istioGateways.get(gatewayKey);
    const gwApi = ctx.gatewayApiGateways.get(gatewayKey);
    const ports = gw
      ? asArray(asRecord(gw.spec)['servers']).map((s) => {
          const p = asRecord(asRecord(s)['port']);
          return { port: typeof p['number'] === 'number' ? p['number'] : 0, protocol: (asString(p['protocol']) ?? 'HTTP').toLowerCase() };
        })
      : asArray(asRecord(gwApi?.spec)['listeners']).map((l) => {
          const r = asRecord(l);
          return { port: typeof r['port'] === 'number' ? r['port'] : 0, protocol: (asString(r['protocol']) ?? 'HTTP').toLowerCase() };
        });
    cfg = { name, namespace: gatewayKey.split('/')[0]!, hostname: host, aliases: [], gateway: gatewayKey, ports: ports.filter((p) => p.port > 0), routes: [], authorization: [] };
    ctx.ingress.set(name, cfg);
  }
  return cfg;
}
