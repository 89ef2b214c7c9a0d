/**
 * Every environment variable an Ambit binary reads, declared once, and the parsers that read them.
 * Each binary's config.ts reads its settings through an EnvReader, which collects every problem
 * (`NAME: problem (got "value")`) and throws one AMBIT_ERR_CONFIG_INVALID; a setting several
 * binaries share (log level, trust domain, the controller connection) has one parser here, so it
 * means the same and fails the same in each. Nothing below a binary's main.ts reads process.env.
 */
import { isIP } from 'node:net';
import type { HostPort } from './address.js';
import { tryParseDuration } from './duration.js';
import { LOG_LEVELS, type LogLevel } from './log.js';
import { Issues, deepFreeze, isDnsSubdomain } from './validate.js';

// Agent and waypoint: where the controller is and how to prove who we are.
/** The Kubernetes node the agent serves (the node a waypoint pod runs on). */
export const ENV_NODE_NAME = 'AMBIT_NODE_NAME';
/** Controller gRPC endpoint (CA and config stream), `host:port`, TLS. */
export const ENV_CONTROLLER_ADDR = 'AMBIT_CONTROLLER_ADDR';
/** Name to check in the controller's certificate when its address is not in it. */
export const ENV_CONTROLLER_SERVER_NAME = 'AMBIT_CONTROLLER_SERVER_NAME';
/** PEM file of the mesh root the controller's certificate chains to. */
export const ENV_CA_ROOT_FILE = 'AMBIT_CA_ROOT_FILE';
/** File holding the node's bearer token. */
export const ENV_TOKEN_FILE = 'AMBIT_TOKEN_FILE';
/** Cluster label in metrics and baggage. */
export const ENV_CLUSTER_ID = 'AMBIT_CLUSTER_ID';
/** On SIGTERM, how long in-flight connections get. */
export const ENV_DRAIN_DEADLINE = 'AMBIT_DRAIN_DEADLINE';
/** Prometheus /metrics (agent, waypoint). */
export const ENV_METRICS_ADDR = 'AMBIT_METRICS_ADDR';
/** /healthz/ready (agent; waypoint in both modes). */
export const ENV_READY_ADDR = 'AMBIT_READY_ADDR';

// Agent.
/** Capture mode: bpf, nft or auto. */
export const ENV_CAPTURE = 'AMBIT_CAPTURE';
/** cgroup v2 folder the capture programs attach to. */
export const ENV_CGROUP_PATH = 'AMBIT_CGROUP_PATH';
/** bpffs folder of this agent's pins. */
export const ENV_PIN_DIR = 'AMBIT_PIN_DIR';
/** /config_dump, /debug/connections (localhost). */
export const ENV_ADMIN_ADDR = 'AMBIT_ADMIN_ADDR';
/** Idle pooled tunnel connections close after this. */
export const ENV_POOL_IDLE_TIMEOUT = 'AMBIT_POOL_IDLE_TIMEOUT';
/** The agent's node-local record of pods' network namespaces (kept across restarts). */
export const ENV_NETNS_STATE_FILE = 'AMBIT_NETNS_STATE_FILE';
/** `on` (default): a connection between two pods of this node skips TLS and is handed over in-process; `off`: always HBONE. */
export const ENV_SAME_NODE_FAST_PATH = 'AMBIT_SAME_NODE_FAST_PATH';
/** Data-path worker threads of the agent (1-256); unset: the CPU limit (cgroup cpu.max, else the CPUs available). */
export const ENV_WORKERS = 'AMBIT_WORKERS';
/** `on` (default): each enrolled pod's DNS (UDP/TCP port 53) goes to the agent's DNS proxy on 15053; `off`: not captured. */
export const ENV_DNS_CAPTURE = 'AMBIT_DNS_CAPTURE';
/** Comma-separated `ip`, `ip:port` or `[ipv6]:port` resolvers the DNS proxy forwards to; unset: the agent's /etc/resolv.conf nameservers. */
export const ENV_DNS_UPSTREAMS = 'AMBIT_DNS_UPSTREAMS';

