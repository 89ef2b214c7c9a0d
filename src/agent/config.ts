/**
 * The agent's configuration from its environment: parsed and validated once, every problem
 * collected into one AMBIT_ERR_CONFIG_INVALID, returned deep-frozen. Only `main.ts` calls it.
 */
import type { HostPort } from '../shared/address.js';
import {
  ENV_ADMIN_ADDR,
  ENV_CAPTURE,
  ENV_CGROUP_PATH,
  ENV_METRICS_ADDR,
  ENV_PIN_DIR,
  ENV_POOL_IDLE_TIMEOUT,
  ENV_READY_ADDR,
  ENV_SAME_NODE_FAST_PATH,
  EnvReader,
  type ControllerClientSettings,
} from '../shared/env.js';
import type { LogLevel } from '../shared/log.js';

export const CAPTURE_MODES = ['bpf', 'nft', 'auto'] as const;
export type CaptureSetting = (typeof CAPTURE_MODES)[number];

export interface AgentConfig extends ControllerClientSettings {
  nodeName: string;
  capture: CaptureSetting;
  /** cgroup v2 folder capture attaches at; undefined: the cgroup2 mount found in /proc/mounts. */
  cgroupPath: string | undefined;
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
  /** Pod-to-pod connections within this node skip TLS (AMBIT_SAME_NODE_FAST_PATH). */
  sameNodeFastPath: boolean;
}

/** Reads the agent's configuration from `env`; throws AMBIT_ERR_CONFIG_INVALID listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv): Readonly<AgentConfig> {
  const r = new EnvReader(env);
  const nodeName = r.nodeName('the Kubernetes node this agent serves');
  const client = r.controllerClient();
  const capture = r.oneOf(ENV_CAPTURE, CAPTURE_MODES, 'auto');
  // Unset: capture attaches at the cgroup2 mount it finds in /proc/mounts.
  const cgroupPath = r.optionalPath(ENV_CGROUP_PATH);
  const pinDir = r.path(ENV_PIN_DIR, '/sys/fs/bpf/ambit');
  const metricsAddr = r.hostPort(ENV_METRICS_ADDR, '0.0.0.0:15020');
  const readyAddr = r.hostPort(ENV_READY_ADDR, '0.0.0.0:15021');
  const adminAddr = r.hostPort(ENV_ADMIN_ADDR, '127.0.0.1:15000');
  r.distinctListeners([
    [ENV_METRICS_ADDR, metricsAddr],
    [ENV_READY_ADDR, readyAddr],
    [ENV_ADMIN_ADDR, adminAddr],
  ]);
  return r.finish('agent', {
    nodeName,
    ...client,
    capture,
    cgroupPath,
    pinDir,
    metricsAddr,
    readyAddr,
    adminAddr,
    logLevel: r.logLevel(),
    trustDomain: r.trustDomain(),
    clusterId: r.clusterId(),
    certTtlSec: Math.round(r.certTtlMs() / 1000),
    poolIdleTimeoutMs: r.durationMs(ENV_POOL_IDLE_TIMEOUT, '5m', 1000),
    drainDeadlineMs: r.drainDeadlineMs(),
    sameNodeFastPath: r.oneOf(ENV_SAME_NODE_FAST_PATH, ['on', 'off'], 'on') === 'on',
  });
}
