/**
 * What a fresh cluster holds before anyone writes: the system namespaces, the bootstrap RBAC
 * policy (cluster-admin for system:masters, discovery and self-review for everyone
 * authenticated, auth-delegator, view/edit/admin by aggregation) and the `kubernetes` Service
 * with its Endpoints and EndpointSlice pointing at this server. Missing objects are created at
 * every start; existing ones are left as the user changed them (the endpoints follow the address).
 */
import { SYSTEM_USER } from './authn.js';
import type { Registry, RequestContext } from './registry.js';
import type { ResourceTypes } from './resources.js';
import { ApiError } from './status.js';
import { clone, isMap, jsonEqual, type JsonMap } from './types.js';

const RBAC = 'rbac.authorization.k8s.io';
const BOOTSTRAP_META = { labels: { 'kubernetes.io/bootstrapping': 'rbac-defaults' }, annotations: { 'rbac.authorization.kubernetes.io/autoupdate': 'true' } };

export const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

const READ = ['get', 'list', 'watch'];
const WRITE = ['create', 'delete', 'deletecollection', 'patch', 'update'];

function clusterRole(name: string, rules: JsonMap[], extraLabels: Record<string, string> = {}, aggregateFrom?: string): JsonMap {
  const role: JsonMap = {
    apiVersion: `${RBAC}/v1`,
    kind: 'ClusterRole',
    metadata: { name, labels: { ...BOOTSTRAP_META.labels, ...extraLabels }, annotations: BOOTSTRAP_META.annotations },
    rules,
  };
  if (aggregateFrom !== undefined) role['aggregationRule'] = { clusterRoleSelectors: [{ matchLabels: { [aggregateFrom]: 'true' } }] };
  return role;
}

function binding(name: string, role: string, groups: string[]): JsonMap {
  return {
    apiVersion: `${RBAC}/v1`,
    kind: 'ClusterRoleBinding',
    metadata: { name, ...BOOTSTRAP_META },
    roleRef: { apiGroup: RBAC, kind: 'ClusterRole', name: role },
    subjects: groups.map((g) => ({ apiGroup: RBAC, kind: 'Group', name: g })),
  };
}

const VIEW_RESOURCES: JsonMap[] = [
  { apiGroups: [''], resources: ['pods', 'pods/status', 'services', 'services/status', 'endpoints', 'configmaps', 'serviceaccounts', 'events', 'namespaces', 'namespaces/status', 'persistentvolumeclaims', 'replicationcontrollers'], verbs: READ },
  { apiGroups: ['apps'], resources: ['deployments', 'deployments/status', 'deployments/scale', 'replicasets', 'replicasets/status', 'replicasets/scale', 'daemonsets', 'daemonsets/status', 'statefulsets'], verbs: READ },
  { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: READ },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets', 'poddisruptionbudgets/status'], verbs: READ },
];

const EDIT_RESOURCES: JsonMap[] = [
  { apiGroups: [''], resources: ['pods', 'services', 'endpoints', 'configmaps', 'secrets', 'serviceaccounts', 'persistentvolumeclaims', 'replicationcontrollers'], verbs: WRITE },
  { apiGroups: [''], resources: ['secrets'], verbs: READ },
  { apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] },
  { apiGroups: [''], resources: ['serviceaccounts'], verbs: ['impersonate'] },
  { apiGroups: ['apps'], resources: ['deployments', 'deployments/scale', 'replicasets', 'replicasets/scale', 'daemonsets', 'statefulsets'], verbs: WRITE },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: WRITE },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: [...READ, ...WRITE] },
];

const ADMIN_RESOURCES: JsonMap[] = [
  { apiGroups: [RBAC], resources: ['roles', 'rolebindings'], verbs: [...READ, ...WRITE] },
  { apiGroups: ['authorization.k8s.io'], resources: ['localsubjectaccessreviews'], verbs: ['create'] },
];

const DISCOVERY_URLS = ['/api', '/api/*', '/apis', '/apis/*', '/healthz', '/livez', '/openapi', '/openapi/*', '/readyz', '/version', '/version/'];
const PUBLIC_URLS = ['/healthz', '/livez', '/readyz', '/version', '/version/'];

