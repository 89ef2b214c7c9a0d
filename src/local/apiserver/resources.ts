/**
 * The resource types the server serves: the built-in kinds (with their client-node model, strategy,
 * short names, categories and subresources) and one type per established CRD, rebuilt whenever a
 * CRD changes. Discovery, routing and the registry read everything about a type from here.
 */
import { configMapStrategy, secretStrategy, serviceAccountStrategy } from './kinds/config.js';
import {
  endpointSliceStrategy,
  endpointsStrategy,
  eventStrategy,
  leaseStrategy,
  namespaceStrategy,
  nodeStrategy,
  podDisruptionBudgetStrategy,
} from './kinds/cluster.js';
import { crdEstablished, crdNames, crdStrategy } from './kinds/crd.js';
import { podStrategy } from './kinds/pod.js';
import { clusterRoleBindingStrategy, clusterRoleStrategy, roleBindingStrategy, roleStrategy } from './kinds/rbac.js';
import { serviceStrategy } from './kinds/service.js';
import { daemonSetStrategy, deploymentStrategy, replicaSetStrategy } from './kinds/workloads.js';
import type { KindStrategy } from './strategy.js';
import type { Schema } from './structural-schema.js';
import { isMap, type JsonMap, type KubeObject } from './types.js';

export const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

export interface ScaleSpec {
  specReplicasPath: string;
  statusReplicasPath: string;
  /** Path of a string label selector (CRs), or undefined for built-ins (computed from spec.selector). */
  labelSelectorPath?: string;
}

/** One served version of a type. */
export interface ServedVersion {
  name: string;
  status: boolean;
  scale?: ScaleSpec;
  /** Custom resources: the version's structural schema and printer columns. */
  schema?: Schema;
  printerColumns?: JsonMap[];
  selectableFields?: string[];
}

export interface ResourceDef {
  /** `<group>/<plural>`: the store's key. */
  id: string;
  group: string;
  plural: string;
  singular: string;
  kind: string;
  listKind: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  /** Served versions, preferred first. */
  versions: ServedVersion[];
  /** The version objects are stored as. */
  storageVersion: string;
  verbs: string[];
  strategy: KindStrategy;
  /** Built-ins: the client-node model giving the schema (decode, SMP). */
  model?: string;
  /** serviceaccounts/token. */
  token?: boolean;
  /** namespaces/finalize. */
  finalize?: boolean;
  /** pods/binding: the scheduler's way to set spec.nodeName. */
  binding?: boolean;
  /** Create-only review types (TokenReview, SubjectAccessReview): nothing is stored. */
  review?: boolean;
  /** A custom resource served from a CRD (named here). */
  crd?: string;
  /** The CRD is being deleted: objects may be read and deleted, not created. */
  terminating?: boolean;
}

interface BuiltinSpec {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  model: string;
  strategy?: KindStrategy;
  shortNames?: string[];
  categories?: string[];
  status?: boolean;
  scale?: boolean;
  token?: boolean;
  finalize?: boolean;
  binding?: boolean;
  review?: boolean;
  singular?: string;
}

