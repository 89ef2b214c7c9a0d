/**
 * A whole mesh on one machine, on the one-machine Kubernetes of cluster.ts: the API server (the
 * kubeconfig kubectl uses), the controllers and one node runtime per node make the pods from API
 * objects; on top of that the Ambit controller in Kubernetes mode against that API server (as its
 * own service account: informers, status, leader election, the waypoint and gateway Deployments
 * Gateways ask for, TokenReview), Istio's `istio-ingressgateway` Deployment (ingress-gateway.ts)
 * and one agent per node. `apply`/`delete` write to the API server as kubectl would and wait
 * until the mesh settled.
 *
 * Invariants: every resource made is named with the mesh prefix; apply() returns only after
 * Deployments are rolled out, pods are ready, enrolled pods are captured and every agent acked;
 * down() stops pods first (they hold tunnels into the agents), then agents, then the rest.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AmbitError } from '../shared/errors.js';
import { formatIssue, Issues } from '../shared/validate.js';
import type { Logger } from '../shared/log.js';
import { kindRef, objectKey, REF_GATEWAY_API_GATEWAY, REF_ISTIO_GATEWAY, type KubeObject } from '../controller/objects.js';
import type { Controller, WorkloadCaptureState } from '../controller/controller.js';
import { generateToken } from '../controller/callers.js';
import { KubernetesController } from '../controller/kubernetes-mode.js';
import { gatewayRole, LABEL_MANAGED, MANAGED_WAYPOINT, ownedName, type ProxyTemplate } from '../controller/owned/render.js';
import { ISTIO_CA_AUDIENCE } from '../controller/token-review.js';
import { LABEL_GATEWAY_NAME } from '../controller/translate/waypoints.js';
import { createRegistry } from '../shared/metrics.js';
import { ambitVersion } from '../shared/version.js';
import { AgentPods } from './agent-pods.js';
import { AgentSupervisor } from './agents.js';
import { cleanupLeftovers } from './cleanup.js';
import { AGENT_IDENTITY, CNI_IDENTITY, CONTROLLER_IDENTITY, MESH_NAMESPACE } from './cluster-api.js';
import { LocalCluster } from './cluster.js';
import { CLUSTER_DNS_PORT } from './cluster-dns.js';
import { isPodReady, rec } from './controllers/queue.js';
import { NODE_NOT_FOUND } from './controllers/pod-gc.js';
import { IngressGatewayInstall } from './ingress-gateway.js';
import { Informer, KubeClient } from './kube-client.js';
import { ObjectsApi } from './objects-api.js';
import { installAmbitPlugin } from './node/cni-config.js';
import { addressPlan, CONTROLLER_PORT } from './plan.js';
import { keyOf, nsOf, selects } from './workloads.js';

export type CaptureMode = 'auto' | 'bpf' | 'nft';

export interface LocalMeshOptions {
  prefix: string;
  nodes: number;
  /** Address block (plan.ts): meshes on different blocks can run at the same time. */
  net: number;
  stateDir: string;
  repoRoot: string;
  cwd: string;
  log: Logger;
  trustDomain: string;
  capture: CaptureMode;
  logLevel: string;
}

/** File of the daemon's admin token for the controller's /debug/* endpoints (0600, in the state dir). */
export const ADMIN_TOKEN_FILE = 'admin-token';
/** The controller's kubeconfig (its service account's token; 0600, in the state dir). */
export const CONTROLLER_KUBECONFIG_FILE = join('tokens', 'controller.kubeconfig');
/** Image named in the waypoint and gateway pods the controller makes (local mode runs `ambit waypoint` from this checkout). */
export const LOCAL_PROXY_IMAGE = 'localhost/ambit:local';

export interface PodStatus {
  namespace: string;
  name: string;
  node: string;
  ip: string;
  netns: string;
  phase: string;
  ready: boolean;
  enrolled: boolean;
  captured: boolean;
  captureMode: string;
  restarts: number;
  /** Why the pod cannot run yet (its waiting reason and message), when it cannot. */
  waiting?: string;
}