/** The bootstrap ClusterRoles and ClusterRoleBindings (names as upstream). */
export function bootstrapRbac(): JsonMap[] {
  const agg = (v: string): string => `${RBAC}/aggregate-to-${v}`;
  return [
    clusterRole('cluster-admin', [
      { apiGroups: ['*'], resources: ['*'], verbs: ['*'] },
      { nonResourceURLs: ['*'], verbs: ['*'] },
    ]),
    clusterRole('system:discovery', [{ nonResourceURLs: DISCOVERY_URLS, verbs: ['get'] }]),
    clusterRole('system:public-info-viewer', [{ nonResourceURLs: PUBLIC_URLS, verbs: ['get'] }]),
    clusterRole('system:basic-user', [
      { apiGroups: ['authentication.k8s.io'], resources: ['selfsubjectreviews'], verbs: ['create'] },
      { apiGroups: ['authorization.k8s.io'], resources: ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'], verbs: ['create'] },
    ]),
    clusterRole('system:auth-delegator', [
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
    ]),
    clusterRole('system:service-account-issuer-discovery', [{ nonResourceURLs: ['/.well-known/openid-configuration', '/.well-known/openid-configuration/', '/openid/v1/jwks', '/openid/v1/jwks/'], verbs: ['get'] }]),
    clusterRole('system:aggregate-to-view', VIEW_RESOURCES, { [agg('view')]: 'true' }),
    clusterRole('system:aggregate-to-edit', EDIT_RESOURCES, { [agg('edit')]: 'true' }),
    clusterRole('system:aggregate-to-admin', ADMIN_RESOURCES, { [agg('admin')]: 'true' }),
    clusterRole('view', [], { [agg('edit')]: 'true' }, agg('view')),
    clusterRole('edit', [], { [agg('admin')]: 'true' }, agg('edit')),
    clusterRole('admin', [], {}, agg('admin')),
    binding('cluster-admin', 'cluster-admin', ['system:masters']),
    binding('system:discovery', 'system:discovery', ['system:authenticated']),
    binding('system:basic-user', 'system:basic-user', ['system:authenticated']),
    binding('system:public-info-viewer', 'system:public-info-viewer', ['system:authenticated', 'system:unauthenticated']),
    binding('system:service-account-issuer-discovery', 'system:service-account-issuer-discovery', ['system:serviceaccounts']),
  ];
}

export interface KubernetesServiceSpec {
  clusterIp: string;
  /** The address and port clients inside the cluster reach this server at. */
  endpointIp: string;
  port: number;
}

function systemCtx(): RequestContext {
  return { user: SYSTEM_USER, dryRun: false, fieldValidation: 'Ignore', fieldManager: 'kube-apiserver', warnings: [] };
}

function createIfMissing(registry: Registry, types: ResourceTypes, id: string, ns: string, obj: JsonMap): void {
  const def = types.byId(id)!;
  const name = String((obj['metadata'] as JsonMap)['name']);
  if (registry.store.get(id, def.namespaced ? ns : undefined, name) !== undefined) return;
  try {
    registry.create(def, def.storageVersion, ns, clone(obj), systemCtx());
  } catch (e) {
    if (!(e instanceof ApiError && e.code === 409)) throw e;
  }
}

/** Creates or refreshes an object owned by the API server itself. */
function reconcile(registry: Registry, types: ResourceTypes, id: string, ns: string, obj: JsonMap, fields: string[]): void {
  const def = types.byId(id)!;
  const name = String((obj['metadata'] as JsonMap)['name']);
  const cur = registry.store.get(id, ns, name);
  if (cur === undefined) return createIfMissing(registry, types, id, ns, obj);
  if (fields.every((f) => jsonEqual(cur[f], obj[f]))) return;
  const next = clone(cur);
  for (const f of fields) next[f] = obj[f];
  registry.update(def, def.storageVersion, ns, name, next, systemCtx());
}

export function bootstrap(registry: Registry, types: ResourceTypes, svc: KubernetesServiceSpec): void {
  for (const ns of SYSTEM_NAMESPACES) createIfMissing(registry, types, '/namespaces', '', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  for (const o of bootstrapRbac()) {
    createIfMissing(registry, types, o['kind'] === 'ClusterRole' ? `${RBAC}/clusterroles` : `${RBAC}/clusterrolebindings`, '', o);
  }
  const labels = { component: 'apiserver', provider: 'kubernetes' };
  const svcObj: JsonMap = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'kubernetes', namespace: 'default', labels },
    spec: { type: 'ClusterIP', clusterIP: svc.clusterIp, ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: svc.port }], sessionAffinity: 'None' },
  };
  createIfMissing(registry, types, '/services', 'default', svcObj);
  const current = registry.store.get('/services', 'default', 'kubernetes');
  if (current !== undefined && isMap(current['spec'])) {
    const ports = current['spec']['ports'];
    const want = [{ name: 'https', port: 443, protocol: 'TCP', targetPort: svc.port }];
    if (!jsonEqual(ports, want)) {
      const def = types.byId('/services')!;
      registry.update(def, 'v1', 'default', 'kubernetes', { ...clone(current), spec: { ...clone(current['spec']), ports: want } }, systemCtx());
    }
  }
  reconcile(registry, types, '/endpoints', 'default', {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'kubernetes', namespace: 'default', labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' } },
    subsets: [{ addresses: [{ ip: svc.endpointIp }], ports: [{ name: 'https', port: svc.port, protocol: 'TCP' }] }],
  }, ['subsets']);
  reconcile(registry, types, 'discovery.k8s.io/endpointslices', 'default', {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'kubernetes', namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [svc.endpointIp], conditions: { ready: true } }],
    ports: [{ name: 'https', port: svc.port, protocol: 'TCP' }],
  }, ['endpoints', 'ports']);
}
