/**
 * The node agent: turns each config snapshot into per-pod proxies for the enrolled pods on this
 * node (15001 outbound, 15006 plaintext inbound, 15008 HBONE inside each pod's netns, plus
 * capture), re-checks live connections against new policy, and serves metrics/readiness/admin.
 * Invariants:
 * - snapshots are applied one at a time, in order;
 * - a pod has at most one PodProxy; unenrolling closes its listeners and capture but leaves
 *   established connections to finish (its tunnel pool drains);
 * - a pod that fails to enroll is reported (statusProvider) and retried on the next snapshot;
 * - a pod the CNI handed over (preparePod) is pending, all its TCP refused, until the config
 *   enrolls it (with that netns, even before the controller reports one) or says it is not in
 *   the mesh; capture outlives the agent (close() keeps it), so a restart loses none;
 * - a pod's netns is the agent's own record (the CNI's hand-over, else a host scan by the pod's
 *   IPs: PodNetnsTable), else the controller's Workload.netns; once enrolled in a netns a pod
 *   stays there until that netns is gone or the CNI hands over another;
 * - a change to one pod touches only that pod's listeners, tunnels and capture.
 */
import * as crypto from 'node:crypto';
import type * as net from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/log.js';
import { AmbitError, errorMessage } from '../shared/errors.js';
import { backoffMs } from '../shared/drain.js';
import type { Workload } from '../shared/model.js';
import type { WorkloadStatus } from '../shared/xds/node.js';
import { sameNetns, type Capture } from './capture/capture.js';
import { WorkloadIndex, emptySnapshot, workloadIdentity, type ConfigSnapshot } from '../shared/state/workloads.js';
import type { Address } from '../shared/address.js';
import type { PodSockets } from './proxy/sockets.js';
import type { TunnelCertificate } from '../shared/hbone/tunnel.js';
import { AdminServer, type AdminAddresses } from './admin.js';
import { PodNetnsTable } from './netns/pod-netns.js';
import { LocalDataPath, threadHeap, type DataPath, type PodDataPath, type PodListenSettings } from './datapath.js';
import { fdExhaustion, readFdUsage, type FdUsage } from './fd-usage.js';
import { buildDnsTable } from './dns/answer.js';
import type { DnsPod, DnsProxy } from './dns/proxy.js';

/** What the agent needs from the certificate manager (CertManager fits). */
export interface AgentCertificates {
  getCertificate(spiffeId: string): Promise<TunnelCertificate & { notAfter?: Date }>;
  prefetch?(ids: Iterable<string>): void;
  forget?(spiffeId: string): void;
}

