/**
 * The agent's data path: each enrolled pod's listeners (15001 outbound, 15006 plaintext inbound,
 * 15008 HBONE), its tunnel pool, the live inbound connections policy re-checks, and the load
 * balancer. `Agent` decides which pods are enrolled and drives a DataPath; LocalDataPath runs it
 * on the calling thread (the agent's main thread with one worker, each worker thread otherwise:
 * workers/worker.ts), WorkerDataPath (workers/pool.ts) spreads it over worker threads.
 * Invariants: a DataPath decides on the config last given to setConfig; a pod's proxies live in
 * one LocalDataPath each, so every byte of a flow stays on the thread that accepted it.
 */
import type * as net from 'node:net';
import { getHeapStatistics } from 'node:v8';
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/log.js';
import type { Workload } from '../shared/model.js';
import { WorkloadIndex, workloadIdentity, type ConfigSnapshot } from '../shared/state/workloads.js';
import { LoadBalancer, endpointKey } from '../shared/balancer.js';
import { TunnelPool, type TunnelStats } from '../shared/hbone/pool.js';
import type { TunnelCertificate } from '../shared/hbone/tunnel.js';
import type { Address } from '../shared/address.js';
import { ConnectionRegistry } from './proxy/connections.js';
import { createProxyMetrics, type ProxyMetrics } from './proxy/metrics.js';
import { OutboundProxy } from './proxy/outbound.js';
import { InboundHbone } from './proxy/inbound.js';
import { InboundPlaintext } from './proxy/inbound-plaintext.js';
import type { PodSockets } from './proxy/sockets.js';
import { agentPortSet } from './proxy/self-call.js';

/** Listen addresses and ports inside pods, resolved (AgentOptions.listen/ports with their defaults). */
export interface PodListenSettings {
  outbound: string;
  /** Absent: no IPv6 outbound listener. */
  outbound6?: string;
  inbound: string;
  hbone: string;
  ports: { outbound: number; inbound: number; hbone: number };
}

/** What a pod's source-preserving dials need from capture once it is enrolled there. */
export interface CapturedPod {
  preservesSource: boolean;
}

/** One enrolled pod's proxies, wherever they run. */
export interface PodDataPath {
  /** The fd of a 15006 listener (IPv4 or dual-stack), handed to capture.enroll. */
  inboundListenerFd(): number;
  /** The fd of the 15008 listener (worker threads: spread over the workers in turn, workers/spread.ts). */
  hboneListenerFd(): number;
  /** True when the pod has an IPv6 outbound listener ([::1]:15001). */
  hasIpv6Listener(): boolean;
  /** Capture is in force for the pod: what its source-preserving dials need (Capture.preservesSource). */
  captured(info: CapturedPod): void;
  /** Stops accepting and lets established connections finish (the pool drains for up to an hour). */
  unenroll(): Promise<void>;
  /** Stops accepting, drains until `deadlineMs`, then destroys what is left. */
  close(deadlineMs: number): Promise<void>;
  /** Tears everything down now (a failed enrolment). */
  destroy(): void;
  /** Outbound connections in progress and the pool's tunnels (summed over workers). */
  stats(): Promise<{ active: number; tunnels: TunnelStats[] }>;
}

/** A live inbound connection as /debug/connections lists it. */
export interface DebugConnection {
  connId: number;
  direction: 'inbound' | 'outbound';
  workloadUid: string;
  src: { addr: string | undefined; principal: string | undefined };
  dst: { addr: string | undefined; port: number | undefined };
  mtls: boolean;
  startedAt: string;
  bytes: { sent: number; received: number };
  /** The worker thread serving it (absent with one worker). */
  worker?: number;
}

/** What one worker (or the single data path) has served, for /debug/connections. */
export interface DataPathCounters {
  worker: number;
  threadId: number;
  pods: number;
  /** Connections counted opened (istio_tcp_connections_opened_total summed over label sets). */
  connectionsOpened: number;
  /** Connections denied or closed by policy (ambit_policy_denials_total summed). */
  policyDenials: number;
  liveInbound: number;
  /** This thread's V8 heap (each worker is an isolate of its own), in bytes. */
  heap: ThreadHeap;
}

/** One thread's V8 heap, for /debug/connections (where an agent's memory goes). */
export interface ThreadHeap {
  usedBytes: number;
  /** Committed to the heap's spaces. */
  totalBytes: number;
  /** Of it resident. */
  physicalBytes: number;
  /** Buffers and other memory outside the heap that V8 knows of. */
  externalBytes: number;
  /** V8's own allocations beside the heap. */
  mallocedBytes: number;
}

/** The calling thread's heap. */
export function threadHeap(): ThreadHeap {
  const h = getHeapStatistics();
  return { usedBytes: h.used_heap_size, totalBytes: h.total_heap_size, physicalBytes: h.total_physical_size, externalBytes: h.external_memory, mallocedBytes: h.malloced_memory };
}

