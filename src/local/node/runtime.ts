/**
 * The node runtime of one local node: the kubelet and the container runtime in one. It watches
 * the pods bound to its node (as its node's identity: a token of kube-system/ambit-local-node
 * bound to its Node object), and for each: makes the sandbox (netns + the node's CNI chain), the
 * hosts file, the volumes (projected tokens through TokenRequest bound to the pod), starts the
 * containers with their user and capabilities, writes the pod's status (IP, phase, conditions,
 * readiness), restarts containers per restartPolicy, renews tokens, and when the pod is deleted
 * stops the containers, tears the network down through CNI DEL and deletes the pod with grace 0.
 * It also registers the Node's status (Ready, addresses, capacity).
 *
 * Invariants: one pass per pod at a time (a per-pod chain); a pod's sandbox is removed exactly
 * once; a failed step (the Ambit plugin refusing while the agent is away, a ConfigMap not there
 * yet) is retried with capped backoff and shown in the pod's status meanwhile.
 */
import { mkdir, rm } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeObject } from '../../controller/objects.js';
import { ANNOTATION_NETNS } from '../../controller/translate/workloads.js';
import { NETNS_DIR, writePodDns } from '../network.js';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { Informer, isNotFound, type KubeClient } from '../kube-client.js';
import type { NodePlan } from '../plan.js';
import { renderHosts, renderResolvConf } from '../workloads.js';
import { nsName, rec } from '../controllers/queue.js';
import { CniChain } from './cni-chain.js';
import { PodProcesses } from './containers.js';
import type { MountPoints } from './mountpoints.js';
import { buildPodStatus, statusKey, withTransitionTimes, type PodRuntimeState } from './pod-status.js';
import { containerSpecs, podSysctls } from './pod-spec.js';
import { createSandbox, removeSandbox, sandboxNetnsName, type Sandbox } from './sandbox.js';
import { apiVolumeSources, prepareVolumes, removeVolumes, type PreparedVolume, type VolumeSources } from './volumes.js';

/** Pods a node runtime leaves alone: mirror pods of components local mode runs itself (the agents). */
export const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

/** How often readiness is re-read while a pod is not ready, and once everything is. */
const PENDING_CHECK_MS = 300;
const SETTLED_CHECK_MS = 2000;

export interface NodeRuntimeOptions {
  node: NodePlan;
  prefix: string;
  /** The node's own client (kube-system/ambit-local-node, bound to its Node). */
  client: KubeClient;
  /** The node's folder (pods' volumes, CNI state). */
  dir: string;
  cniConfDir: string;
  cniBinDir: string;
  cgroupProcs: string;
  logDir: string;
  cwd: string;
  pathPrefix: string[];
  apiService: { host: string; port: number };
  mountPoints: MountPoints;
  /** What a ClusterFirst pod's resolv.conf names: the kube-dns ClusterIP and the cluster domain. */
  dns: { nameserver: string; domain: string };
  log: Logger;
  /** Something about a pod changed (for settling `up`/`apply`). */
  onChange?: () => void;
}

interface PodWorker {
  key: string;
  uid: string;
  pod: KubeObject;
  sandbox?: Sandbox;
  volumes?: Map<string, PreparedVolume>;
  procs?: PodProcesses;
  waiting?: { reason: string; message: string };
  startTime?: string;
  retryAt: number;
  failures: number;
  refreshAt?: number;
  lastStatus?: string;
  terminating: boolean;
  gone: boolean;
  chain: Promise<void>;
}

/** What `ambit local status` and `exec` need of a pod on this node. */
export interface NodePodView {
  namespace: string;
  name: string;
  uid: string;
  ip?: string;
  netns?: string;
  ready: boolean;
  phase: string;
  restarts: number;
  pid?: number;
  waiting?: string;
}

