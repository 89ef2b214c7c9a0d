/** API paths of the kinds the controller reads and writes, and the CRD that serves a custom kind. */
import type { KindInfo } from '../objects.js';

/** A resource at one version: enough to build its paths. */
export interface ResourceRef {
  group: string;
  version: string;
  plural: string;
  namespaced: boolean;
}

/** `v1` or `<group>/<version>`. */
export function apiVersionOf(group: string, version: string): string {
  return group === '' ? version : `${group}/${version}`;
}

function root(r: Pick<ResourceRef, 'group' | 'version'>): string {
  return r.group === '' ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
}

/** The collection: all namespaces when `namespace` is undefined (or the kind is cluster-scoped). */
export function collectionPath(r: ResourceRef, namespace?: string): string {
  return r.namespaced && namespace !== undefined ? `${root(r)}/namespaces/${encodeURIComponent(namespace)}/${r.plural}` : `${root(r)}/${r.plural}`;
}

/** One object (optionally a subresource such as `status`). */
export function objectPath(r: ResourceRef, namespace: string | undefined, name: string, subresource?: string): string {
  return `${collectionPath(r, r.namespaced ? (namespace ?? 'default') : undefined)}/${encodeURIComponent(name)}${subresource ? `/${subresource}` : ''}`;
}

/** A registry kind at one of its versions. */
export function resourceOf(info: KindInfo, version = info.versions[0]!): ResourceRef {
  return { group: info.group, version, plural: info.plural, namespaced: info.namespaced };
}

/** `<plural>.<group>`: the name of the CRD that serves a custom kind. */
export function crdName(info: Pick<KindInfo, 'plural' | 'group'>): string {
  return `${info.plural}.${info.group}`;
}

/** Built-in kinds the rest of the controller writes or reads outside the store. */
export const RESOURCES = {
  pods: { group: '', version: 'v1', plural: 'pods', namespaced: true },
  deployments: { group: 'apps', version: 'v1', plural: 'deployments', namespaced: true },
  services: { group: '', version: 'v1', plural: 'services', namespaced: true },
  serviceAccounts: { group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true },
  configMaps: { group: '', version: 'v1', plural: 'configmaps', namespaced: true },
  secrets: { group: '', version: 'v1', plural: 'secrets', namespaced: true },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespaced: true },
  tokenReviews: { group: 'authentication.k8s.io', version: 'v1', plural: 'tokenreviews', namespaced: false },
  crds: { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', namespaced: false },
} as const satisfies Record<string, ResourceRef>;