export interface AgentOptions {
  nodeName: string;
  log: Logger;
  registry: Registry;
  certs: AgentCertificates;
  /** Absent: no capture (tests drive the listeners directly). */
  capture?: Capture;
  /** PodSockets for a pod (NetnsPodSockets over workload.netns in production). */
  podSockets: (w: Workload) => PodSockets;
  /** Original destination of an accepted socket (capture/orig-dst.ts). */
  originalDestination: (socket: net.Socket, direction: 'outbound' | 'inbound') => Address;
  /** The fd of a listening server (native socketFd), passed to capture.enroll. */
  listenerFd?: (server: net.Server) => number;
  /**
   * Listen addresses inside the pod. Defaults with capture: outbound 127.0.0.1 plus [::1] for
   * native IPv6 (capture redirects to loopback), inbound and HBONE "::" (dual-stack); without
   * capture: outbound 127.0.0.1, others 0.0.0.0.
   */
  listen?: { outbound?: string; outbound6?: string; inbound?: string; hbone?: string };
  /** Ports inside pods; defaults 15001/15006/15008 (tests may change them). */
  ports?: { outbound?: number; inbound?: number; hbone?: number };
  poolIdleTimeoutMs?: number;
  drainDeadlineMs?: number;
  /** Connections between two pods of this node skip TLS, handed over in-process (default true). */
  sameNodeFastPath?: boolean;
  /** Called when a pod's capture status changed (ConfigClient.reportStatus). */
  onStatusChange?: () => void;
  /** Returns freed native memory to the kernel (native trimMallocHeap), after pods were enrolled or unenrolled. */
  releaseFreedMemory?: () => void;
  /** Quiet time after the last enrolment change before releaseFreedMemory runs; default 1000 ms. */
  releaseFreedMemoryDelayMs?: number;
  /**
   * releaseFreedMemory also runs this often (default 30 s; 0: only after enrolment changes): the
   * worker threads' connections free native memory (sockets, HTTP/2 streams, TLS buffers) that
   * glibc keeps in its arenas, ~6-9 MiB after a burst of 1,000 connections.
   */
  releaseFreedMemoryEveryMs?: number;
  /** Open fds against the limit, read per readiness check (default fd-usage.ts readFdUsage). */
  fdUsage?: () => FdUsage | undefined;
  /**
   * Where pods' netns are (CNI records, host scan). Default: an in-memory table without
   * scanning, so only the CNI hand-over and the controller's Workload.netns name one.
   */
  netns?: PodNetnsTable;
  /**
   * The data path for this agent's pods; default a LocalDataPath on this thread over podSockets.
   * `host` gives what the data path takes from the agent (certificates, resolved listen settings).
   */
  dataPath?: (host: DataPathHost) => DataPath;
  /**
   * The DNS proxy (15053 in each enrolled pod, dns/proxy.ts); with capture, each pod's port-53
   * traffic goes there unless its Workload says `dnsCapture: false`. Absent: DNS is not captured.
   */
  dns?: DnsProxy;
}

/** What the agent hands its data path. */
export interface DataPathHost {
  certificate: (identity: string) => Promise<TunnelCertificate>;
  listen: PodListenSettings;
}

/** A pod's capture as the `ambient.istio.io/redirection` annotation says it (Istio's values). */
export type Redirection = 'enabled' | 'pending';

/** One of this node's pods whose traffic the agent redirects or holds. */
export interface PodRedirection {
  uid: string;
  namespace: string;
  name: string;
  /** metadata.uid the CNI reported for the sandbox, when known. */
  podUid?: string;
  state: Redirection;
}

interface PodProxy {
  workload: Workload;
  data: PodDataPath;
}

interface CertInfo {
  identity: string;
  serial?: string;
  notAfter?: string;
  error?: string;
}

export class Agent {
  readonly dataPath: DataPath;
  private readonly log: Logger;
  private index: WorkloadIndex;
  private readonly pods = new Map<string, PodProxy>();
  private readonly statuses = new Map<string, WorkloadStatus>();
  private readonly certInfo = new Map<string, CertInfo>();
  private applying: Promise<void> = Promise.resolve();
  private synced = false;
  private releaseTimer: NodeJS.Timeout | undefined;
  private releaseInterval: NodeJS.Timeout | undefined;
  private certsOk = true;
  private certReason = '';
  private admin: AdminServer | undefined;
  private closed = false;
  /** Where each pod's netns is (the CNI's hand-over, a host scan). */
  readonly netns: PodNetnsTable;
  /** A first reconcile has pruned what a previous run left. */
  private prunedOnce = false;
  /** Wanted pods whose netns is not known yet (retried with the enrollment backoff). */
  private unlocated = 0;
  /** The Services the DNS proxy's table was built from (rebuilt only when the snapshot's differ). */
  private dnsServices: ConfigSnapshot['services'] | undefined;

