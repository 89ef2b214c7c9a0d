/**
 * Local mode's API server, wired as a cluster's control plane is set up: the server itself
 * (src/local/apiserver/), Ambit's CRDs (src/crds/, what daemonset/crds/ renders), the namespace
 * and the least-privilege RBAC of daemonset/ (the controller's, the agents' and the CNI plugin's
 * service accounts), local mode's own identities (the controller-manager and scheduler, the
 * nodes, kube-proxy) with their roles, the Node objects, and the operator's kubeconfig.
 *
 * Every local component talks to the server over HTTPS as its own identity with a token issued
 * here (TokenRequest), never as the admin: RBAC applies to local mode exactly as on a cluster.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { AmbitError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { ALL_CRDS } from '../crds/index.js';
import { ApiServer } from './apiserver/server.js';
import { KubeClient } from './kube-client.js';
import { MANAGED_BY_LABEL, SERVICE_NAME_LABEL } from './controllers/endpointslice.js';

export const MESH_NAMESPACE = 'istio-system';
/** Port of the API server on the bridge address. */
export const API_PORT = 6443;

/** A service account local mode runs a component as. */
export interface Identity {
  namespace: string;
  name: string;
}

export const CONTROLLER_MANAGER: Identity = { namespace: 'kube-system', name: 'ambit-local-controller-manager' };
export const NODE_IDENTITY: Identity = { namespace: 'kube-system', name: 'ambit-local-node' };
export const PROXY_IDENTITY: Identity = { namespace: 'kube-system', name: 'ambit-local-proxy' };
export const AGENT_IDENTITY: Identity = { namespace: MESH_NAMESPACE, name: 'ambit-agent' };
export const CONTROLLER_IDENTITY: Identity = { namespace: MESH_NAMESPACE, name: 'ambit-controller' };
export const CNI_IDENTITY: Identity = { namespace: MESH_NAMESPACE, name: 'ambit-cni' };
/** The cluster DNS (cluster-dns.ts), as CoreDNS runs as its own service account. */
export const DNS_IDENTITY: Identity = { namespace: 'kube-system', name: 'ambit-local-dns' };
/** The cluster DNS Service, named as kubeadm's DNS addon names it. */
export const KUBE_DNS_SERVICE = { namespace: 'kube-system', name: 'kube-dns' } as const;
/** Manager of the kube-dns EndpointSlice (not the EndpointSlice controller: the Service has no selector). */
export const KUBE_DNS_SLICE_MANAGER = 'ambit-local';

/** Lifetime of the tokens local components run with (a local mesh lives for hours, not years). */
const COMPONENT_TOKEN_SECONDS = 7 * 24 * 3600;

type Obj = Record<string, unknown>;

const rule = (apiGroups: string[], resources: string[], verbs: string[]): Obj => ({ apiGroups, resources, verbs });
const READ = ['get', 'list', 'watch'];
const WRITE = ['create', 'update', 'patch', 'delete'];

/** ClusterRoles of local mode's own components (what kube-controller-manager, the kubelet and kube-proxy are granted). */
export const LOCAL_ROLES: ReadonlyArray<{ who: Identity; rules: Obj[] }> = [
  {
    who: CONTROLLER_MANAGER,
    rules: [
      rule(['apps'], ['deployments', 'replicasets'], [...READ, ...WRITE]),
      rule(['apps'], ['deployments/status', 'replicasets/status'], ['update', 'patch']),
      rule(['apps'], ['deployments/finalizers', 'replicasets/finalizers'], ['update']),
      rule([''], ['pods'], [...READ, 'create', 'delete']),
      rule([''], ['pods/status'], ['update', 'patch']),
      rule([''], ['pods/binding'], ['create']),
      rule([''], ['nodes', 'namespaces'], READ),
      rule([''], ['services', 'serviceaccounts'], [...READ, ...WRITE]),
      rule([''], ['services/finalizers'], ['update']),
      rule(['discovery.k8s.io'], ['endpointslices'], [...READ, ...WRITE]),
      rule(['networking.istio.io'], ['gateways'], READ),
      rule([''], ['events'], ['create', 'patch']),
    ],
  },
  {
    who: NODE_IDENTITY,
    rules: [
      rule([''], ['nodes'], [...READ, 'update', 'patch']),
      rule([''], ['nodes/status'], ['update', 'patch']),
      rule([''], ['pods'], [...READ, 'delete']),
      rule([''], ['pods/status'], ['update', 'patch']),
      rule([''], ['serviceaccounts'], ['get']),
      rule([''], ['serviceaccounts/token'], ['create']),
      rule([''], ['configmaps', 'secrets', 'services', 'namespaces'], READ),
      rule([''], ['events'], ['create', 'patch']),
    ],
  },
  {
    who: PROXY_IDENTITY,
    rules: [rule([''], ['services', 'pods', 'namespaces'], READ), rule(['discovery.k8s.io'], ['endpointslices'], READ)],
  },
  {
    // CoreDNS's ClusterRole (system:coredns), less what the records served here do not need.
    who: DNS_IDENTITY,
    rules: [rule([''], ['services', 'namespaces'], ['list', 'watch']), rule(['discovery.k8s.io'], ['endpointslices'], ['list', 'watch'])],
  },
];

