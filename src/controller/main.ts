/**
 * Entry of the `ambit-controller` process: the sole reader of process.env. Loads the config,
 * starts the controller (CA + config streams) with its source (manifest files, or a Kubernetes
 * API server: kubernetes-mode.ts) and the admin server, and shuts down on SIGTERM/SIGINT within a
 * deadline.
 */
import { createLogger, type Logger } from '../shared/log.js';
import { createRegistry } from '../shared/metrics.js';
import { ambitVersion } from '../shared/version.js';
import { AdminServer } from './admin.js';
import { loadConfig, readAdminToken, readNodeTokens, type ControllerConfig } from './config.js';
import { Controller } from './controller.js';
import { FileSource } from './source/watch.js';

/** How long shutdown may take before the process exits anyway. */
const SHUTDOWN_DEADLINE_MS = 10_000;

/** Kubernetes mode: informers, TokenReview, the CA Secret, leader election (kubernetes-mode.ts). */
async function runKubernetes(config: Readonly<ControllerConfig>, source: Extract<ControllerConfig['source'], { kind: 'kubernetes' }>, log: Logger): Promise<void> {
  const adminToken = await readAdminToken(config.adminTokenFile);
  const registry = createRegistry({ processMetrics: true, build: { component: 'pilot', tag: ambitVersion() } });
  // Imported here so the manifest source never loads the Kubernetes client.
  const { KubernetesController } = await import('./kubernetes-mode.js');
  const kc = await KubernetesController.start({
    kubeconfig: source.kubeconfig !== undefined ? { file: source.kubeconfig } : { inCluster: true },
    namespace: source.namespace,
    ...(source.podName ? { selfPod: { namespace: source.namespace, name: source.podName } } : {}),
    stateDir: config.stateDir,
    host: config.listen.host,
    port: config.listen.port,
    trustDomain: config.trustDomain,
    clusterId: config.clusterId,
    log,
    registry,
    certTtlMs: config.certTtlMs,
    certMaxTtlMs: config.certMaxTtlMs,
    agentServiceAccount: source.agentServiceAccount,
    proxy: { controllerAddress: source.proxyControllerAddress, logLevel: config.logLevel, ...(source.proxyImage ? { image: source.proxyImage } : {}) },
  });
  let stopping = false;
  let admin: AdminServer | undefined;
  onSignals(log, async () => {
    stopping = true;
    await admin?.close().catch(() => undefined);
    await kc.close().catch((err: unknown) => log.warn({ err }, 'controller close failed'));
  });
  try {
    admin = await AdminServer.start({
      source: kc.controller,
      host: config.admin.host,
      port: config.admin.port,
      log,
      startedAt: kc.controller.startedAt,
      ...(adminToken !== undefined ? { debugToken: adminToken } : {}),
      ready: () => !stopping && kc.ready,
    });
  } catch (err) {
    await kc.close().catch(() => undefined);
    throw err;
  }
  log.info({ grpc: kc.controller.address, admin: admin.address, namespace: source.namespace }, 'controller ready');
}

/** Stops on SIGTERM/SIGINT: runs `stop` within the shutdown deadline, then exits. */
function onSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handle = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'controller shutting down');
    const force = setTimeout(() => {
      log.warn({ deadlineMs: SHUTDOWN_DEADLINE_MS }, 'shutdown deadline passed; exiting');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    force.unref();
    await stop();
    clearTimeout(force);
    log.info('controller stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void handle('SIGTERM'));
  process.once('SIGINT', () => void handle('SIGINT'));
}

async function run(config: Readonly<ControllerConfig>, log: Logger): Promise<void> {
  if (config.source.kind === 'kubernetes') return runKubernetes(config, config.source, log);
  const nodeTokens = await readNodeTokens(config.nodeTokensFile);
  const adminToken = await readAdminToken(config.adminTokenFile);
  if (nodeTokens.size === 0) log.warn({ file: config.nodeTokensFile }, 'no node tokens configured; no agent can authenticate');
  const registry = createRegistry({ processMetrics: true, build: { component: 'pilot', tag: ambitVersion() } });
  const controller = await Controller.start({
    stateDir: config.stateDir,
    host: config.listen.host,
    port: config.listen.port,
    trustDomain: config.trustDomain,
    translate: { clusterId: config.clusterId },
    auth: { nodeTokens },
    log,
    registry,
    certTtlMs: config.certTtlMs,
    certMaxTtlMs: config.certMaxTtlMs,
  });

  let source: FileSource | undefined;
  let admin: AdminServer | undefined;
  let stopping = false;
  onSignals(log, async () => {
    stopping = true;
    source?.close();
    await admin?.close().catch(() => undefined);
    await controller.close().catch((err: unknown) => log.warn({ err: err }, 'controller close failed'));
  });

  try {
    if (config.manifests.length > 0) {
      source = new FileSource({ paths: config.manifests, store: controller.store, log, registry });
      await source.start();
    } else {
      log.warn('no manifests configured (AMBIT_MANIFESTS); serving an empty mesh');
    }
    const src = source;
    admin = await AdminServer.start({
      source: controller,
      host: config.admin.host,
      port: config.admin.port,
      log,
      startedAt: controller.startedAt,
      ...(adminToken !== undefined ? { debugToken: adminToken } : {}),
      ready: () => !stopping && (src === undefined || src.ready),
    });
  } catch (err) {
    source?.close();
    await controller.close().catch(() => undefined);
    throw err;
  }
  log.info({ grpc: controller.address, admin: admin.address, manifests: config.manifests }, 'controller ready');
}

let log: Logger = createLogger({ name: 'ambit-controller' });
try {
  const config = loadConfig(process.env);
  log = createLogger({ name: 'ambit-controller', level: config.logLevel });
  await run(config, log);
} catch (err) {
  log.fatal({ err }, 'controller failed to start');
  log.flush();
  process.exitCode = 1;
  // Give the async log destination a moment to drain, then exit even if handles remain.
  setTimeout(() => process.exit(1), 200).unref();
}
