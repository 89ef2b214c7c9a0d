/**
 * A whole mesh on one machine: the controller, one agent per simulated node (a netns on a bridge),
 * and pods from ordinary manifests (each a netns running its containers as host processes).
 * Invariants: every resource made is named with the mesh prefix; reconcile() runs one at a time;
 * apply() returns only after pods are ready, enrolled pods are captured and every agent acked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AmbitError, errorMessage } from '../shared/errors.js';
import { Issues } from '../shared/validate.js';
import { AGENT_NODE_FLAGS } from '../agent/process-flags.js';
import type { Logger } from '../shared/log.js';
import type { KubeObject } from '../controller/objects.js';
import { Controller, type WorkloadCaptureState } from '../controller/controller.js';
import { generateToken, StaticTokenAuthenticator } from '../controller/callers.js';
import { podServiceAccount } from '../controller/translate/workloads.js';
import { cgroup2Root, createCgroup, removeCgroup } from './cgroup.js';
import { addPodNetwork, applyServiceRules, cleanupNetwork, createClusterNetwork, removePodNetwork, renderServiceRules, writePodDns } from './network.js';
import { addressPlan, cgroupName, CONTROLLER_PORT, pickNode, podIp, podNetnsName, serviceIp, type NodePlan } from './plan.js';
import { containersOf, PodProcesses } from './pods.js';
import { RAISE_NOFILE } from './exec.js';
import {
  ingressGatewayPod,
  isWaypointGateway,
  keyOf,
  NETNS_ANNOTATION,
  nsOf,
  podsForDeployment,
  renderHosts,
  selects,
  serviceRules,
  waypointPod,
  wantsIngressGateway,
  type PodAddress,
  type WaypointPodEnv,
} from './workloads.js';

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

interface PodRecord {
  key: string;
  uid: string;
  node: NodePlan;
  slot: number;
  netns: string;
  ip: string;
  specHash: string;
  procs: PodProcesses;
  ready: boolean;
  /** The pod's own controller credential (registered with `tokens`; file podTokenFile()). */
  token: string;
}

/** File of the daemon's admin token for the controller's /debug/* endpoints (0600, in the state dir). */
export const ADMIN_TOKEN_FILE = 'admin-token';

/** Where a pod's own controller credential is written (0600), as a kubelet projects a token. */
export function podTokenFile(stateDir: string, namespace: string, pod: string): string {
  return join(stateDir, 'tokens', 'pods', `${namespace}.${pod}`);
}

interface AgentRecord {
  node: NodePlan;
  child?: ChildProcess;
  pid?: number;
  restarts: number;
  stopping: boolean;
}

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
}

export interface LocalStatus {
  prefix: string;
  /** Address block of this mesh (`--net`). */
  net: number;
  controller: string;
  nodes: Array<{ name: string; ip: string; netns: string; agentPid?: number; metrics: string; ready: string; connected: boolean }>;
  pods: PodStatus[];
  services: Array<{ namespace: string; name: string; clusterIP: string; ports: number[] }>;
  /** Waypoint pods and where their metrics are scraped (reachable from the root namespace). */
  waypoints: Array<{ namespace: string; gateway: string; pod: string; ip: string; metrics: string }>;
  /** Ingress gateway pods, the ports they listen on and the URLs to reach them from the root namespace. */
  ingressGateways: IngressGatewayStatus[];
  /** Istio Gateway servers the ingress gateway cannot serve, and why (bad Secret, unsupported protocol...). */
  ingressProblems: string[];
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
  listeners: Array<{ port: number; protocol: 'HTTP' | 'HTTPS'; hosts: string[]; url: string }>;
}

/** Path of the pid file every mesh keeps so a crashed run's leftovers can be found. */
export function stateDirFor(prefix: string): string {
  return join('/run/ambit', prefix);
}

/** How often a settled mesh re-reads its pods' readiness in the background. */
const SETTLED_CHECK_MS = 2000;

