/**
 * The CNI protocol as a plugin sees it (CNI spec 1.0, with the 1.1 verbs answered): the
 * environment the runtime sets, the network configuration on stdin, the results and the error
 * JSON on stdout, and the spec's error codes. Pure: no I/O.
 *
 * Facts: /work/shared/reference/kubernetes-api-facts.md §8 (CNI SPEC.md §2-§5, libcni).
 */
import { AmbitError, type ErrorCode } from '../shared/errors.js';

/** Versions this plugin accepts in `cniVersion` (it passes results through, so every one works). */
export const SUPPORTED_VERSIONS: readonly string[] = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
/** The version reported when the input names none. */
export const DEFAULT_VERSION = '1.0.0';

/** The spec's well-known error codes (0-99 reserved), plus this plugin's own (100+). */
export const CniCode = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** The node agent answered that it cannot capture the pod. */
  AGENT_REFUSED: 100,
} as const;

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';
const COMMANDS: readonly string[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'];

/** What the runtime put in the environment. */
export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS split into pairs (`K8S_POD_NAME`, `K8S_POD_NAMESPACE`, `K8S_POD_UID`, ...). */
  args: Record<string, string>;
  path: string[];
}

/** The Kubernetes identity containerd and CRI-O pass in CNI_ARGS. */
export interface K8sArgs {
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  infraContainerId?: string;
}

/** The network configuration on stdin: the plugin's own object plus what the runtime adds. */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  prevResult?: Record<string, unknown>;
  runtimeConfig?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface CniErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** An AmbitError carrying the CNI code to report for it. */
export function cniError(code: ErrorCode, cniCode: number, message: string, details?: string, cause?: unknown): AmbitError {
  return new AmbitError(code, message, {
    ...(cause === undefined ? {} : { cause }),
    details: { cniCode, ...(details ? { cniDetails: details } : {}) },
  });
}

/** Which variables each command needs (spec §2); DEL may run without a netns. */
const REQUIRED: Record<CniCommand, ReadonlyArray<'CNI_CONTAINERID' | 'CNI_NETNS' | 'CNI_IFNAME'>> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  VERSION: [],
  STATUS: [],
  GC: [],
};

/** Reads the CNI_* variables; throws AMBIT_ERR_CNI_INVALID (CNI code 4) naming the variable. */
export function parseCniEnv(env: Readonly<Record<string, string | undefined>>): CniEnv {
  const command = env['CNI_COMMAND'] ?? '';
  if (!COMMANDS.includes(command)) {
    throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_ENV, `CNI_COMMAND must be one of ${COMMANDS.join(', ')} (got ${JSON.stringify(command)})`);
  }
  const cmd = command as CniCommand;
  for (const name of REQUIRED[cmd]) {
    if ((env[name] ?? '') === '') throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_ENV, `${name} is required for ${cmd}`);
  }
  const netns = env['CNI_NETNS'] ?? '';
  if (netns !== '' && !netns.startsWith('/')) {
    throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_ENV, `CNI_NETNS must be an absolute path (got ${JSON.stringify(netns)})`);
  }
  return {
    command: cmd,
    containerId: env['CNI_CONTAINERID'] ?? '',
    netns,
    ifname: env['CNI_IFNAME'] ?? '',
    args: parseCniArgs(env['CNI_ARGS'] ?? ''),
    path: (env['CNI_PATH'] ?? '').split(':').filter((p) => p.length > 0),
  };
}

/** `K=V;K=V` (values may hold "="); pairs without "=" are rejected (CNI code 4). */
export function parseCniArgs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_ENV, `CNI_ARGS must be K=V pairs separated by ";" (got ${JSON.stringify(part)})`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

export function k8sArgs(args: Readonly<Record<string, string>>): K8sArgs {
  const pick = (k: string): string | undefined => (args[k] !== undefined && args[k] !== '' ? args[k] : undefined);
  const out: K8sArgs = {};
  const ns = pick('K8S_POD_NAMESPACE');
  const name = pick('K8S_POD_NAME');
  const uid = pick('K8S_POD_UID');
  const infra = pick('K8S_POD_INFRA_CONTAINER_ID');
  if (ns !== undefined) out.podNamespace = ns;
  if (name !== undefined) out.podName = name;
  if (uid !== undefined) out.podUid = uid;
  if (infra !== undefined) out.infraContainerId = infra;
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses stdin for ADD/DEL/CHECK: JSON (code 6), cniVersion supported (code 1), name and type
 * present and prevResult an object (code 7).
 */
export function parseNetConf(stdin: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.DECODE_FAILURE, `network configuration on stdin is not JSON: ${(e as Error).message}`, undefined, e);
  }
  if (!isRecord(raw)) throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.DECODE_FAILURE, 'network configuration on stdin must be a JSON object');
  const version = raw['cniVersion'];
  if (typeof version !== 'string' || !SUPPORTED_VERSIONS.includes(version)) {
    throw cniError(
      'AMBIT_ERR_CNI_INVALID',
      CniCode.INCOMPATIBLE_VERSION,
      `incompatible CNI version ${JSON.stringify(version)}; this plugin supports ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  for (const key of ['name', 'type'] as const) {
    if (typeof raw[key] !== 'string' || raw[key] === '') throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_CONFIG, `network configuration: "${key}" must be a non-empty string`);
  }
  if (raw['prevResult'] !== undefined && !isRecord(raw['prevResult'])) {
    throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_CONFIG, 'network configuration: "prevResult" must be an object');
  }
  return raw as NetConf;
}

/** The version a result or error for this input must carry (the input's, when readable). */
export function requestedVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as Record<string, unknown>)['cniVersion'];
    if (typeof v === 'string' && v.length > 0) return v;
  } catch {
    // stdin is not JSON: answer in the default version.
  }
  return DEFAULT_VERSION;
}

/** VERSION's answer. */
export function versionResult(cniVersion: string): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/**
 * ADD's answer for a chained plugin that changes nothing: the previous plugin's result exactly as
 * received, or `{cniVersion}` when it is the first plugin.
 */
export function passThroughResult(conf: NetConf): Record<string, unknown> {
  return conf.prevResult ?? { cniVersion: conf.cniVersion };
}

/** The error JSON for stdout. */
export function errorResult(cniVersion: string, code: number, msg: string, details?: string): CniErrorResult {
  return { cniVersion, code, msg, ...(details ? { details } : {}) };
}

/** The addresses of a previous result (any supported version's shape). */
export function resultIps(prevResult: Record<string, unknown> | undefined): Array<{ address: string; gateway?: string; interface?: number }> {
  const ips = prevResult?.['ips'];
  if (!Array.isArray(ips)) return [];
  const out: Array<{ address: string; gateway?: string; interface?: number }> = [];
  for (const ip of ips) {
    if (!isRecord(ip) || typeof ip['address'] !== 'string') continue;
    const item: { address: string; gateway?: string; interface?: number } = { address: ip['address'] };
    if (typeof ip['gateway'] === 'string') item.gateway = ip['gateway'];
    if (typeof ip['interface'] === 'number') item.interface = ip['interface'];
    out.push(item);
  }
  return out;
}
