/**
 * The controller's configuration: environment variables parsed and validated once, every problem
 * collected into one AMBIT_ERR_CONFIG_INVALID, returned deep-frozen. Only `main.ts` calls it.
 */
import { readFile } from 'node:fs/promises';
import { formatHostPort, type HostPort } from '../shared/address.js';
import { tryParseDuration } from '../shared/duration.js';
import { AmbitError, errorMessage } from '../shared/errors.js';
import {
  ENV_ADMIN_LISTEN,
  ENV_ADMIN_TOKEN_FILE,
  ENV_AGENT_SERVICE_ACCOUNT,
  ENV_CERT_MAX_TTL,
  ENV_CONFIG_SOURCE,
  ENV_KUBECONFIG,
  ENV_KUBERNETES_SERVICE_HOST,
  ENV_POD_NAME,
  ENV_POD_NAMESPACE,
  ENV_PROXY_CONTROLLER_ADDR,
  ENV_PROXY_IMAGE,
  ENV_CERT_TTL,
  ENV_CONTROLLER_LISTEN,
  ENV_MANIFESTS,
  ENV_NODE_TOKENS_FILE,
  ENV_STATE_DIR,
  DEFAULT_CERT_TTL,
  EnvReader,
  MIN_CERT_TTL_MS,
} from '../shared/env.js';
import type { LogLevel } from '../shared/log.js';
import { Issues, isDnsLabel, isDnsSubdomain, isRecord } from '../shared/validate.js';
import { MAX_CERT_TTL_MS } from './ca/service.js';

export const DEFAULT_CONTROLLER_LISTEN = '0.0.0.0:15012';
export const DEFAULT_ADMIN_LISTEN = '0.0.0.0:15014';
export const DEFAULT_STATE_DIR = '/var/lib/ambit/controller';

/** Where objects come from: manifest files (local mode, tests) or a Kubernetes API server. */
export type ConfigSource =
  | { kind: 'manifests' }
  | {
      kind: 'kubernetes';
      /** Kubeconfig file; undefined: the pod's service account (in-cluster). */
      kubeconfig: string | undefined;
      /** The controller's namespace (Lease, CA Secret, its Service). */
      namespace: string;
      /** The controller's pod, when known (Lease holder name, its image). */
      podName: string | undefined;
      agentServiceAccount: { namespace: string; serviceAccount: string };
      /** Image of waypoint and gateway pods; undefined: the controller's own. */
      proxyImage: string | undefined;
      /** `host:port` those pods reach the controller at. */
      proxyControllerAddress: string;
    };

export interface ControllerConfig {
  /** gRPC (CA + config streams) over TLS. */
  listen: HostPort;
  /** HTTP admin: /metrics, /ready, /debug/syncz, /debug/config_dump. */
  admin: HostPort;
  /** Holds the CA root (ca/) and root-cert.pem. */
  stateDir: string;
  trustDomain: string;
  /** Manifest files/directories loaded and watched (the local-files source); may be empty. */
  manifests: readonly string[];
  /** File of bootstrap node tokens; read by readNodeTokens(). Undefined: no agent can authenticate. */
  nodeTokensFile: string | undefined;
  /** Lifetime of issued workload certificates when a request names none. */
  certTtlMs: number;
  /** The longest lifetime the CA signs, whatever a request asks (default: certTtlMs). */
  certMaxTtlMs: number;
  /** File of the bearer token that /debug/* on the admin port requires; unset: /debug/* answers loopback callers only. */
  adminTokenFile: string | undefined;
  logLevel: LogLevel;
  source: ConfigSource;
  clusterId: string;
}

/** Reads the controller's configuration from `env`; throws AMBIT_ERR_CONFIG_INVALID listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<ControllerConfig> {
  const r = new EnvReader(env);
  const listen = r.hostPort(ENV_CONTROLLER_LISTEN, DEFAULT_CONTROLLER_LISTEN);
  const admin = r.hostPort(ENV_ADMIN_LISTEN, DEFAULT_ADMIN_LISTEN);
  r.distinctListeners([
    [ENV_CONTROLLER_LISTEN, listen],
    [ENV_ADMIN_LISTEN, admin],
  ]);
  const certTtlMs = r.certTtlMs(MAX_CERT_TTL_MS);
  const maxTtlText = r.text(ENV_CERT_MAX_TTL);
  const certMaxTtlMs = maxTtlText === undefined ? certTtlMs : r.durationMs(ENV_CERT_MAX_TTL, maxTtlText, MIN_CERT_TTL_MS, MAX_CERT_TTL_MS);
  if (maxTtlText !== undefined && tryParseDuration(maxTtlText) !== undefined && certMaxTtlMs < certTtlMs) r.issues.add(ENV_CERT_MAX_TTL, `must not be shorter than ${ENV_CERT_TTL} (${r.text(ENV_CERT_TTL) ?? DEFAULT_CERT_TTL})`, maxTtlText);
  const source = readSource(r, listen);
  return r.finish('controller', {
    listen,
    admin,
    stateDir: r.path(ENV_STATE_DIR, DEFAULT_STATE_DIR),
    trustDomain: r.trustDomain(),
    manifests: r.list(ENV_MANIFESTS, 'files or directories'),
    nodeTokensFile: r.text(ENV_NODE_TOKENS_FILE),
    certTtlMs,
    certMaxTtlMs,
    adminTokenFile: r.optionalPath(ENV_ADMIN_TOKEN_FILE),
    logLevel: r.logLevel(),
    source,
    clusterId: r.clusterId(),
  });
}

/**
 * The config source: `kubernetes` when asked for, or by default in a pod (KUBERNETES_SERVICE_HOST)
 * or with a kubeconfig; `manifests` otherwise. One source at a time.
 */