export class LocalMesh {
  private readonly nodes: NodePlan[] = [];
  private readonly pods = new Map<string, PodRecord>();
  private readonly agents: AgentRecord[] = [];
  private cgroupDir = '';
  private cp: Controller | undefined;
  /** Node and pod credentials the controller accepts (pods' are added and removed with the pods). */
  private readonly tokens = new StaticTokenAuthenticator();
  /** Pods whose spec.nodeName names no node of this mesh (key → that name): Pending, never created. */
  private readonly unschedulable = new Map<string, string>();
  private serviceSlots = new Map<string, number>();
  private lastRules = '';
  private lastHosts = new Map<string, string>();
  private queue: Promise<void> = Promise.resolve();
  private statusTimer: NodeJS.Timeout | undefined;
  private lastBackgroundCheck = 0;
  private closed = false;

  private constructor(private readonly opts: LocalMeshOptions) {}

  /** Cleans leftovers of a previous run with the same prefix, then builds the mesh and starts agents. */
  static async start(opts: LocalMeshOptions): Promise<LocalMesh> {
    const mesh = new LocalMesh(opts);
    try {
      await cleanupLeftovers(opts.prefix, opts.log);
      await mesh.build();
      return mesh;
    } catch (err) {
      await mesh.down().catch(() => undefined);
      throw err;
    }
  }

  private async build(): Promise<void> {
    const o = this.opts;
    await mkdir(join(o.stateDir, 'logs'), { recursive: true });
    await mkdir(join(o.stateDir, 'tokens'), { recursive: true, mode: 0o700 });
    this.cgroupDir = await createCgroup(cgroupName(o.prefix));
    this.nodes.push(...(await createClusterNetwork(o.prefix, o.nodes, o.net)));
    await mkdir(join(o.stateDir, 'tokens', 'pods'), { recursive: true, mode: 0o700 });
    for (const n of this.nodes) {
      const token = generateToken();
      this.tokens.set(token, { kind: 'node', node: n.name });
      await writeFile(join(o.stateDir, 'tokens', n.name), token, { mode: 0o600 });
    }
    const adminToken = generateToken();
    await writeFile(join(o.stateDir, ADMIN_TOKEN_FILE), adminToken, { mode: 0o600 });
    this.cp = await Controller.start({
      stateDir: o.stateDir,
      host: addressPlan(o.net).bridgeIp,
      port: CONTROLLER_PORT,
      trustDomain: o.trustDomain,
      auth: { authenticator: this.tokens },
      adminToken,
      admin: { host: addressPlan(o.net).bridgeIp, port: 15014 },
      log: o.log.child({ component: 'controller' }),
    });
    this.cp.store.subscribe(() => this.schedule());
    for (const n of this.nodes) {
      const a: AgentRecord = { node: n, restarts: 0, stopping: false };
      this.agents.push(a);
      this.startAgent(a);
    }
    this.statusTimer = setInterval(() => this.backgroundTick(), 300);
    this.statusTimer.unref();
  }

  /**
   * Background readiness checks (container ports read from /proc): every 300 ms while something is
   * pending, every 2 s once the mesh is settled, as a kubelet probes a ready pod periodically.
   * Object changes and process exits reconcile at once, and `up`/`apply` poll on their own while
   * they wait; a settled mesh checked every 300 ms kept the daemon at ~4% of a core.
   */
  private backgroundTick(): void {
    const now = Date.now();
    if (now - this.lastBackgroundCheck < SETTLED_CHECK_MS && this.pendingReasons().length === 0) return;
    this.lastBackgroundCheck = now;
    this.schedule();
  }