  constructor(private readonly opts: AgentOptions) {
    this.log = opts.log.child({ component: 'agent', node: opts.nodeName });
    this.index = new WorkloadIndex(emptySnapshot(), opts.nodeName);
    this.netns = opts.netns ?? new PodNetnsTable({ log: opts.log });
    const host: DataPathHost = { certificate: (id) => this.certificate(id), listen: podListenSettings(opts) };
    this.dataPath = opts.dataPath
      ? opts.dataPath(host)
      : new LocalDataPath({
          nodeName: opts.nodeName,
          log: opts.log,
          registry: opts.registry,
          certificate: host.certificate,
          podSockets: opts.podSockets,
          originalDestination: opts.originalDestination,
          listen: host.listen,
          ...(opts.poolIdleTimeoutMs !== undefined ? { poolIdleTimeoutMs: opts.poolIdleTimeoutMs } : {}),
          ...(opts.sameNodeFastPath !== undefined ? { sameNodeFastPath: opts.sameNodeFastPath } : {}),
          ...(opts.listenerFd ? { listenerFd: opts.listenerFd } : {}),
        });
    const release = opts.releaseFreedMemory;
    const everyMs = opts.releaseFreedMemoryEveryMs ?? 30_000;
    if (release && everyMs > 0) {
      this.releaseInterval = setInterval(release, everyMs);
      this.releaseInterval.unref();
    }
  }

  currentIndex(): WorkloadIndex {
    return this.index;
  }

  /** True once a config snapshot has been applied (the first reconcile is done). */
  hasConfig(): boolean {
    return this.synced;
  }

  /** Starts the metrics, readiness and admin endpoints. */
  async startAdmin(addrs: AdminAddresses): Promise<{ metrics: net.AddressInfo; ready: net.AddressInfo; admin: net.AddressInfo }> {
    this.admin = new AdminServer(
      {
        registry: this.opts.registry,
        readiness: () => this.readiness(),
        configDump: () => this.configDump(),
        connections: () => this.debugConnections(),
        metrics: () => this.dataPath.mergedMetrics(),
      },
      this.opts.log,
    );
    return this.admin.start(addrs);
  }

  /** Applies a config snapshot (ConfigClient onUpdate); resolves once pods are reconciled. */
  applyConfig(snapshot: ConfigSnapshot): Promise<void> {
    this.lastSnapshot = snapshot;
    const run = this.applying.then(() => this.reconcile(snapshot));
    this.applying = run.catch(() => undefined);
    return run;
  }