/**
 * The kube-dns Service at the range's DNS address and its EndpointSlice naming the cluster DNS
 * server (no selector: the server is no pod), UDP and TCP 53 as kubeadm's addon declares them.
 */
export function kubeDnsObjects(clusterIp: string, serverAddress: string): Obj[] {
  const labels = { 'k8s-app': 'kube-dns', 'kubernetes.io/cluster-service': 'true', 'kubernetes.io/name': 'CoreDNS' };
  const ports = [
    { name: 'dns', port: 53, protocol: 'UDP' },
    { name: 'dns-tcp', port: 53, protocol: 'TCP' },
  ];
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { ...KUBE_DNS_SERVICE, labels },
      spec: { type: 'ClusterIP', clusterIP: clusterIp, ports: ports.map((p) => ({ ...p, targetPort: 53 })) },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        namespace: KUBE_DNS_SERVICE.namespace,
        name: `${KUBE_DNS_SERVICE.name}-local`,
        labels: { ...labels, [SERVICE_NAME_LABEL]: KUBE_DNS_SERVICE.name, [MANAGED_BY_LABEL]: KUBE_DNS_SLICE_MANAGER },
      },
      addressType: 'IPv4',
      endpoints: [{ addresses: [serverAddress], conditions: { ready: true, serving: true, terminating: false } }],
      ports,
    },
  ];
}

/** `ambit-local:<name>` RBAC objects of one local identity. */
function localRbac(who: Identity, rules: Obj[]): Obj[] {
  const name = `ambit-local:${who.name.replace(/^ambit-local-/, '')}`;
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: who.name, namespace: who.namespace } },
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name }, rules },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: [{ kind: 'ServiceAccount', name: who.name, namespace: who.namespace }],
    },
  ];
}

const NAMESPACED = new Set(['ServiceAccount', 'Role', 'RoleBinding', 'ConfigMap', 'Secret', 'Service', 'EndpointSlice']);

/**
 * The namespace and RBAC objects of daemonset/ (namespace/ and core/rbac-*.yaml), with the
 * namespace kustomize gives them (`namespace: istio-system` in core/kustomization.yaml).
 */
export function daemonsetRbac(repoRoot: string): Obj[] {
  const dir = join(repoRoot, 'daemonset');
  const files = [join(dir, 'namespace', 'namespace.yaml'), ...['rbac-controller.yaml', 'rbac-agent.yaml', 'rbac-cni.yaml'].map((f) => join(dir, 'core', f))];
  const out: Obj[] = [];
  for (const file of files) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      const o = doc.toJS() as Obj | null;
      if (!o) continue;
      const meta = (o['metadata'] ?? {}) as Obj;
      if (NAMESPACED.has(String(o['kind']))) meta['namespace'] = MESH_NAMESPACE;
      meta['labels'] = { ...((meta['labels'] as Obj | undefined) ?? {}), 'app.kubernetes.io/part-of': 'ambit' };
      o['metadata'] = meta;
      out.push(o);
    }
  }
  return out;
}

/** Collection path of an object (the kinds installed here). */
function collectionPath(o: Obj): string {
  const apiVersion = String(o['apiVersion']);
  const kind = String(o['kind']);
  const ns = String((o['metadata'] as Obj)['namespace'] ?? '');
  const plural: Record<string, string> = {
    Namespace: 'namespaces',
    ServiceAccount: 'serviceaccounts',
    Node: 'nodes',
    Role: 'roles',
    RoleBinding: 'rolebindings',
    ClusterRole: 'clusterroles',
    ClusterRoleBinding: 'clusterrolebindings',
    CustomResourceDefinition: 'customresourcedefinitions',
    Service: 'services',
    EndpointSlice: 'endpointslices',
  };
  const base = apiVersion === 'v1' ? '/api/v1' : `/apis/${apiVersion}`;
  const p = plural[kind];
  if (!p) throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `cannot install ${kind}: not a kind the cluster bootstrap knows`);
  return NAMESPACED.has(kind) ? `${base}/namespaces/${ns}/${p}` : `${base}/${p}`;
}

export interface NodeRegistration {
  name: string;
  ip: string;
  podCidr: string;
}

export interface ClusterApiOptions {
  /** Folder of the API server's objects and keys (a fresh one per mesh). */
  stateDir: string;
  /** The bridge address: where the host, the nodes and the pods reach the server. */
  host: string;
  port?: number;
  serviceCidr: string;
  repoRoot: string;
  /** Where the operator's admin kubeconfig is written (0600). */
  kubeconfigPath: string;
  nodes: readonly NodeRegistration[];
  /** The kube-dns Service's ClusterIP and the cluster DNS server's address (kubeDnsObjects). */
  clusterDns: { clusterIp: string; serverAddress: string };
  log: Logger;
}

