/**
 * Entry of `ambit waypoint`: load config from the environment, get the waypoint's workload
 * certificate from the controller CA (authenticated with the node token, like an agent), subscribe
 * to the config stream with role waypoint, serve HBONE on 15008 and metrics on 15020; SIGTERM or
 * SIGINT drain and stop. In gateway mode (AMBIT_WAYPOINT_MODE=gateway) it subscribes as role
 * gateway for its pod, opens the ingress ports the controller pushes instead of HBONE, and answers
 * /healthz/ready on 15021 once the first config is applied (Istio's ingress gateway readiness port).
 */
import { readFile } from 'node:fs/promises';
import type * as http from 'node:http';
import { nodeHttp } from '../shared/node-builtins.js';
import * as grpc from '@grpc/grpc-js';
import { AmbitError, errorCode, errorMessage } from '../shared/errors.js';
import { formatSpiffeId } from '../shared/identity.js';
import { createLogger, type Logger } from '../shared/log.js';
import { createRegistry } from '../shared/metrics.js';
import { ALL_RESOURCE_TYPES, WAYPOINT_RESOURCE_TYPES } from '../shared/model.js';
import { splitPemChain } from '../shared/tls.js';
import { ConfigClient } from '../shared/xds/client.js';
import { createCaClient } from '../shared/certs/ca-client.js';
import { CertManager } from '../shared/certs/cert-manager.js';
import { loadWaypointConfig, type WaypointConfig } from './config.js';
import { Waypoint } from './waypoint.js';

function hostPort(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
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
    log.fatal({ err: errorMessage(e), code: errorCode(e) }, 'waypoint failed to start');
    return 1;
  }
}

async function run(config: Readonly<WaypointConfig>, log: Logger): Promise<number> {
  const registry = createRegistry({ processMetrics: true });
  let rootsText: string;
  try {
    rootsText = await readFile(config.caRootFile, 'utf8');
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `cannot read the mesh root ${config.caRootFile}: ${errorMessage(e)}`, { cause: e });
  }
  const rootsPem = splitPemChain(rootsText);
  const readToken = async (): Promise<string> => (await readFile(config.tokenFile, 'utf8')).trim();
  const controllerAddr = hostPort(config.controller);
  const caClient = createCaClient({ address: controllerAddr, rootsPem, token: readToken, ...(config.controllerServerName ? { serverName: config.controllerServerName } : {}) });
  const certs = new CertManager({ fetcher: caClient, rootsPem, ttlSec: config.certTtlSec, registry, log });
  const identity = formatSpiffeId({ trustDomain: config.trustDomain, namespace: config.namespace, serviceAccount: config.serviceAccount });
  const name = `${config.namespace}/${config.gatewayName}`;
  const gatewayMode = config.mode === 'gateway';
  const waypoint = new Waypoint({
    name,
    podIp: config.podIp,
    identity,
    trustDomain: config.trustDomain,
    clusterId: config.clusterId,
    log,
    registry,
    getCertificate: (id) => certs.getCertificate(id),
    ...(gatewayMode
      ? {
          gateway: {
            source: { principal: identity, workload: config.gatewayName, namespace: config.namespace, app: config.gatewayName, canonicalService: config.gatewayName, cluster: config.clusterId },
          },
        }
      : {}),
  });

  let synced = false;
  const metrics = nodeHttp.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics' || path === '/stats/prometheus') {
      registry.metrics().then(
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
    ready.once('error', (e) => log.error({ err: errorMessage(e), addr: hostPort(config.readyAddr) }, 'readiness port cannot listen'));
    ready.listen(config.readyAddr.port, config.readyAddr.host);
  };
  await new Promise<void>((resolve, reject) => {
    metrics.once('error', (e) => reject(new AmbitError('AMBIT_ERR_CONFIG_INVALID', `waypoint metrics cannot listen on ${hostPort(config.metricsAddr)}: ${e.message}`, { cause: e })));
    metrics.listen(config.metricsAddr.port, config.metricsAddr.host, () => resolve());
  });

  const client = new ConfigClient({
    address: controllerAddr,
    credentials: grpc.credentials.createSsl(Buffer.from(rootsPem.join('\n'))),
    ...(config.controllerServerName ? { channelOptions: { 'grpc.ssl_target_name_override': config.controllerServerName } } : {}),
    callMetadata: async () => {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${await readToken()}`);
      return md;
    },
    node: gatewayMode
      ? { id: `gateway~${config.podName}.${config.namespace}`, nodeName: config.nodeName, role: 'gateway', metadata: { pod: `${config.namespace}/${config.podName}`, clusterId: config.clusterId } }
      : { id: `waypoint~${config.podName}.${config.namespace}`, nodeName: config.nodeName, role: 'waypoint', metadata: { waypoint: name, clusterId: config.clusterId } },
    types: gatewayMode ? ALL_RESOURCE_TYPES : WAYPOINT_RESOURCE_TYPES,
    onUpdate: async (state) => {
      waypoint.applyConfig(state);
      await waypoint.applyListeners(state);
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
    log.info({ gateway: name, identity, controller: controllerAddr, metrics: hostPort(config.metricsAddr), ready: hostPort(config.readyAddr) }, 'ingress gateway started');
  } else {
    // The HBONE listener needs the certificate: it opens once the CA answered (retried by CertManager).
    await waypoint.listenHbone(config.hboneAddr.port, config.hboneAddr.host);
    log.info({ waypoint: name, identity, controller: controllerAddr, hbone: hostPort(config.hboneAddr), metrics: hostPort(config.metricsAddr) }, 'waypoint started');
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
        .catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'waypoint close failed'))
        .then(async () => {
          metrics.close();
          ready.close();
          await certs.close().catch(() => undefined);
          caClient.close();
          clearTimeout(force);
          log.info('waypoint stopped');
          resolve(0);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