// Waypoint (and ingress gateway).
/** The Gateway a waypoint serves; in gateway mode the workload name in telemetry. */
export const ENV_WAYPOINT_NAME = 'AMBIT_WAYPOINT_NAME';
/** `waypoint` (default) or `gateway`. */
export const ENV_WAYPOINT_MODE = 'AMBIT_WAYPOINT_MODE';
/** Worker threads serving a waypoint's or gateway's traffic (SO_REUSEPORT listeners): a count or `auto` (the CPU limit); default 1: none. */
export const ENV_WAYPOINT_WORKERS = 'AMBIT_WAYPOINT_WORKERS';
/** The waypoint's service account (its identity). */
export const ENV_SERVICE_ACCOUNT = 'AMBIT_SERVICE_ACCOUNT';
/** HBONE listener of a waypoint. */
export const ENV_HBONE_ADDR = 'AMBIT_HBONE_ADDR';
/** The pod's own name, namespace and IP (Kubernetes downward API names, no AMBIT_ prefix). */
export const ENV_POD_NAME = 'POD_NAME';
export const ENV_POD_NAMESPACE = 'POD_NAMESPACE';
export const ENV_POD_IP = 'POD_IP';

// CNI installer (the DaemonSet's installer container; the agent reads AMBIT_CNI_SOCKET too).
/** The node's CNI folders as mounted in the installer. */
export const ENV_CNI_BIN_DIR = 'AMBIT_CNI_BIN_DIR';
export const ENV_CNI_CONF_DIR = 'AMBIT_CNI_CONF_DIR';
/** Conflist to chain into, when not the one the runtime picks first. */
export const ENV_CNI_CONF_FILE = 'AMBIT_CNI_CONF_FILE';
/** Host folder for Node, the plugin, its kubeconfig and token. */
export const ENV_CNI_INSTALL_DIR = 'AMBIT_CNI_INSTALL_DIR';
/** The agent's CNI socket (a host path). */
export const ENV_CNI_SOCKET = 'AMBIT_CNI_SOCKET';
/** Namespaces whose pods are never looked up nor captured. */
export const ENV_CNI_EXCLUDE_NAMESPACES = 'AMBIT_CNI_EXCLUDE_NAMESPACES';
/** How long ADD waits for the agent, and for each API lookup. */
export const ENV_CNI_AGENT_TIMEOUT = 'AMBIT_CNI_AGENT_TIMEOUT';
export const ENV_CNI_KUBE_TIMEOUT = 'AMBIT_CNI_KUBE_TIMEOUT';
/** API server URL the plugin uses from the host. */
export const ENV_CNI_KUBE_SERVER = 'AMBIT_CNI_KUBE_SERVER';
/** The plugin's log level and file. */
export const ENV_CNI_LOG_LEVEL = 'AMBIT_CNI_LOG_LEVEL';
export const ENV_CNI_LOG_FILE = 'AMBIT_CNI_LOG_FILE';
/** The plugin's identity: a token requested for this service account, and its lifetime. */
export const ENV_CNI_SERVICE_ACCOUNT = 'AMBIT_CNI_SERVICE_ACCOUNT';
export const ENV_CNI_TOKEN_TTL = 'AMBIT_CNI_TOKEN_TTL';
/** The DaemonSet whose deletion means uninstall; the file the startup probe waits for. */
export const ENV_CNI_DAEMONSET = 'AMBIT_CNI_DAEMONSET';
export const ENV_CNI_READY_FILE = 'AMBIT_CNI_READY_FILE';
/** The installer's pod uid (downward API). */
export const ENV_POD_UID = 'POD_UID';

