/**
 * Kubernetes objects → the mesh model (Workloads, Services, Authorizations) plus status conditions.
 * Pure and deterministic: the same objects give the same, sorted output, so versions stay stable.
 */
import { authorizationResourceName, serviceResourceName } from '../shared/resources.js';
import { type Authorization, type Service, type Workload } from '../shared/model.js';
import type { KubeObject } from './objects.js';
import { buildAuthorizations } from './translate/authorization.js';
import { buildIndex, DEFAULT_TRANSLATE_OPTIONS, type TranslateCondition, type TranslateOptions } from './translate/index.js';
import { applyPeerAuthentication } from './translate/peer-authentication.js';
import { buildServices, type PodWorkload } from './translate/services.js';
import { compareStrings } from './translate/util.js';
import { assignWaypoints, collectWaypoints } from './translate/waypoints.js';
import { buildWorkload, isPodTerminated } from './translate/workloads.js';

export { DEFAULT_TRANSLATE_OPTIONS, type TranslateCondition, type TranslateOptions } from './translate/index.js';

export interface TranslateResult {
  workloads: Workload[];
  services: Service[];
  authorizations: Authorization[];
  /** Sorted by objectKey, then type. */
  conditions: TranslateCondition[];
}

/**
 * Translates a store snapshot (or a plain object list). Deployments are not expanded here: the
 * local runtime or the kubelet turns them into Pods, and only Pods become Workloads.
 */
export function translate(
  input: readonly KubeObject[] | { objects: readonly KubeObject[] },
  options: Partial<TranslateOptions> = {},
): TranslateResult {
  const objects = Array.isArray(input) ? (input as readonly KubeObject[]) : (input as { objects: readonly KubeObject[] }).objects;
  const opts: TranslateOptions = { ...DEFAULT_TRANSLATE_OPTIONS, ...options };
  const idx = buildIndex(objects, opts);

  const pods: PodWorkload[] = idx.pods.filter((p) => !isPodTerminated(p)).map((pod) => ({ pod, workload: buildWorkload(idx, pod) }));
  const services = buildServices(idx, pods);
  const serviceObjects = idx.services
    .map((svc) => ({ svc, service: services.find((s) => s.namespace === (svc.metadata.namespace ?? '') && s.name === svc.metadata.name) }))
    .filter((e): e is { svc: KubeObject; service: Service } => e.service !== undefined);
  assignWaypoints(idx, collectWaypoints(idx, pods), pods, serviceObjects);
  applyPeerAuthentication(idx, pods);
  const authorizations = buildAuthorizations(idx, pods);

  const workloads = pods.map((p) => p.workload);
  for (const w of workloads) w.authorizationPolicies.sort(compareStrings);
  workloads.sort((a, b) => compareStrings(a.uid, b.uid));
  services.sort((a, b) => compareStrings(serviceResourceName(a), serviceResourceName(b)));
  authorizations.sort((a, b) => compareStrings(authorizationResourceName(a), authorizationResourceName(b)));
  const conditions = idx.conditions.sort((a, b) => compareStrings(a.objectKey, b.objectKey) || compareStrings(a.type, b.type));
  return { workloads, services, authorizations, conditions };
}