  private async reconcile(snapshot: ConfigSnapshot): Promise<void> {
    if (this.closed) return;
    const index = new WorkloadIndex(snapshot, this.opts.nodeName);
    this.index = index;
    this.dataPath.setConfig(snapshot, index);
    if (this.opts.dns && this.dnsServices !== snapshot.services) {
      this.dnsServices = snapshot.services;
      this.opts.dns.setTable(buildDnsTable(snapshot.services.values()));
    }
    let statusChanged = await this.forgetVanished(index);
    const enrolled = index.localEnrolledWorkloads();
    if (this.opts.capture) await this.netns.locate(enrolled.filter((w) => !w.netns && !this.pods.has(w.uid)));
    const wanted = new Map(enrolled.map((w) => [w.uid, this.withNetns(w)]));
    let unlocated = 0;

    for (const [uid, pod] of [...this.pods]) {
      const next = wanted.get(uid);
      // The DNS capture switch is part of the pod's capture settings: a change enrolls it again.
      const dnsChanged = next !== undefined && this.opts.dns !== undefined && (next.dnsCapture === false) !== (pod.workload.dnsCapture === false);
      if (!next || !sameNetns(next.netns, pod.workload.netns) || dnsChanged) {
        await this.unenroll(uid, !next ? 'pod_removed' : dnsChanged ? 'dns_capture_changed' : 'netns_changed');
        statusChanged = true;
      }
    }
    for (const [uid, w] of wanted) {
      const current = this.pods.get(uid);
      if (current) {
        current.workload = { ...w, netns: current.workload.netns };
        // Its DNS metrics labels and namespace follow the pod's (the listeners stay).
        if (this.opts.dns?.hasPod(uid)) this.opts.dns.addPod(dnsPodOf(current.workload, current.data.hasIpv6Listener()));
        continue;
      }
      if (this.opts.capture && !w.netns) {
        // No CNI hand-over, not found on the host (no address yet, no process in it yet).
        const prev = this.statuses.get(uid);
        if (prev?.mode !== 'pending') statusChanged = true;
        this.statuses.set(uid, { uid, captured: false, mode: 'pending', message: 'waiting for the pod network namespace' });
        if (w.addresses.length > 0) unlocated++;
        continue;
      }
      await this.enroll(w);
      statusChanged = true;
    }
    // Handed over by the CNI, and the config says the pod is not in the mesh: let its traffic go.
    for (const uid of this.opts.capture?.pending() ?? []) {
      const w = index.workloadByUid(uid);
      if (w && w.node === this.opts.nodeName && !wanted.has(uid)) {
        await this.opts.capture?.unenroll(uid).catch((e: unknown) => this.log.error({ err: e, uid }, 'releasing a pending pod failed'));
        statusChanged = true;
        this.log.info({ uid }, 'pending pod is not in the mesh; released');
      }
    }
    // Scanned netns of pods no longer wanted are found again if they come back.
    for (const r of this.netns.list()) {
      if (r.source === 'scan' && !wanted.has(r.uid) && !this.pods.has(r.uid)) await this.netns.forget(r.uid);
    }
    for (const uid of [...this.statuses.keys()]) {
      if (!index.workloadByUid(uid) || index.workloadByUid(uid)!.node !== this.opts.nodeName) {
        this.statuses.delete(uid);
        statusChanged = true;
      }
    }
    await this.pruneCapture(index, wanted);

    const closed = await this.dataPath.recheck();
    if (closed > 0) this.log.info({ closed }, 'policy change closed live connections');
    this.synced = true;
    this.unlocated = unlocated;
    if (unlocated > 0) this.scheduleEnrollRetry();
    void this.checkCertificates([...wanted.values()]);
    if (statusChanged) {
      this.opts.onStatusChange?.();
      this.scheduleMemoryRelease();
    }
  }

  /** The workload with the netns the agent recorded (CNI, scan), else the one the controller reported. */
  private withNetns(w: Workload): Workload {
    const recorded = this.netns.pathOf(w.uid);
    return recorded === undefined ? w : { ...w, netns: recorded };
  }

  /**
   * Records whose netns is gone (the sandbox was deleted and the DEL never reached the agent):
   * the pod's capture is released and the record forgotten. Returns whether anything changed.
   */
  private async forgetVanished(index: WorkloadIndex): Promise<boolean> {
    let changed = false;
    for (const r of await this.netns.vanished()) {
      this.log.info({ uid: r.uid, netns: r.netnsPath, inConfig: index.workloadByUid(r.uid) !== undefined }, 'pod network namespace is gone; forgetting it');
      if (this.pods.has(r.uid)) await this.unenroll(r.uid, 'netns_gone');
      else await this.opts.capture?.unenroll(r.uid).catch((e: unknown) => this.log.error({ err: e, uid: r.uid }, 'releasing a pod whose netns is gone failed'));
      await this.netns.forget(r.uid);
      this.statuses.delete(r.uid);
      changed = true;
    }
    return changed;
  }

  /**
   * Releases capture a previous agent run left for pods this config no longer wants (kept for
   * wanted and handed-over ones, even when their enrolment failed: they stay refused). The first
   * time also clears nft tables a previous run left in this node's pods that are not in the mesh.
   */
  private async pruneCapture(index: WorkloadIndex, wanted: Map<string, Workload>): Promise<void> {
    const capture = this.opts.capture;
    if (!capture) return;
    // Handed over by the CNI and not yet known to the config: still pending.
    const handedOver = this.netns
      .list()
      .filter((r) => r.source === 'cni' && index.workloadByUid(r.uid)?.node !== this.opts.nodeName)
      .map((r) => r.netnsPath);
    const keepNetns = [...new Set([...[...wanted.values()].map((w) => w.netns), ...handedOver].filter((n): n is string => !!n))];
    const otherNetns = this.prunedOnce
      ? undefined
      : index
          .localWorkloads()
          .filter((w) => !wanted.has(w.uid))
          .map((w) => this.withNetns(w).netns)
          .filter((n): n is string => !!n);
    try {
      await capture.prune({ keepNetns, ...(otherNetns ? { otherNetns } : {}) });
      this.prunedOnce = true;
    } catch (e) {
      this.log.warn({ err: e }, 'pruning capture a previous run left failed');
    }
  }