// Controller.
/** gRPC listener (CA and config streams, TLS). */
export const ENV_CONTROLLER_LISTEN = 'AMBIT_CONTROLLER_LISTEN';
/** HTTP admin listener: /metrics, /ready, /debug/syncz, /debug/config_dump. */
export const ENV_ADMIN_LISTEN = 'AMBIT_ADMIN_LISTEN';
/** Holds the CA root. */
export const ENV_STATE_DIR = 'AMBIT_STATE_DIR';
/** Comma-separated manifest files/folders (the file source). */
export const ENV_MANIFESTS = 'AMBIT_MANIFESTS';
/** Node bootstrap tokens. */
export const ENV_NODE_TOKENS_FILE = 'AMBIT_NODE_TOKENS_FILE';
/** The longest workload certificate lifetime the CA signs. */
export const ENV_CERT_MAX_TTL = 'AMBIT_CERT_MAX_TTL';
/** Bearer token file that /debug/* on the controller's admin port requires. */
export const ENV_ADMIN_TOKEN_FILE = 'AMBIT_ADMIN_TOKEN_FILE';
/** Where the controller reads objects from: `manifests` or `kubernetes`. */
export const ENV_CONFIG_SOURCE = 'AMBIT_CONFIG_SOURCE';
/** Kubeconfig of the controller's Kubernetes source and of the agent's pod annotations (unset: the pod's service account). */
export const ENV_KUBECONFIG = 'AMBIT_KUBECONFIG';
/** The agents' service account (`namespace/name`): its node-bound tokens are node callers. */
export const ENV_AGENT_SERVICE_ACCOUNT = 'AMBIT_AGENT_SERVICE_ACCOUNT';
/** Image of the waypoint and gateway Deployments the controller makes (default: its own). */
export const ENV_PROXY_IMAGE = 'AMBIT_PROXY_IMAGE';
/** `host:port` waypoint and gateway pods reach the controller at. */
export const ENV_PROXY_CONTROLLER_ADDR = 'AMBIT_PROXY_CONTROLLER_ADDR';
/** Set by Kubernetes in every pod: the API server's address (in-cluster credentials). */
export const ENV_KUBERNETES_SERVICE_HOST = 'KUBERNETES_SERVICE_HOST';
/** Set by Kubernetes in every pod: the API server's port (in-cluster credentials; default 443). */
export const ENV_KUBERNETES_SERVICE_PORT = 'KUBERNETES_SERVICE_PORT';

// Every binary.
/** SPIFFE trust domain. */
export const ENV_TRUST_DOMAIN = 'AMBIT_TRUST_DOMAIN';
/** pino level. */
export const ENV_LOG_LEVEL = 'AMBIT_LOG_LEVEL';
/** Workload certificate lifetime (the controller's cap; what agents and waypoints ask for). */
export const ENV_CERT_TTL = 'AMBIT_CERT_TTL';

// The `ambit` command line.
/** Default address block of `ambit local` (0-7). */
export const ENV_LOCAL_NET = 'AMBIT_LOCAL_NET';
/** Default mesh name of `ambit local`. */
export const ENV_LOCAL_NAME = 'AMBIT_LOCAL_NAME';

/** Every variable above, for the README check and `ambit` help. */
export const ENV_NAMES = [
  ENV_NODE_NAME, ENV_CONTROLLER_ADDR, ENV_CONTROLLER_SERVER_NAME, ENV_CA_ROOT_FILE, ENV_TOKEN_FILE, ENV_CLUSTER_ID,
  ENV_DRAIN_DEADLINE, ENV_METRICS_ADDR, ENV_READY_ADDR, ENV_CAPTURE, ENV_CGROUP_PATH, ENV_PIN_DIR, ENV_ADMIN_ADDR,
  ENV_POOL_IDLE_TIMEOUT, ENV_NETNS_STATE_FILE, ENV_SAME_NODE_FAST_PATH, ENV_WORKERS, ENV_DNS_CAPTURE, ENV_DNS_UPSTREAMS, ENV_WAYPOINT_NAME, ENV_WAYPOINT_MODE, ENV_WAYPOINT_WORKERS, ENV_SERVICE_ACCOUNT, ENV_HBONE_ADDR, ENV_POD_NAME,
  ENV_POD_NAMESPACE, ENV_POD_IP, ENV_CONTROLLER_LISTEN, ENV_ADMIN_LISTEN, ENV_STATE_DIR, ENV_MANIFESTS,
  ENV_NODE_TOKENS_FILE, ENV_CERT_MAX_TTL, ENV_ADMIN_TOKEN_FILE, ENV_CONFIG_SOURCE, ENV_KUBECONFIG, ENV_AGENT_SERVICE_ACCOUNT,
  ENV_PROXY_IMAGE, ENV_PROXY_CONTROLLER_ADDR, ENV_KUBERNETES_SERVICE_HOST, ENV_KUBERNETES_SERVICE_PORT, ENV_TRUST_DOMAIN, ENV_LOG_LEVEL, ENV_CERT_TTL, ENV_LOCAL_NET, ENV_LOCAL_NAME,
  ENV_CNI_BIN_DIR, ENV_CNI_CONF_DIR, ENV_CNI_CONF_FILE, ENV_CNI_INSTALL_DIR, ENV_CNI_SOCKET, ENV_CNI_EXCLUDE_NAMESPACES,
  ENV_CNI_AGENT_TIMEOUT, ENV_CNI_KUBE_TIMEOUT, ENV_CNI_KUBE_SERVER, ENV_CNI_LOG_LEVEL, ENV_CNI_LOG_FILE,
  ENV_CNI_SERVICE_ACCOUNT, ENV_CNI_TOKEN_TTL, ENV_CNI_DAEMONSET, ENV_CNI_READY_FILE, ENV_POD_UID,
] as const;
export type EnvName = (typeof ENV_NAMES)[number];

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const DEFAULT_CLUSTER_ID = 'Kubernetes';
export const DEFAULT_CERT_TTL = '24h';
/** Shortest workload certificate lifetime accepted: rotation needs room to work. */
export const MIN_CERT_TTL_MS = 60_000;

