/**
 * buildOutboundRequest: the pure decision of where a captured outbound connection goes —
 * an HBONE tunnel (to the destination pod or to its waypoint), plaintext passthrough, or deny.
 */
import type { Service, ServicePort, Workload, WaypointRef } from '../../shared/model.js';
import { serviceResourceName } from '../../shared/resources.js';
import { normalizeIp, type Address } from '../../shared/address.js';
import { HBONE_PORT } from '../../shared/hbone/tunnel.js';
import { workloadIdentity, type Endpoint, type WorkloadIndex } from '../../shared/state/workloads.js';
import { AGENT_POD_PORTS, isLoopback } from './self-call.js';

export type PassthroughReason = 'not_enrolled' | 'unknown_destination';
export type OutboundDenyReason = 'no_healthy_upstream' | 'no_waypoint' | 'self_call';

export type OutboundRequest =
  | {
      kind: 'tunnel';
      /** HBONE `:authority`: the endpoint ip:port, or the original destination through a waypoint. */
      target: Address;
      /** Where the TLS connection goes: `<pod ip>:15008` or `<waypoint ip>:15008`. */
      tunnelAddress: Address;
      /** Server identities the tunnel accepts (SPIFFE URIs). */
      expectedIdentities: string[];
      viaWaypoint: boolean;
      dstWorkload?: Workload;
      service?: Service;
      /** The endpoint the balancer chose, for passive health reporting. */
      endpoint?: Endpoint;
    }
  | { kind: 'passthrough'; address: string; port: number; reason: PassthroughReason; dstWorkload?: Workload; service?: Service; endpoint?: Endpoint }
  | { kind: 'deny'; reason: OutboundDenyReason; service?: Service };

export interface BuildOutboundRequestInput {
  src: Workload;
  origDst: Address;
  index: WorkloadIndex;
  nodeName: string;
  /** Chooses one endpoint for a service connection (LoadBalancer.pick). */
  pickEndpoint: (service: Service, port: ServicePort, candidates: readonly Endpoint[], src: Workload) => Endpoint | undefined;
  /** Ports the agent listens on inside pods (self-call.ts agentPortSet); default 15001, 15006, 15008. */
  agentPorts?: ReadonlySet<number>;
}

const DEFAULT_AGENT_PORTS: ReadonlySet<number> = new Set(AGENT_POD_PORTS);

export function buildOutboundRequest(input: BuildOutboundRequestInput): OutboundRequest {
  const { src, index } = input;
  const origDst: Address = { address: normalizeIp(input.origDst.address), port: input.origDst.port };
  const srcIps = new Set(src.addresses.map(normalizeIp));
  const agentPorts = input.agentPorts ?? DEFAULT_AGENT_PORTS;
  // The agent's own listeners, reached from the pod itself (loopback or its own address): a loop.
  if (agentPorts.has(origDst.port) && (isLoopback(origDst.address) || srcIps.has(origDst.address))) return { kind: 'deny', reason: 'self_call' };

  // A service not exported to the client's namespace is no service to it (Istio exportTo).
  const svc = index.serviceByVip(origDst.address, origDst.port, src.namespace);
  if (svc) {
    const { service, port } = svc;
    if (service.waypoint && !isWaypointSelf(service.waypoint, srcIps)) {
      return toWaypoint(service.waypoint, origDst, { service });
    }
    // No endpoints to pick (ServiceEntry resolution NONE): the address dialed, named as the service.
    if (service.originalDestination) return toAddressed(origDst, index, srcIps, agentPorts, service);
    const candidates = index.endpointsOf(service, port).filter((e) => e.workload.status === 'Healthy');
    const endpoint = candidates.length > 0 ? input.pickEndpoint(service, port, candidates, src) : undefined;
    if (!endpoint) return { kind: 'deny', reason: 'no_healthy_upstream', service };
    const dst = endpoint.workload;
    // A mesh endpoint's agent port: its agent would refuse the CONNECT (inbound.ts); say so here.
    if (dst.tunnelProtocol === 'HBONE' && agentPorts.has(endpoint.port)) return { kind: 'deny', reason: 'self_call', service };
    // A workload-bound waypoint (waypoint-for workload) gets the chosen endpoint as its target.
    if (dst.waypoint && !isWaypointSelf(dst.waypoint, srcIps)) return toWaypoint(dst.waypoint, { address: normalizeIp(endpoint.address), port: endpoint.port }, { service, dstWorkload: dst });
    if (dst.tunnelProtocol !== 'HBONE') {
      return { kind: 'passthrough', address: endpoint.address, port: endpoint.port, reason: 'not_enrolled', dstWorkload: dst, service, endpoint };
    }
    return {
      kind: 'tunnel',
      target: { address: endpoint.address, port: endpoint.port },
      tunnelAddress: { address: endpoint.address, port: HBONE_PORT },
      expectedIdentities: unique([workloadIdentity(dst), ...service.subjectAltNames]),
      viaWaypoint: false,
      dstWorkload: dst,
      service,
      endpoint,
    };
  }

  return toAddressed(origDst, index, srcIps, agentPorts);
}

/**
 * A connection that goes to the address the client dialed: no service there, or a service whose
 * endpoint is the original destination (`service`, which then names it): the workload at that
 * address (its waypoint, its tunnel) when the mesh knows one, else plain TCP to the address.
 */
function toAddressed(origDst: Address, index: WorkloadIndex, srcIps: ReadonlySet<string>, agentPorts: ReadonlySet<number>, service?: Service): OutboundRequest {
  const named = service ? { service } : {};
  const dst = index.workloadByIp(origDst.address);
  if (!dst) return { kind: 'passthrough', address: origDst.address, port: origDst.port, reason: 'unknown_destination', ...named };
  if (dst.tunnelProtocol === 'HBONE' && agentPorts.has(origDst.port)) return { kind: 'deny', reason: 'self_call', ...named };
  if (dst.waypoint && !isWaypointSelf(dst.waypoint, srcIps)) return toWaypoint(dst.waypoint, origDst, { dstWorkload: dst, ...named });
  if (dst.tunnelProtocol !== 'HBONE') {
    return { kind: 'passthrough', address: origDst.address, port: origDst.port, reason: 'not_enrolled', dstWorkload: dst, ...named };
  }
  return {
    kind: 'tunnel',
    target: origDst,
    tunnelAddress: { address: origDst.address, port: HBONE_PORT },
    expectedIdentities: unique([workloadIdentity(dst), ...(service?.subjectAltNames ?? [])]),
    viaWaypoint: false,
    dstWorkload: dst,
    ...named,
  };
}

function toWaypoint(
  waypoint: WaypointRef,
  origDst: Address,
  ctx: { service?: Service; dstWorkload?: Workload },
): OutboundRequest {
  const address = waypoint.addresses[0];
  if (address === undefined) return { kind: 'deny', reason: 'no_waypoint', ...(ctx.service ? { service: ctx.service } : {}) };
  return {
    kind: 'tunnel',
    target: origDst,
    tunnelAddress: { address: normalizeIp(address), port: HBONE_PORT },
    expectedIdentities: [waypoint.identity],
    viaWaypoint: true,
    ...ctx,
  };
}

/** Traffic the waypoint itself sends must not be sent back to it. */
function isWaypointSelf(waypoint: WaypointRef, srcIps: ReadonlySet<string>): boolean {
  return waypoint.addresses.some((a) => srcIps.has(normalizeIp(a)));
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** `namespace/hostname` of a service, for labels and logs. */
export function serviceKey(s: Service): string {
  return serviceResourceName(s);
}
