/**
 * The controller's configuration: environment variables parsed and validated once, every problem
 * collected into one AMBIT_ERR_CONFIG_INVALID, returned deep-frozen. Only `main.ts` calls it.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { AmbitError, errorMessage } from '../shared/errors.js';
import { tryParseDuration } from '../shared/duration.js';
import { LOG_LEVELS, type LogLevel } from '../shared/log.js';
import { Issues, deepFreeze, isRecord } from '../shared/validate.js';
import { MAX_CERT_TTL_MS } from './ca/service.js';

export const ENV_CONTROLLER_LISTEN = 'AMBIT_CONTROLLER_LISTEN';
export const ENV_ADMIN_LISTEN = 'AMBIT_ADMIN_LISTEN';
export const ENV_STATE_DIR = 'AMBIT_STATE_DIR';
export const ENV_TRUST_DOMAIN = 'AMBIT_TRUST_DOMAIN';
export const ENV_MANIFESTS = 'AMBIT_MANIFESTS';
export const ENV_NODE_TOKENS_FILE = 'AMBIT_NODE_TOKENS_FILE';
export const ENV_CERT_TTL = 'AMBIT_CERT_TTL';
export const ENV_CERT_MAX_TTL = 'AMBIT_CERT_MAX_TTL';
export const ENV_ADMIN_TOKEN_FILE = 'AMBIT_ADMIN_TOKEN_FILE';
export const ENV_LOG_LEVEL = 'AMBIT_LOG_LEVEL';

export const DEFAULT_CONTROLLER_LISTEN = '0.0.0.0:15012';
export const DEFAULT_ADMIN_LISTEN = '0.0.0.0:15014';
export const DEFAULT_STATE_DIR = '/var/lib/ambit/controller';
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const DEFAULT_CERT_TTL = '24h';
/** Shortest workload certificate lifetime accepted: rotation needs room to work. */
export const MIN_CERT_TTL_MS = 60_000;


export interface ListenAddress {
  host: string;
  port: number;
}

export interface ControllerConfig {
  /** gRPC (CA + config streams) over TLS. */
  listen: ListenAddress;
  /** HTTP admin: /metrics, /ready, /debug/syncz, /debug/config_dump. */
  admin: ListenAddress;
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
}

/**
 * Parses `host:port` (`[::1]:15012` for IPv6). Port 0 asks the OS for a free one (tests).
 * Returns undefined, recording an issue under `name`, when it does not parse.
 */
export function parseListenAddress(text: string, name: string, issues: Issues): ListenAddress | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) {
    issues.add(name, 'must be host:port, e.g. 0.0.0.0:15012 or [::]:15012', text);
    return undefined;
  }
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  let ok = true;
  if (m[1] !== undefined && isIP(host) !== 6) {
    issues.add(name, 'brackets must hold an IPv6 address', text);
    ok = false;
  }
  if (m[2] !== undefined && isIP(host) === 0 && !/^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$/.test(host)) {
    issues.add(name, 'host must be an IP address or a DNS name', text);
    ok = false;
  }
  if (port > 65535) {
    issues.add(name, 'port must be between 0 and 65535', text);
    ok = false;
  }
  return ok ? { host, port } : undefined;
}

const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$/;

/** Reads the controller's configuration from `env`; throws AMBIT_ERR_CONFIG_INVALID listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<ControllerConfig> {
  const issues = new Issues();
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };

  const listen = parseListenAddress(get(ENV_CONTROLLER_LISTEN) ?? DEFAULT_CONTROLLER_LISTEN, ENV_CONTROLLER_LISTEN, issues);
  const admin = parseListenAddress(get(ENV_ADMIN_LISTEN) ?? DEFAULT_ADMIN_LISTEN, ENV_ADMIN_LISTEN, issues);
  if (listen && admin && listen.port !== 0 && listen.port === admin.port && listen.host === admin.host) {
    issues.add(ENV_ADMIN_LISTEN, `must differ from ${ENV_CONTROLLER_LISTEN}`, `${admin.host}:${admin.port}`);
  }

  const stateDir = get(ENV_STATE_DIR) ?? DEFAULT_STATE_DIR;
  if (!stateDir.startsWith('/')) issues.add(ENV_STATE_DIR, 'must be an absolute path', stateDir);

  const trustDomain = get(ENV_TRUST_DOMAIN) ?? DEFAULT_TRUST_DOMAIN;
  if (trustDomain.length > 255 || !TRUST_DOMAIN.test(trustDomain)) {
    issues.add(ENV_TRUST_DOMAIN, 'must be a lowercase trust domain such as cluster.local (letters, digits, ".", "-", "_")', trustDomain);
  }

  const manifestsText = env[ENV_MANIFESTS] ?? '';
  const manifests = manifestsText.split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (manifestsText.trim() !== '' && manifestsText.split(',').some((p) => p.trim() === '')) {
    issues.add(ENV_MANIFESTS, 'must be a comma-separated list of files or directories without empty entries', manifestsText);
  }

  const nodeTokensFile = get(ENV_NODE_TOKENS_FILE);

  const ttl = (name: string, fallback: string): number | undefined => {
    const text = get(name) ?? fallback;
    const ms = tryParseDuration(text);
    if (ms === undefined) issues.add(name, 'must be a duration such as "24h" or "90m"', text);
    else if (ms < MIN_CERT_TTL_MS || ms > MAX_CERT_TTL_MS) issues.add(name, `must be between ${MIN_CERT_TTL_MS / 1000}s and ${MAX_CERT_TTL_MS / 3_600_000}h`, text);
    return ms;
  };
  const certTtlMs = ttl(ENV_CERT_TTL, DEFAULT_CERT_TTL);
  const certMaxTtlMs = get(ENV_CERT_MAX_TTL) === undefined ? certTtlMs : ttl(ENV_CERT_MAX_TTL, '');
  if (certTtlMs !== undefined && certMaxTtlMs !== undefined && certMaxTtlMs < certTtlMs) {
    issues.add(ENV_CERT_MAX_TTL, `must not be shorter than ${ENV_CERT_TTL} (${get(ENV_CERT_TTL) ?? DEFAULT_CERT_TTL})`, get(ENV_CERT_MAX_TTL));
  }

  const adminTokenFile = get(ENV_ADMIN_TOKEN_FILE);
  if (adminTokenFile !== undefined && !adminTokenFile.startsWith('/')) issues.add(ENV_ADMIN_TOKEN_FILE, 'must be an absolute path', adminTokenFile);

  const levelText = get(ENV_LOG_LEVEL) ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(levelText)) issues.add(ENV_LOG_LEVEL, `must be one of ${LOG_LEVELS.join(', ')}`, levelText);

  issues.throwIfAny('AMBIT_ERR_CONFIG_INVALID', 'invalid controller environment');
  return deepFreeze({
    listen: listen as ListenAddress,
    admin: admin as ListenAddress,
    stateDir,
    trustDomain,
    manifests,
    nodeTokensFile,
    certTtlMs: certTtlMs as number,
    certMaxTtlMs: certMaxTtlMs as number,
    adminTokenFile,
    logLevel: levelText as LogLevel,
  });
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
