/**
 * Kubernetes objects → everything the controller pushes, from one object index per retranslate:
 * the mesh model (Workloads, Services, Authorizations: buildModel), the waypoint and ingress
 * route configs (routes.ts) and the ingress gateway listeners (gateway-listeners.ts), each with
 * the status conditions it wants written. Pure and deterministic: the same objects give the same,
 * sorted output, so versions stay stable.
 */
import { meshProxyDefaults } from './mesh-config.js';
import { authorizationResourceName, serviceResourceName } from '../../shared/resources.js';
import type { Authorization, Service, Workload } from '../../shared/model.js';
import type { KubeObject } from '../objects.js';
import { buildAuthorizations } from './authorization.js';
import { buildServiceEntries } from './service-entries.js';
import { fieldWarnings } from './field-warnings.js';
import { gatewayListeners, type GatewayListenersResult } from './gateway-listeners.js';
import { buildIndex, type ObjectIndex, type TranslateCondition, type TranslateIndex, type TranslateOptions } from './object-index.js';
import { applyPeerAuthentication } from './peer-authentication.js';
import { buildRoutes, type TranslateRoutesResult } from './routes.js';
import { buildServices, type PodWorkload } from './services.js';
import { compareStrings } from './util.js';
import { assignWaypoints, collectWaypoints } from './waypoints.js';
import { buildWorkload, isPodTerminated } from './workloads.js';

export { DEFAULT_TRANSLATE_OPTIONS, type TranslateCondition, type TranslateOptions } from './object-index.js';

export interface TranslateResult {
  workloads: Workload[];
  services: Service[];
  authorizations: Authorization[];
  /** Sorted by objectKey, then type. */
  conditions: TranslateCondition[];
}

/** One retranslate's whole output. */
export interface MeshTranslation {
  model: TranslateResult;
  routes: TranslateRoutesResult;
  listeners: GatewayListenersResult;
}

/** Everything from one index: the model, route configs, and the listeners of each gateway pod. */
export function translateAll(objects: readonly KubeObject[], options: Partial<TranslateOptions> = {}): MeshTranslation {
  const idx = buildIndex(objects, options);
  const routes = buildRoutes(idx);
  // No server: no listeners and no conditions (skips a pass over every pod).
  const listeners = routes.gateways.length === 0 ? { byPod: new Map(), conditions: [] } : gatewayListeners(routes.gateways, idx.of('Pod'), idx.of('Secret'), meshProxyDefaults(idx.of('ConfigMap'), idx.opts.rootNamespace));
  return { model: withFieldWarnings(buildModel(idx), idx), routes, listeners };
}

/** The model with the field warnings of every object (field-warnings.ts) among its conditions. */
export function withFieldWarnings(model: TranslateResult, idx: ObjectIndex): TranslateResult {
  const conditions = [...model.conditions, ...fieldWarnings(idx)].sort((a, b) => compareStrings(a.objectKey, b.objectKey) || compareStrings(a.type, b.type));
  return { ...model, conditions };
}

/**
 * The mesh model of a store snapshot (or a plain object list). Deployments are not expanded here:
 * the local runtime or the kubelet turns them into Pods, and only Pods become Workloads.
 */
export function translate(input: readonly KubeObject[] | { objects: readonly KubeObject[] }, options: Partial<TranslateOptions> = {}): TranslateResult {
  const objects = Array.isArray(input) ? (input as readonly KubeObject[]) : (input as { objects: readonly KubeObject[] }).objects;
  const idx = buildIndex(objects, options);
  return withFieldWarnings(buildModel(idx), idx);
}

/** Workloads, Services and (L4) Authorizations of an index. */
export function buildModel(objects: ObjectIndex): TranslateResult {
  // Field by field, `groups` only when read: an index that records the kinds read through it
  // (incremental.ts) then sees the model's kinds, not every kind of the index.
  const idx: TranslateIndex = {
    opts: objects.opts,
    of: objects.of,
    namespaces: objects.namespaces,
    nodes: objects.nodes,
    pods: objects.pods,
    services: objects.services,
    gateways: objects.gateways,
    gatewayClasses: objects.gatewayClasses,
    peerAuthentications: objects.peerAuthentications,
    authorizationPolicies: objects.authorizationPolicies,
    get groups() {
      return objects.groups;
    },
    conditions: [],
  };
  const pods: PodWorkload[] = idx.pods.filter((p) => !isPodTerminated(p)).map((pod) => ({ pod, workload: buildWorkload(idx, pod) }));
  const services = buildServices(idx, pods);
  const byName = new Map(services.map((s) => [`${s.namespace}/${s.name}`, s]));
  const serviceObjects = idx.services
    .map((svc) => ({ svc, service: byName.get(`${svc.metadata.namespace ?? ''}/${svc.metadata.name}`) }))
    .filter((e): e is { svc: KubeObject; service: Service } => e.service !== undefined);
  const entryWorkloads: Workload[] = [];
  // ServiceEntries bind to a waypoint by the same labels as Services (theirs, then their namespace's).
  buildServiceEntries(idx, pods, services, entryWorkloads, serviceObjects);
  assignWaypoints(idx, collectWaypoints(idx, pods), pods, serviceObjects);
  applyPeerAuthentication(idx, pods);
  const authorizations = buildAuthorizations(idx, pods);

  const workloads = [...pods.map((p) => p.workload), ...entryWorkloads];
  for (const w of workloads) w.authorizationPolicies.sort(compareStrings);
  workloads.sort((a, b) => compareStrings(a.uid, b.uid));
  services.sort((a, b) => compareStrings(serviceResourceName(a), serviceResourceName(b)));
  authorizations.sort((a, b) => compareStrings(authorizationResourceName(a), authorizationResourceName(b)));
  const conditions = idx.conditions.sort((a, b) => compareStrings(a.objectKey, b.objectKey) || compareStrings(a.type, b.type));
  return { workloads, services, authorizations, conditions };
}