const BUILTINS: BuiltinSpec[] = [
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false, model: 'V1Namespace', strategy: namespaceStrategy, shortNames: ['ns'], status: true, finalize: true },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true, model: 'V1Pod', strategy: podStrategy, shortNames: ['po'], categories: ['all'], status: true, binding: true },
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true, model: 'V1Service', strategy: serviceStrategy, shortNames: ['svc'], categories: ['all'], status: true },
  { group: '', version: 'v1', plural: 'endpoints', kind: 'Endpoints', namespaced: true, model: 'V1Endpoints', strategy: endpointsStrategy, shortNames: ['ep'], singular: 'endpoints' },
  { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true, model: 'V1ServiceAccount', strategy: serviceAccountStrategy, shortNames: ['sa'], token: true },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true, model: 'V1Secret', strategy: secretStrategy },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true, model: 'V1ConfigMap', strategy: configMapStrategy, shortNames: ['cm'] },
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false, model: 'V1Node', strategy: nodeStrategy, shortNames: ['no'], status: true },
  { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true, model: 'CoreV1Event', strategy: eventStrategy, shortNames: ['ev'] },
  { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true, model: 'V1Deployment', strategy: deploymentStrategy, shortNames: ['deploy'], categories: ['all'], status: true, scale: true },
  { group: 'apps', version: 'v1', plural: 'replicasets', kind: 'ReplicaSet', namespaced: true, model: 'V1ReplicaSet', strategy: replicaSetStrategy, shortNames: ['rs'], categories: ['all'], status: true, scale: true },
  { group: 'apps', version: 'v1', plural: 'daemonsets', kind: 'DaemonSet', namespaced: true, model: 'V1DaemonSet', strategy: daemonSetStrategy, shortNames: ['ds'], categories: ['all'], status: true },
  { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true, model: 'V1EndpointSlice', strategy: endpointSliceStrategy },
  { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true, model: 'V1Lease', strategy: leaseStrategy },
  { group: 'policy', version: 'v1', plural: 'poddisruptionbudgets', kind: 'PodDisruptionBudget', namespaced: true, model: 'V1PodDisruptionBudget', strategy: podDisruptionBudgetStrategy, shortNames: ['pdb'], status: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'roles', kind: 'Role', namespaced: true, model: 'V1Role', strategy: roleStrategy },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterroles', kind: 'ClusterRole', namespaced: false, model: 'V1ClusterRole', strategy: clusterRoleStrategy },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'rolebindings', kind: 'RoleBinding', namespaced: true, model: 'V1RoleBinding', strategy: roleBindingStrategy },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterrolebindings', kind: 'ClusterRoleBinding', namespaced: false, model: 'V1ClusterRoleBinding', strategy: clusterRoleBindingStrategy },
  { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false, model: 'V1CustomResourceDefinition', strategy: crdStrategy, shortNames: ['crd', 'crds'], categories: ['api-extensions'], status: true },
  { group: 'authentication.k8s.io', version: 'v1', plural: 'tokenreviews', kind: 'TokenReview', namespaced: false, model: 'V1TokenReview', review: true },
  { group: 'authentication.k8s.io', version: 'v1', plural: 'selfsubjectreviews', kind: 'SelfSubjectReview', namespaced: false, model: 'V1SelfSubjectReview', review: true },
  { group: 'authorization.k8s.io', version: 'v1', plural: 'subjectaccessreviews', kind: 'SubjectAccessReview', namespaced: false, model: 'V1SubjectAccessReview', review: true },
  { group: 'authorization.k8s.io', version: 'v1', plural: 'selfsubjectaccessreviews', kind: 'SelfSubjectAccessReview', namespaced: false, model: 'V1SelfSubjectAccessReview', review: true },
  { group: 'authorization.k8s.io', version: 'v1', plural: 'localsubjectaccessreviews', kind: 'LocalSubjectAccessReview', namespaced: true, model: 'V1LocalSubjectAccessReview', review: true },
  { group: 'authorization.k8s.io', version: 'v1', plural: 'selfsubjectrulesreviews', kind: 'SelfSubjectRulesReview', namespaced: false, model: 'V1SelfSubjectRulesReview', review: true },
];

