/**
 * The mesh model: what the controller computes from Kubernetes objects and pushes to agents and
 * waypoints. Plain JSON-serialisable data; every receiver validates it (validateResource) before use.
 */
import type { GatewayListener, RouteConfig } from './routes.js';

/** Type URLs of the three resource kinds on the config stream (delta-xDS shaped). */
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

export interface Locality {
  region: string;
  zone: string;
  subzone: string;
}

/** Where traffic for a workload or service goes first when it has a waypoint. */
export interface WaypointRef {
  /** `<namespace>/<gateway name>` */
  name: string;
  namespace: string;
  /** Address of the waypoint pod(s) (HBONE on 15008); empty until the waypoint runs. */
  addresses: string[];
  /** SPIFFE id the waypoint presents. */
  identity: string;
}

/** A pod as the data plane sees it. Resource name: `uid`. */
export interface Workload {
  /** `<cluster>//v1/Pod/<namespace>/<name>` */
  uid: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  trustDomain: string;
  /** Node the pod is scheduled on. */
  node: string;
  /** Pod IPs (v4 and/or v6 text form). */
  addresses: string[];
  /** HBONE when the pod is enrolled in the mesh (istio.io/dataplane-mode=ambient); NONE otherwise. */
  tunnelProtocol: 'HBONE' | 'NONE';
  /** Telemetry names: app / version labels, owning workload (Deployment) name and kind. */
  canonicalName: string;
  canonicalRevision: string;
  workloadName: string;
  workloadType: 'deployment' | 'pod' | 'job' | 'cronjob';
  labels: Record<string, string>;
  /** `namespace/hostname` → port mappings of services selecting this pod. */
  services: Record<string, PortMapping[]>;
  waypoint?: WaypointRef;
  locality?: Locality;
  /** Network namespace of the pod on its node, as the CNI (or local runtime) reported it. */
  netns?: string;
  status: 'Healthy' | 'Unhealthy';
  /** `namespace/name` of workload-selector Authorization resources that select this pod. */
  authorizationPolicies: string[];
  /** PeerAuthentication mode in force for this workload (already resolved mesh → ns → workload). */
  peerAuthentication: 'STRICT' | 'PERMISSIVE';
  /** Ports PeerAuthentication overrides (portLevelMtls), port → mode. */
  portPeerAuthentication: Record<string, 'STRICT' | 'PERMISSIVE'>;
}

export interface PortMapping {
  servicePort: number;
  targetPort: number;
}

export interface ServicePort {
  name: string;
  port: number;
  targetPort: number;
  /** http, http2, grpc, tcp, ... (appProtocol or name prefix, Istio rules); 'tcp' when unknown. */
  protocol: string;
}

/** A Kubernetes Service. Resource name: `<namespace>/<hostname>`. */
export interface Service {
  name: string;
  namespace: string;
  /** `<name>.<namespace>.svc.<cluster domain>` */
  hostname: string;
  /** ClusterIPs. */
  vips: string[];
  ports: ServicePort[];
  /** Identities endpoints may present besides their own (ServiceAccounts of the endpoints). */
  subjectAltNames: string[];
  waypoint?: WaypointRef;
  /** Locality preference for endpoint choice, most specific first; empty means none. */
  routingPreference: Array<'node' | 'zone' | 'region'>;
  /** uids of the workloads behind it (the endpoints); ports via Workload.services. */
  endpoints: string[];
}

export type StringMatch = { exact: string } | { prefix: string } | { suffix: string } | { presence: true };

export interface AuthzMatch {
  namespaces: StringMatch[];
  notNamespaces: StringMatch[];
  principals: StringMatch[];
  notPrincipals: StringMatch[];
  /** CIDRs, e.g. 10.0.0.0/8 or a bare address. */
  sourceIps: string[];
  notSourceIps: string[];
  destinationIps: string[];
  notDestinationIps: string[];
  destinationPorts: number[];
  notDestinationPorts: number[];
}

/** A match with no conditions; fill in the fields a rule sets. */
export function emptyMatch(fields: Partial<AuthzMatch> = {}): AuthzMatch {
  return {
    namespaces: [],
    notNamespaces: [],
    principals: [],
    notPrincipals: [],
    sourceIps: [],
    notSourceIps: [],
    destinationIps: [],
    notDestinationIps: [],
    destinationPorts: [],
    notDestinationPorts: [],
    ...fields,
  };
}

/** Clauses are ANDed; the matches inside a clause are ORed. */
export interface AuthzClause {
  matches: AuthzMatch[];
}

/** Rules are ORed. A rule with no clauses matches everything. */
export interface AuthzRule {
  clauses: AuthzClause[];
}

/**
 * L4 authorization as the destination agent enforces it. Resource name: `<namespace>/<name>`.
 * scope 'global' (root namespace), 'namespace' (no selector), 'workload' (selector; see
 * Workload.authorizationPolicies).
 */
export interface Authorization {
  name: string;
  namespace: string;
  scope: 'global' | 'namespace' | 'workload';
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  rules: AuthzRule[];
  dryRun: boolean;
}

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
