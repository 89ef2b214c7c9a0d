/**
 * The waypoint process's configuration from its environment (the pod spec local mode or a
 * Deployment gives it): parsed and validated once, every problem in one AMBIT_ERR_CONFIG_INVALID.
 */
import { isIP } from 'node:net';
import { parseHostPort, type HostPort } from '../shared/address.js';
import { LOG_LEVELS, type LogLevel } from '../shared/log.js';
import { Issues, deepFreeze, isDnsLabel, isDnsSubdomain } from '../shared/validate.js';
import { tryParseDuration } from '../shared/duration.js';

export const ENV_NODE_NAME = 'AMBIT_NODE_NAME';
export const ENV_CONTROLLER_ADDR = 'AMBIT_CONTROLLER_ADDR';
export const ENV_CONTROLLER_SERVER_NAME = 'AMBIT_CONTROLLER_SERVER_NAME';
export const ENV_CA_ROOT_FILE = 'AMBIT_CA_ROOT_FILE';
export const ENV_TOKEN_FILE = 'AMBIT_TOKEN_FILE';
export const ENV_POD_NAME = 'POD_NAME';
export const ENV_POD_NAMESPACE = 'POD_NAMESPACE';
export const ENV_POD_IP = 'POD_IP';
export const ENV_WAYPOINT_NAME = 'AMBIT_WAYPOINT_NAME';
export const ENV_SERVICE_ACCOUNT = 'AMBIT_SERVICE_ACCOUNT';
export const ENV_HBONE_ADDR = 'AMBIT_HBONE_ADDR';
export const ENV_METRICS_ADDR = 'AMBIT_METRICS_ADDR';
export const ENV_LOG_LEVEL = 'AMBIT_LOG_LEVEL';
export const ENV_TRUST_DOMAIN = 'AMBIT_TRUST_DOMAIN';
export const ENV_CLUSTER_ID = 'AMBIT_CLUSTER_ID';
export const ENV_CERT_TTL = 'AMBIT_CERT_TTL';
export const ENV_DRAIN_DEADLINE = 'AMBIT_DRAIN_DEADLINE';
/** `waypoint` (default) or `gateway`: an ingress gateway serving the Istio Gateways that select its pod. */
export const ENV_WAYPOINT_MODE = 'AMBIT_WAYPOINT_MODE';
/** Gateway mode: where /healthz/ready answers once listeners are open (default <pod ip>:15021). */
export const ENV_READY_ADDR = 'AMBIT_READY_ADDR';

export type WaypointMode = 'waypoint' | 'gateway';

export interface WaypointConfig {
  mode: WaypointMode;
  nodeName: string;
  controller: HostPort;
  controllerServerName: string | undefined;
  caRootFile: string;
  /** Bearer token file of the node the waypoint pod runs on (the CA checks the pod is there). */
  tokenFile: string;
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
}

