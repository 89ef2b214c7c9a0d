/**
 * The config stream's catalogue: the type URL of each resource kind, which roles subscribe to
 * which, and the resource name of each object (the key a delta update carries).
 */
import type { Authorization, Service, Workload } from './model.js';
import type { GatewayListener, RouteConfig } from './routes.js';

/** Type URLs of the three L4 resource kinds on the config stream (delta-xDS shaped). */
export const TYPE_WORKLOAD = 'type.ambit.dev/ambit.v1.Workload';
export const TYPE_SERVICE = 'type.ambit.dev/ambit.v1.Service';
export const TYPE_AUTHORIZATION = 'type.ambit.dev/ambit.v1.Authorization';
/** The types agents subscribe to by default. */
export const RESOURCE_TYPES = [TYPE_WORKLOAD, TYPE_SERVICE, TYPE_AUTHORIZATION] as const;
/** Route config (routes.ts RouteConfig): only waypoints and gateways subscribe to it. */
export const TYPE_ROUTE_CONFIG = 'type.ambit.dev/ambit.v1.RouteConfig';
/** Ingress listeners (routes.ts GatewayListener, TLS material included): only gateways subscribe to it. */
export const TYPE_GATEWAY_LISTENER = 'type.ambit.dev/ambit.v1.GatewayListener';
/** Every type the config stream serves. */
export const ALL_RESOURCE_TYPES = [...RESOURCE_TYPES, TYPE_ROUTE_CONFIG, TYPE_GATEWAY_LISTENER] as const;
/** The types a waypoint subscribes to. */
export const WAYPOINT_RESOURCE_TYPES = [...RESOURCE_TYPES, TYPE_ROUTE_CONFIG] as const;
export type ResourceType = (typeof ALL_RESOURCE_TYPES)[number];

export type Resource = Workload | Service | Authorization | RouteConfig | GatewayListener;

export function workloadResourceName(w: Pick<Workload, 'uid'>): string {
  return w.uid;
}
export function serviceResourceName(s: Pick<Service, 'namespace' | 'hostname'>): string {
  return `${s.namespace}/${s.hostname}`;
}
export function authorizationResourceName(a: Pick<Authorization, 'namespace' | 'name'>): string {
  return `${a.namespace}/${a.name}`;
}
export function routeConfigResourceName(r: Pick<RouteConfig, 'name'>): string {
  return r.name;
}
export function gatewayListenerResourceName(l: Pick<GatewayListener, 'pod' | 'port'>): string {
  return `${l.pod}/${l.port}`;
}
