/**
 * Entry of `ambit waypoint`: load config from the environment, get the waypoint's workload
 * certificate from the controller CA (authenticated with the node token, like an agent), subscribe
 * to the config stream with role waypoint, serve HBONE on 15008 and metrics on 15020; SIGTERM or
 * SIGINT drain and stop. In gateway mode (AMBIT_WAYPOINT_MODE=gateway) it subscribes as role
 * gateway for its pod, opens the ingress ports the controller pushes instead of HBONE, and answers
 * /healthz/ready on 15021 once the first config is applied (Istio's ingress gateway readiness port).
 */
import { nodeHttp } from '../shared/node-builtins.js';
import { AmbitError, errorMessage } from '../shared/errors.js';
import { formatSpiffeId } from '../shared/identity.js';
import { createLogger, type Logger } from '../shared/log.js';
import { createRegistry } from '../shared/metrics.js';
import { ambitVersion } from '../shared/version.js';
import { ALL_RESOURCE_TYPES, WAYPOINT_RESOURCE_TYPES } from '../shared/resources.js';
import { connectToController } from '../shared/controller-client.js';
import { formatHostPort } from '../shared/address.js';
import { flushCopyCounters } from '../shared/hbone/copy.js';
import type { Registry } from 'prom-client';
import type { TunnelCertificate } from '../shared/hbone/tunnel.js';
import type { ConfigState } from '../shared/xds/client.js';
import { loadWaypointConfig, type WaypointConfig } from './config.js';
import { Waypoint, type WaypointOptions } from './waypoint.js';
import { WaypointWorkers } from './workers.js';

/** What serves the traffic: one Waypoint on the main thread, or worker threads running one each (workers.ts). */
interface Serving {
  /** Applies a config state (routes, endpoints, and a gateway's ports); resolves once it is in force everywhere. */
  applyConfig(state: ConfigState): Promise<void>;
  listenHbone(port: number, host: string): Promise<unknown>;
  /** The registry /metrics renders: the main thread's, with the workers' series merged in. */
  registry(): Promise<Registry>;
  close(deadlineMs: number): Promise<void>;
}

type PlainOptions = Pick<WaypointOptions, 'name' | 'podIp' | 'identity' | 'trustDomain' | 'clusterId' | 'gateway'>;

async function startServing(config: Readonly<WaypointConfig>, opts: PlainOptions, log: Logger, registry: Registry, getCertificate: (id: string) => Promise<TunnelCertificate>): Promise<Serving> {
  if (config.workers <= 1) {
    const waypoint = new Waypoint({ ...opts, log, registry, getCertificate });
    return {
      applyConfig: async (state) => {
        waypoint.applyConfig(state);
        await waypoint.applyListeners(state);
      },
      listenHbone: (port, host) => waypoint.listenHbone(port, host),
      registry: () => Promise.resolve(registry),
      close: (ms) => waypoint.close(ms),
    };
  }
  const workers = await WaypointWorkers.start({ count: config.workers, init: { waypoint: opts, logLevel: config.logLevel }, log, getCertificate });
  return {
    applyConfig: (state) => workers.applyConfig(state),
    listenHbone: (port, host) => workers.listenHbone(port, host),
    registry: () => workers.registry(registry),
    close: (ms) => workers.close(ms),
  };
}

/** Runs the waypoint until SIGTERM/SIGINT; resolves with the exit code. */
export async function runWaypoint(env: NodeJS.ProcessEnv): Promise<number> {
  let log: Logger = createLogger({ name: 'ambit-waypoint' });
  let config: Readonly<WaypointConfig>;
  try {
    config = loadWaypointConfig(env);
    log = createLogger({ name: 'ambit-waypoint', level: config.logLevel });
    return await run(config, log);
  } catch (e) {
    log.fatal({ err: e }, 'waypoint failed to start');
    return 1;
  }
}