const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$/;
const CLUSTER_ID = /^[A-Za-z0-9][-A-Za-z0-9_.]*$/;
const DNS_HOST = /^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$/;

/** How an agent or a waypoint reaches the controller (CA and config stream). */
export interface ControllerClientSettings {
  controller: HostPort;
  /** Name to verify the controller certificate against when `controller.host` is not in its SANs. */
  controllerServerName: string | undefined;
  caRootFile: string;
  tokenFile: string;
}

/**
 * Reads variables from one environment, collecting problems. Values are trimmed; an empty value
 * counts as unset. Parsers return a usable placeholder after recording a problem, so one pass
 * reports everything; `finish` throws when anything was wrong and freezes the result.
 */
export class EnvReader {
  readonly issues = new Issues();

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  /** The trimmed value, or undefined when unset or blank. */
  text(name: EnvName): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  /** A value that must be set; `what` says what it is for the message. */
  required(name: EnvName, what: string): string {
    const v = this.text(name);
    if (v === undefined) this.issues.add(name, `is required (${what})`);
    return v ?? '';
  }

  /** An absolute path, `fallback` when unset (undefined fallback: required, described by `what`). */
  path(name: EnvName, fallback: string | { required: string }): string {
    const v = typeof fallback === 'string' ? (this.text(name) ?? fallback) : this.required(name, fallback.required);
    if (v !== '' && !v.startsWith('/')) this.issues.add(name, 'must be an absolute path', v);
    return v;
  }

  /** An absolute path, or undefined when unset. */
  optionalPath(name: EnvName): string | undefined {
    const v = this.text(name);
    if (v !== undefined && !v.startsWith('/')) this.issues.add(name, 'must be an absolute path', v);
    return v;
  }

  /** A duration such as "5s" in ms, at least `minMs` and at most `maxMs` when given. */
  durationMs(name: EnvName, fallback: string, minMs: number, maxMs?: number): number {
    const text = this.text(name) ?? fallback;
    const ms = tryParseDuration(text);
    if (ms === undefined) {
      this.issues.add(name, 'must be a duration such as "5s" or "5m"', text);
      return minMs;
    }
    if (maxMs !== undefined && (ms < minMs || ms > maxMs)) this.issues.add(name, `must be between ${formatMs(minMs)} and ${formatMs(maxMs)}`, text);
    else if (ms < minMs) this.issues.add(name, `must be at least ${minMs} ms`, text);
    return ms;
  }

