/**
 * The agent's data path spread over worker threads (design decision 45): every worker serves
 * every enrolled pod with its own SO_REUSEPORT listeners (15001, 15006, 15008), so the kernel
 * picks a worker per new connection (also after capture's sk_lookup assigns the 15006 group one
 * member) and the connection, its tunnel and their sockets stay on that worker. The main thread
 * keeps the control plane (config stream, capture, CNI, certificates, admin) and drives the
 * workers over rpc.ts: config (a whole snapshot first, then what changed: config-delta.ts) and
 * enrolments go to every worker in the same order,
 * certificates are answered from the agent's CertManager, /metrics merges every worker's
 * counters into the agent registry's (prom-client's AggregatorRegistry: sums per label set, so
 * names and labels are the single-thread ones).
 * Invariants: a pod is enrolled on all workers or on none; a worker that exits unexpectedly
 * stops the agent (onWorkerExit), since its share of every port would be gone.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { cpuLimit, readCpuMaxLines } from '../../shared/cpu-limit.js';
import type * as Prom from 'prom-client';
import type { Logger, LogLevel } from '../../shared/log.js';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import { flushCopyCounters } from '../../shared/hbone/copy.js';
import type { Workload } from '../../shared/model.js';
import { plainMap } from '../../shared/state/persistent-map.js';
import type { ConfigSnapshot, WorkloadIndex } from '../../shared/state/workloads.js';
import type { TunnelStats } from '../../shared/hbone/pool.js';
import type { CapturedPod, DataPath, DataPathCounters, DebugConnection, PodDataPath, PodListenSettings } from '../datapath.js';
import type { DataPathHost } from '../agent.js';
import { Rpc } from './rpc.js';
import { workerConfigMessage } from './config-delta.js';

const require = createRequire(import.meta.url);

/** What a worker is started with (structured-clone safe). */
export interface WorkerSettings {
  worker: number;
  nodeName: string;
  logLevel: LogLevel;
  listen: PodListenSettings;
  poolIdleTimeoutMs?: number;
  sameNodeFastPath: boolean;
}

export interface WorkerDataPathOptions {
  count: number;
  nodeName: string;
  log: Logger;
  logLevel: LogLevel;
  /** The agent's registry; /metrics is it plus every worker's counters. */
  registry: Prom.Registry;
  host: DataPathHost;
  poolIdleTimeoutMs?: number;
  sameNodeFastPath?: boolean;
  /** A worker ended without being asked to (crash): the agent must stop. */
  onWorkerExit: (worker: number, reason: string) => void;
  /**
   * Makes a pod's 15008 listeners (one per worker, in worker order) take new tunnels in turn
   * (workers/spread.ts; needs BPF). Absent or failing: the kernel's 4-tuple hash picks.
   */
  spreadInTurn?: (listenerFds: number[]) => void;
}

/** What a worker's enrolment answers: its listeners of the pod. */
export interface WorkerListeners {
  inboundListenerFd: number;
  hboneListenerFd: number;
  ipv6: boolean;
}

interface WorkerHandle {
  index: number;
  thread: Worker;
  rpc: Rpc;
  exited: Promise<void>;
}

export class WorkerDataPath implements DataPath {
  private readonly workers: WorkerHandle[];
  private closing = false;
  /** spreadInTurn failed once (no BPF): not tried again. */
  private spreadFailed = false;
  /** The snapshot every worker holds (the last one posted whole or as a delta; config-delta.ts). */
  private posted: ConfigSnapshot | undefined;