async function run(config: Readonly<WaypointConfig>, log: Logger): Promise<number> {
  const registry = createRegistry({ processMetrics: true, build: { component: 'proxy', tag: ambitVersion() } });
  const controller = await connectToController(config, { registry, log });
  const { certs } = controller;
  const identity = formatSpiffeId({ trustDomain: config.trustDomain, namespace: config.namespace, serviceAccount: config.serviceAccount });
  const name = `${config.namespace}/${config.gatewayName}`;
  const gatewayMode = config.mode === 'gateway';
  const waypoint = await startServing(config, {
    name,
    podIp: config.podIp,
    identity,
    trustDomain: config.trustDomain,
    clusterId: config.clusterId,
    ...(gatewayMode
      ? {
          gateway: {
            source: { principal: identity, workload: config.gatewayName, namespace: config.namespace, canonicalService: config.gatewayName, cluster: config.clusterId },
          },
        }
      : {}),
  }, log, registry, (id) => certs.getCertificate(id));

  let synced = false;
  const metrics = nodeHttp.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics' || path === '/stats/prometheus') {
      flushCopyCounters();
      waypoint
        .registry()
        .then((r) => r.metrics())
        .then(
          (text) => {
            res.writeHead(200, { 'content-type': registry.contentType });
            res.end(text);
          },
          (e: unknown) => {
            res.writeHead(500);
            res.end(errorMessage(e));
          },
        );
    } else if (path === '/healthz/ready') {
      res.writeHead(synced ? 200 : 503);
      res.end(synced ? 'ready\n' : 'waiting for config\n');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  // The readiness port opens only once the first config is applied (and, for a gateway, its
  // listeners match it), so a pod that is "ready" (ports listening) really routes.
  const ready = nodeHttp.createServer((req, res) => metrics.emit('request', req, res));
  let readyOpened = false;
  const openReady = (): void => {
    if (readyOpened) return;
    readyOpened = true;
    ready.once('error', (e) => log.error({ err: e, addr: formatHostPort(config.readyAddr) }, 'readiness port cannot listen'));
    ready.listen(config.readyAddr.port, config.readyAddr.host);
  };
  await new Promise<void>((resolve, reject) => {
    metrics.once('error', (e) => reject(new AmbitError('AMBIT_ERR_CONFIG_INVALID', `waypoint metrics cannot listen on ${formatHostPort(config.metricsAddr)}: ${e.message}`, { cause: e })));
    metrics.listen(config.metricsAddr.port, config.metricsAddr.host, () => resolve());
  });

  const client = controller.configClient({
    node: gatewayMode
      ? { id: `gateway~${config.podName}.${config.namespace}`, nodeName: config.nodeName, role: 'gateway', metadata: { pod: `${config.namespace}/${config.podName}`, clusterId: config.clusterId } }
      : { id: `waypoint~${config.podName}.${config.namespace}`, nodeName: config.nodeName, role: 'waypoint', metadata: { waypoint: name, clusterId: config.clusterId } },
    types: gatewayMode ? ALL_RESOURCE_TYPES : WAYPOINT_RESOURCE_TYPES,
    onUpdate: async (state) => {
      await waypoint.applyConfig(state);
      synced = true;
      openReady();
    },
    log,
    registry,
  });
  client.start();
  if (gatewayMode) {
    // Upstream tunnels need the certificate; fetch it now so a CA problem shows at start.
    await certs.getCertificate(identity);
    log.info({ gateway: name, identity, controller: controller.address, metrics: formatHostPort(config.metricsAddr), ready: formatHostPort(config.readyAddr) }, 'ingress gateway started');
  } else {
    // The HBONE listener needs the certificate: it opens once the CA answered (retried by CertManager).
    await waypoint.listenHbone(config.hboneAddr.port, config.hboneAddr.host);
    log.info({ waypoint: name, identity, controller: controller.address, hbone: formatHostPort(config.hboneAddr), metrics: formatHostPort(config.metricsAddr), workers: config.workers }, 'waypoint started');
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'waypoint shutting down');
      const force = setTimeout(() => resolve(1), config.drainDeadlineMs + 5000);
      force.unref();
      client.close();
      void waypoint
        .close(config.drainDeadlineMs)
        .catch((e: unknown) => log.warn({ err: e }, 'waypoint close failed'))
        .then(async () => {
          metrics.close();
          ready.close();
          await controller.close();
          clearTimeout(force);
          log.info('waypoint stopped');
          resolve(0);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
