/**
 * Entry of one agent worker thread: a LocalDataPath over pods' netns with SO_REUSEPORT listeners
 * (each worker has its own listener in every port's group, so the kernel spreads new connections,
 * and every byte of a connection stays on the worker that accepted it). Config snapshots and
 * certificates come from the main thread (rpc.ts); its counters go back as prom-client JSON for
 * the merged /metrics. Source-preserving dials need nothing from the main thread: the kernel
 * exempts them from inbound capture itself (sockops.bpf.c).
 */
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { createLogger } from '../../shared/log.js';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import { Registry } from '../../shared/metrics.js';
import { flushCopyCounters } from '../../shared/hbone/copy.js';
import { WorkloadIndex, type ConfigSnapshot } from '../../shared/state/workloads.js';
import type { Workload } from '../../shared/model.js';
import type { TunnelCertificate } from '../../shared/hbone/tunnel.js';
import { socketFd } from '../../../native/netns.js';
import { originalDestination } from '../capture/orig-dst.js';
import { NetnsPodSockets, type SourcePreservation } from '../proxy/netns-sockets.js';
import { LocalDataPath, type CapturedPod, type PodDataPath } from '../datapath.js';
import { Rpc } from './rpc.js';
import { applyConfigDelta, persistentSnapshot, type ConfigDelta } from './config-delta.js';
import type { WorkerListeners, WorkerSettings } from './pool.js';

/** How long a certificate fetched from the main thread is used before asking again (renewals reach workers within this). */
const CERT_CACHE_MS = 5000;

/** Which pods' dials keep the client's address, as the main thread told this worker. */
class WorkerSourcePreservation implements SourcePreservation {
  private readonly pods = new Map<string, boolean>();

  captured(uid: string, info: CapturedPod): void {
    this.pods.set(uid, info.preservesSource);
  }

  release(uid: string): void {
    this.pods.delete(uid);
  }

  preservesSource(uid: string): boolean {
    return this.pods.get(uid) === true;
  }
}

function main(): void {
  const port = parentPort;
  if (!port) throw new Error('agent worker started outside a worker thread');
  const settings = workerData as WorkerSettings;
  const log = createLogger({ name: 'ambit-agent', level: settings.logLevel }).child({ worker: settings.worker });
  const rpc = new Rpc(port);
  const registry = new Registry();
  const sources = new WorkerSourcePreservation();

  const certs = new Map<string, { at: number; cert: Promise<TunnelCertificate> }>();
  const certificate = (identity: string): Promise<TunnelCertificate> => {
    const now = Date.now();
    const hit = certs.get(identity);
    if (hit && now - hit.at < CERT_CACHE_MS) return hit.cert;
    const fetched: Promise<TunnelCertificate> = rpc.call<TunnelCertificate>('certificate', identity).then((c) => {
      const prev = certs.get(identity);
      // Same leaf as before: keep the object, so proxies see no rotation (no new TLS context).
      return prev && prev.cert !== fetched ? prev.cert.then((p) => (p.certChainPem[0] === c.certChainPem[0] ? p : c), () => c) : c;
    });
    certs.set(identity, { at: now, cert: fetched });
    fetched.catch(() => {
      if (certs.get(identity)?.cert === fetched) certs.delete(identity);
    });
    return fetched;
  };

  const data = new LocalDataPath({
    nodeName: settings.nodeName,
    log,
    registry,
    certificate,
    podSockets: (w) => {
      if (!w.netns) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `workload ${w.namespace}/${w.name} has no netns; cannot open its sockets`);
      return new NetnsPodSockets(w.netns, { capture: sources, uid: w.uid, reusePort: true });
    },
    originalDestination,
    listen: settings.listen,
    ...(settings.poolIdleTimeoutMs !== undefined ? { poolIdleTimeoutMs: settings.poolIdleTimeoutMs } : {}),
    sameNodeFastPath: settings.sameNodeFastPath,
    listenerFd: socketFd,
    worker: settings.worker,
    threadId,
  });
  const pods = new Map<string, PodDataPath>();
  const forget = (uid: string, p: PodDataPath): void => {
    if (pods.get(uid) === p) pods.delete(uid);
    sources.release(uid);
  };

  // The snapshot as persistent maps, so a delta costs its own size (config-delta.ts).
  let config: ConfigSnapshot | undefined;
  const useConfig = (snapshot: ConfigSnapshot): void => {
    config = snapshot;
    data.setConfig(snapshot, new WorkloadIndex(snapshot, settings.nodeName));
  };
  rpc.handle('config', (snapshot: ConfigSnapshot) => useConfig(persistentSnapshot(snapshot)));
  rpc.handle('configDelta', (delta: ConfigDelta) => {
    if (!config) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', 'config delta before any snapshot');
    useConfig(applyConfigDelta(config, delta));
  });
  rpc.handle('enroll', async (w: Workload) => {
    pods.get(w.uid)?.destroy();
    const p = await data.enroll(w);
    pods.set(w.uid, p);
    return { inboundListenerFd: p.inboundListenerFd(), hboneListenerFd: p.hboneListenerFd(), ipv6: p.hasIpv6Listener() } satisfies WorkerListeners;
  });
  rpc.handle('captured', ({ uid, info }: { uid: string; info: CapturedPod }) => sources.captured(uid, info));
  rpc.handle('unenroll', async (uid: string) => {
    const p = pods.get(uid);
    if (!p) return;
    forget(uid, p);
    await p.unenroll();
  });
  rpc.handle('close', async ({ uid, deadlineMs }: { uid: string; deadlineMs: number }) => {
    const p = pods.get(uid);
    if (!p) return;
    forget(uid, p);
    await p.close(deadlineMs);
  });
  rpc.handle('destroy', (uid: string) => {
    const p = pods.get(uid);
    if (!p) return;
    forget(uid, p);
    p.destroy();
  });
  // A pod unenrolled meanwhile has nothing in progress here.
  rpc.handle('stats', (uid: string) => pods.get(uid)?.stats() ?? { active: 0, tunnels: [] });
  rpc.handle('recheck', () => data.recheck());
  rpc.handle('connections', () => data.connections());
  rpc.handle('counters', () => data.counters());
  rpc.handle('metrics', () => {
    flushCopyCounters();
    return registry.getMetricsAsJSON();
  });
  rpc.handle('shutdown', async () => {
    await data.close();
    rpc.close('worker shut down');
    port.close();
  });
  log.debug({ threadId }, 'agent worker started');
}

try {
  main();
} catch (e) {
  // The main thread sees the worker exit and stops the agent (pods stay captured: refused).
  process.stderr.write(`ambit agent worker failed to start: ${errorMessage(e)}\n`);
  throw e;
}
