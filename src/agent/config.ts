/**
 * The agent's configuration from its environment: parsed and validated once, every problem
 * collected into one AMBIT_ERR_CONFIG_INVALID, returned deep-frozen. Only `main.ts` calls it.
 */
import { parseHostPort, type HostPort } from '../shared/address.js';
import { LOG_LEVELS, type LogLevel } from '../shared/log.js';
import { Issues, deepFreeze } from '../shared/validate.js';
import { tryParseDuration } from '../shared/duration.js';

export const ENV_NODE_NAME = 'AMBIT_NODE_NAME';
export const ENV_CONTROLLER_ADDR = 'AMBIT_CONTROLLER_ADDR';
export const ENV_CONTROLLER_SERVER_NAME = 'AMBIT_CONTROLLER_SERVER_NAME';
export const ENV_CA_ROOT_FILE = 'AMBIT_CA_ROOT_FILE';
export const ENV_TOKEN_FILE = 'AMBIT_TOKEN_FILE';
export const ENV_CAPTURE = 'AMBIT_CAPTURE';
export const ENV_CGROUP_PATH = 'AMBIT_CGROUP_PATH';
export const ENV_PIN_DIR = 'AMBIT_PIN_DIR';
export const ENV_METRICS_ADDR = 'AMBIT_METRICS_ADDR';
export const ENV_READY_ADDR = 'AMBIT_READY_ADDR';
export const ENV_ADMIN_ADDR = 'AMBIT_ADMIN_ADDR';
export const ENV_LOG_LEVEL = 'AMBIT_LOG_LEVEL';
export const ENV_TRUST_DOMAIN = 'AMBIT_TRUST_DOMAIN';
export const ENV_CLUSTER_ID = 'AMBIT_CLUSTER_ID';
export const ENV_CERT_TTL = 'AMBIT_CERT_TTL';
export const ENV_POOL_IDLE_TIMEOUT = 'AMBIT_POOL_IDLE_TIMEOUT';
export const ENV_DRAIN_DEADLINE = 'AMBIT_DRAIN_DEADLINE';

export const CAPTURE_MODES = ['bpf', 'nft', 'auto'] as const;
export type CaptureSetting = (typeof CAPTURE_MODES)[number];

export interface AgentConfig {
  nodeName: string;
  /** Controller gRPC endpoint (CA + config stream), TLS. */
  controller: HostPort;
  /** Name to verify the controller certificate against when `controller.host` is not in its SANs. */
  controllerServerName: string | undefined;
  caRootFile: string;
  tokenFile: string;
  capture: CaptureSetting;
  cgroupPath: string;
  pinDir: string;
  /** Prometheus /metrics and /stats/prometheus (15020). */
  metricsAddr: HostPort;
  /** /healthz/ready (15021). */
  readyAddr: HostPort;
  /** /config_dump, /debug/connections (15000, localhost). */
  adminAddr: HostPort;
  logLevel: LogLevel;
  trustDomain: string;
  clusterId: string;
  certTtlSec: number;
  poolIdleTimeoutMs: number;
  drainDeadlineMs: number;
}

const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$/;