  constructor(private readonly opts: WorkerDataPathOptions) {
    if (!Number.isInteger(opts.count) || opts.count < 1) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `worker count must be a positive integer, got ${opts.count}`);
    this.workers = Array.from({ length: opts.count }, (_, index) => this.spawn(index));
  }

  private spawn(index: number): WorkerHandle {
    const o = this.opts;
    const settings: WorkerSettings = {
      worker: index,
      nodeName: o.nodeName,
      logLevel: o.logLevel,
      listen: o.host.listen,
      ...(o.poolIdleTimeoutMs !== undefined ? { poolIdleTimeoutMs: o.poolIdleTimeoutMs } : {}),
      sameNodeFastPath: o.sameNodeFastPath !== false,
    };
    const thread = new Worker(new URL('./worker.js', import.meta.url), { workerData: settings, name: `ambit-agent-worker-${index}` });
    const rpc = new Rpc(thread);
    rpc.handle('certificate', (identity: string) => o.host.certificate(identity));
    let failure: string | undefined;
    thread.on('error', (e) => {
      failure = errorMessage(e);
      o.log.error({ err: e, worker: index }, 'agent worker failed');
    });
    const exited = new Promise<void>((resolve) => {
      thread.once('exit', (code) => {
        rpc.close(`agent worker ${index} exited`);
        if (!this.closing) o.onWorkerExit(index, failure ?? `exit code ${code}`);
        resolve();
      });
    });
    return { index, thread, rpc, exited };
  }

  get count(): number {
    return this.workers.length;
  }

  setConfig(snapshot: ConfigSnapshot, _index: WorkloadIndex): void {
    const m = workerConfigMessage(this.posted, snapshot);
    this.posted = snapshot;
    if (m.kind === 'delta') for (const w of this.workers) w.rpc.note('configDelta', m.delta);
    else if (m.kind === 'full') {
      // Structured clone: persistent maps cross as plain Maps.
      const plain: ConfigSnapshot = { workloads: plainMap(snapshot.workloads), services: plainMap(snapshot.services), authorizations: plainMap(snapshot.authorizations) };
      for (const w of this.workers) w.rpc.note('config', plain);
    }
  }

  async enroll(w: Workload): Promise<PodDataPath> {
    const results = await Promise.allSettled(this.workers.map((h) => h.rpc.call<WorkerListeners>('enroll', w)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      this.notifyAll('destroy', w.uid);
      throw failed.reason instanceof Error ? failed.reason : new Error(errorMessage(failed.reason));
    }
    const ok = results.map((r) => (r as PromiseFulfilledResult<WorkerListeners>).value);
    this.spread(w, ok);
    return this.podHandle(w.uid, ok);
  }

  /** The pod's tunnels to the workers in turn; on failure (logged once) the kernel's hash picks. */
  private spread(w: Workload, listeners: WorkerListeners[]): void {
    if (!this.opts.spreadInTurn || this.spreadFailed) return;
    try {
      this.opts.spreadInTurn(listeners.map((l) => l.hboneListenerFd));
    } catch (e) {
      this.spreadFailed = true;
      this.opts.log.warn({ err: e, pod: `${w.namespace}/${w.name}` }, 'spreading HBONE tunnels over the workers in turn failed; the kernel hashes them from now on');
    }
  }

  private podHandle(uid: string, listeners: WorkerListeners[]): PodDataPath {
    return {
      // Any member of the reuseport group: the kernel spreads over the whole group from it.
      inboundListenerFd: () => listeners[0]!.inboundListenerFd,
      hboneListenerFd: () => listeners[0]!.hboneListenerFd,
      // Redirect IPv6 only when every worker listens on [::1] (else some connects would find no socket).
      hasIpv6Listener: () => listeners.every((l) => l.ipv6),
      captured: (info: CapturedPod) => this.notifyAll('captured', { uid, info }),
      unenroll: async () => {
        await this.callAll('unenroll', uid);
      },
      close: async (deadlineMs) => {
        await this.callAll('close', { uid, deadlineMs });
      },
      destroy: () => this.notifyAll('destroy', uid),
      stats: async () => {
        const all = await this.callAll<{ active: number; tunnels: TunnelStats[] }>('stats', uid);
        return { active: all.reduce((n, s) => n + s.active, 0), tunnels: all.flatMap((s) => s.tunnels) };
      },
    };
  }

  async recheck(): Promise<number> {
    const closed = await this.callAll<number>('recheck');
    return closed.reduce((a, b) => a + b, 0);
  }

  async connections(): Promise<DebugConnection[]> {
    return (await this.callAll<DebugConnection[]>('connections')).flat();
  }

  async counters(): Promise<DataPathCounters[]> {
    return (await this.callAll<DataPathCounters[]>('counters')).flat();
  }

  mergedMetrics(): Promise<string> {
    return this.merge();
  }

  private async merge(): Promise<string> {
    flushCopyCounters();
    const parts = await Promise.all([this.opts.registry.getMetricsAsJSON(), ...this.workers.map((h) => h.rpc.call<Prom.MetricObjectWithValues<Prom.MetricValue<string>>[]>('metrics'))]);
    // Loaded from its own file, and only with workers (shared/metrics.ts says why).
    const AggregatorRegistry = require('prom-client/lib/cluster') as typeof Prom.AggregatorRegistry;
    return AggregatorRegistry.aggregate(parts).metrics();
  }

  /** Asks every worker to stop (after the agent closed every pod) and waits for them to exit. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.workers.map(async (h) => {
        await h.rpc.call('shutdown').catch(() => undefined);
        await h.thread.terminate();
        await h.exited;
      }),
    );
  }

  private callAll<R>(method: string, arg?: unknown): Promise<R[]> {
    return Promise.all(this.workers.map((h) => h.rpc.call<R>(method, arg)));
  }

  private notifyAll(method: string, arg: unknown): void {
    for (const h of this.workers) h.rpc.note(method, arg);
  }
}

/**
 * The default worker count: the CPU limit (shared/cpu-limit.ts: cgroup cpu.max quotas, else the
 * CPUs this process may run on), as ztunnel sizes its workers. `cpuMax`: one cpu.max line to use
 * instead of this process's cgroups.
 */
export function defaultWorkerCount(cpuMax?: string): number {
  return cpuLimit(cpuMax === undefined ? readCpuMaxLines() : [cpuMax]);
}
