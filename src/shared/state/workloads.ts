/**
 * Read-only index over one config snapshot, the agent's and the waypoint's: workloads by IP and uid, services by VIP:port and
 * hostname, the policies that apply to a workload, the workloads of this node. Pure lookups;
 * a new snapshot builds a new index (invariant: an index never changes after construction).
 */
import { serviceVisibleTo, type Authorization, type Service, type ServicePort, type Workload, type WaypointRef } from '../model.js';
import { serviceResourceName } from '../resources.js';
import { formatSpiffeId } from '../identity.js';
import { normalizeIp } from '../address.js';
import { UNKNOWN } from '../metrics.js';
import { clusterOfUid } from '../istio-metrics.js';
import { PrefixTable } from './prefix-table.js';

/** The maps the config stream delivers, keyed by resource name. */
export interface ConfigSnapshot {
  workloads: ReadonlyMap<string, Workload>;
  services: ReadonlyMap<string, Service>;
  authorizations: ReadonlyMap<string, Authorization>;
}

/** One address a service's traffic may go to. */
export interface Endpoint {
  workload: Workload;
  address: string;
  port: number;
}

export interface ServiceMatch {
  service: Service;
  port: ServicePort;
}

export function emptySnapshot(): ConfigSnapshot {
  return { workloads: new Map(), services: new Map(), authorizations: new Map() };
}

/** The SPIFFE id a workload's certificate carries. */
export function workloadIdentity(w: Pick<Workload, 'trustDomain' | 'namespace' | 'serviceAccount'>): string {
  return formatSpiffeId({ trustDomain: w.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount });
}

/** The cluster part of a workload uid `<cluster>//v1/Pod/<ns>/<name>`, or `unknown`. */
export function clusterOf(w: Workload | undefined): string {
  return w ? clusterOfUid(w.uid) : UNKNOWN;
}

export class WorkloadIndex {
  readonly snapshot: ConfigSnapshot;
  readonly nodeName: string;
  private readonly byIp = new Map<string, Workload>();
  private readonly byVip = new Map<string, ServiceMatch>();
  /** Services addressed by ranges (ServiceEntry CIDR addresses), longest prefix first. */
  private readonly byRange = new PrefixTable<ServiceMatch>();
  private readonly byHostname = new Map<string, Service>();
  private readonly waypointIps = new Set<string>();

  /** `nodeName` is the agent's node (localWorkloads); a waypoint, serving no node, leaves it empty. */
  constructor(snapshot: ConfigSnapshot, nodeName = '') {
    this.snapshot = snapshot;
    this.nodeName = nodeName;
    for (const w of snapshot.workloads.values()) {
      for (const a of w.addresses) {
        const ip = normalizeIp(a);
        // Prefer a running pod over a stale one that still reports the same IP.
        const prev = this.byIp.get(ip);
        if (!prev || (prev.status !== 'Healthy' && w.status === 'Healthy')) this.byIp.set(ip, w);
      }
      if (w.waypoint) this.addWaypoint(w.waypoint);
    }
    for (const s of snapshot.services.values()) {
      this.byHostname.set(s.hostname, s);
      for (const vip of s.vips) for (const p of s.ports) this.byVip.set(`${normalizeIp(vip)}|${p.port}`, { service: s, port: p });
      for (const range of s.vipRanges ?? []) for (const p of s.ports) this.byRange.add(range, p.port, { service: s, port: p });
      if (s.waypoint) this.addWaypoint(s.waypoint);
    }
  }

  private addWaypoint(w: WaypointRef): void {
    for (const a of w.addresses) this.waypointIps.add(normalizeIp(a));
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.byIp.get(normalizeIp(ip));
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.snapshot.workloads.get(uid);
  }

  /**
   * The service at `ip:port` (a VIP, else the most specific range holding `ip`); with
   * `fromNamespace`, only one exported to that namespace.
   */
  serviceByVip(ip: string, port: number, fromNamespace?: string): ServiceMatch | undefined {
    const m = this.byVip.get(`${normalizeIp(ip)}|${port}`) ?? (this.byRange.size > 0 ? this.byRange.lookup(ip, port) : undefined);
    return m && (fromNamespace === undefined || serviceVisibleTo(m.service, fromNamespace)) ? m : undefined;
  }

  serviceByHostname(hostname: string): Service | undefined {
    return this.byHostname.get(hostname);
  }

  /** True when `ip` is the address of some waypoint named by a service or workload. */
  /**
   * The Service a connection to `port` of workload `w` most likely addressed, when the caller did
   * not say (ztunnel's inbound guess): the first, by hostname, of the workload's Services that map
   * a port to `port`.
   */
  serviceOfWorkloadPort(w: Workload, port: number): Service | undefined {
    const hosts = Object.entries(w.services)
      .filter(([, mappings]) => mappings.some((m) => m.targetPort === port))
      .map(([key]) => key.slice(key.indexOf('/') + 1))
      .sort();
    for (const h of hosts) {
      const s = this.byHostname.get(h);
      if (s) return s;
    }
    return undefined;
  }

  isWaypointAddress(ip: string): boolean {
    return this.waypointIps.has(normalizeIp(ip));
  }

  /** Workloads scheduled on this node, enrolled or not. */
  localWorkloads(): Workload[] {
    return [...this.snapshot.workloads.values()].filter((w) => w.node === this.nodeName);
  }

  /** Local workloads the agent must proxy for (tunnel protocol HBONE). */
  localEnrolledWorkloads(): Workload[] {
    return this.localWorkloads().filter((w) => w.tunnelProtocol === 'HBONE');
  }

  /**
   * The endpoints behind `service` for one of its ports: each endpoint workload's address and the
   * target port its own port mapping gives (falling back to the service's targetPort).
   */
  endpointsOf(service: Service, port: ServicePort): Endpoint[] {
    const key = serviceResourceName(service);
    const out: Endpoint[] = [];
    for (const uid of service.endpoints) {
      const w = this.snapshot.workloads.get(uid);
      if (!w || w.addresses.length === 0) continue;
      const mapping = w.services[key]?.find((m) => m.servicePort === port.port);
      const target = mapping?.targetPort ?? port.targetPort ?? port.port;
      out.push({ workload: w, address: normalizeIp(w.addresses[0]!), port: target > 0 ? target : port.port });
    }
    return out;
  }

  /** Authorizations that apply to `w`: global ones, its namespace's, and those selecting it. */
  policiesFor(w: Workload): Authorization[] {
    const selected = new Set(w.authorizationPolicies);
    const out: Authorization[] = [];
    for (const [name, a] of this.snapshot.authorizations) {
      if (a.scope === 'global') out.push(a);
      else if (a.scope === 'namespace' && a.namespace === w.namespace) out.push(a);
      else if (a.scope === 'workload' && (selected.has(name) || selected.has(`${a.namespace}/${a.name}`))) out.push(a);
    }
    return out;
  }

  /** PeerAuthentication mode in force for `w` on `port`. */
  peerAuthenticationFor(w: Workload, port: number): 'STRICT' | 'PERMISSIVE' {
    return w.portPeerAuthentication[String(port)] ?? w.peerAuthentication;
  }
}