function isoNow(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export class NodeRuntime {
  private readonly workers = new Map<string, PodWorker>();
  private readonly informer: Informer;
  private readonly chain: CniChain;
  private readonly sources: VolumeSources;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private lastSettledCheck = 0;
  private closed = false;

  constructor(private readonly opts: NodeRuntimeOptions) {
    this.log = opts.log.child({ component: 'node', node: opts.node.name });
    this.chain = new CniChain({ confDir: opts.cniConfDir, binDir: opts.cniBinDir });
    this.sources = apiVolumeSources(opts.client);
    this.informer = new Informer({
      client: opts.client,
      path: '/api/v1/pods',
      apiVersion: 'v1',
      kind: 'Pod',
      fieldSelector: `spec.nodeName=${opts.node.name}`,
      log: this.log,
      onEvent: (type, pod) => this.onPod(type, pod),
    });
  }

  get name(): string {
    return this.opts.node.name;
  }

  async start(): Promise<void> {
    await mkdir(join(this.opts.dir, 'pods'), { recursive: true, mode: 0o700 });
    await this.writeNodeStatus();
    await this.informer.start();
    this.timer = setInterval(() => this.tick(), PENDING_CHECK_MS);
  }

  private async writeNodeStatus(): Promise<void> {
    const n = this.opts.node;
    const now = isoNow();
    const ready = { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status', lastHeartbeatTime: now, lastTransitionTime: now };
    const pressure = (type: string, reason: string) => ({ type, status: 'False', reason, message: `local node has no ${type}`, lastHeartbeatTime: now, lastTransitionTime: now });
    const capacity = { cpu: '2', memory: '4Gi', pods: '250', 'ephemeral-storage': '10Gi' };
    await this.opts.client.mergePatch(`/api/v1/nodes/${encodeURIComponent(n.name)}/status`, {
      status: {
        conditions: [pressure('MemoryPressure', 'KubeletHasSufficientMemory'), pressure('DiskPressure', 'KubeletHasNoDiskPressure'), pressure('PIDPressure', 'KubeletHasSufficientPID'), ready],
        addresses: [
          { type: 'InternalIP', address: n.ip },
          { type: 'Hostname', address: n.name },
        ],
        capacity,
        allocatable: capacity,
        daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
        nodeInfo: {
          machineID: '',
          systemUUID: '',
          bootID: '',
          kernelVersion: '',
          osImage: 'ambit local node',
          containerRuntimeVersion: 'ambit-local://0.1.0',
          kubeletVersion: 'v1.32.0',
          kubeProxyVersion: 'v1.32.0',
          operatingSystem: 'linux',
          architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        },
      },
    });
  }

  private onPod(type: 'add' | 'update' | 'delete', pod: KubeObject): void {
    if (pod.metadata.annotations?.[MIRROR_ANNOTATION] !== undefined) return;
    const key = nsName(pod);
    let w = this.workers.get(key);
    if (w && w.uid !== pod.metadata.uid) {
      // A new pod of the same name: the old one is gone.
      w.gone = true;
      this.run(w);
      w = undefined;
    }
    if (!w) {
      if (type === 'delete') return;
      w = { key, uid: pod.metadata.uid ?? '', pod, retryAt: 0, failures: 0, terminating: false, gone: false, chain: Promise.resolve() };
      this.workers.set(key, w);
    }
    w.pod = pod;
    if (type === 'delete') w.gone = true;
    this.run(w);
  }

  /** Queues one pass for `w`. */
  private run(w: PodWorker): void {
    w.chain = w.chain.then(() => this.sync(w)).catch((e) => this.log.error({ pod: w.key, err: e }, 'pod sync failed'));
  }

  private tick(): void {
    if (this.closed) return;
    const now = Date.now();
    let pending = false;
    for (const w of this.workers.values()) {
      if (w.terminating || w.gone) continue;
      if (w.waiting || !w.procs?.ready()) pending = true;
      if ((w.waiting && now >= w.retryAt) || (w.refreshAt !== undefined && now >= w.refreshAt)) this.run(w);
    }
    // Readiness is read from /proc: often while something is pending, every 2 s once settled.
    if (!pending && now - this.lastSettledCheck < SETTLED_CHECK_MS) return;
    this.lastSettledCheck = now;
    for (const w of this.workers.values()) if (w.procs && !w.terminating && !w.gone) this.run(w);
  }

  private podDir(w: PodWorker): string {
    return join(this.opts.dir, 'pods', w.uid);
  }

  private fail(w: PodWorker, reason: string, e: unknown): void {
    const message = errorMessage(e);
    if (w.waiting?.message !== message) this.log.warn({ pod: w.key, reason, err: e }, 'pod cannot start yet; retrying');
    w.waiting = { reason, message };
    w.failures++;
    w.retryAt = Date.now() + Math.min(10_000, 250 * 2 ** Math.min(w.failures, 6));
  }

  private async sync(w: PodWorker): Promise<void> {
    if (this.closed && !w.gone) return;
    if (w.gone || w.pod.metadata.deletionTimestamp !== undefined) return this.terminate(w);
    const spec = rec(w.pod.spec);
    const hostNetwork = spec['hostNetwork'] === true;
    if (!w.sandbox && Date.now() >= w.retryAt) {
      try {
        w.sandbox = hostNetwork ? this.hostSandbox() : await createSandbox(w.pod, sandboxNetnsName(this.opts.prefix, this.opts.node.index, w.uid), this.chain, podSysctls(w.pod));
        w.startTime ??= isoNow();
        if (!hostNetwork) await this.writeDnsFiles(w.pod, w.sandbox);
        delete w.waiting;
        w.failures = 0;
      } catch (e) {
        this.fail(w, 'FailedCreatePodSandBox', e);
      }
    }
    if (w.sandbox && !w.procs && Date.now() >= w.retryAt) {
      try {
        await this.startContainers(w, w.sandbox);
        delete w.waiting;
        w.failures = 0;
      } catch (e) {
        this.fail(w, e instanceof AmbitError && /not found|no key/.test(e.message) ? 'CreateContainerConfigError' : 'CreateContainerError', e);
      }
    }
    if (w.procs && w.refreshAt !== undefined && Date.now() >= w.refreshAt) await this.refreshVolumes(w);
    await this.writeStatus(w);
  }

  /** The pod's hosts file and resolv.conf, as the kubelet writes them for dnsPolicy ClusterFirst. */
  private async writeDnsFiles(pod: KubeObject, sandbox: Sandbox): Promise<void> {
    const spec = rec(pod.spec);
    const namespace = pod.metadata.namespace ?? 'default';
    const { nameserver, domain } = this.opts.dns;
    const hosts = renderHosts(
      {
        name: pod.metadata.name,
        namespace,
        ip: sandbox.podIp,
        ...(typeof spec['hostname'] === 'string' ? { hostname: spec['hostname'] } : {}),
        ...(typeof spec['subdomain'] === 'string' ? { subdomain: spec['subdomain'] } : {}),
      },
      domain,
    );
    await writePodDns(sandbox.netns, hosts, renderResolvConf(namespace, nameserver, domain));
  }

  /** hostNetwork pods share the node's namespace: no CNI, the node's address. */
  private hostSandbox(): Sandbox {
    const n = this.opts.node;
    return { id: 'host', netns: n.netns, podIp: n.ip, result: {}, runtime: { containerId: 'host', netns: '', ifname: '', args: {} } };
  }

  private async startContainers(w: PodWorker, sandbox: Sandbox): Promise<void> {
    const dir = this.podDir(w);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const volumes = await prepareVolumes(w.pod, dir, this.sources);
    const specs = await containerSpecs(w.pod, { podIp: sandbox.podIp, hostIp: this.opts.node.ip, volumes, sources: this.sources, pathPrefix: this.opts.pathPrefix, apiService: this.opts.apiService });
    for (const c of specs) {
      for (const m of c.mounts) {
        let file = false;
        try {
          file = !statSync(m.source).isDirectory();
        } catch {
          throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `pod ${w.key} container ${c.name}: volume source ${m.source} does not exist`);
        }
        await this.opts.mountPoints.ensure(m.target, file);
      }
    }
    w.volumes = volumes;
    w.refreshAt = Math.min(...[...volumes.values()].map((v) => v.refreshAt ?? Infinity));
    if (!Number.isFinite(w.refreshAt)) delete w.refreshAt;
    const policy = String(rec(w.pod.spec).restartPolicy ?? 'Always') as 'Always' | 'OnFailure' | 'Never';
    w.procs = new PodProcesses({
      key: w.key,
      netns: sandbox.netns,
      cgroupProcs: this.opts.cgroupProcs,
      logDir: this.opts.logDir,
      restartPolicy: policy,
      containers: specs,
      cwd: this.opts.cwd,
      log: this.log,
      onChange: () => {
        this.run(w);
        this.opts.onChange?.();
      },
    });
    w.procs.start();
    this.log.info({ pod: w.key, ip: sandbox.podIp, netns: sandbox.netns }, 'pod started');
  }

  /** Renews the pod's projected tokens (and re-reads its other volume data). */
  private async refreshVolumes(w: PodWorker): Promise<void> {
    try {
      const volumes = await prepareVolumes(w.pod, this.podDir(w), this.sources);
      w.refreshAt = Math.min(...[...volumes.values()].map((v) => v.refreshAt ?? Infinity));
      if (!Number.isFinite(w.refreshAt)) delete w.refreshAt;
    } catch (e) {
      this.log.warn({ pod: w.key, err: e }, 'cannot renew the pod\'s volumes; retrying');
      w.refreshAt = Date.now() + 10_000;
    }
  }

  private runtimeState(w: PodWorker): PodRuntimeState {
    const procs = w.procs;
    return {
      ...(w.waiting ? { waiting: w.waiting } : {}),
      sandboxReady: w.sandbox !== undefined,
      ...(w.sandbox ? { podIp: w.sandbox.podIp } : {}),
      hostIp: this.opts.node.ip,
      ...(w.startTime ? { startTime: w.startTime } : {}),
      phase: procs ? procs.phase() : 'Pending',
      containers: (procs?.containers ?? []).map((c) => ({
        name: c.spec.name,
        running: c.pid !== undefined,
        ready: procs!.containerReady(c),
        restarts: c.restarts,
        ...(c.startedAt ? { startedAt: c.startedAt } : {}),
        ...(c.finishedAt ? { finishedAt: c.finishedAt } : {}),
        ...(c.exitCode !== undefined ? { exitCode: c.exitCode } : {}),
        ...(c.last ? { last: c.last } : {}),
      })),
    };
  }

  private async writeStatus(w: PodWorker): Promise<void> {
    if (w.gone || w.terminating) return;
    const status = buildPodStatus(w.pod, this.runtimeState(w));
    const key = statusKey(status);
    if (key === w.lastStatus) return;
    try {
      const updated = await this.opts.client.mergePatch(`/api/v1/namespaces/${encodeURIComponent(w.pod.metadata.namespace ?? 'default')}/pods/${encodeURIComponent(w.pod.metadata.name)}/status`, {
        // Where the pod's netns is, for the controller to tell the node's agent (ambit.dev/netns).
        metadata: { uid: w.uid, ...(w.sandbox && w.sandbox.id !== 'host' ? { annotations: { [ANNOTATION_NETNS]: join(NETNS_DIR, w.sandbox.netns) } } : {}) },
        status: withTransitionTimes(status, w.pod.status, isoNow()),
      });
      w.lastStatus = key;
      if (updated.metadata.uid === w.uid) w.pod = { ...w.pod, status: updated.status ?? {} } as KubeObject;
      this.opts.onChange?.();
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /** Stops the containers, tears down the sandbox, removes volumes, and finishes the deletion (grace 0). */
  private async terminate(w: PodWorker): Promise<void> {
    if (w.terminating && !w.gone) return;
    if (!w.terminating) {
      w.terminating = true;
      const grace = rec(w.pod.metadata).deletionGracePeriodSeconds ?? rec(w.pod.spec).terminationGracePeriodSeconds ?? 30;
      await w.procs?.stop(Math.max(1, Math.min(Number(grace) || 0, 30)) * 1000);
      if (w.sandbox && w.sandbox.id !== 'host') {
        const problem = await removeSandbox(w.sandbox, this.chain);
        if (problem) this.log.warn({ pod: w.key, err: problem }, 'CNI DEL failed; the network namespace was removed anyway');
      }
      await removeVolumes(this.podDir(w));
      await rm(this.podDir(w), { recursive: true, force: true });
      this.log.info({ pod: w.key }, 'pod stopped');
    }
    if (!w.gone) {
      const ns = encodeURIComponent(w.pod.metadata.namespace ?? 'default');
      try {
        await this.opts.client.delete(`/api/v1/namespaces/${ns}/pods/${encodeURIComponent(w.pod.metadata.name)}`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid: w.uid } });
      } catch (e) {
        this.log.warn({ pod: w.key, err: e }, 'cannot finish the pod\'s deletion; the pod stays Terminating');
      }
    }
    if (this.workers.get(w.key) === w) this.workers.delete(w.key);
    this.opts.onChange?.();
  }

  /** The pods this node runs, for status. */
  pods(): NodePodView[] {
    return [...this.workers.values()]
      .filter((w) => !w.gone)
      .map((w) => {
        const procs = w.procs;
        return {
          namespace: w.pod.metadata.namespace ?? 'default',
          name: w.pod.metadata.name,
          uid: w.uid,
          ...(w.sandbox ? { ip: w.sandbox.podIp, netns: w.sandbox.netns } : {}),
          ready: procs !== undefined && !w.terminating && procs.ready() && procs.phase() === 'Running',
          phase: w.terminating ? 'Terminating' : procs ? procs.phase() : 'Pending',
          restarts: (procs?.containers ?? []).reduce((s, c) => s + c.restarts, 0),
          ...(procs?.anyPid() !== undefined ? { pid: procs.anyPid()! } : {}),
          ...(w.waiting ? { waiting: `${w.waiting.reason}: ${w.waiting.message}` } : {}),
        };
      });
  }

  /** Resolves when every pod pass queued so far has run. */
  async idle(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.chain));
  }

  /** Stops every pod (containers, CNI DEL, netns) without touching the API (the cluster goes away). */
  async stop(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.informer.stop();
    await Promise.all(
      [...this.workers.values()].map(async (w) => {
        w.gone = true;
        await w.chain.catch(() => undefined);
        await this.terminate(w).catch((e: unknown) => this.log.warn({ pod: w.key, err: e }, 'pod teardown failed'));
      }),
    );
  }
}