  /**
   * The CNI hand-off at pod start (ADD): puts the pod's netns in the pending state, in which all
   * its TCP is refused in both directions, and enrolls it at once if the config already wants it.
   * Resolves once that is in force; rejects with AMBIT_ERR_CAPTURE_FAILED when it can not be (the
   * CNI must then fail the pod's start, so the pod never runs uncaptured). Without capture
   * (tests) it does nothing.
   */
  preparePod(pod: { uid: string; netnsPath: string; containerId?: string; podUid?: string }): Promise<void> {
    const run = this.applying.then(async () => {
      const capture = this.opts.capture;
      if (this.closed) throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `the agent is shutting down; pod ${pod.uid} can not be prepared`);
      if (!capture) return;
      const enrolled = this.pods.get(pod.uid);
      if (enrolled && sameNetns(enrolled.workload.netns, pod.netnsPath)) {
        // A repeated ADD for the netns the pod is captured in. A scanned record stays: its held
        // descriptor names the netns the pod's proxies and capture use.
        if (this.netns.get(pod.uid)?.source !== 'scan') await this.netns.handOver(pod);
        return;
      }
      // A new sandbox of a pod captured (or held) in another netns: the old one goes first.
      if (enrolled) await this.unenroll(pod.uid, 'sandbox_replaced');
      else if (capture.pending().includes(pod.uid) && !sameNetns(this.netns.pathOf(pod.uid), pod.netnsPath)) await capture.unenroll(pod.uid);
      try {
        await this.netns.handOver(pod);
        await capture.prepare({ uid: pod.uid, netnsPath: pod.netnsPath });
      } catch (e) {
        await this.netns.forget(pod.uid);
        throw e instanceof AmbitError ? e : new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `preparing pod ${pod.uid} (${pod.netnsPath}) failed: ${errorMessage(e)}`, { cause: e });
      }
      this.statuses.set(pod.uid, { uid: pod.uid, captured: false, mode: 'pending', message: 'waiting to be enrolled; its traffic is refused meanwhile' });
      if (this.lastSnapshot) await this.reconcile(this.lastSnapshot);
      this.opts.onStatusChange?.();
    });
    this.applying = run.catch(() => undefined);
    return run;
  }

  /**
   * The CNI's CHECK: resolves when the pod is still captured (enrolled) or refused (pending) in
   * `netnsPath`; rejects with AMBIT_ERR_CAPTURE_FAILED otherwise. Without capture it resolves.
   */
  async checkPod(pod: { uid: string; netnsPath: string }): Promise<void> {
    const capture = this.opts.capture;
    if (!capture) return;
    const netns = this.pods.get(pod.uid)?.workload.netns ?? this.netns.pathOf(pod.uid);
    const inCapture = capture.enrolled().includes(pod.uid) || capture.pending().includes(pod.uid);
    if (!inCapture || !sameNetns(netns, pod.netnsPath)) {
      throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `pod ${pod.uid} is not captured in ${pod.netnsPath}${netns ? ` (its capture is in ${netns})` : ''}`, {
        details: { uid: pod.uid, netnsPath: pod.netnsPath },
      });
    }
  }

  /**
   * The CNI's DEL: the pod's netns is going away; stop capturing (or refusing) it now. With
   * `containerId`, a DEL of a sandbox other than the one the pod was handed over in (a late DEL of
   * its previous sandbox) changes nothing.
   */
  releasePod(uid: string, opts: { containerId?: string } = {}): Promise<void> {
    const run = this.applying.then(async () => {
      if (opts.containerId && this.netns.isOtherSandbox(uid, opts.containerId)) {
        this.log.info({ uid, containerId: opts.containerId }, 'DEL of a previous sandbox; the pod keeps its capture');
        return;
      }
      if (this.pods.has(uid)) await this.unenroll(uid, 'pod_deleted');
      else await this.opts.capture?.unenroll(uid);
      // After capture let go of it: a held descriptor may be what names the netns.
      await this.netns.forget(uid);
      this.statuses.delete(uid);
      this.opts.onStatusChange?.();
    });
    this.applying = run.catch(() => undefined);
    return run;
  }

  /**
   * This node's pods whose traffic is redirected (enrolled) or held (pending), for the
   * `ambient.istio.io/redirection` annotation. Without capture nothing is redirected.
   */
  redirections(): PodRedirection[] {
    const capture = this.opts.capture;
    if (!capture) return [];
    const out: PodRedirection[] = [];
    const add = (uid: string, state: Redirection): void => {
      const ref = podRefOfUid(uid);
      if (!ref) return;
      const podUid = this.netns.get(uid)?.podUid;
      out.push({ uid, ...ref, ...(podUid ? { podUid } : {}), state });
    };
    for (const uid of this.pods.keys()) add(uid, 'enabled');
    for (const uid of capture.pending()) if (!this.pods.has(uid)) add(uid, 'pending');
    return out;
  }

  private async checkCertificates(workloads: Workload[]): Promise<void> {
    const ids = [...new Set(workloads.map(workloadIdentity))];
    this.opts.certs.prefetch?.(ids);
    let ok = true;
    let reason = '';
    await Promise.all(
      ids.map(async (id) => {
        try {
          await this.certificate(id);
        } catch (e) {
          ok = false;
          reason = `certificate for ${id} unavailable: ${errorMessage(e)}`;
        }
      }),
    );
    this.certsOk = ok;
    this.certReason = reason;
  }

  /** getCertificate that remembers serial and expiry for /config_dump. */
  private async certificate(id: string): Promise<TunnelCertificate> {
    try {
      const cert = await this.opts.certs.getCertificate(id);
      const prev = this.certInfo.get(id);
      if (!prev || prev.error || prev.notAfter !== cert.notAfter?.toISOString()) {
        let serial: string | undefined;
        try {
          serial = new crypto.X509Certificate(cert.certChainPem[0] ?? '').serialNumber;
        } catch {
          serial = undefined;
        }
        this.certInfo.set(id, { identity: id, ...(serial ? { serial } : {}), ...(cert.notAfter ? { notAfter: cert.notAfter.toISOString() } : {}) });
      }
      return cert;
    } catch (e) {
      this.certInfo.set(id, { identity: id, error: errorMessage(e) });
      throw e;
    }
  }

  private async enroll(w: Workload): Promise<void> {
    const o = this.opts;
    const podLog = o.log.child({ pod: `${w.namespace}/${w.name}` });
    let data: PodDataPath | undefined;
    try {
      data = await this.dataPath.enroll(w);
      if (o.capture) {
        if (!w.netns) throw new Error('the workload has no netns; the controller must report where the pod runs');
        const ipv6 = data.hasIpv6Listener();
        const dns = o.dns && w.dnsCapture !== false ? o.dns : undefined;
        dns?.addPod(dnsPodOf(w, ipv6));
        if (!dns) o.dns?.removePod(w.uid);
        await o.capture.enroll({
          uid: w.uid,
          netnsPath: w.netns,
          inboundListenerFd: data.inboundListenerFd(),
          excludeInboundPorts: [],
          ipv6,
          ...(dns ? { dnsPort: dns.port } : {}),
        });
        data.captured({ preservesSource: o.capture.preservesSource(w.uid) });
      }
      this.pods.set(w.uid, { workload: w, data });
      this.statuses.set(w.uid, { uid: w.uid, captured: true, mode: o.capture?.mode ?? 'none', message: '' });
      podLog.info({ uid: w.uid, mode: o.capture?.mode ?? 'none' }, 'pod enrolled');
    } catch (e) {
      data?.destroy();
      o.dns?.removePod(w.uid);
      this.statuses.set(w.uid, { uid: w.uid, captured: false, mode: 'failed', message: errorMessage(e) });
      podLog.error({ err: e, uid: w.uid }, 'pod enrollment failed');
      this.scheduleEnrollRetry();
    }
  }

  private lastSnapshot: ConfigSnapshot | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAttempt = 0;

  /**
   * A failed enrollment (e.g. the verifier interrupted by signals under load: EAGAIN) is retried
   * with capped backoff on the last snapshot; success of a later reconcile resets the backoff.
   */
  private scheduleEnrollRetry(): void {
    if (this.retryTimer || this.closed) return;
    const waitMs = backoffMs(this.retryAttempt++, 500, 15_000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.lastSnapshot && !this.closed) {
        void this.applyConfig(this.lastSnapshot).then(() => {
          if (this.unlocated === 0 && [...this.statuses.values()].every((st) => st.mode !== 'failed')) this.retryAttempt = 0;
          this.opts.onStatusChange?.();
        });
      }
    }, waitMs);
    this.retryTimer.unref();
  }

  private async unenroll(uid: string, reason: string): Promise<void> {
    const pod = this.pods.get(uid);
    if (!pod) return;
    this.pods.delete(uid);
    this.statuses.delete(uid);
    try {
      await this.opts.capture?.unenroll(uid);
    } catch (e) {
      this.log.error({ err: e, uid }, 'capture unenroll failed');
    }
    this.opts.dns?.removePod(uid);
    // Established connections keep going; the pool refuses new tunnels and drains.
    await pod.data.unenroll();
    this.log.info({ uid, reason }, 'pod unenrolled');
  }

  /** Per-pod capture status for the controller (ConfigClient statusProvider). */
  statusProvider(): WorkloadStatus[] {
    const out: WorkloadStatus[] = [];
    for (const w of this.index.localWorkloads()) {
      const s = this.statuses.get(w.uid);
      if (s) out.push(s);
      else if (w.tunnelProtocol !== 'HBONE') out.push({ uid: w.uid, captured: false, mode: 'none', message: 'not enrolled in the mesh' });
      else out.push({ uid: w.uid, captured: false, mode: 'pending', message: 'enrollment in progress' });
    }
    return out;
  }

  readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (!this.synced) reasons.push('config not synced from the controller yet');
    if (!this.certsOk) reasons.push(this.certReason);
    if (this.closed) reasons.push('shutting down');
    const fds = fdExhaustion((this.opts.fdUsage ?? readFdUsage)());
    if (fds) reasons.push(fds);
    return { ready: reasons.length === 0, reasons };
  }

  async configDump(): Promise<unknown> {
    const snap = this.index.snapshot;
    const pools = await Promise.all([...this.pods].map(async ([uid, p]) => [uid, (await p.data.stats()).tunnels] as const));
    return {
      nodeName: this.opts.nodeName,
      captureMode: this.opts.capture?.mode ?? 'none',
      workloads: [...snap.workloads.values()],
      services: [...snap.services.values()],
      policies: [...snap.authorizations.values()],
      certificates: [...this.certInfo.values()],
      pods: this.statusProvider(),
      pools: Object.fromEntries(pools),
      ...(this.opts.dns ? { dns: this.opts.dns.summary() } : {}),
    };
  }

  async debugConnections(): Promise<unknown> {
    const outbound = await Promise.all([...this.pods].map(async ([uid, p]) => [uid, await p.data.stats()] as const));
    return {
      inbound: await this.dataPath.connections(),
      outbound: Object.fromEntries(outbound),
      workers: await this.dataPath.counters(),
      // Where the agent's memory is: the process, and the main thread's heap (each worker's is in `workers`).
      memory: { ...process.memoryUsage(), mainHeap: threadHeap() },
    };
  }

  /**
   * Enrolling and unenrolling is native-heavy and rare (BPF objects, keys, TLS contexts, the
   * certificate checks and status report that follow): once changes have been quiet for a moment,
   * hand what was freed back to the kernel. Never on the data path.
   */
  private scheduleMemoryRelease(): void {
    const release = this.opts.releaseFreedMemory;
    if (!release || this.closed) return;
    if (this.releaseTimer) clearTimeout(this.releaseTimer);
    this.releaseTimer = setTimeout(() => {
      this.releaseTimer = undefined;
      release();
    }, this.opts.releaseFreedMemoryDelayMs ?? 1000);
    this.releaseTimer.unref();
  }

  /**
   * Stops listening, drains connections until the deadline, releases capture (pods stay captured:
   * refused until the next agent takes over, see Capture.close), closes admin.
   */
  async close(deadlineMs = this.opts.drainDeadlineMs ?? 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.releaseTimer) clearTimeout(this.releaseTimer);
    if (this.releaseInterval) clearInterval(this.releaseInterval);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.applying;
    const pods = [...this.pods.values()];
    this.pods.clear();
    await Promise.all(pods.map((p) => p.data.close(deadlineMs)));
    await this.dataPath.close();
    this.opts.dns?.close();
    try {
      await this.opts.capture?.close();
    } catch (e) {
      this.log.error({ err: e }, 'capture close failed');
    }
    this.netns.close();
    await this.admin?.close();
    this.log.info({}, 'agent closed');
  }
}

