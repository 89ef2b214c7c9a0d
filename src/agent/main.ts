/**
 * Entry of the `ambit-agent` process and the sole reader of process.env: load config, open
 * capture (BPF or nft), certificates from the controller's CA, the config stream, the per-pod
 * proxies and the admin endpoints; SIGTERM/SIGINT drain and exit.
 */
import { createLogger, type Logger } from '../shared/log.js';
import { AmbitError } from '../shared/errors.js';
import { createRegistry } from '../shared/metrics.js';
import { ambitVersion } from '../shared/version.js';
import { connectToController } from '../shared/controller-client.js';
import type { ConfigClient } from '../shared/xds/client.js';
import { socketFd } from '../../native/netns.js';
import { trimMallocHeap } from '../../native/bindings.js';
import { loadConfig, type AgentConfig } from './config.js';
import { Agent } from './agent.js';
import { openCapture } from './capture/open.js';
import { originalDestination } from './capture/orig-dst.js';
import { NetnsPodSockets } from './proxy/netns-sockets.js';
import { WorkerDataPath } from './workers/pool.js';
import { registerNodeMetrics } from './node-metrics.js';
import { typeLabel } from '../shared/xds/resource-codec.js';
import { PodNetnsTable } from './netns/pod-netns.js';
import { scanHostNetns } from './netns/host-scan.js';
import { CniServer } from './cni/server.js';
import { createAgentCniHandler } from './cni/handler.js';
import type { RedirectionAnnotator } from './kube/redirection.js';
import { createNetnsDnsProxy } from './dns/netns-proxy.js';
import { spreadInTurn } from './workers/spread.js';

/** Where container runtimes bind-mount pod sandboxes' network namespaces (the DaemonSet mounts it). */
const NETNS_DIRS = ['/var/run/netns'];

