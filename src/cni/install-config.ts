/**
 * The CNI installer's configuration from its environment (the DaemonSet's installer container):
 * every variable declared once, every problem collected into one AMBIT_ERR_CONFIG_INVALID.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tryParseDuration } from '../shared/duration.js';
import { DEFAULT_CNI_SOCKET } from '../shared/cni-handoff.js';
import { Issues, deepFreeze, isDnsLabel, isDnsSubdomain } from '../shared/validate.js';

import {
  ENV_CNI_AGENT_TIMEOUT, ENV_CNI_BIN_DIR, ENV_CNI_CONF_DIR, ENV_CNI_CONF_FILE, ENV_CNI_DAEMONSET, ENV_CNI_EXCLUDE_NAMESPACES,
  ENV_CNI_INSTALL_DIR, ENV_CNI_KUBE_SERVER, ENV_CNI_KUBE_TIMEOUT, ENV_CNI_LOG_FILE, ENV_CNI_LOG_LEVEL, ENV_CNI_READY_FILE,
  ENV_CNI_SERVICE_ACCOUNT, ENV_CNI_SOCKET, ENV_CNI_TOKEN_TTL, ENV_LOG_LEVEL, ENV_POD_NAME, ENV_POD_NAMESPACE, ENV_POD_UID,
} from '../shared/env.js';

export interface InstallConfig {
  /** CNI bin folder as mounted in the container (the launcher goes there). */
  binDir: string;
  /** CNI config folder as mounted in the container (the primary conflist is there). */
  confDir: string;
  /** A conflist to chain into instead of the first by name. */
  confFile?: string;
  /** Host folder for the plugin's payload, kubeconfig and token, mounted at the same path. */
  installDir: string;
  /** The agent's socket (a host path, mounted at the same path in the agent). */
  agentSocket: string;
  excludeNamespaces: string[];
  agentTimeout: string;
  kubeTimeout: string;
  /** API server URL the plugin uses from the host; default from KUBERNETES_SERVICE_HOST/PORT. */
  kubeServer?: string;
  pluginLogLevel: 'debug' | 'info' | 'warn' | 'error';
  pluginLogFile?: string;
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** The service account whose token the plugin uses (in the pod's namespace). */
  serviceAccount: string;
  tokenTtlSec: number;
  /** The DaemonSet this pod belongs to: when it is gone or being deleted, exit uninstalls. */
  daemonSet: string;
  readyFile: string;
  pod: { name: string; namespace: string; uid: string };
  /** The Node binary to copy to the host, and the application root holding dist/. */
  nodeBinary: string;
  appRoot: string;
}

const PLUGIN_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** The application root this module runs from (dist/src/cni/ → three folders up). */
export function defaultAppRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