export interface DataPath {
  /** The config snapshot proxies decide on from now (before enrolments that use it). */
  setConfig(snapshot: ConfigSnapshot, index: WorkloadIndex): void;
  /** Starts a pod's listeners; rejects (with nothing left open) when any can not start. */
  enroll(w: Workload): Promise<PodDataPath>;
  /** Re-checks live connections against the current config (closing the denied) and prunes the balancer; resolves to how many closed. */
  recheck(): Promise<number>;
  /** Live inbound connections. */
  connections(): Promise<DebugConnection[]>;
  /** Per worker (or the one data path) counters. */
  counters(): Promise<DataPathCounters[]>;
  /** Prometheus text of the agent registry with every worker's counters merged; undefined: the registry alone is complete. */
  mergedMetrics(): Promise<string> | undefined;
  /** Ends the data path (after every pod was closed). */
  close(): Promise<void>;
}

export interface LocalDataPathOptions {
  nodeName: string;
  log: Logger;
  /** Where the proxies' counters register (the agent's registry, or a worker's own). */
  registry: Registry;
  certificate: (identity: string) => Promise<TunnelCertificate>;
  podSockets: (w: Workload) => PodSockets;
  originalDestination: (socket: net.Socket, direction: 'outbound' | 'inbound') => Address;
  listen: PodListenSettings;
  poolIdleTimeoutMs?: number;
  sameNodeFastPath?: boolean;
  /** The server's fd (native socketFd); required for inboundListenerFd. */
  listenerFd?: (server: net.Server) => number;
  /** Worker number for counters (0 on the main thread). */
  worker?: number;
  threadId?: number;
}

interface PodProxy {
  workload: Workload;
  sockets: PodSockets;
  pool: TunnelPool;
  outbound: OutboundProxy;
  inbound: InboundHbone;
  plaintext: InboundPlaintext;
}

/** The data path on the calling thread. */
export class LocalDataPath implements DataPath {
  readonly metrics: ProxyMetrics;
  readonly connectionRegistry: ConnectionRegistry;
  readonly balancer = new LoadBalancer();
  private readonly pods = new Map<string, PodProxy>();
  private readonly draining = new Set<TunnelPool>();
  private index: WorkloadIndex;

  constructor(private readonly opts: LocalDataPathOptions) {
    this.metrics = createProxyMetrics(opts.registry);
    this.connectionRegistry = new ConnectionRegistry(opts.log, this.metrics);
    this.index = new WorkloadIndex({ workloads: new Map(), services: new Map(), authorizations: new Map() }, opts.nodeName);
  }

  setConfig(_snapshot: ConfigSnapshot, index: WorkloadIndex): void {
    this.index = index;
  }

  currentIndex(): WorkloadIndex {
    return this.index;
  }

  async enroll(w: Workload): Promise<PodDataPath> {
    const o = this.opts;
    const l = o.listen;
    // For the pool; the proxies name the pod in their own loggers (PodProxy), so lines carry it once.
    const podLog = o.log.child({ pod: `${w.namespace}/${w.name}` });
    const agentPorts = agentPortSet([l.ports.outbound, l.ports.inbound, l.ports.hbone]);
    let proxy: PodProxy | undefined;
    let sockets: PodSockets | undefined;
    try {
      sockets = o.podSockets(w);
      const podSockets = sockets;
      const index = (): WorkloadIndex => this.index;
      const pool = new TunnelPool({
        log: podLog,
        metrics: this.metrics,
        connectTcp: (a) => podSockets.connect(a),
        getCertificate: (id) => o.certificate(id),
        ...(o.poolIdleTimeoutMs !== undefined ? { idleTimeoutMs: o.poolIdleTimeoutMs } : {}),
      });
      const outbound = new OutboundProxy({
        pod: w,
        sockets,
        pool,
        index,
        nodeName: o.nodeName,
        metrics: this.metrics,
        log: o.log,
        listenAddress: l.outbound,
        ...(l.outbound6 !== undefined ? { listenAddress6: l.outbound6 } : {}),
        port: l.ports.outbound,
        agentPorts,
        originalDestination: (s) => o.originalDestination(s, 'outbound'),
        pickEndpoint: (svc, _port, candidates, src) => this.balancer.pick(svc, candidates, src),
        reportEndpoint: (e, ok) => (ok ? this.balancer.reportSuccess(e) : this.balancer.reportFailure(e)),
        ...(o.sameNodeFastPath === false ? {} : { sameNodeInbound: (dst: Workload) => this.pods.get(dst.uid)?.inbound }),
      });
      const inbound = new InboundHbone({
        pod: w,
        sockets,
        index,
        getCertificate: () => o.certificate(workloadIdentity(w)),
        metrics: this.metrics,
        log: o.log,
        connections: this.connectionRegistry,
        listenAddress: l.hbone,
        port: l.ports.hbone,
        agentPorts,
      });
      const plaintext = new InboundPlaintext({
        pod: w,
        sockets,
        index,
        metrics: this.metrics,
        log: o.log,
        connections: this.connectionRegistry,
        listenAddress: l.inbound,
        port: l.ports.inbound,
        agentPorts,
        originalDestination: (s) => o.originalDestination(s, 'inbound'),
      });
      proxy = { workload: w, sockets, pool, outbound, inbound, plaintext };
      await outbound.start();
      await inbound.start();
      await plaintext.start();
    } catch (e) {
      if (proxy) destroyProxy(proxy);
      else sockets?.release?.();
      throw e;
    }
    this.pods.set(w.uid, proxy);
    return this.podHandle(w.uid, proxy);
  }