function readSource(r: EnvReader, listen: HostPort): ConfigSource {
  const kubeconfig = r.optionalPath(ENV_KUBECONFIG);
  const inCluster = r.text(ENV_KUBERNETES_SERVICE_HOST) !== undefined;
  const kind = r.oneOf(ENV_CONFIG_SOURCE, ['manifests', 'kubernetes'] as const, kubeconfig !== undefined || inCluster ? 'kubernetes' : 'manifests');
  if (kind === 'manifests') return { kind };
  if (kubeconfig === undefined && !inCluster) r.issues.add(ENV_CONFIG_SOURCE, `kubernetes needs ${ENV_KUBECONFIG} or in-cluster credentials (${ENV_KUBERNETES_SERVICE_HOST} is not set)`, kind);
  if (r.text(ENV_MANIFESTS) !== undefined) r.issues.add(ENV_MANIFESTS, `must not be set with ${ENV_CONFIG_SOURCE}=kubernetes (one source at a time)`, r.text(ENV_MANIFESTS));
  const namespace = r.text(ENV_POD_NAMESPACE) ?? 'istio-system';
  if (!isDnsLabel(namespace)) r.issues.add(ENV_POD_NAMESPACE, 'must be a namespace name', namespace);
  const agentText = r.text(ENV_AGENT_SERVICE_ACCOUNT) ?? 'istio-system/ambit-agent';
  const [agentNs, agentSa, extra] = agentText.split('/');
  if (!agentNs || !agentSa || extra !== undefined || !isDnsLabel(agentNs) || !isDnsSubdomain(agentSa)) {
    r.issues.add(ENV_AGENT_SERVICE_ACCOUNT, 'must be <namespace>/<service account>', agentText);
  }
  const proxyAddr = r.hostPort(ENV_PROXY_CONTROLLER_ADDR, `ambit-controller.${namespace}.svc:${listen.port || 15012}`);
  return {
    kind,
    kubeconfig,
    namespace,
    podName: r.text(ENV_POD_NAME),
    agentServiceAccount: { namespace: agentNs ?? '', serviceAccount: agentSa ?? '' },
    proxyImage: r.text(ENV_PROXY_IMAGE),
    proxyControllerAddress: formatHostPort(proxyAddr),
  };
}

/**
 * Parses a node tokens file: either JSON `{ "<token>": "<node>" }` or lines `<node> <token>`
 * (blank lines and `#` comments ignored). Returns token → node. Throws AMBIT_ERR_CONFIG_INVALID
 * naming the line; messages never contain a token.
 */
export function parseNodeTokens(text: string, file: string): Map<string, string> {
  const issues = new Issues();
  const out = new Map<string, string>();
  const add = (where: string, token: unknown, node: unknown): void => {
    if (typeof node !== 'string' || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(node)) {
      issues.add(where, 'node name must be a lowercase DNS name', typeof node === 'string' ? node : typeof node);
      return;
    }
    if (typeof token !== 'string' || token.length < 16 || /\s/.test(token)) {
      issues.add(where, `token for node ${node} must be at least 16 characters without spaces`);
      return;
    }
    if (out.has(token)) {
      issues.add(where, `token for node ${node} is already given to node ${out.get(token)}`);
      return;
    }
    out.set(token, node);
  };
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch (e) {
      issues.add(file, `is not valid JSON: ${errorMessage(e)}`);
    }
    if (isRecord(parsed)) {
      let i = 0;
      for (const [token, node] of Object.entries(parsed)) add(`${file} entry ${++i}`, token, node);
    } else if (parsed !== undefined) {
      issues.add(file, 'must be a JSON object {"<token>": "<node>"}');
    }
  } else {
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const parts = line.split(/\s+/);
      if (parts.length !== 2) {
        issues.add(`${file} line ${i + 1}`, 'must be "<node> <token>"', `${parts.length} field(s)`);
        return;
      }
      add(`${file} line ${i + 1}`, parts[1], parts[0]);
    });
  }
  issues.throwIfAny('AMBIT_ERR_CONFIG_INVALID', `invalid node tokens file ${file}`);
  return out;
}

/** Reads and parses the node tokens file (see parseNodeTokens); an unset path gives no tokens. */
export async function readNodeTokens(file: string | undefined): Promise<Map<string, string>> {
  if (file === undefined) return new Map();
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `${ENV_NODE_TOKENS_FILE}: cannot read ${JSON.stringify(file)}: ${errorMessage(e)}; does it exist and is it readable?`, { cause: e });
  }
  return parseNodeTokens(text, file);
}

/** Reads the admin bearer token (first line, trimmed; at least 16 characters); an unset path gives none. */
export async function readAdminToken(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `cannot read ${ENV_ADMIN_TOKEN_FILE} ${file}: ${errorMessage(e)}`, { cause: e });
  }
  const token = text.split('\n')[0]!.trim();
  if (token.length < 16 || /\s/.test(token)) {
    throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `${ENV_ADMIN_TOKEN_FILE} ${file} must hold one token of at least 16 characters without spaces`);
  }
  return token;
}