/** Node object of a local node, as a kubelet registers it. */
export function nodeObject(n: NodeRegistration): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: n.name,
      labels: { 'kubernetes.io/hostname': n.name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': process.arch === 'x64' ? 'amd64' : process.arch, 'node.kubernetes.io/instance-type': 'ambit-local' },
    },
    spec: { podCIDR: n.podCidr, podCIDRs: [n.podCidr] },
  };
}

export class ClusterApi {
  private constructor(
    readonly api: ApiServer,
    readonly kubeconfigPath: string,
    private readonly log: Logger,
  ) {}

  /** Starts the server and installs everything a fresh local cluster holds. */
  static async start(opts: ClusterApiOptions): Promise<ClusterApi> {
    const api = await ApiServer.start({
      stateDir: opts.stateDir,
      host: opts.host,
      port: opts.port ?? API_PORT,
      serviceCidr: opts.serviceCidr,
      extraSans: ['ambit-local'],
      log: opts.log,
    });
    const c = new ClusterApi(api, opts.kubeconfigPath, opts.log.child({ component: 'cluster-api' }));
    try {
      await c.install(opts);
      api.writeKubeconfig(opts.kubeconfigPath);
    } catch (e) {
      await api.stop();
      throw e;
    }
    return c;
  }

  private async createIfMissing(o: Obj): Promise<void> {
    const r = await this.api.request({ method: 'POST', path: collectionPath(o), body: o });
    if (r.status === 201 || r.status === 409) return;
    const st = r.body as { message?: string };
    const meta = o['metadata'] as Obj;
    throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `cannot install ${String(o['kind'])} ${String(meta['namespace'] ? `${String(meta['namespace'])}/` : '')}${String(meta['name'])}: ${r.status} ${st.message ?? ''}`);
  }

  private async install(opts: ClusterApiOptions): Promise<void> {
    for (const crd of ALL_CRDS) await this.createIfMissing(crd as unknown as Obj);
    for (const o of daemonsetRbac(opts.repoRoot)) await this.createIfMissing(o);
    for (const { who, rules } of LOCAL_ROLES) for (const o of localRbac(who, rules)) await this.createIfMissing(o);
    for (const n of opts.nodes) await this.createIfMissing(nodeObject(n));
    for (const o of kubeDnsObjects(opts.clusterDns.clusterIp, opts.clusterDns.serverAddress)) await this.createIfMissing(o);
    await this.waitForCrds();
    this.log.info({ crds: ALL_CRDS.length, nodes: opts.nodes.length }, 'cluster installed');
  }

  /** CRDs are served once their controller marks them Established (a microtask after the write). */
  private async waitForCrds(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const list = await this.api.requestOk<{ items: Array<{ status?: { conditions?: Array<{ type: string; status: string }> } }> }>({
        method: 'GET',
        path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      });
      if (list.items.every((c) => c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True'))) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', 'the CRDs were not established within 2 s');
  }

  get url(): string {
    return this.api.url;
  }

  get caCertPem(): string {
    return this.api.caCertPem;
  }

  /**
   * A token of `who` as TokenRequest issues it: bound to a pod or a node when given (then it dies
   * with that object), for `audiences` (default: the API server's).
   */
  async token(who: Identity, o: { pod?: string; node?: string; audiences?: string[]; expirationSeconds?: number } = {}): Promise<{ token: string; expirationTimestamp: string }> {
    const spec: Obj = { expirationSeconds: o.expirationSeconds ?? COMPONENT_TOKEN_SECONDS };
    if (o.audiences) spec['audiences'] = o.audiences;
    if (o.pod) spec['boundObjectRef'] = { kind: 'Pod', apiVersion: 'v1', name: o.pod };
    else if (o.node) spec['boundObjectRef'] = { kind: 'Node', apiVersion: 'v1', name: o.node };
    const r = await this.api.requestOk<{ status: { token: string; expirationTimestamp: string } }>({
      method: 'POST',
      path: `/api/v1/namespaces/${who.namespace}/serviceaccounts/${who.name}/token`,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec },
    });
    return r.status;
  }

  /** A client acting as `who` (optionally node-bound, as a kubelet's credential names its node). */
  async clientFor(who: Identity, o: { node?: string } = {}): Promise<KubeClient> {
    const { token } = await this.token(who, o);
    return new KubeClient({ server: this.api.url, caPem: this.api.caCertPem, token: () => token });
  }

  /** A kubeconfig (YAML) for `token`. */
  kubeconfigFor(token: string, who: Identity): string {
    return this.api.serviceAccountKubeconfig(token, who.namespace, who.name);
  }

  stop(): Promise<void> {
    return this.api.stop();
  }
}