  /** A whole number from `min` to `max`; `fallback` when unset. */
  integer(name: EnvName, fallback: number, min: number, max: number): number {
    const text = this.text(name);
    if (text === undefined) return fallback;
    const n = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      this.issues.add(name, `must be a whole number from ${min} to ${max}`, text);
      return fallback;
    }
    return n;
  }

  /** `host:port` or `[v6]:port` (port 0 allowed: tests); every problem of the value is recorded. */
  hostPort(name: EnvName, fallback: string): HostPort {
    return parseHostPort(this.text(name) ?? fallback, name, this.issues) ?? { host: '', port: 0 };
  }

  /** One of `choices`, `fallback` when unset. */
  oneOf<T extends string>(name: EnvName, choices: readonly T[], fallback: T): T {
    const v = this.text(name) ?? fallback;
    if (!(choices as readonly string[]).includes(v)) {
      this.issues.add(name, `must be one of ${choices.join(', ')}`, v);
      return fallback;
    }
    return v as T;
  }

  /** A comma-separated list without empty entries; empty when unset. */
  list(name: EnvName, what: string): string[] {
    const text = this.env[name] ?? '';
    const parts = text.split(',').map((p) => p.trim());
    if (text.trim() !== '' && parts.some((p) => p === '')) this.issues.add(name, `must be a comma-separated list of ${what} without empty entries`, text);
    return parts.filter((p) => p !== '');
  }

  /** Records a problem when two listeners share host and port. */
  distinctListeners(listeners: ReadonlyArray<readonly [EnvName, HostPort]>): void {
    for (let i = 0; i < listeners.length; i++) {
      for (let j = i + 1; j < listeners.length; j++) {
        const [nameA, a] = listeners[i]!;
        const [nameB, b] = listeners[j]!;
        if (a.port !== 0 && a.port === b.port && a.host === b.host) this.issues.add(nameB, `must differ from ${nameA}`, `${b.host}:${b.port}`);
      }
    }
  }

  // Settings several binaries share.

  logLevel(): LogLevel {
    return this.oneOf(ENV_LOG_LEVEL, LOG_LEVELS, 'info');
  }

  trustDomain(): string {
    const v = this.text(ENV_TRUST_DOMAIN) ?? DEFAULT_TRUST_DOMAIN;
    if (v.length > 255 || !TRUST_DOMAIN.test(v)) this.issues.add(ENV_TRUST_DOMAIN, 'must be a lowercase trust domain such as cluster.local (letters, digits, ".", "-", "_")', v);
    return v;
  }

  clusterId(): string {
    const v = this.text(ENV_CLUSTER_ID) ?? DEFAULT_CLUSTER_ID;
    if (!CLUSTER_ID.test(v)) this.issues.add(ENV_CLUSTER_ID, 'must be letters, digits, "-", "_" or "."', v);
    return v;
  }

  /** Workload certificate lifetime in ms (1 minute up to `maxMs` when given). */
  certTtlMs(maxMs?: number): number {
    return this.durationMs(ENV_CERT_TTL, DEFAULT_CERT_TTL, MIN_CERT_TTL_MS, maxMs);
  }

  drainDeadlineMs(): number {
    return this.durationMs(ENV_DRAIN_DEADLINE, '5s', 0);
  }

  /** The Kubernetes node name; `what` says whose node it is. */
  nodeName(what: string): string {
    const v = this.required(ENV_NODE_NAME, what);
    if (v !== '' && !isDnsSubdomain(v)) this.issues.add(ENV_NODE_NAME, 'must be a Kubernetes node name (lowercase DNS subdomain)', v);
    return v;
  }

  /** Controller address, server name, mesh root and token file (agent and waypoint). */
  controllerClient(): ControllerClientSettings {
    const text = this.required(ENV_CONTROLLER_ADDR, 'host:port of the controller, e.g. ambit-controller.ambit-system:15012');
    const controller = text === '' ? undefined : parseHostPort(text, ENV_CONTROLLER_ADDR, this.issues);
    if (controller && controller.port === 0) this.issues.add(ENV_CONTROLLER_ADDR, 'port must not be 0', text);
    return {
      controller: controller ?? { host: '', port: 0 },
      controllerServerName: this.text(ENV_CONTROLLER_SERVER_NAME),
      caRootFile: this.path(ENV_CA_ROOT_FILE, { required: 'PEM file of the mesh root certificate' }),
      tokenFile: this.path(ENV_TOKEN_FILE, { required: 'file holding the node bearer token' }),
    };
  }

  /** Throws one AMBIT_ERR_CONFIG_INVALID (`invalid <what> environment`) listing every problem, else freezes `config`. */
  finish<T extends object>(what: string, config: T): Readonly<T> {
    this.issues.throwIfAny('AMBIT_ERR_CONFIG_INVALID', `invalid ${what} environment`);
    return deepFreeze(config);
  }
}

/** `host:port` or `[v6]:port`; records each problem of `text` under `name`, undefined when any. */
export function parseHostPort(text: string, name: string, issues: Issues): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) {
    issues.add(name, 'must be host:port, e.g. 0.0.0.0:15020 or [::1]:15000', text);
    return undefined;
  }
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  let ok = true;
  if (m[1] !== undefined && isIP(host) !== 6) {
    issues.add(name, 'brackets must hold an IPv6 address', text);
    ok = false;
  }
  if (m[2] !== undefined && isIP(host) === 0 && !DNS_HOST.test(host)) {
    issues.add(name, 'host must be an IP address or a DNS name', text);
    ok = false;
  }
  if (port > 65535) {
    issues.add(name, 'port must be between 0 and 65535', text);
    ok = false;
  }
  return ok ? { host, port } : undefined;
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
