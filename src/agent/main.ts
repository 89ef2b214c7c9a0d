/**
 * Entry of the `ambit-agent` process and the sole reader of process.env: load config, open
 * capture (BPF or nft), certificates from the controller's CA, the config stream, the per-pod
 * proxies and the admin endpoints; SIGTERM/SIGINT drain and exit.
 */
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { createLogger, type Logger } from '../shared/log.js';
import { AmbitError, errorCode, errorMessage } from '../shared/errors.js';
import { createRegistry } from '../shared/metrics.js';
import { splitPemChain } from '../shared/tls.js';
import { ConfigClient } from '../shared/xds/client.js';
import { socketFd } from '../../native/netns.js';
import { trimMallocHeap } from '../../native/bindings.js';
import { loadConfig, type AgentConfig } from './config.js';
import { Agent } from './agent.js';
import { openCapture } from './capture/open.js';
import { originalDestination } from './capture/orig-dst.js';
import { createCaClient } from '../shared/certs/ca-client.js';
import { CertManager } from '../shared/certs/cert-manager.js';
import { NetnsPodSockets } from './proxy/netns-sockets.js';
import { registerNodeMetrics } from './node-metrics.js';
import { typeLabel } from '../shared/xds/resource-codec.js';

async function run(config: Readonly<AgentConfig>, log: Logger): Promise<void> {
  const registry = createRegistry({ processMetrics: true });
  let rootsText: string;
  try {
    rootsText = await readFile(config.caRootFile, 'utf8');
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `cannot read the mesh root ${config.caRootFile}: ${errorMessage(e)}; is the controller's root-cert.pem mounted?`, { cause: e });
  }
  const rootsPem = splitPemChain(rootsText);
  const readToken = async (): Promise<string> => (await readFile(config.tokenFile, 'utf8')).trim();
  const controllerAddr = config.controller.host.includes(':') ? `[${config.controller.host}]:${config.controller.port}` : `${config.controller.host}:${config.controller.port}`;

  const caClient = createCaClient({
    address: controllerAddr,
    rootsPem,
    token: readToken,
    ...(config.controllerServerName ? { serverName: config.controllerServerName } : {}),
  });
  const certs = new CertManager({ fetcher: caClient, rootsPem, ttlSec: config.certTtlSec, registry, log });
  const { capture, decision } = await openCapture({ mode: config.capture, cgroupPath: config.cgroupPath, pinDir: config.pinDir, log });

  let client: ConfigClient | undefined;
  const agent = new Agent({
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
    onStatusChange: () => client?.reportStatus(),
    releaseFreedMemory: trimMallocHeap,
  });
  await agent.startAdmin({ metrics: config.metricsAddr, ready: config.readyAddr, admin: config.adminAddr });

  client = new ConfigClient({
    address: controllerAddr,
    credentials: grpc.credentials.createSsl(Buffer.from(rootsPem.join('\n'))),
    ...(config.controllerServerName ? { channelOptions: { 'grpc.ssl_target_name_override': config.controllerServerName } } : {}),
    callMetadata: async () => {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${await readToken()}`);
      return md;
    },
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
  log.info({ node: config.nodeName, controller: controllerAddr, capture: decision.mode, captureReason: 'reason' in decision ? decision.reason : undefined }, 'agent started');

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
    client?.close();
    await agent.close(config.drainDeadlineMs).catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'agent close failed'));
    await certs.close().catch(() => undefined);
    caClient.close();
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
  log.fatal({ err: e, code: errorCode(e) }, 'agent failed to start');
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 200).unref();
}