  private startAgent(a: AgentRecord): void {
    const o = this.opts;
    const n = a.node;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      AMBIT_NODE_NAME: n.name,
      AMBIT_CONTROLLER_ADDR: `${addressPlan(this.opts.net).bridgeIp}:${CONTROLLER_PORT}`,
      AMBIT_CA_ROOT_FILE: join(o.stateDir, 'root-cert.pem'),
      AMBIT_TOKEN_FILE: join(o.stateDir, 'tokens', n.name),
      AMBIT_CAPTURE: o.capture,
      AMBIT_CGROUP_PATH: this.cgroupDir,
      AMBIT_PIN_DIR: `/sys/fs/bpf/${o.prefix}-${n.name}`,
      AMBIT_METRICS_ADDR: `${n.ip}:15020`,
      AMBIT_READY_ADDR: `${n.ip}:15021`,
      AMBIT_ADMIN_ADDR: '127.0.0.1:15000',
      AMBIT_TRUST_DOMAIN: o.trustDomain,
      AMBIT_LOG_LEVEL: o.logLevel,
    };
    const logFile = createWriteStream(join(o.stateDir, 'logs', `agent-${n.name}.log`), { flags: 'a' });
    // The agent joins the mesh cgroup (so the getsockopt hook sees its accepted sockets) and runs in
    // the node's netns; nsenter keeps the mount namespace, so bpffs and cgroup2 stay visible.
    const script = `${RAISE_NOFILE} echo $$ > "$1" && shift && exec nsenter --net="$@"`;
    const child = spawn(
      'sh',
      ['-c', script, 'sh', join(this.cgroupDir, 'cgroup.procs'), `/var/run/netns/${n.netns}`, process.execPath, ...AGENT_NODE_FLAGS, join(o.repoRoot, 'dist/src/agent/main.js')],
      { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    child.stdout?.pipe(logFile, { end: false });
    child.stderr?.pipe(logFile, { end: false });
    a.child = child;
    if (child.pid !== undefined) a.pid = child.pid;
    child.on('exit', (code, signal) => {
      delete a.child;
      delete a.pid;
      logFile.end();
      if (a.stopping || this.closed) return;
      o.log.warn({ node: n.name, code, signal }, 'agent exited; restarting');
      a.restarts++;
      setTimeout(() => this.startAgent(a), Math.min(5000, 250 * 2 ** Math.min(a.restarts, 4))).unref();
    });
  }

  /** Restarts node `name`'s agent (used by tests of agent restarts); resolves once the new one runs. */
  async restartAgent(name: string): Promise<void> {
    const a = this.agents.find((x) => x.node.name === name);
    if (!a) throw new AmbitError('AMBIT_ERR_LOCAL_POD_NOT_FOUND', `no node named ${JSON.stringify(name)}`);
    await this.stopAgent(a, 'SIGKILL');
    a.stopping = false;
    this.startAgent(a);
  }

  private stopAgent(a: AgentRecord, sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    a.stopping = true;
    const child = a.child;
    if (!child || a.pid === undefined) return Promise.resolve();
    const pid = a.pid;
    return new Promise((resolve) => {
      const kill = setTimeout(() => safeKill(pid, 'SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      safeKill(pid, sig);
    });
  }

  get controlPlane(): Controller {
    if (!this.cp) throw new AmbitError('AMBIT_ERR_LOCAL_NOT_RUNNING', 'local mesh is not running');
    return this.cp;
  }

  /**
   * Applies validated objects atomically (ClusterIPs assigned first), then waits until every pod is
   * ready, enrolled pods are captured and agents acknowledged the resulting config.
   */
  async apply(objects: KubeObject[], timeoutMs = 90_000): Promise<string[]> {
    const cp = this.controlPlane;
    this.checkNodeNames(objects);
    const admitted = objects.map((o) => this.admit(o));
    cp.store.apply(admitted);
    await this.settle(timeoutMs);
    return admitted.map((o) => `${o.kind}/${keyOf(o)}`);
  }

  async delete(objects: KubeObject[], timeoutMs = 60_000): Promise<string[]> {
    const cp = this.controlPlane;
    const deleted = cp.store.remove(objects);
    await this.settle(timeoutMs);
    return deleted;
  }

  /**
   * Refuses, before anything is applied, a Pod or Deployment template whose spec.nodeName names a
   * node this mesh does not have: such a pod could never run, and every later apply would wait for it.
   */
  private checkNodeNames(objects: KubeObject[]): void {
    const issues = new Issues();
    const names = this.nodes.map((n) => n.name);
    for (const o of objects) {
      const spec = (o.spec ?? {}) as Record<string, unknown>;
      const [field, nodeName] =
        o.kind === 'Pod' ? ['spec.nodeName', spec.nodeName] : o.kind === 'Deployment' ? ['spec.template.spec.nodeName', ((spec.template as { spec?: Record<string, unknown> } | undefined)?.spec ?? {}).nodeName] : [];
      if (field === undefined || nodeName === undefined || nodeName === '') continue;
      if (typeof nodeName !== 'string' || !names.includes(nodeName)) {
        issues.add(`${o.kind} ${keyOf(o)}: ${field}`, `no such node in this mesh (nodes: ${names.join(', ')})`, nodeName);
      }
    }
    issues.throwIfAny('AMBIT_ERR_MANIFEST_INVALID', 'objects refused, nothing applied');
  }

  /** Assigns a ClusterIP to a Service that has none (kept stable across re-applies). */
  private admit(o: KubeObject): KubeObject {
    if (o.kind !== 'Service') return o;
    const spec = { ...(o.spec ?? {}) };
    if (spec.clusterIP === 'None') return o;
    const key = keyOf(o);
    const existing = this.controlPlane.store.get('Service', nsOf(o), o.metadata.name);
    const prev = existing?.spec?.clusterIP;
    if (typeof spec.clusterIP === 'string' && spec.clusterIP !== '') return o;
    if (typeof prev === 'string' && prev !== '') spec.clusterIP = prev;
    else {
      let slot = this.serviceSlots.get(key);
      if (slot === undefined) {
        const used = new Set(this.serviceSlots.values());
        slot = 0;
        while (used.has(slot)) slot++;
        this.serviceSlots.set(key, slot);
      }
      spec.clusterIP = serviceIp(slot, this.opts.net);
    }
    return { ...o, spec };
  }

  private schedule(): void {
    if (this.closed) return;
    this.queue = this.queue.then(() => this.reconcile()).catch((err) => this.opts.log.error({ err: errorMessage(err) }, 'reconcile failed'));
  }

  private async settle(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    this.schedule();
    await this.queue;
    for (;;) {
      this.schedule();
      await this.queue;
      const pending = this.pendingReasons();
      if (pending.length === 0) {
        await this.controlPlane.waitForSync(this.agents.length, Math.max(1000, deadline - Date.now()));
        if (this.pendingReasons().length === 0) return;
      }
      if (Date.now() > deadline) {
        throw new AmbitError('AMBIT_ERR_LOCAL_TIMEOUT', `local mesh did not settle within ${timeoutMs} ms: ${pending.slice(0, 5).join('; ')}`);
      }
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  /** What still keeps the mesh from being settled; empty when it is. */
  private pendingReasons(): string[] {
    const reasons: string[] = [];
    const cp = this.controlPlane;
    const capture = cp.captureStatus();
    const want = new Set(cp.store.list('Pod').map(keyOf));
    for (const key of want) {
      if (this.unschedulable.has(key)) continue;
      const rec = this.pods.get(key);
      if (!rec) reasons.push(`pod ${key} not created`);
      else if (!rec.ready) reasons.push(`pod ${key} not ready`);
    }
    for (const rec of this.pods.values()) if (!want.has(rec.key)) reasons.push(`pod ${rec.key} still terminating`);
    for (const w of cp.enrolledWorkloads()) {
      const st = capture.get(w.uid);
      if (!st?.captured) reasons.push(`pod ${w.namespace}/${w.name} not captured yet${st?.message ? ` (${st.message})` : ''}`);
    }
    for (const a of this.agents) if (!cp.agentConnected(a.node.name)) reasons.push(`agent on ${a.node.name} not connected`);
    return reasons;
  }

  private async reconcile(): Promise<void> {
    if (this.closed || !this.cp) return;
    const store = this.cp.store;
    // 1. Deployments → Pods (a built-in ReplicaSet controller).
    const deployments = store.list('Deployment');
    const desiredOwned = new Map<string, KubeObject>();
    for (const d of deployments) for (const p of podsForDeployment(d)) desiredOwned.set(keyOf(p), p);
    // Waypoint Gateways → one waypoint pod each; Istio Gateways → the ingress gateway pod (a
    // built-in gateway deployment controller).
    const proxyEnv: WaypointPodEnv = {
      controllerAddr: `${addressPlan(this.opts.net).bridgeIp}:${CONTROLLER_PORT}`,
      caRootFile: join(this.opts.stateDir, 'root-cert.pem'),
      tokenFile: (namespace, pod) => podTokenFile(this.opts.stateDir, namespace, pod),
      trustDomain: this.opts.trustDomain,
      logLevel: this.opts.logLevel,
      nodes: this.nodes.map((n) => n.name),
    };
    const gateways = store.list('Gateway');
    const proxies = gateways.filter(isWaypointGateway).map((gw) => waypointPod(gw, proxyEnv));
    if (wantsIngressGateway(gateways)) proxies.push(ingressGatewayPod(proxyEnv));
    for (const p of proxies) desiredOwned.set(keyOf(p), p);
    const owned = store.list('Pod').filter((p) => (p.metadata.ownerReferences ?? []).some((r) => r.kind === 'ReplicaSet'));
    const stale = owned.filter((p) => !desiredOwned.has(keyOf(p)));
    const missing = [...desiredOwned.values()].filter((p) => !store.get('Pod', nsOf(p), p.metadata.name));
    if (stale.length > 0) store.remove(stale);
    if (missing.length > 0) store.apply(missing);

    // 2. Pods → netns + processes.
    const pods = store.list('Pod');
    const wanted = new Map(pods.map((p) => [keyOf(p), p]));
    for (const key of [...this.unschedulable.keys()]) if (!wanted.has(key)) this.unschedulable.delete(key);
    for (const [key, rec] of this.pods) {
      const p = wanted.get(key);
      if (!p || specHash(p) !== rec.specHash) await this.removePod(rec);
    }
    for (const p of pods) if (!this.pods.has(keyOf(p))) await this.createPod(p);

    // 3. Readiness → Pod status.
    for (const rec of this.pods.values()) {
      const ready = rec.procs.ready();
      const phase = rec.procs.phase();
      const p = store.get('Pod', rec.key.split('/')[0]!, rec.key.split('/')[1]!);
      if (!p) continue;
      const st = (p.status ?? {}) as Record<string, unknown>;
      const cur = (st.conditions as Array<Record<string, unknown>> | undefined)?.find((c) => c.type === 'Ready')?.status === 'True';
      if (cur !== ready || st.phase !== phase) store.setStatus('Pod', nsOf(p), p.metadata.name, podStatus(rec, phase, ready));
      rec.ready = ready && phase === 'Running';
    }

    // 4. Services → node rules and pod hosts files.
    const services = store.list('Service');
    const addrs: PodAddress[] = [...this.pods.values()].map((r) => ({ pod: wanted.get(r.key)!, ip: r.ip, ready: r.ready })).filter((a) => a.pod);
    const rules = serviceRules(services, addrs);
    const rendered = renderServiceRules(this.opts.prefix, rules);
    if (rendered !== this.lastRules) {
      for (const n of this.nodes) await applyServiceRules(this.opts.prefix, n, rules);
      this.lastRules = rendered;
    }
    for (const rec of this.pods.values()) {
      const [ns, name] = rec.key.split('/') as [string, string];
      const hosts = renderHosts({ name, namespace: ns, ip: rec.ip }, services);
      if (this.lastHosts.get(rec.key) !== hosts) {
        await writePodDns(rec.netns, hosts, ns);
        this.lastHosts.set(rec.key, hosts);
      }
    }
  }

  private async createPod(p: KubeObject): Promise<void> {
    const key = keyOf(p);
    const spec = (p.spec ?? {}) as Record<string, unknown>;
    let node: NodePlan | undefined;
    if (typeof spec.nodeName === 'string' && spec.nodeName !== '') {
      node = this.nodes.find((n) => n.name === spec.nodeName);
      if (!node) {
        // Only objects that bypassed apply's check get here: the pod stays Pending with the reason
        // in its status, and does not hold up anything else (pendingReasons skips it).
        if (this.unschedulable.get(key) !== spec.nodeName) {
          this.unschedulable.set(key, spec.nodeName);
          this.opts.log.warn({ pod: key, nodeName: spec.nodeName }, 'pod asks for an unknown node; it stays pending');
          this.cp!.store.setStatus('Pod', nsOf(p), p.metadata.name, {
            phase: 'Pending',
            conditions: [{ type: 'PodScheduled', status: 'False', reason: 'NodeNotFound', message: `node ${JSON.stringify(spec.nodeName)} does not exist in this mesh` }],
          });
        }
        return;
      }
      this.unschedulable.delete(key);
    } else {
      const counts = this.nodes.map((n) => [...this.pods.values()].filter((r) => r.node === n).length);
      node = this.nodes[pickNode(counts) - 1]!;
    }
    const used = new Set([...this.pods.values()].filter((r) => r.node === node).map((r) => r.slot));
    let slot = 0;
    while (used.has(slot)) slot++;
    const netns = podNetnsName(this.opts.prefix, node.index, slot);
    const addr = podIp(node.index, slot, this.opts.net);
    await addPodNetwork(node, this.opts.net, netns, slot, addr);
    await writePodDns(netns, renderHosts({ name: p.metadata.name, namespace: nsOf(p), ip: addr }, this.cp!.store.list('Service')), nsOf(p));
    const annotated: KubeObject = {
      ...p,
      metadata: { ...p.metadata, annotations: { ...(p.metadata.annotations ?? {}), [NETNS_ANNOTATION]: `/var/run/netns/${netns}` } },
      spec: { ...spec, nodeName: node.name },
    };
    const procs = new PodProcesses({
      key,
      netns,
      podIp: addr,
      nodeName: node.name,
      cgroupProcs: join(this.cgroupDir, 'cgroup.procs'),
      logDir: join(this.opts.stateDir, 'logs'),
      restartPolicy: (spec.restartPolicy as 'Always' | 'OnFailure' | 'Never' | undefined) ?? 'Always',
      containers: containersOf(annotated, addr, node.name),
      pathPrefix: [join(this.opts.repoRoot, 'node_modules/.bin'), join(this.opts.repoRoot, 'bin')],
      cwd: this.opts.cwd,
      log: this.opts.log.child({ component: 'kubelet' }),
      onChange: () => this.schedule(),
    });
    // Every pod gets a credential bound to it, as the kubelet projects a service-account token; the
    // waypoint and gateway pods authenticate to the controller with theirs, never a node's.
    const token = generateToken();
    await writeFile(podTokenFile(this.opts.stateDir, nsOf(p), p.metadata.name), token, { mode: 0o600 });
    this.tokens.set(token, { kind: 'pod', namespace: nsOf(p), pod: p.metadata.name, serviceAccount: podServiceAccount(p) });
    const rec: PodRecord = { key, uid: '', node, slot, netns, ip: addr, specHash: specHash(p), procs, ready: false, token };
    this.pods.set(key, rec);
    this.cp!.store.apply([{ ...annotated, status: podStatus(rec, 'Pending', false) }], { preserveStatus: false });
    procs.start();
  }

  private async removePod(rec: PodRecord): Promise<void> {
    this.pods.delete(rec.key);
    this.lastHosts.delete(rec.key);
    await rec.procs.stop();
    this.tokens.delete(rec.token);
    const [ns, name] = rec.key.split('/') as [string, string];
    await rm(podTokenFile(this.opts.stateDir, ns, name), { force: true });
    await removePodNetwork(rec.node, rec.netns, rec.slot);
  }

  /** Runs `argv` inside pod `ns/name` (its netns, the mesh cgroup, its hosts file), with stdio passed through. */
  podExecTarget(namespace: string, name: string): { netns: string; cgroupProcs: string; env: Record<string, string> } {
    const rec = this.pods.get(`${namespace}/${name}`);
    if (!rec) throw new AmbitError('AMBIT_ERR_LOCAL_POD_NOT_FOUND', `no pod ${namespace}/${name} in the local mesh; see \`ambit local status\``);
    return {
      netns: rec.netns,
      cgroupProcs: join(this.cgroupDir, 'cgroup.procs'),
      env: { POD_NAME: name, POD_NAMESPACE: namespace, POD_IP: rec.ip, NODE_NAME: rec.node.name },
    };
  }

  status(): LocalStatus {
    const cp = this.controlPlane;
    const capture = cp.captureStatus();
    const enrolled = new Map(cp.enrolledWorkloads().map((w) => [`${w.namespace}/${w.name}`, w.uid]));
    const pods: PodStatus[] = [...this.pods.values()]
      .map((r) => {
        const [namespace, name] = r.key.split('/') as [string, string];
        const uid = enrolled.get(r.key);
        const st: WorkloadCaptureState | undefined = uid ? capture.get(uid) : undefined;
        return {
          namespace,
          name,
          node: r.node.name,
          ip: r.ip,
          netns: r.netns,
          phase: r.procs.phase(),
          ready: r.ready,
          enrolled: uid !== undefined,
          captured: st?.captured ?? false,
          captureMode: st?.mode ?? (uid ? 'pending' : 'none'),
          restarts: r.procs.containers.reduce((s, c) => s + c.restarts, 0),
        };
      })
      .concat(
        [...this.unschedulable].map(([key, node]) => {
          const [namespace, name] = key.split('/') as [string, string];
          return { namespace, name, node, ip: '', netns: '', phase: 'Pending', ready: false, enrolled: false, captured: false, captureMode: 'none', restarts: 0 };
        }),
      )
      .sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
    return {
      prefix: this.opts.prefix,
      net: this.opts.net,
      controller: `${addressPlan(this.opts.net).bridgeIp}:${CONTROLLER_PORT}`,
      nodes: this.agents.map((a) => ({
        name: a.node.name,
        ip: a.node.ip,
        netns: a.node.netns,
        ...(a.pid !== undefined ? { agentPid: a.pid } : {}),
        metrics: `http://${a.node.ip}:15020/metrics`,
        ready: `http://${a.node.ip}:15021/healthz/ready`,
        connected: cp.agentConnected(a.node.name),
      })),
      pods,
      waypoints: pods.flatMap((p) => {
        const gateway = cp.store.get('Pod', p.namespace, p.name)?.metadata.labels?.['gateway.networking.k8s.io/gateway-name'];
        return gateway ? [{ namespace: p.namespace, gateway, pod: p.name, ip: p.ip, metrics: `http://${p.ip}:15020/metrics` }] : [];
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
          listeners: listeners.map((l) => ({ port: l.port, protocol: l.protocol, hosts: l.hosts, url: `${l.protocol === 'HTTPS' ? 'https' : 'http'}://${p.ip}:${l.port}/` })),
        },
      ];
    });
  }

  /** Stops everything and removes every namespace, link, cgroup, pin and process the mesh made. */
  async down(): Promise<string[]> {
    this.closed = true;
    if (this.statusTimer) clearInterval(this.statusTimer);
    await this.queue.catch(() => undefined);
    // Pods first: waypoints and the ingress gateway keep pooled tunnels open into the agents, and
    // an agent stopped before them waits out its drain deadline for those connections.
    await Promise.all([...this.pods.values()].map((r) => r.procs.stop()));
    this.pods.clear();
    await Promise.all(this.agents.map((a) => this.stopAgent(a)));
    await this.cp?.close();
    return cleanupLeftovers(this.opts.prefix, this.opts.log);
  }
}

function specHash(p: KubeObject): string {
  const spec = { ...(p.spec ?? {}) } as Record<string, unknown>;
  delete spec.nodeName;
  return JSON.stringify(spec.containers ?? []);
}

function podStatus(rec: PodRecord, phase: string, ready: boolean): Record<string, unknown> {
  return {
    phase,
    podIP: rec.ip,
    podIPs: [{ ip: rec.ip }],
    hostIP: rec.node.ip,
    conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
  };
}

function safeKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // gone already
    }
  }
}

/**
 * Removes what a mesh with this prefix may have left: processes in its cgroup, netns, links,
 * /etc/netns folders, bpffs pins and the cgroup itself. Safe to run when nothing is left.
 */
export async function cleanupLeftovers(prefix: string, log?: Logger): Promise<string[]> {
  const removed: string[] = [];
  let cgroupDir: string | undefined;
  try {
    cgroupDir = join(cgroup2Root(), cgroupName(prefix));
  } catch {
    cgroupDir = undefined;
  }
  if (cgroupDir && existsSync(cgroupDir)) {
    const procs = (await readFile(join(cgroupDir, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
    if (procs.length > 0) {
      if (existsSync(join(cgroupDir, 'cgroup.kill'))) await writeFile(join(cgroupDir, 'cgroup.kill'), '1').catch(() => undefined);
      for (const pid of procs) safeKill(Number(pid), 'SIGKILL');
      removed.push(`${procs.length} process(es)`);
      for (let i = 0; i < 50; i++) {
        const left = (await readFile(join(cgroupDir, 'cgroup.procs'), 'utf8').catch(() => '')).trim();
        if (!left) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  removed.push(...(await cleanupNetwork(prefix)));
  if (existsSync('/sys/fs/bpf')) {
    for (const name of await readdir('/sys/fs/bpf').catch(() => [] as string[])) {
      if (name.startsWith(`${prefix}-`)) {
        await rm(join('/sys/fs/bpf', name), { recursive: true, force: true });
        removed.push(`pin ${name}`);
      }
    }
  }
  if (cgroupDir && existsSync(cgroupDir)) {
    await removeCgroup(cgroupDir);
    removed.push(`cgroup ${cgroupDir}`);
  }
  if (removed.length > 0) log?.info({ removed }, 'removed leftovers');
  return removed;
}

export { selects };