/** What the DNS proxy needs of an enrolled pod (its netns is known by then). */
function dnsPodOf(w: Workload, ipv6: boolean): DnsPod {
  return { uid: w.uid, netnsPath: w.netns ?? '', namespace: w.namespace, canonicalService: w.canonicalName, canonicalRevision: w.canonicalRevision, ipv6 };
}

/** `<namespace>/<name>` of a workload uid `<cluster>//v1/Pod/<namespace>/<name>`; undefined for another shape. */
export function podRefOfUid(uid: string): { namespace: string; name: string } | undefined {
  const m = /^[^/]*\/\/v1\/Pod\/([^/]+)\/([^/]+)$/.exec(uid);
  return m ? { namespace: m[1]!, name: m[2]! } : undefined;
}

/** The workload uid of a pod (as the controller names it): `<cluster>//v1/Pod/<namespace>/<name>`. */
export function podWorkloadUid(clusterId: string, namespace: string, name: string): string {
  return `${clusterId}//v1/Pod/${namespace}/${name}`;
}

/**
 * Listen addresses and ports inside pods with their defaults. With capture: outbound 127.0.0.1
 * plus [::1] (capture redirects to loopback), inbound and HBONE "::" (dual-stack); without:
 * outbound 127.0.0.1, others 0.0.0.0.
 */
function podListenSettings(o: AgentOptions): PodListenSettings {
  const outbound6 = o.listen?.outbound6 ?? (o.capture ? '::1' : undefined);
  return {
    outbound: o.listen?.outbound ?? '127.0.0.1',
    ...(outbound6 !== undefined ? { outbound6 } : {}),
    inbound: o.listen?.inbound ?? (o.capture ? '::' : '0.0.0.0'),
    hbone: o.listen?.hbone ?? (o.capture ? '::' : '0.0.0.0'),
    ports: { outbound: o.ports?.outbound ?? 15001, inbound: o.ports?.inbound ?? 15006, hbone: o.ports?.hbone ?? 15008 },
  };
}
