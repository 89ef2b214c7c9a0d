/**
 * Kubernetes-shaped objects the controller reads (from manifests or the API server) and the
 * registry of kinds it understands: group, accepted versions, namespaced or cluster-scoped.
 */

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid?: string;
  controller?: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  generation?: number;
  ownerReferences?: OwnerReference[];
  [key: string]: unknown;
}

/** Any object with Kubernetes shape; `spec`/`status` stay loosely typed and are read defensively. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [key: string]: unknown;
}

/** One kind the controller understands. */
export interface KindInfo {
  /** API group; '' for the core group. */
  group: string;
  kind: string;
  /** Versions accepted in `apiVersion`, preferred first. */
  versions: readonly string[];
  namespaced: boolean;
  /** The API resource (lowercase plural): the path segment and, for custom kinds, `<plural>.<group>` names the CRD. */
  plural: string;
  /** Served by every API server (core, apps, discovery); false for kinds that exist only once their CRD is installed. */
  builtin: boolean;
  /**
   * Name used in object keys and store queries: the kind, or `Kind.group` for the kinds whose name
   * exists in two groups (Istio's `Gateway` and Gateway API's `Gateway`), so keys never collide.
   */
  ref: string;
}

export const GROUP_ISTIO_SECURITY = 'security.istio.io';
export const GROUP_ISTIO_NETWORKING = 'networking.istio.io';
export const GROUP_GATEWAY_API = 'gateway.networking.k8s.io';
export const GROUP_DISCOVERY = 'discovery.k8s.io';
export const GROUP_ISTIO_TELEMETRY = 'telemetry.istio.io';
export const GROUP_K8S_NETWORKING = 'networking.k8s.io';

const BUILTIN_GROUPS = new Set(['', 'apps', GROUP_DISCOVERY, GROUP_K8S_NETWORKING]);

const DEFS: ReadonlyArray<Omit<KindInfo, 'ref' | 'builtin'>> = [
  { group: '', kind: 'Namespace', versions: ['v1'], namespaced: false, plural: 'namespaces' },
  { group: '', kind: 'Node', versions: ['v1'], namespaced: false, plural: 'nodes' },
  { group: '', kind: 'Pod', versions: ['v1'], namespaced: true, plural: 'pods' },
  { group: '', kind: 'Service', versions: ['v1'], namespaced: true, plural: 'services' },
  { group: '', kind: 'ServiceAccount', versions: ['v1'], namespaced: true, plural: 'serviceaccounts' },
  { group: '', kind: 'Secret', versions: ['v1'], namespaced: true, plural: 'secrets' },
  { group: '', kind: 'ConfigMap', versions: ['v1'], namespaced: true, plural: 'configmaps' },
  { group: 'apps', kind: 'Deployment', versions: ['v1'], namespaced: true, plural: 'deployments' },
  { group: GROUP_DISCOVERY, kind: 'EndpointSlice', versions: ['v1'], namespaced: true, plural: 'endpointslices' },
  { group: GROUP_ISTIO_SECURITY, kind: 'PeerAuthentication', versions: ['v1', 'v1beta1'], namespaced: true, plural: 'peerauthentications' },
  { group: GROUP_ISTIO_SECURITY, kind: 'AuthorizationPolicy', versions: ['v1', 'v1beta1'], namespaced: true, plural: 'authorizationpolicies' },
  { group: GROUP_ISTIO_SECURITY, kind: 'RequestAuthentication', versions: ['v1', 'v1beta1'], namespaced: true, plural: 'requestauthentications' },
  { group: GROUP_ISTIO_NETWORKING, kind: 'VirtualService', versions: ['v1', 'v1beta1', 'v1alpha3'], namespaced: true, plural: 'virtualservices' },
  { group: GROUP_ISTIO_NETWORKING, kind: 'DestinationRule', versions: ['v1', 'v1beta1', 'v1alpha3'], namespaced: true, plural: 'destinationrules' },
  { group: GROUP_ISTIO_NETWORKING, kind: 'Gateway', versions: ['v1', 'v1beta1', 'v1alpha3'], namespaced: true, plural: 'gateways' },
  { group: GROUP_ISTIO_NETWORKING, kind: 'ServiceEntry', versions: ['v1', 'v1beta1', 'v1alpha3'], namespaced: true, plural: 'serviceentries' },
  { group: GROUP_ISTIO_NETWORKING, kind: 'WorkloadEntry', versions: ['v1', 'v1beta1', 'v1alpha3'], namespaced: true, plural: 'workloadentries' },
  { group: GROUP_ISTIO_NETWORKING, kind: 'WorkloadGroup', versions: ['v1', 'v1beta1', 'v1alpha3'], namespaced: true, plural: 'workloadgroups' },
  { group: GROUP_ISTIO_NETWORKING, kind: 'Sidecar', versions: ['v1', 'v1beta1', 'v1alpha3'], namespaced: true, plural: 'sidecars' },
  { group: GROUP_ISTIO_NETWORKING, kind: 'EnvoyFilter', versions: ['v1alpha3'], namespaced: true, plural: 'envoyfilters' },
  { group: GROUP_ISTIO_TELEMETRY, kind: 'Telemetry', versions: ['v1', 'v1alpha1'], namespaced: true, plural: 'telemetries' },
  { group: GROUP_GATEWAY_API, kind: 'Gateway', versions: ['v1', 'v1beta1'], namespaced: true, plural: 'gateways' },
  { group: GROUP_GATEWAY_API, kind: 'HTTPRoute', versions: ['v1', 'v1beta1'], namespaced: true, plural: 'httproutes' },
  { group: GROUP_GATEWAY_API, kind: 'GRPCRoute', versions: ['v1', 'v1alpha2'], namespaced: true, plural: 'grpcroutes' },
  { group: GROUP_GATEWAY_API, kind: 'GatewayClass', versions: ['v1', 'v1beta1'], namespaced: false, plural: 'gatewayclasses' },
  { group: GROUP_GATEWAY_API, kind: 'TCPRoute', versions: ['v1alpha2'], namespaced: true, plural: 'tcproutes' },
  { group: GROUP_GATEWAY_API, kind: 'TLSRoute', versions: ['v1alpha2'], namespaced: true, plural: 'tlsroutes' },
  { group: GROUP_GATEWAY_API, kind: 'ReferenceGrant', versions: ['v1beta1', 'v1alpha2'], namespaced: true, plural: 'referencegrants' },
  { group: GROUP_K8S_NETWORKING, kind: 'Ingress', versions: ['v1'], namespaced: true, plural: 'ingresses' },
];