const BUILTIN_SCALE: ScaleSpec = { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas' };

function builtinDef(b: BuiltinSpec): ResourceDef {
  const version: ServedVersion = { name: b.version, status: b.status === true };
  if (b.scale) version.scale = BUILTIN_SCALE;
  const def: ResourceDef = {
    id: `${b.group}/${b.plural}`,
    group: b.group,
    plural: b.plural,
    singular: b.singular ?? b.kind.toLowerCase(),
    kind: b.kind,
    listKind: `${b.kind}List`,
    namespaced: b.namespaced,
    shortNames: b.shortNames ?? [],
    categories: b.categories ?? [],
    versions: [version],
    storageVersion: b.version,
    verbs: b.review ? ['create'] : ALL_VERBS,
    strategy: b.strategy ?? {},
    model: b.model,
  };
  if (b.token) def.token = true;
  if (b.finalize) def.finalize = true;
  if (b.binding) def.binding = true;
  if (b.review) def.review = true;
  return def;
}

/** Custom resources: a generation that tracks spec changes, and the CRD's selectable fields. */
function customResourceStrategy(): KindStrategy {
  return { generation: true, requireResourceVersionOnUpdate: true, returnDeletedObject: true };
}

/** The type a CRD defines, or undefined when it is not established or serves no version. */
export function customResourceDef(crd: KubeObject): ResourceDef | undefined {
  if (!crdEstablished(crd)) return undefined;
  const spec = crd['spec'] as JsonMap;
  const names = crdNames(crd);
  const group = String(spec['group']);
  const versions: ServedVersion[] = [];
  let storageVersion = '';
  for (const v of Array.isArray(spec['versions']) ? spec['versions'] : []) {
    if (!isMap(v)) continue;
    if (v['storage'] === true) storageVersion = String(v['name']);
    if (v['served'] === false) continue;
    const sub = isMap(v['subresources']) ? v['subresources'] : {};
    const sv: ServedVersion = { name: String(v['name']), status: isMap(sub['status']) };
    if (isMap(sub['scale'])) {
      sv.scale = {
        specReplicasPath: String(sub['scale']['specReplicasPath']),
        statusReplicasPath: String(sub['scale']['statusReplicasPath']),
        ...(typeof sub['scale']['labelSelectorPath'] === 'string' ? { labelSelectorPath: sub['scale']['labelSelectorPath'] } : {}),
      };
    }
    const schema = isMap(v['schema']) ? v['schema']['openAPIV3Schema'] : undefined;
    if (isMap(schema)) sv.schema = schema;
    if (Array.isArray(v['additionalPrinterColumns'])) sv.printerColumns = v['additionalPrinterColumns'].filter(isMap);
    if (Array.isArray(v['selectableFields'])) {
      sv.selectableFields = v['selectableFields'].filter(isMap).map((f) => String(f['jsonPath'] ?? '').replace(/^\./, ''));
    }
    versions.push(sv);
  }
  if (versions.length === 0) return undefined;
  versions.sort((a, b) => compareKubeVersions(b.name, a.name));
  return {
    id: `${group}/${names.plural}`,
    group,
    plural: names.plural,
    singular: names.singular,
    kind: names.kind,
    listKind: names.listKind,
    namespaced: spec['scope'] === 'Namespaced',
    shortNames: names.shortNames,
    categories: names.categories,
    versions,
    storageVersion,
    verbs: ALL_VERBS,
    strategy: customResourceStrategy(),
    crd: crd.metadata.name!,
    ...(crd.metadata.deletionTimestamp !== undefined ? { terminating: true } : {}),
  };
}

/**
 * Kubernetes version priority (GA > beta > alpha, then by number; others last, alphabetically),
 * as discovery orders versions: positive when `a` is preferred over `b`.
 */
export function compareKubeVersions(a: string, b: string): number {
  const parse = (v: string): [number, number, number] | undefined => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return undefined;
    const stage = m[2] === undefined ? 3 : m[2] === 'beta' ? 2 : 1;
    return [stage, Number(m[1]), m[3] === undefined ? 0 : Number(m[3])];
  };
  const pa = parse(a);
  const pb = parse(b);
  if (pa === undefined && pb === undefined) return b.localeCompare(a);
  if (pa === undefined) return -1;
  if (pb === undefined) return 1;
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return 0;
}

export class ResourceTypes {
  private readonly builtins: ResourceDef[] = BUILTINS.map(builtinDef);
  private custom: ResourceDef[] = [];

  all(): ResourceDef[] {
    return [...this.builtins, ...this.custom];
  }

  /** Types that hold objects (not review types). */
  stored(): ResourceDef[] {
    return this.all().filter((d) => !d.review);
  }

  byId(id: string): ResourceDef | undefined {
    return this.all().find((d) => d.id === id);
  }

  /** The type at `/apis/<group>/<version>/<plural>`, when that version is served. */
  lookup(group: string, version: string, plural: string): ResourceDef | undefined {
    return this.all().find((d) => d.group === group && d.plural === plural && d.versions.some((v) => v.name === version));
  }

  byKind(group: string, kind: string): ResourceDef | undefined {
    return this.all().find((d) => d.group === group && d.kind === kind);
  }

  /** Group versions served, each group's versions preferred first (built-in groups first). */
  groups(): Array<{ group: string; versions: string[] }> {
    const out: Array<{ group: string; versions: string[] }> = [];
    for (const d of this.all()) {
      let g = out.find((x) => x.group === d.group);
      if (g === undefined) {
        g = { group: d.group, versions: [] };
        out.push(g);
      }
      for (const v of d.versions) if (!g.versions.includes(v.name)) g.versions.push(v.name);
    }
    for (const g of out) g.versions.sort((a, b) => compareKubeVersions(b, a));
    return out;
  }

  /** Rebuilds the custom types from the stored CRDs. */
  setCrds(crds: KubeObject[]): void {
    const taken = new Set(this.builtins.map((d) => d.id));
    this.custom = [];
    for (const crd of crds) {
      const def = customResourceDef(crd);
      if (def === undefined || taken.has(def.id)) continue;
      taken.add(def.id);
      this.custom.push(def);
    }
  }
}
