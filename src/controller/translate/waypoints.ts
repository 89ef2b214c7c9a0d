/**
 * Waypoints: Gateway API Gateways of a waypoint class, and the `istio.io/use-waypoint` labels that
 * bind Services (waypoint-for service|all) and Workloads (waypoint-for workload|all) to them.
 */
import { formatSpiffeId } from '../../shared/identity.js';
import type { Service, WaypointRef } from '../../shared/model.js';
import type { KubeObject } from '../objects.js';
import { addCondition, type TranslateIndex } from './object-index.js';
import type { PodWorkload } from './services.js';
import { asString, labelsOf, nsOf, sortedUnique } from './util.js';
import { isPodRunning, podIps, podServiceAccount } from './workloads.js';

export const LABEL_USE_WAYPOINT = 'istio.io/use-waypoint';
export const LABEL_USE_WAYPOINT_NAMESPACE = 'istio.io/use-waypoint-namespace';
export const LABEL_WAYPOINT_FOR = 'istio.io/waypoint-for';
export const LABEL_GATEWAY_NAME = 'gateway.networking.k8s.io/gateway-name';
export const WAYPOINT_CLASSES: readonly string[] = ['ambit-waypoint', 'istio-waypoint'];
export const CONDITION_WAYPOINT_BOUND = 'istio.io/WaypointBound';

export type WaypointFor = 'service' | 'workload' | 'all' | 'none';

export interface WaypointInfo {
  gateway: KubeObject;
  ref: WaypointRef;
  for: WaypointFor;
}

function parseWaypointFor(v: string | undefined): WaypointFor | undefined {
  return v === 'service' || v === 'workload' || v === 'all' || v === 'none' ? v : undefined;
}

/** Every waypoint Gateway keyed `<namespace>/<name>`, with its pods' addresses and identity. */
export function collectWaypoints(idx: TranslateIndex, pods: readonly PodWorkload[]): Map<string, WaypointInfo> {
  const out = new Map<string, WaypointInfo>();
  for (const gw of idx.gateways) {
    const className = asString(gw.spec?.['gatewayClassName']) ?? '';
    if (!WAYPOINT_CLASSES.includes(className)) continue;
    const ns = nsOf(gw);
    const name = gw.metadata.name;
    const gwPods = pods.filter((p) => p.workload.namespace === ns && labelsOf(p.pod)[LABEL_GATEWAY_NAME] === name && isPodRunning(p.pod));
    const sa = gwPods.length > 0 ? podServiceAccount(gwPods[0]!.pod) : name;
    const waypointFor =
      parseWaypointFor(labelsOf(gw)[LABEL_WAYPOINT_FOR]) ?? parseWaypointFor(labelsOf(idx.gatewayClasses.get(className))[LABEL_WAYPOINT_FOR]) ?? 'service';
    out.set(`${ns}/${name}`, {
      gateway: gw,
      for: waypointFor,
      ref: {
        name: `${ns}/${name}`,
        namespace: ns,
        addresses: sortedUnique(gwPods.flatMap((p) => podIps(p.pod))),
        identity: formatSpiffeId({ trustDomain: idx.opts.trustDomain, namespace: ns, serviceAccount: sa }),
      },
    });
  }
  return out;
}

/**
 * The waypoint an object asks for: its own `istio.io/use-waypoint` label, else its namespace's.
 * Returns 'none' for an explicit opt-out (`none`, `#none`), undefined when nothing is asked.
 */
export function requestedWaypoint(obj: KubeObject, namespace: KubeObject | undefined): { key: string; source: KubeObject } | 'none' | undefined {
  for (const source of [obj, namespace]) {
    if (!source) continue;
    const name = labelsOf(source)[LABEL_USE_WAYPOINT];
    if (name === undefined) continue;
    if (name === '' || name === 'none' || name === '#none') return 'none';
    const ownNs = source.kind === 'Namespace' ? source.metadata.name : nsOf(source);
    const ns = labelsOf(source)[LABEL_USE_WAYPOINT_NAMESPACE] || ownNs;
    return { key: `${ns}/${name}`, source };
  }
  return undefined;
}

/** Sets `waypoint` on Services and enrolled Workloads whose label binds them to an existing waypoint. */
export function assignWaypoints(
  idx: TranslateIndex,
  waypoints: Map<string, WaypointInfo>,
  pods: readonly PodWorkload[],
  services: ReadonlyArray<{ svc: KubeObject; service: Service }>,
): void {
  for (const { svc, service } of services) {
    if (labelsOf(svc)[LABEL_GATEWAY_NAME] !== undefined) continue;
    const req = requestedWaypoint(svc, idx.namespaces.get(nsOf(svc)));
    if (req === undefined || req === 'none') continue;
    const wp = waypoints.get(req.key);
    if (!wp) {
      addCondition(idx, svc, { type: CONDITION_WAYPOINT_BOUND, status: 'False', reason: 'WaypointNotFound', message: `waypoint ${req.key} (from the ${LABEL_USE_WAYPOINT} label on ${req.source.kind} ${req.source.metadata.name}) does not exist; traffic to this service does not use a waypoint` });
      continue;
    }
    if (wp.for !== 'service' && wp.for !== 'all') {
      addCondition(idx, svc, { type: CONDITION_WAYPOINT_BOUND, status: 'False', reason: 'WaypointNotForServices', message: `waypoint ${req.key} has ${LABEL_WAYPOINT_FOR}=${wp.for}; it does not handle service traffic` });
      continue;
    }
    service.waypoint = structuredClone(wp.ref);
    addCondition(idx, svc, { type: CONDITION_WAYPOINT_BOUND, status: 'True', reason: 'Bound', message: `bound to waypoint ${req.key}` });
  }
  for (const { pod, workload } of pods) {
    if (workload.tunnelProtocol !== 'HBONE' || labelsOf(pod)[LABEL_GATEWAY_NAME] !== undefined) continue;
    const req = requestedWaypoint(pod, idx.namespaces.get(workload.namespace));
    if (req === undefined || req === 'none') continue;
    const wp = waypoints.get(req.key);
    if (!wp || (wp.for !== 'workload' && wp.for !== 'all')) continue;
    workload.waypoint = structuredClone(wp.ref);
  }
}
