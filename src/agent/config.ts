/**
 * The agent's configuration from its environment: parsed and validated once, every problem
 * collected into one AMBIT_ERR_CONFIG_INVALID, returned deep-frozen. Only `main.ts` calls it.
 */
import { dirname, join } from 'node:path';
import type { HostPort } from '../shared/address.js';
import {
  ENV_ADMIN_ADDR,
  ENV_CAPTURE,
  ENV_CGROUP_PATH,
  ENV_CNI_SOCKET,
  ENV_DNS_CAPTURE,
  ENV_DNS_UPSTREAMS,
  ENV_KUBECONFIG,
  ENV_KUBERNETES_SERVICE_HOST,
  ENV_KUBERNETES_SERVICE_PORT,
  ENV_METRICS_ADDR,
  ENV_NETNS_STATE_FILE,
  ENV_PIN_DIR,
  ENV_POOL_IDLE_TIMEOUT,
  ENV_READY_ADDR,
  ENV_SAME_NODE_FAST_PATH,
  ENV_WORKERS,
  EnvReader,
  parseHostPort,
  type ControllerClientSettings,
} from '../shared/env.js';
import { isIP } from 'node:net';
import type { LogLevel } from '../shared/log.js';
import { defaultWorkerCount } from './workers/pool.js';

/** Most data-path worker threads AMBIT_WORKERS accepts. */
export const MAX_WORKERS = 256;

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
  /** The CNI plugin's socket this agent serves; undefined: no CNI hand-off (local mode without a CNI chain). */
  cniSocket: string | undefined;
  /** Where CNI hand-overs are recorded across restarts; undefined: in memory only. */
  netnsStateFile: string | undefined;
  /** The Kubernetes API (pod annotations); undefined: none (no kubeconfig, not in a cluster). */
  kube: { kubeconfig: string } | { inCluster: true; server: string } | undefined;
  /** Pod-to-pod connections within this node skip TLS (AMBIT_SAME_NODE_FAST_PATH). */
  sameNodeFastPath: boolean;
  /** Data-path worker threads (AMBIT_WORKERS); 1: the data path runs on the main thread. */
  workers: number;
  /** Enrolled pods' DNS goes to the agent's DNS proxy (AMBIT_DNS_CAPTURE, default on). */
  dnsCapture: boolean;
  /** Resolvers the DNS proxy forwards to (AMBIT_DNS_UPSTREAMS); undefined: /etc/resolv.conf's. */
  dnsUpstreams: HostPort[] | undefined;
}

/** AMBIT_DNS_UPSTREAMS: IP literals, port 53 unless given; undefined when unset. */
function dnsUpstreams(r: EnvReader): HostPort[] | undefined {
  const entries = r.list(ENV_DNS_UPSTREAMS, 'resolver addresses');
  if (entries.length === 0) return undefined;
  const out: HostPort[] = [];
  for (const e of entries) {
    const hp = isIP(e) !== 0 ? { host: e, port: 53 } : parseHostPort(e, ENV_DNS_UPSTREAMS, r.issues);
    if (hp === undefined) continue;
    if (isIP(hp.host) === 0 || hp.port === 0) r.issues.add(ENV_DNS_UPSTREAMS, 'each resolver must be an IP address with an optional port 1-65535', e);
    else out.push(hp);
  }
  return out;
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
  const cniSocket = r.optionalPath(ENV_CNI_SOCKET);
  // Beside the socket by default: the folder is node-local and survives agent restarts.
  const netnsStateFile = r.optionalPath(ENV_NETNS_STATE_FILE) ?? (cniSocket ? join(dirname(cniSocket), 'netns-state.json') : undefined);
  const kubeconfig = r.optionalPath(ENV_KUBECONFIG);
  // Set by the kubelet in every container: the agent runs in a cluster.
  const apiHost = r.text(ENV_KUBERNETES_SERVICE_HOST);
  const apiPort = r.integer(ENV_KUBERNETES_SERVICE_PORT, 443, 1, 65535);
  const inCluster = apiHost !== undefined ? { inCluster: true as const, server: `https://${apiHost.includes(':') ? `[${apiHost}]` : apiHost}:${apiPort}` } : undefined;
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
    cniSocket,
    netnsStateFile,
    kube: kubeconfig ? { kubeconfig } : inCluster,
    sameNodeFastPath: r.oneOf(ENV_SAME_NODE_FAST_PATH, ['on', 'off'], 'on') === 'on',
    workers: r.integer(ENV_WORKERS, Math.min(defaultWorkerCount(), MAX_WORKERS), 1, MAX_WORKERS),
    dnsCapture: r.oneOf(ENV_DNS_CAPTURE, ['on', 'off'], 'on') === 'on',
    dnsUpstreams: dnsUpstreams(r),
  });
}
