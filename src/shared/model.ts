/**
 * The mesh model: what the controller computes from Kubernetes objects and pushes to agents and
 * waypoints. Plain JSON-serialisable data; every receiver validates it (validateResource) before use. Type URLs and
 * resource names of everything on the config stream are in resources.ts.
 */
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
  /** false: the pod opted out of DNS capture (annotation `ambient.istio.io/dns-capture: "false"`); absent: captured. */
  dnsCapture?: false;
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
  /**
   * Address ranges (CIDRs) whose every address is the service on its ports (a ServiceEntry whose
   * `addresses` are ranges). An exact VIP wins over a range; the most specific range wins.
   */
  vipRanges?: string[];
  /**
   * true: a connection to the service goes to the address the client dialed, on the port it
   * dialed (a ServiceEntry of resolution NONE or DYNAMIC_DNS with `addresses`; Istio's
   * ORIGINAL_DST cluster, ztunnel's PASSTHROUGH load balancing); `endpoints` are not used.
   * The service still names the connection (telemetry, waypoint binding, policy).
   */
  originalDestination?: true;
  ports: ServicePort[];
  /** Identities endpoints may present besides their own (ServiceAccounts of the endpoints). */
  subjectAltNames: string[];
  waypoint?: WaypointRef;
  /** Locality preference for endpoint choice, most specific first; empty means none. */
  routingPreference: Array<'node' | 'zone' | 'region'>;
  /** uids of the workloads behind it (the endpoints); ports via Workload.services. */
  endpoints: string[];
  /**
   * Namespaces whose workloads see this service (ServiceEntry `exportTo`, a Service's
   * `networking.istio.io/exportTo` annotation), `.` already resolved; absent or `*`: everyone.
   * To others its addresses are no service: their connections go where they were addressed.
   */
  exportTo?: string[];
}

/** True when workloads of `namespace` see `service` (its exportTo). */
export function serviceVisibleTo(service: Pick<Service, 'exportTo'>, namespace: string): boolean {
  return service.exportTo === undefined || service.exportTo.includes('*') || service.exportTo.includes(namespace);
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