export function loadInstallConfig(env: Readonly<Record<string, string | undefined>>, execPath = process.execPath): Readonly<InstallConfig> {
  const issues = new Issues();
  const get = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const absPath = (name: string, fallback: string): string => {
    const v = get(name) ?? fallback;
    if (!v.startsWith('/')) issues.add(name, 'must be an absolute path', v);
    return v;
  };
  const duration = (name: string, fallback: string, minMs: number): string => {
    const v = get(name) ?? fallback;
    const ms = tryParseDuration(v);
    if (ms === undefined) issues.add(name, 'must be a duration such as "5s"', v);
    else if (ms < minMs) issues.add(name, `must be at least ${minMs} ms`, v);
    return v;
  };
  const required = (name: string, what: string): string => {
    const v = get(name);
    if (v === undefined) issues.add(name, `is required (${what}; the DaemonSet sets it from the downward API)`);
    return v ?? '';
  };

  const binDir = absPath(ENV_CNI_BIN_DIR, '/host/opt/cni/bin');
  const confDir = absPath(ENV_CNI_CONF_DIR, '/host/etc/cni/net.d');
  const confFile = get(ENV_CNI_CONF_FILE);
  if (confFile !== undefined && confFile.includes('/')) issues.add(ENV_CNI_CONF_FILE, 'must be a file name in the CNI config folder', confFile);
  const installDir = absPath(ENV_CNI_INSTALL_DIR, '/var/lib/ambit/cni');
  const agentSocket = absPath(ENV_CNI_SOCKET, DEFAULT_CNI_SOCKET);
  const excludeNamespaces = (get(ENV_CNI_EXCLUDE_NAMESPACES) ?? 'kube-system,istio-system').split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const ns of excludeNamespaces) if (!isDnsLabel(ns)) issues.add(ENV_CNI_EXCLUDE_NAMESPACES, 'must be namespace names separated by commas', ns);
  const agentTimeout = duration(ENV_CNI_AGENT_TIMEOUT, '5s', 100);
  const kubeTimeout = duration(ENV_CNI_KUBE_TIMEOUT, '5s', 100);
  const kubeServer = get(ENV_CNI_KUBE_SERVER);
  if (kubeServer !== undefined && !/^https:\/\/[^/]+\/?$/.test(kubeServer)) issues.add(ENV_CNI_KUBE_SERVER, 'must be an https:// URL of the API server', kubeServer);
  const pluginLogLevel = (get(ENV_CNI_LOG_LEVEL) ?? 'info') as InstallConfig['pluginLogLevel'];
  if (!(PLUGIN_LEVELS as readonly string[]).includes(pluginLogLevel)) issues.add(ENV_CNI_LOG_LEVEL, `must be one of ${PLUGIN_LEVELS.join(', ')}`, pluginLogLevel);
  const pluginLogFile = get(ENV_CNI_LOG_FILE);
  if (pluginLogFile !== undefined && !pluginLogFile.startsWith('/')) issues.add(ENV_CNI_LOG_FILE, 'must be an absolute path', pluginLogFile);
  const logLevel = (get(ENV_LOG_LEVEL) ?? 'info') as InstallConfig['logLevel'];
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) issues.add(ENV_LOG_LEVEL, `must be one of ${LOG_LEVELS.join(', ')}`, logLevel);
  const serviceAccount = get(ENV_CNI_SERVICE_ACCOUNT) ?? 'ambit-cni';
  if (!isDnsSubdomain(serviceAccount)) issues.add(ENV_CNI_SERVICE_ACCOUNT, 'must be a service account name', serviceAccount);
  const ttlText = duration(ENV_CNI_TOKEN_TTL, '24h', 600_000);
  const daemonSet = get(ENV_CNI_DAEMONSET) ?? 'ambit-agent';
  if (!isDnsSubdomain(daemonSet)) issues.add(ENV_CNI_DAEMONSET, 'must be a DaemonSet name', daemonSet);
  const readyFile = absPath(ENV_CNI_READY_FILE, '/tmp/ambit-cni-ready');
  const pod = {
    name: required(ENV_POD_NAME, 'this pod\'s name'),
    namespace: required(ENV_POD_NAMESPACE, 'this pod\'s namespace'),
    uid: required(ENV_POD_UID, 'this pod\'s uid'),
  };

  issues.throwIfAny('AMBIT_ERR_CONFIG_INVALID', 'invalid CNI installer environment');
  return deepFreeze({
    binDir,
    confDir,
    ...(confFile ? { confFile } : {}),
    installDir,
    agentSocket,
    excludeNamespaces,
    agentTimeout,
    kubeTimeout,
    ...(kubeServer ? { kubeServer: kubeServer.replace(/\/$/, '') } : {}),
    pluginLogLevel,
    ...(pluginLogFile ? { pluginLogFile } : {}),
    logLevel,
    serviceAccount,
    tokenTtlSec: Math.round((tryParseDuration(ttlText) ?? 86_400_000) / 1000),
    daemonSet,
    readyFile,
    pod,
    nodeBinary: execPath,
    appRoot: defaultAppRoot(),
  });
}

/** The installer's files under the install folder. */
export function installPaths(installDir: string): { kubeconfig: string; token: string } {
  return { kubeconfig: join(installDir, 'kubeconfig'), token: join(installDir, 'token') };
}