export interface LocalStatus {
  prefix: string;
  /** Address block of this mesh (`--net`). */
  net: number;
  controller: string;
  /** The Kubernetes API server of the mesh, and the kubeconfig kubectl uses with it. */
  api: { url: string; kubeconfig: string };
  nodes: Array<{ name: string; ip: string; netns: string; agentPid?: number; metrics: string; ready: string; connected: boolean }>;
  pods: PodStatus[];
  services: Array<{ namespace: string; name: string; clusterIP: string; ports: number[] }>;
  /** Waypoint pods and where their metrics are scraped (reachable from the root namespace). */
  waypoints: Array<{ namespace: string; gateway: string; pod: string; ip: string; metrics: string }>;
  /** Ingress gateway pods, the ports they listen on and the URLs to reach them from the root namespace. */
  ingressGateways: IngressGatewayStatus[];
  /** Istio Gateway servers the ingress gateway cannot serve, and why (bad Secret, unsupported protocol...). */
  ingressProblems: string[];
  /** Objects the API server holds that the controller refused, and why (their last good version stays in force). */
  refusedFromApi: Array<{ object: string; reason: string }>;
  /** Objects Ambit does not serve as written: refused, partly applied, or with unserved fields (their status conditions). */
  objectProblems: Array<{ object: string; type: string; reason: string; message: string }>;
}

export interface IngressGatewayStatus {
  namespace: string;
  pod: string;
  ip: string;
  ready: boolean;
  metrics: string;
  /** Istio Gateways (`ns/name`) served on some port. */
  gateways: string[];
  listeners: Array<{ port: number; protocol: 'HTTP' | 'HTTPS' | 'TCP' | 'TLS'; hosts: string[]; url: string }>;
}

/** How often settling re-reads the state. */
const SETTLE_POLL_MS = 150;
/** How long `up` waits for the agents' CNI sockets. */
const AGENT_SOCKET_WAIT_MS = 20_000;
/** How often the agents' mirror pods' readiness is written (when it changed). */
const AGENT_POD_SYNC_MS = 500;

/**
 * Waits (bounded) until every node's agent serves its CNI socket, as a cluster waits for the
 * agent DaemonSet: pods created before would be refused by the plugin and retried with backoff.
 */