/** Reads the waypoint's configuration from `env`; throws AMBIT_ERR_CONFIG_INVALID listing every problem. */
export function loadWaypointConfig(env: NodeJS.ProcessEnv): Readonly<WaypointConfig> {
  const issues = new Issues();
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const required = (name: string, what: string): string => {
    const v = get(name);
    if (v === undefined) issues.add(name, `is required (${what})`);
    return v ?? '';
  };
  const absPath = (name: string, v: string): void => {
    if (v !== '' && !v.startsWith('/')) issues.add(name, 'must be an absolute path', v);
  };
  const duration = (name: string, fallback: string, minMs: number): number => {
    const text = get(name) ?? fallback;
    const ms = tryParseDuration(text);
    if (ms === undefined || ms < minMs) {
      issues.add(name, `must be a duration of at least ${minMs} ms, such as "5s"`, text);
      return minMs;
    }
    return ms;
  };

  const nodeName = required(ENV_NODE_NAME, 'the node the waypoint pod runs on');
  if (nodeName && !isDnsSubdomain(nodeName)) issues.add(ENV_NODE_NAME, 'must be a Kubernetes node name', nodeName);
  const controllerText = required(ENV_CONTROLLER_ADDR, 'host:port of the controller');
  const controller = controllerText ? parseHostPort(controllerText, ENV_CONTROLLER_ADDR, issues) : undefined;
  const caRootFile = required(ENV_CA_ROOT_FILE, 'PEM file of the mesh root certificate');
  absPath(ENV_CA_ROOT_FILE, caRootFile);
  const tokenFile = required(ENV_TOKEN_FILE, 'file holding the bearer token');
  absPath(ENV_TOKEN_FILE, tokenFile);
  const podName = required(ENV_POD_NAME, 'the waypoint pod name');
  const namespace = required(ENV_POD_NAMESPACE, 'the waypoint pod namespace');
  if (namespace && !isDnsLabel(namespace)) issues.add(ENV_POD_NAMESPACE, 'must be a DNS-1123 label', namespace);
  const podIp = required(ENV_POD_IP, 'the waypoint pod IP');
  if (podIp && isIP(podIp) === 0) issues.add(ENV_POD_IP, 'must be an IP address', podIp);
  const modeText = get(ENV_WAYPOINT_MODE) ?? 'waypoint';
  if (modeText !== 'waypoint' && modeText !== 'gateway') issues.add(ENV_WAYPOINT_MODE, 'must be waypoint or gateway', modeText);
  const mode: WaypointMode = modeText === 'gateway' ? 'gateway' : 'waypoint';
  const gatewayName = mode === 'gateway' ? (get(ENV_WAYPOINT_NAME) ?? podName) : required(ENV_WAYPOINT_NAME, 'the waypoint Gateway name');
  if (gatewayName && !isDnsSubdomain(gatewayName)) issues.add(ENV_WAYPOINT_NAME, 'must be a DNS-1123 subdomain', gatewayName);
  const serviceAccount = get(ENV_SERVICE_ACCOUNT) ?? gatewayName;
  if (serviceAccount && !isDnsSubdomain(serviceAccount)) issues.add(ENV_SERVICE_ACCOUNT, 'must be a DNS-1123 subdomain', serviceAccount);
  const hboneAddr = parseHostPort(get(ENV_HBONE_ADDR) ?? '0.0.0.0:15008', ENV_HBONE_ADDR, issues);
  const podHost = podIp.includes(':') ? `[${podIp}]` : podIp || '0.0.0.0';
  const metricsAddr = parseHostPort(get(ENV_METRICS_ADDR) ?? `${podHost}:15020`, ENV_METRICS_ADDR, issues);
  const readyAddr = parseHostPort(get(ENV_READY_ADDR) ?? `${podHost}:15021`, ENV_READY_ADDR, issues);
  const logLevel = (get(ENV_LOG_LEVEL) ?? 'info') as LogLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) issues.add(ENV_LOG_LEVEL, `must be one of ${LOG_LEVELS.join(', ')}`, logLevel);
  const trustDomain = get(ENV_TRUST_DOMAIN) ?? 'cluster.local';
  if (!/^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$/.test(trustDomain)) issues.add(ENV_TRUST_DOMAIN, 'must be a lowercase trust domain such as cluster.local', trustDomain);
  const clusterId = get(ENV_CLUSTER_ID) ?? 'Kubernetes';
  const certTtlMs = duration(ENV_CERT_TTL, '24h', 60_000);
  const drainDeadlineMs = duration(ENV_DRAIN_DEADLINE, '5s', 0);

  issues.throwIfAny('AMBIT_ERR_CONFIG_INVALID', 'invalid waypoint environment');
  return deepFreeze({
    mode,
    nodeName,
    controller: controller as HostPort,
    controllerServerName: get(ENV_CONTROLLER_SERVER_NAME),
    caRootFile,
    tokenFile,
    trustDomain,
    clusterId,
    podName,
    namespace,
    podIp,
    serviceAccount,
    gatewayName,
    hboneAddr: hboneAddr as HostPort,
    metricsAddr: metricsAddr as HostPort,
    readyAddr: readyAddr as HostPort,
    logLevel,
    certTtlSec: Math.round(certTtlMs / 1000),
    drainDeadlineMs,
  });
}
