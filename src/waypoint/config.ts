/**
 * The waypoint process's configuration from its environment (the pod spec local mode or a
 * Deployment gives it): parsed and validated once, every problem in one AMBIT_ERR_CONFIG_INVALID.
 */
import { isIP } from 'node:net';
import type { HostPort } from '../shared/address.js';
import {
  ENV_HBONE_ADDR,
  ENV_METRICS_ADDR,
  ENV_POD_IP,
  ENV_POD_NAME,
  ENV_POD_NAMESPACE,
  ENV_READY_ADDR,
  ENV_SERVICE_ACCOUNT,
  ENV_WAYPOINT_MODE,
  ENV_WAYPOINT_NAME,
  ENV_WAYPOINT_WORKERS,
  EnvReader,
  type ControllerClientSettings,
} from '../shared/env.js';
import type { LogLevel } from '../shared/log.js';
import { isDnsLabel, isDnsSubdomain } from '../shared/validate.js';
import { defaultWorkerCount } from './workers.js';

// src/local/workloads.ts builds waypoint pod specs with these names.
export {
  ENV_CA_ROOT_FILE,
  ENV_CONTROLLER_ADDR,
  ENV_LOG_LEVEL,
  ENV_NODE_NAME,
  ENV_SERVICE_ACCOUNT,
  ENV_TOKEN_FILE,
  ENV_TRUST_DOMAIN,
  ENV_WAYPOINT_MODE,
  ENV_WAYPOINT_NAME,
} from '../shared/env.js';

export type WaypointMode = 'waypoint' | 'gateway';

export interface WaypointConfig extends ControllerClientSettings {
  mode: WaypointMode;
  nodeName: string;
  trustDomain: string;
  clusterId: string;
  podName: string;
  namespace: string;
  podIp: string;
  serviceAccount: string;
  /** Gateway name this waypoint serves (`<namespace>/<gateway>` is the waypoint's key); in gateway mode the pod's own name. */
  gatewayName: string;
  /** HBONE listener, default 0.0.0.0:15008. */
  hboneAddr: HostPort;
  /** Prometheus /metrics and /stats/prometheus, default <pod ip>:15020. */
  metricsAddr: HostPort;
  /** Gateway mode: /healthz/ready, opened once the first config is applied; default <pod ip>:15021. */
  readyAddr: HostPort;
  logLevel: LogLevel;
  certTtlSec: number;
  drainDeadlineMs: number;
  /** Worker threads serving traffic (AMBIT_WAYPOINT_WORKERS: a count, or `auto` for the CPU limit; default 1, the main thread). */
  workers: number;
}

/** Reads the waypoint's configuration from `env`; throws AMBIT_ERR_CONFIG_INVALID listing every problem. */
export function loadWaypointConfig(env: NodeJS.ProcessEnv): Readonly<WaypointConfig> {
  const r = new EnvReader(env);
  const { issues } = r;
  const nodeName = r.nodeName('the node the waypoint pod runs on');
  const client = r.controllerClient();
  const podName = r.required(ENV_POD_NAME, 'the waypoint pod name');
  const namespace = r.required(ENV_POD_NAMESPACE, 'the waypoint pod namespace');
  if (namespace && !isDnsLabel(namespace)) issues.add(ENV_POD_NAMESPACE, 'must be a DNS-1123 label', namespace);
  const podIp = r.required(ENV_POD_IP, 'the waypoint pod IP');
  if (podIp && isIP(podIp) === 0) issues.add(ENV_POD_IP, 'must be an IP address', podIp);
  const mode = r.oneOf<WaypointMode>(ENV_WAYPOINT_MODE, ['waypoint', 'gateway'], 'waypoint');
  const gatewayName = mode === 'gateway' ? (r.text(ENV_WAYPOINT_NAME) ?? podName) : r.required(ENV_WAYPOINT_NAME, 'the waypoint Gateway name');
  if (gatewayName && !isDnsSubdomain(gatewayName)) issues.add(ENV_WAYPOINT_NAME, 'must be a DNS-1123 subdomain', gatewayName);
  const serviceAccount = r.text(ENV_SERVICE_ACCOUNT) ?? gatewayName;
  if (serviceAccount && !isDnsSubdomain(serviceAccount)) issues.add(ENV_SERVICE_ACCOUNT, 'must be a DNS-1123 subdomain', serviceAccount);
  const podHost = podIp.includes(':') ? `[${podIp}]` : podIp || '0.0.0.0';
  return r.finish('waypoint', {
    mode,
    nodeName,
    ...client,
    trustDomain: r.trustDomain(),
    clusterId: r.clusterId(),
    podName,
    namespace,
    podIp,
    serviceAccount,
    gatewayName,
    hboneAddr: r.hostPort(ENV_HBONE_ADDR, '0.0.0.0:15008'),
    metricsAddr: r.hostPort(ENV_METRICS_ADDR, `${podHost}:15020`),
    readyAddr: r.hostPort(ENV_READY_ADDR, `${podHost}:15021`),
    logLevel: r.logLevel(),
    certTtlSec: Math.round(r.certTtlMs() / 1000),
    drainDeadlineMs: r.drainDeadlineMs(),
    workers: workerCount(r),
  });
}

/**
 * AMBIT_WAYPOINT_WORKERS: 1-64, or `auto` for the CPU limit (workers.ts defaultWorkerCount);
 * unset: 1, until worker threads measure better in the benchmark (see docs/design.md 48).
 */
function workerCount(r: EnvReader): number {
  const v = r.text(ENV_WAYPOINT_WORKERS);
  if (v === undefined) return 1;
  if (v === 'auto') return defaultWorkerCount();
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 64) {
    r.issues.add(ENV_WAYPOINT_WORKERS, 'must be an integer 1..64 (worker threads) or auto (the CPU limit)', v);
    return 1;
  }
  return n;
}