async function waitForCniSockets(sockets: string[], timeoutMs: number, log: Logger): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!sockets.every((s) => existsSync(s))) {
    if (Date.now() > deadline) {
      log.warn({ sockets: sockets.filter((s) => !existsSync(s)) }, 'an agent does not serve its CNI socket yet; enrolled pods wait for it');
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class LocalMesh {
  private cluster: LocalCluster | undefined;
  private kc: KubernetesController | undefined;
  private ingress: IngressGatewayInstall | undefined;
  private agents: AgentSupervisor | undefined;
  private agentPods: AgentPods | undefined;
  private agentPodsTimer: NodeJS.Timeout | undefined;
  private deployments: Informer | undefined;
  private objects: ObjectsApi | undefined;

  private constructor(private readonly opts: LocalMeshOptions) {}

  /** Cleans leftovers of a previous run with the same prefix, then builds the mesh and starts agents. */
  static async start(opts: LocalMeshOptions): Promise<LocalMesh> {
    const mesh = new LocalMesh(opts);
    try {
      await cleanupLeftovers(opts.prefix, opts.log, opts.stateDir);
      await mesh.build();
      return mesh;
    } catch (err) {
      await mesh.down().catch(() => undefined);
      throw err;
    }
  }

  private async build(): Promise<void> {
    const o = this.opts;
    const plan = addressPlan(o.net);
    await mkdir(join(o.stateDir, 'tokens'), { recursive: true, mode: 0o700 });
    const cluster = await LocalCluster.start({ prefix: o.prefix, nodes: o.nodes, net: o.net, stateDir: o.stateDir, repoRoot: o.repoRoot, cwd: o.cwd, log: o.log });
    this.cluster = cluster;
    const api = cluster.api!;
    // Each agent presents a token of the agents' service account bound to its node, for audience
    // istio-ca, and the controller asks the API server about it (TokenReview), as on a cluster.
    for (const n of cluster.nodes) {
      const { token } = await api.token(AGENT_IDENTITY, { node: n.name, audiences: [ISTIO_CA_AUDIENCE] });
      await writeFile(join(o.stateDir, 'tokens', n.name), token, { mode: 0o600 });
    }
    // The controller is the one a cluster runs (src/controller/main.ts in Kubernetes mode), as its
    // own service account with the RBAC of daemonset/. Its waypoint and gateway pods reach it on
    // the bridge address and run this checkout's `ambit waypoint` (the node runtime runs no images).
    const { token: controllerToken } = await api.token(CONTROLLER_IDENTITY);
    const controllerKubeconfig = api.kubeconfigFor(controllerToken, CONTROLLER_IDENTITY);
    await writeFile(join(o.stateDir, CONTROLLER_KUBECONFIG_FILE), controllerKubeconfig, { mode: 0o600 });
    const adminToken = generateToken();
    await writeFile(join(o.stateDir, ADMIN_TOKEN_FILE), adminToken, { mode: 0o600 });
    const template: ProxyTemplate = {
      image: LOCAL_PROXY_IMAGE,
      imagePullPolicy: 'Never',
      controllerAddress: `${plan.bridgeIp}:${CONTROLLER_PORT}`,
      trustDomain: o.trustDomain,
      clusterId: 'Kubernetes',
      logLevel: o.logLevel,
    };
    const kc = await KubernetesController.start({
      kubeconfig: { text: controllerKubeconfig },
      namespace: MESH_NAMESPACE,
      identity: `${o.prefix}-controller`,
      stateDir: o.stateDir,
      host: plan.bridgeIp,
      port: CONTROLLER_PORT,
      admin: { host: plan.bridgeIp, port: 15014 },
      adminToken,
      trustDomain: o.trustDomain,
      log: o.log.child({ component: 'controller' }),
      registry: createRegistry({ build: { component: 'pilot', tag: ambitVersion() } }),
      agentServiceAccount: { namespace: AGENT_IDENTITY.namespace, serviceAccount: AGENT_IDENTITY.name },
      proxy: template,
    });
    this.kc = kc;

    // What the operator does with kubectl, the mesh does as the cluster admin.
    const admin = new KubeClient({ server: api.url, caPem: api.caCertPem, token: () => api.api.adminToken });
    this.objects = new ObjectsApi(admin);
    this.deployments = new Informer({ client: admin, path: '/apis/apps/v1/deployments', apiVersion: 'apps/v1', kind: 'Deployment', log: o.log, onEvent: () => undefined });
    await this.deployments.start();
    // Istio's ingress gateway, installed as its chart would be (scaled by the Istio Gateways there are).
    const ingress = new IngressGatewayInstall({ objects: this.objects, template, istioGateways: () => kc.source.liveObjects(REF_ISTIO_GATEWAY), log: o.log });
    this.ingress = ingress;
    await ingress.install();
    kc.source.on('live', (ref) => {
      if (ref === REF_ISTIO_GATEWAY) void ingress.reconcile();
    });

    // The Ambit CNI plugin chained after each node's network plugin, as its installer does on a
    // cluster (its own ambit-cni identity, a token bound to the node): the node runtime's CNI
    // chain hands each new pod to the node's agent, which holds an enrolled pod's traffic until
    // it is captured.
    const cniSockets = new Map<string, string>();
    for (const n of cluster.nodes) {
      const { token } = await api.token(CNI_IDENTITY, { node: n.name });
      const install = { dir: join(cluster.nodeDir(n.name), 'ambit-cni'), apiServer: api.url, caPem: api.caCertPem, token, logFile: join(o.stateDir, 'logs', `cni-${n.name}.log`), logLevel: 'info' as const };
      cniSockets.set(n.name, await installAmbitPlugin(cluster.cniPaths.get(n.name)!, install, o.repoRoot, process.execPath));
    }

    // Each agent talks to the API server as the agent service account (what daemonset/ grants it:
    // its node's pods, and their ambient.istio.io/redirection annotation), with a node-bound token.
    const agentKubeconfigs = new Map<string, string>();
    for (const n of cluster.nodes) {
      const { token } = await api.token(AGENT_IDENTITY, { node: n.name });
      const file = join(o.stateDir, 'tokens', `${n.name}.kubeconfig`);
      await writeFile(file, api.kubeconfigFor(token, AGENT_IDENTITY), { mode: 0o600 });
      agentKubeconfigs.set(n.name, file);
    }
    const agents = new AgentSupervisor({
      repoRoot: o.repoRoot,
      logDir: join(o.stateDir, 'logs'),
      cgroupDir: cluster.cgroupDir,
      log: o.log,
      env: (n) => ({
        ...process.env,
        AMBIT_NODE_NAME: n.name,
        AMBIT_CONTROLLER_ADDR: `${plan.bridgeIp}:${CONTROLLER_PORT}`,
        AMBIT_CA_ROOT_FILE: join(o.stateDir, 'root-cert.pem'),
        AMBIT_TOKEN_FILE: join(o.stateDir, 'tokens', n.name),
        AMBIT_KUBECONFIG: agentKubeconfigs.get(n.name)!,
        AMBIT_CNI_SOCKET: cniSockets.get(n.name)!,
        AMBIT_CAPTURE: o.capture,
        AMBIT_CGROUP_PATH: cluster.cgroupDir,
        AMBIT_PIN_DIR: `/sys/fs/bpf/${o.prefix}-${n.name}`,
        AMBIT_METRICS_ADDR: `${n.ip}:15020`,
        AMBIT_READY_ADDR: `${n.ip}:15021`,
        AMBIT_ADMIN_ADDR: '127.0.0.1:15000',
        AMBIT_TRUST_DOMAIN: o.trustDomain,
        AMBIT_LOG_LEVEL: o.logLevel,
        // The DNS proxy forwards what it does not answer to the cluster DNS, as an agent on a
        // cluster does through its node's resolv.conf.
        AMBIT_DNS_UPSTREAMS: `${plan.bridgeIp}:${CLUSTER_DNS_PORT}`,
      }),
    });
    this.agents = agents;
    agents.start(cluster.nodes);
    await waitForCniSockets([...cniSockets.values()], AGENT_SOCKET_WAIT_MS, o.log);
    // The agents as the API shows them: mirror pods, Ready while connected (Prometheus finds them).
    const agentPods = new AgentPods({ client: admin, nodes: cluster.nodes, state: (node) => ({ running: agents.pids().get(node) !== undefined, ready: kc.controller.agentConnected(node) }), log: o.log });
    this.agentPods = agentPods;
    await agentPods.sync();
    this.agentPodsTimer = setInterval(() => void agentPods.sync(), AGENT_POD_SYNC_MS);
    this.agentPodsTimer.unref();
  }

  /**
   * Restarts node `name`'s agent (tests of agent restarts, the bench); resolves once the new one
   * runs. `workers` sets its AMBIT_WORKERS from now on (null: back to the default).
   */
  async restartAgent(name: string, opts: { workers?: number | null } = {}): Promise<void> {
    if (!this.agents) throw new AmbitError('AMBIT_ERR_LOCAL_NOT_RUNNING', 'local mesh is not running');
    await this.agents.restart(name, opts);
  }

  /** The controller in Kubernetes mode (its source, leader election, status writer, owned workloads). */
  get kubernetesController(): KubernetesController {
    if (!this.kc) throw new AmbitError('AMBIT_ERR_LOCAL_NOT_RUNNING', 'local mesh is not running');
    return this.kc;
  }

  get controlPlane(): Controller {
    return this.kubernetesController.controller;
  }

  private get api(): ObjectsApi {
    if (!this.objects) throw new AmbitError('AMBIT_ERR_LOCAL_NOT_RUNNING', 'local mesh is not running');
    return this.objects;
  }

  /**
   * Writes the objects to the API server (server-side apply, as `kubectl apply --server-side`),
   * then waits until the controller has them and the mesh settled: Deployments rolled out, pods
   * ready, enrolled pods captured, agents acknowledged.
   */
  async apply(objects: KubeObject[], timeoutMs = 90_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    this.checkNodeNames(objects);
    const written = await this.api.apply(objects);
    await this.waitFed(written, false, deadline);
    await this.ingress?.reconcile();
    await this.settle(deadline, timeoutMs);
    return written.map((o) => `${o.kind}/${keyOf(o)}`);
  }

  /**
   * Refuses, before anything is applied, a Pod or Deployment template whose spec.nodeName names a
   * node this mesh does not have: such a pod could never run. (Written with kubectl anyway, it is
   * reported NodeNotFound by the pod garbage collector and holds nothing up.)
   */
  private checkNodeNames(objects: KubeObject[]): void {
    const issues = new Issues();
    const names = (this.cluster?.nodes ?? []).map((n) => n.name);
    for (const o of objects) {
      const spec = rec(o.spec);
      const [field, nodeName] = o.kind === 'Pod' ? ['spec.nodeName', spec.nodeName] : o.kind === 'Deployment' ? ['spec.template.spec.nodeName', rec(rec(spec.template).spec).nodeName] : [];
      if (field === undefined || nodeName === undefined || nodeName === '') continue;
      if (typeof nodeName !== 'string' || !names.includes(nodeName)) {
        issues.add(`${o.kind} ${keyOf(o)}: ${field}`, `no such node in this mesh (nodes: ${names.join(', ')})`, nodeName);
      }
    }
    issues.throwIfAny('AMBIT_ERR_MANIFEST_INVALID', 'objects refused, nothing applied');
  }

  /** Deletes the objects from the API server (dependents in the background) and waits until the mesh settled. */
  async delete(objects: KubeObject[], timeoutMs = 60_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    const deleted = await this.api.delete(objects);
    await this.waitFed(deleted, true, deadline);
    await this.ingress?.reconcile();
    await this.settle(deadline, timeoutMs);
    return deleted.map((o) => objectKey(o));
  }

  /** Waits until the controller's store holds what was written (or no longer holds what was deleted). */
  private async waitFed(objs: KubeObject[], gone: boolean, deadline: number): Promise<void> {
    // Pods leave the API server only once their node stopped them: settle() waits for those.
    const watched = gone ? objs.filter((o) => o.kind !== 'Pod') : objs;
    while (!watched.every((o) => this.caughtUp(o, gone))) {
      if (Date.now() > deadline) throw new AmbitError('AMBIT_ERR_LOCAL_TIMEOUT', 'the controller did not receive the written objects in time; is the local API server overloaded?');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Whether the controller's source saw `o` at the resourceVersion written (or saw it go) and put
   * it in the store. Objects of kinds the controller does not watch (Deployments, Secrets other
   * than TLS ones, ConfigMaps other than the mesh config) are not waited for.
   */
  private caughtUp(o: KubeObject, gone: boolean): boolean {
    const source = this.kubernetesController.source;
    const ref = kindRef(o);
    if (!source.watchedKinds().includes(ref)) return true;
    if (ref === 'Secret' && o['type'] !== 'kubernetes.io/tls') return true;
    if (ref === 'ConfigMap' && o.metadata.name !== 'istio') return true;
    const key = objectKey(o);
    if (source.isPending(key)) return false;
    const live = source.live(key);
    if (gone) return live === undefined;
    return live !== undefined && Number(live.metadata.resourceVersion ?? '0') >= Number(o.metadata.resourceVersion ?? '0');
  }

  private async settle(deadline: number, timeoutMs: number): Promise<void> {
    for (;;) {
      const pending = this.pendingReasons();
      if (pending.length === 0) {
        await this.controlPlane.waitForSync(this.agents?.count ?? 0, Math.max(1000, deadline - Date.now()));
        if (this.pendingReasons().length === 0) return;
      }
      if (Date.now() > deadline) {
        throw new AmbitError('AMBIT_ERR_LOCAL_TIMEOUT', `local mesh did not settle within ${timeoutMs} ms: ${pending.slice(0, 5).join('; ')}`);
      }
      await new Promise((r) => setTimeout(r, SETTLE_POLL_MS));
    }
  }

  /** What still keeps the mesh from being settled; empty when it is. */
  private pendingReasons(): string[] {
    const reasons: string[] = [];
    const cp = this.controlPlane;
    for (const d of this.deployments?.list() ?? []) {
      const spec = rec(d.spec);
      const st = rec(d.status);
      const want = typeof spec.replicas === 'number' ? spec.replicas : 1;
      const n = (k: string): number => (typeof st[k] === 'number' ? (st[k] as number) : 0);
      if (d.metadata.deletionTimestamp !== undefined) reasons.push(`deployment ${keyOf(d)} being deleted`);
      else if (n('observedGeneration') < (d.metadata.generation ?? 1) || n('updatedReplicas') < want || n('readyReplicas') < want || n('replicas') > want) {
        reasons.push(`deployment ${keyOf(d)}: ${n('readyReplicas')} of ${want} ready`);
      }
    }
    const pods = cp.store.list('Pod');
    const inStore = new Set(pods.map(keyOf));
    for (const p of pods) {
      const key = keyOf(p);
      const st = rec(p.status);
      if (p.metadata.deletionTimestamp !== undefined) reasons.push(`pod ${key} still terminating`);
      else if (st.reason === NODE_NOT_FOUND || st.phase === 'Succeeded' || st.phase === 'Failed') continue;
      else if (!rec(p.spec).nodeName) reasons.push(`pod ${key} not scheduled`);
      else if (!isPodReady(p)) {
        const waiting = this.nodePods().find((v) => `${v.namespace}/${v.name}` === key)?.waiting;
        reasons.push(`pod ${key} not ready${waiting ? ` (${waiting})` : ''}`);
      }
    }
    reasons.push(...this.gatewayWorkloadReasons());
    for (const v of this.nodePods()) if (v.phase === 'Terminating' || !inStore.has(`${v.namespace}/${v.name}`)) reasons.push(`pod ${v.namespace}/${v.name} still terminating`);
    const capture = cp.captureStatus();
    for (const w of cp.enrolledWorkloads()) {
      const st = capture.get(w.uid);
      if (!st?.captured) reasons.push(`pod ${w.namespace}/${w.name} not captured yet${st?.message ? ` (${st.message})` : ''}`);
    }
    for (const n of this.cluster?.nodes ?? []) if (!cp.agentConnected(n.name)) reasons.push(`agent on ${n.name} not connected`);
    return reasons;
  }

  /**
   * Gateway workloads not there yet: a Deployment each waypoint or gateway Gateway asks the
   * controller for, the ingress gateway scaled for the Istio Gateways, and no Deployment left of
   * a Gateway that is gone.
   */
  private gatewayWorkloadReasons(): string[] {
    const reasons: string[] = [];
    const kc = this.kubernetesController;
    const deployments = new Map((this.deployments?.list() ?? []).map((d) => [keyOf(d), d]));
    const gateways = kc.source.liveObjects(REF_GATEWAY_API_GATEWAY).filter((g) => g.metadata.deletionTimestamp === undefined);
    const uids = new Set(gateways.map((g) => g.metadata.uid));
    for (const gw of gateways) {
      const role = gatewayRole(gw);
      if (!role) continue;
      const key = `${nsOf(gw)}/${ownedName(gw, role)}`;
      const conflict = kc.owned.stateOf(gw)?.conflict;
      if (!deployments.has(key) && !conflict) reasons.push(`deployment ${key} of Gateway ${keyOf(gw)} not created`);
    }
    for (const [key, d] of deployments) {
      const owner = (d.metadata.ownerReferences ?? []).find((r) => r.controller === true && r.kind === 'Gateway');
      if (owner && !uids.has(owner.uid)) reasons.push(`deployment ${key} of a deleted Gateway still there`);
    }
    const want = this.ingress?.wantedReplicas;
    const ingress = deployments.get(IngressGatewayInstall.key);
    if (want !== undefined && ingress && rec(ingress.spec).replicas !== want) reasons.push(`deployment ${IngressGatewayInstall.key} not scaled to ${want} yet`);
    return reasons;
  }

  private nodePods(): Array<ReturnType<LocalCluster['runtimes'][number]['pods']>[number] & { node: string }> {
    return (this.cluster?.runtimes ?? []).flatMap((r) => r.pods().map((p) => ({ ...p, node: r.name })));
  }

  /** Runs `argv` inside pod `ns/name` (its netns, the mesh cgroup, its hosts file), with stdio passed through. */
  podExecTarget(namespace: string, name: string): { netns: string; cgroupProcs: string; env: Record<string, string> } {
    const v = this.nodePods().find((p) => p.namespace === namespace && p.name === name && p.netns !== undefined);
    if (!v || !v.netns || !v.ip) throw new AmbitError('AMBIT_ERR_LOCAL_POD_NOT_FOUND', `no running pod ${namespace}/${name} in the local mesh; see \`ambit local status\``);
    return {
      netns: v.netns,
      cgroupProcs: join(this.cluster!.cgroupDir, 'cgroup.procs'),
      env: { POD_NAME: name, POD_NAMESPACE: namespace, POD_IP: v.ip, NODE_NAME: v.node },
    };
  }

  status(): LocalStatus {
    const cp = this.controlPlane;
    const cluster = this.cluster!;
    const capture = cp.captureStatus();
    const enrolled = new Map(cp.enrolledWorkloads().map((w) => [`${w.namespace}/${w.name}`, w.uid]));
    const pods: PodStatus[] = this.nodePods()
      .map((v) => {
        const key = `${v.namespace}/${v.name}`;
        const uid = enrolled.get(key);
        const st: WorkloadCaptureState | undefined = uid ? capture.get(uid) : undefined;
        return {
          namespace: v.namespace,
          name: v.name,
          node: v.node,
          ip: v.ip ?? '',
          netns: v.netns ?? '',
          phase: v.phase,
          ready: v.ready,
          enrolled: uid !== undefined,
          captured: st?.captured ?? false,
          captureMode: st?.mode ?? (uid ? 'pending' : 'none'),
          restarts: v.restarts,
          ...(v.waiting ? { waiting: v.waiting } : {}),
        };
      })
      .sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
    const pids = this.agents?.pids() ?? new Map<string, number | undefined>();
    return {
      prefix: this.opts.prefix,
      net: this.opts.net,
      controller: `${addressPlan(this.opts.net).bridgeIp}:${CONTROLLER_PORT}`,
      api: { url: cluster.api?.url ?? '', kubeconfig: cluster.kubeconfigPath },
      nodes: cluster.nodes.map((n) => ({
        name: n.name,
        ip: n.ip,
        netns: n.netns,
        ...(pids.get(n.name) !== undefined ? { agentPid: pids.get(n.name)! } : {}),
        metrics: `http://${n.ip}:15020/metrics`,
        ready: `http://${n.ip}:15021/healthz/ready`,
        connected: cp.agentConnected(n.name),
      })),
      pods,
      waypoints: pods.flatMap((p) => {
        const labels = cp.store.get('Pod', p.namespace, p.name)?.metadata.labels ?? {};
        const gateway = labels[LABEL_GATEWAY_NAME];
        return gateway && labels[LABEL_MANAGED] === MANAGED_WAYPOINT ? [{ namespace: p.namespace, gateway, pod: p.name, ip: p.ip, metrics: `http://${p.ip}:15020/metrics` }] : [];
      }),
      ingressGateways: this.ingressStatus(pods),
      ingressProblems: cp.gatewayProblems(),
      objectProblems: cp.objectProblems().map((c) => ({ object: c.objectKey, type: c.type, reason: c.reason, message: c.message })),
      services: cp.store.list('Service').map((s) => ({
        namespace: nsOf(s),
        name: s.metadata.name,
        clusterIP: String(s.spec?.clusterIP ?? ''),
        ports: ((s.spec?.ports ?? []) as Array<Record<string, unknown>>).map((p) => Number(p.port)),
      })),
      refusedFromApi: [...this.kubernetesController.source.invalid()].map(([object, v]) => ({ object, reason: v.issues.map(formatIssue).join('; ') })),
    };
  }

  /** Pods some Istio Gateway listens on, with a URL per port (pod IPs are routed from the root namespace). */
  private ingressStatus(pods: PodStatus[]): IngressGatewayStatus[] {
    const ports = this.controlPlane.gatewayPorts();
    return pods.flatMap((p) => {
      const listeners = ports.get(`${p.namespace}/${p.name}`);
      if (!listeners) return [];
      return [
        {
          namespace: p.namespace,
          pod: p.name,
          ip: p.ip,
          ready: p.ready,
          metrics: `http://${p.ip}:15020/metrics`,
          gateways: [...new Set(listeners.flatMap((l) => l.gateways))].sort(),
          listeners: listeners.map((l) => ({ port: l.port, protocol: l.protocol, hosts: l.hosts, url: `${({ HTTP: 'http', HTTPS: 'https', TCP: 'tcp', TLS: 'tls' } as const)[l.protocol]}://${p.ip}:${l.port}/` })),
        },
      ];
    });
  }

  /** Stops everything and removes every namespace, link, cgroup, pin and process the mesh made. */
  async down(): Promise<string[]> {
    if (this.agentPodsTimer) clearInterval(this.agentPodsTimer);
    await this.agentPods?.stop();
    await this.ingress?.stop();
    this.deployments?.stop();
    // Pods first: waypoints and the ingress gateway keep pooled tunnels open into the agents, and
    // an agent stopped before them waits out its drain deadline for those connections.
    await this.cluster?.stopNodes();
    await this.agents?.stop();
    await this.kc?.close();
    await this.cluster?.stop();
    return cleanupLeftovers(this.opts.prefix, this.opts.log, this.opts.stateDir);
  }
}

export { selects };
/** Where a mesh keeps its state (re-exported for the tests that read it next to LocalStatus). */
export { stateDirFor } from './plan.js';