  private listenerFd(server: net.Server | undefined, which: string): number {
    if (!server || !this.opts.listenerFd) throw new Error(`no ${which} listener fd`);
    return this.opts.listenerFd(server);
  }

  private podHandle(uid: string, proxy: PodProxy): PodDataPath {
    return {
      inboundListenerFd: () => this.listenerFd(proxy.plaintext.listener(), 'inbound'),
      hboneListenerFd: () => this.listenerFd(proxy.inbound.listener(), 'hbone'),
      hasIpv6Listener: () => proxy.outbound.hasIpv6Listener(),
      captured: () => undefined,
      unenroll: async () => {
        if (this.pods.get(uid) === proxy) this.pods.delete(uid);
        proxy.outbound.stopListening();
        proxy.inbound.stopListening();
        proxy.plaintext.stopListening();
        // The netns handle goes now (the pod may be gone); draining connections' dials open the path.
        proxy.sockets.release?.();
        // Established connections keep going; the pool refuses new tunnels and drains.
        this.draining.add(proxy.pool);
        void proxy.pool.close(60 * 60_000).finally(() => this.draining.delete(proxy.pool));
        return Promise.resolve();
      },
      close: async (deadlineMs) => {
        if (this.pods.get(uid) === proxy) this.pods.delete(uid);
        await Promise.all([proxy.outbound.close(deadlineMs), proxy.inbound.close(deadlineMs), proxy.plaintext.close(deadlineMs), proxy.pool.close(deadlineMs)]);
        proxy.sockets.release?.();
      },
      destroy: () => {
        if (this.pods.get(uid) === proxy) this.pods.delete(uid);
        destroyProxy(proxy);
      },
      stats: () => Promise.resolve({ active: proxy.outbound.activeConnections, tunnels: proxy.pool.stats() }),
    };
  }

  recheck(): Promise<number> {
    const index = this.index;
    const closed = this.connectionRegistry.reevaluate(index);
    const eps = new Set<string>();
    const svcs = new Set<string>();
    for (const s of index.snapshot.services.values()) {
      svcs.add(`${s.namespace}/${s.hostname}`);
      for (const p of s.ports) for (const e of index.endpointsOf(s, p)) eps.add(endpointKey(e));
    }
    this.balancer.prune(eps, svcs);
    return Promise.resolve(closed);
  }

  connections(): Promise<DebugConnection[]> {
    const worker = this.opts.worker;
    return Promise.resolve(
      this.connectionRegistry.list().map((c) => ({
        connId: c.connId,
        direction: c.direction,
        workloadUid: c.workloadUid,
        src: { addr: c.attrs.srcIp, principal: c.attrs.srcPrincipal },
        dst: { addr: c.attrs.dstIp, port: c.attrs.dstPort },
        mtls: c.mtls,
        startedAt: new Date(c.startedAt).toISOString(),
        bytes: c.bytes(),
        ...(worker !== undefined ? { worker } : {}),
      })),
    );
  }

  async counters(): Promise<DataPathCounters[]> {
    const opened = await this.metrics.connectionsOpened.get();
    const denials = await this.metrics.policyDenials.get();
    return [
      {
        worker: this.opts.worker ?? 0,
        threadId: this.opts.threadId ?? 0,
        pods: this.pods.size,
        connectionsOpened: opened.values.reduce((sum, v) => sum + v.value, 0),
        policyDenials: denials.values.reduce((sum, v) => sum + v.value, 0),
        liveInbound: this.connectionRegistry.size,
        heap: threadHeap(),
      },
    ];
  }

  mergedMetrics(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    for (const pool of this.draining) pool.destroy();
    this.draining.clear();
    return Promise.resolve();
  }
}

function destroyProxy(proxy: PodProxy): void {
  proxy.outbound.destroy();
  proxy.inbound.destroy();
  proxy.plaintext.destroy();
  proxy.pool.destroy();
  proxy.sockets.release?.();
}