/** Reads the agent's configuration from `env`; throws AMBIT_ERR_CONFIG_INVALID listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv): Readonly<AgentConfig> {
  const issues = new Issues();
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const required = (name: string, what: string): string | undefined => {
    const v = get(name);
    if (v === undefined) issues.add(name, `is required (${what})`);
    return v;
  };
  const absPath = (name: string, v: string | undefined): void => {
    if (v !== undefined && !v.startsWith('/')) issues.add(name, 'must be an absolute path', v);
  };
  const duration = (name: string, fallback: string, minMs: number): number => {
    const text = get(name) ?? fallback;
    const ms = tryParseDuration(text);
    if (ms === undefined) {
      issues.add(name, 'must be a duration such as "5s" or "5m"', text);
      return 0;
    }
    if (ms < minMs) issues.add(name, `must be at least ${minMs} ms`, text);
    return ms;
  };

  const nodeName = required(ENV_NODE_NAME, 'the Kubernetes node this agent serves');
  if (nodeName !== undefined && !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(nodeName)) {
    issues.add(ENV_NODE_NAME, 'must be a Kubernetes node name (lowercase DNS subdomain)', nodeName);
  }
  const controllerText = required(ENV_CONTROLLER_ADDR, 'host:port of the controller, e.g. ambit-controller.ambit-system:15012');
  const controller = controllerText === undefined ? undefined : parseHostPort(controllerText, ENV_CONTROLLER_ADDR, issues);
  if (controller && controller.port === 0) issues.add(ENV_CONTROLLER_ADDR, 'port must not be 0', controllerText);
  const caRootFile = required(ENV_CA_ROOT_FILE, 'PEM file of the mesh root certificate');
  absPath(ENV_CA_ROOT_FILE, caRootFile);
  const tokenFile = required(ENV_TOKEN_FILE, 'file holding the node bearer token');
  absPath(ENV_TOKEN_FILE, tokenFile);

  const capture = (get(ENV_CAPTURE) ?? 'auto') as CaptureSetting;
  if (!(CAPTURE_MODES as readonly string[]).includes(capture)) issues.add(ENV_CAPTURE, `must be one of ${CAPTURE_MODES.join(', ')}`, capture);
  const cgroupPath = get(ENV_CGROUP_PATH) ?? '/sys/fs/cgroup';
  absPath(ENV_CGROUP_PATH, cgroupPath);
  const pinDir = get(ENV_PIN_DIR) ?? '/sys/fs/bpf/ambit';
  absPath(ENV_PIN_DIR, pinDir);

  const metricsAddr = parseHostPort(get(ENV_METRICS_ADDR) ?? '0.0.0.0:15020', ENV_METRICS_ADDR, issues);
  const readyAddr = parseHostPort(get(ENV_READY_ADDR) ?? '0.0.0.0:15021', ENV_READY_ADDR, issues);
  const adminAddr = parseHostPort(get(ENV_ADMIN_ADDR) ?? '127.0.0.1:15000', ENV_ADMIN_ADDR, issues);
  const addrs = [
    [ENV_METRICS_ADDR, metricsAddr],
    [ENV_READY_ADDR, readyAddr],
    [ENV_ADMIN_ADDR, adminAddr],
  ] as const;
  for (let i = 0; i < addrs.length; i++) {
    for (let j = i + 1; j < addrs.length; j++) {
      const a = addrs[i]![1];
      const b = addrs[j]![1];
      if (a && b && a.port !== 0 && a.port === b.port && a.host === b.host) issues.add(addrs[j]![0], `must differ from ${addrs[i]![0]}`, `${b.host}:${b.port}`);
    }
  }

  const logLevel = (get(ENV_LOG_LEVEL) ?? 'info') as LogLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) issues.add(ENV_LOG_LEVEL, `must be one of ${LOG_LEVELS.join(', ')}`, logLevel);
  const trustDomain = get(ENV_TRUST_DOMAIN) ?? 'cluster.local';
  if (trustDomain.length > 255 || !TRUST_DOMAIN.test(trustDomain)) issues.add(ENV_TRUST_DOMAIN, 'must be a lowercase trust domain such as cluster.local', trustDomain);
  const clusterId = get(ENV_CLUSTER_ID) ?? 'Kubernetes';
  if (!/^[A-Za-z0-9][-A-Za-z0-9_.]*$/.test(clusterId)) issues.add(ENV_CLUSTER_ID, 'must be letters, digits, "-", "_" or "."', clusterId);
  const certTtlMs = duration(ENV_CERT_TTL, '24h', 60_000);
  const poolIdleTimeoutMs = duration(ENV_POOL_IDLE_TIMEOUT, '5m', 1000);
  const drainDeadlineMs = duration(ENV_DRAIN_DEADLINE, '5s', 0);

  issues.throwIfAny('AMBIT_ERR_CONFIG_INVALID', 'invalid agent environment');
  return deepFreeze({
    nodeName: nodeName as string,
    controller: controller as HostPort,
    controllerServerName: get(ENV_CONTROLLER_SERVER_NAME),
    caRootFile: caRootFile as string,
    tokenFile: tokenFile as string,
    capture,
    cgroupPath,
    pinDir,
    metricsAddr: metricsAddr as HostPort,
    readyAddr: readyAddr as HostPort,
    adminAddr: adminAddr as HostPort,
    logLevel,
    trustDomain,
    clusterId,
    certTtlSec: Math.round(certTtlMs / 1000),
    poolIdleTimeoutMs,
    drainDeadlineMs,
  });
}