function withRefs(defs: ReadonlyArray<Omit<KindInfo, 'ref' | 'builtin'>>): readonly KindInfo[] {
  const count = new Map<string, number>();
  for (const d of defs) count.set(d.kind, (count.get(d.kind) ?? 0) + 1);
  return defs.map((d) => Object.freeze({ ...d, builtin: BUILTIN_GROUPS.has(d.group), ref: (count.get(d.kind) ?? 0) > 1 ? `${d.kind}.${d.group}` : d.kind }));
}

/** Every kind the controller understands. */
export const KINDS: readonly KindInfo[] = Object.freeze(withRefs(DEFS));

/** Kind refs of the kinds translate and the store work with most. */
export const REF_GATEWAY_API_GATEWAY = `Gateway.${GROUP_GATEWAY_API}`;
export const REF_ISTIO_GATEWAY = `Gateway.${GROUP_ISTIO_NETWORKING}`;

/** Splits `apiVersion` into group and version: `v1` → ['', 'v1'], `apps/v1` → ['apps', 'v1']. */
export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/');
  if (slash < 0) return { group: '', version: apiVersion };
  return { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

/** apiVersion → kind → entry, for every version of every kind (lookupKind runs per object, often: no string is built). */
const BY_API_VERSION_KIND: ReadonlyMap<string, ReadonlyMap<string, KindInfo>> = (() => {
  const out = new Map<string, Map<string, KindInfo>>();
  for (const k of KINDS) {
    for (const v of k.versions) {
      const apiVersion = k.group === '' ? v : `${k.group}/${v}`;
      let kinds = out.get(apiVersion);
      if (!kinds) out.set(apiVersion, (kinds = new Map()));
      kinds.set(k.kind, k);
    }
  }
  return out;
})();

/** The registry entry for an apiVersion + kind, or undefined when the pair is not understood. */
export function lookupKind(apiVersion: unknown, kind: unknown): KindInfo | undefined {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return undefined;
  return BY_API_VERSION_KIND.get(apiVersion)?.get(kind);
}

/** Registry entries a store query names: a ref (`Pod`, `Gateway.networking.istio.io`) or a bare kind. */
export function kindsForQuery(query: string): KindInfo[] {
  const byRef = KINDS.filter((k) => k.ref === query);
  if (byRef.length > 0) return byRef;
  return KINDS.filter((k) => k.kind === query);
}

/** The kind ref of an object (`Pod`, `Gateway.gateway.networking.k8s.io`); its bare kind when unknown. */
export function kindRef(obj: Pick<KubeObject, 'apiVersion' | 'kind'>): string {
  return lookupKind(obj.apiVersion, obj.kind)?.ref ?? obj.kind;
}

export function isNamespaced(obj: Pick<KubeObject, 'apiVersion' | 'kind'>): boolean {
  return lookupKind(obj.apiVersion, obj.kind)?.namespaced ?? true;
}

/** `<kind ref>/<namespace>/<name>`; the namespace part is empty for cluster-scoped kinds. */
export function objectKey(obj: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): string {
  const ns = isNamespaced(obj) ? (obj.metadata.namespace ?? '') : '';
  return `${kindRef(obj)}/${ns}/${obj.metadata.name}`;
}

/** Human form for messages: `Pod default/web`, `Namespace demo`. */
export function describeObject(obj: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): string {
  const name = typeof obj.metadata?.name === 'string' ? obj.metadata.name : '<unnamed>';
  const ns = isNamespaced(obj) && obj.metadata?.namespace ? `${obj.metadata.namespace}/` : '';
  return `${obj.kind} ${ns}${name}`;
}