async function run(config: Readonly<AgentConfig>, log: Logger): Promise<void> {
  const registry = createRegistry({ processMetrics: true, build: { component: 'ztunnel', tag: ambitVersion() } });
  const controller = await connectToController(config, { registry, log });
  const { certs } = controller;
  const { capture, decision } = await openCapture({ mode: config.capture, ...(config.cgroupPath !== undefined ? { cgroupPath: config.cgroupPath } : {}), pinDir: config.pinDir, log });

  const netns = new PodNetnsTable({
    log,
    ...(config.netnsStateFile !== undefined ? { stateFile: config.netnsStateFile } : {}),
    scan: () => scanHostNetns(),
    netnsDirs: NETNS_DIRS,
  });
  await netns.load();

  // ztunnel's DNS proxy: on by default (Istio 1.25+), only where capture can send pods' DNS to it.
  const dns = config.dnsCapture ? createNetnsDnsProxy({ log, registry, upstreams: config.dnsUpstreams }) : undefined;
  let client: ConfigClient | undefined;
  let annotator: RedirectionAnnotator | undefined;
  const agent = new Agent({
    ...(dns ? { dns } : {}),
    nodeName: config.nodeName,
    log,
    registry,
    certs,
    capture,
    podSockets: (w) => {
      if (!w.netns) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `workload ${w.namespace}/${w.name} has no netns; cannot open its sockets`);
      return new NetnsPodSockets(w.netns, { capture, uid: w.uid });
    },
    originalDestination: (s, direction) => originalDestination(s, direction),
    listenerFd: (server) => socketFd(server),
    poolIdleTimeoutMs: config.poolIdleTimeoutMs,
    drainDeadlineMs: config.drainDeadlineMs,
    sameNodeFastPath: config.sameNodeFastPath,
    onStatusChange: () => {
      client?.reportStatus();
      annotator?.update();
    },
    releaseFreedMemory: trimMallocHeap,
    netns,
    // One worker: the data path on this thread, as before workers existed.
    ...(config.workers > 1
      ? {
          dataPath: (host) =>
            new WorkerDataPath({
              count: config.workers,
              nodeName: config.nodeName,
              log,
              logLevel: config.logLevel,
              registry,
              host,
              poolIdleTimeoutMs: config.poolIdleTimeoutMs,
              sameNodeFastPath: config.sameNodeFastPath,
              ...(capture?.mode === 'bpf' ? { spreadInTurn } : {}),
              // Its share of every pod's ports is gone: exit, and the pods stay captured (refused) until the next agent.
              onWorkerExit: (worker, reason) => {
                log.fatal({ worker, reason }, 'agent worker thread ended; exiting');
                process.exit(1);
              },
            }),
        }
      : {}),
  });
  if (config.kube) {
    const { loadKubeConfig, NodePodsClient } = await import('./kube/client.js');
    const { RedirectionAnnotator } = await import('./kube/redirection.js');
    const pods = new NodePodsClient(loadKubeConfig(config.kube), config.nodeName);
    annotator = new RedirectionAnnotator({ pods, redirections: () => agent.redirections(), ready: () => agent.hasConfig(), log, registry });
    annotator.start();
  } else {
    log.warn({}, 'no Kubernetes API (AMBIT_KUBECONFIG unset and not in a cluster): pods get no ambient.istio.io/redirection annotation');
  }
  // The CNI hand-off is served before the agent reports ready, and stops first at shutdown.
  let cni: CniServer | undefined;
  if (config.cniSocket) {
    cni = new CniServer({ socketPath: config.cniSocket, handler: createAgentCniHandler({ agent, clusterId: config.clusterId, log }), log, registry });
    await cni.start();
  } else {
    log.warn({}, 'AMBIT_CNI_SOCKET unset: no CNI hand-off; pods are captured once the controller reports them');
  }
  await agent.startAdmin({ metrics: config.metricsAddr, ready: config.readyAddr, admin: config.adminAddr });

  client = controller.configClient({
    node: { id: `agent~${config.nodeName}`, nodeName: config.nodeName, role: 'agent', metadata: { captureMode: decision.mode, clusterId: config.clusterId } },
    onUpdate: (state) => agent.applyConfig(state),
    statusProvider: () => agent.statusProvider(),
    log,
    registry,
  });
  const configClient = client;
  registerNodeMetrics(registry, {
    startedAtMs: Date.now() - process.uptime() * 1000,
    captureMode: decision.mode,
    statuses: () => agent.statusProvider(),
    configVersions: () => new Map([...configClient.state.systemVersions].map(([t, v]) => [typeLabel(t), v])),
  });
  client.start();
  log.info({ node: config.nodeName, controller: controller.address, capture: decision.mode, workers: config.workers, captureReason: 'reason' in decision ? decision.reason : undefined }, 'agent started');

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'agent shutting down');
    const force = setTimeout(() => {
      log.warn({ deadlineMs: config.drainDeadlineMs + 5000 }, 'shutdown deadline passed; exiting');
      process.exit(1);
    }, config.drainDeadlineMs + 5000);
    force.unref();
    // New pods' ADD fails from here on (no socket): they wait for the next agent, never uncaptured.
    await cni?.close(Math.min(config.drainDeadlineMs, 2000)).catch((e: unknown) => log.warn({ err: e }, 'cni socket close failed'));
    client?.close();
    await annotator?.close().catch((e: unknown) => log.warn({ err: e }, 'annotator close failed'));
    await agent.close(config.drainDeadlineMs).catch((e: unknown) => log.warn({ err: e }, 'agent close failed'));
    await controller.close();
    clearTimeout(force);
    log.info('agent stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

let log: Logger = createLogger({ name: 'ambit-agent' });
try {
  const config = loadConfig(process.env);
  log = createLogger({ name: 'ambit-agent', level: config.logLevel });
  await run(config, log);
} catch (e) {
  log.fatal({ err: e }, 'agent failed to start');
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 200).unref();
}
