/**
 * The CNI chain as a container runtime runs it (libcni's AddNetworkList / DelNetworkList /
 * CheckNetworkList): the node's conflist is read from its CNI config folder (the first file by
 * name), each plugin is executed from the CNI bin folder with CNI_* variables and its
 * configuration on stdin (plus `cniVersion`, `name` and the previous plugin's result as
 * `prevResult`), ADD in order, DEL in reverse order with the final ADD result, CHECK in order.
 * A plugin's error JSON on stdout becomes an AmbitError naming the plugin, its code and message.
 *
 * Facts: /work/shared/reference/kubernetes-api-facts.md §8 (CNI SPEC.md §2-§5, libcni).
 */
import { spawn } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AmbitError } from '../../shared/errors.js';
import { choosePrimaryConf } from '../../cni/install.js';

export interface Conflist {
  file: string;
  cniVersion: string;
  name: string;
  plugins: Array<Record<string, unknown> & { type: string }>;
}

/** What the runtime knows of one sandbox attachment. */
export interface CniRuntime {
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS pairs (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID, K8S_POD_INFRA_CONTAINER_ID, IgnoreUnknown). */
  args: Record<string, string>;
}

export type CniResult = Record<string, unknown>;

export interface CniChainOptions {
  confDir: string;
  binDir: string;
  /** Per plugin run (default 60 s; the Ambit plugin waits for the agent up to its own timeout). */
  timeoutMs?: number;
}

/** Reads the conflist the runtime uses (the first by name, as libcni sorts them). */
export async function loadConflist(confDir: string): Promise<Conflist> {
  const names = await readdir(confDir).catch(() => [] as string[]);
  const file = choosePrimaryConf(names);
  if (file === undefined) throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `no CNI configuration in ${confDir}; the node's network is not ready`);
  const text = await readFile(join(confDir, file), 'utf8');
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `CNI configuration ${join(confDir, file)} is not JSON: ${(e as Error).message}`, { cause: e });
  }
  const plugins = Array.isArray(doc['plugins']) ? doc['plugins'] : [doc];
  if (typeof doc['cniVersion'] !== 'string' || typeof doc['name'] !== 'string' || plugins.some((p) => typeof (p as Record<string, unknown>)['type'] !== 'string')) {
    throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `CNI configuration ${join(confDir, file)} needs cniVersion, name and a type for every plugin`);
  }
  return { file, cniVersion: doc['cniVersion'], name: doc['name'], plugins: plugins as Conflist['plugins'] };
}

function argsText(args: Record<string, string>): string {
  return Object.entries(args)
    .map(([k, v]) => `${k}=${v}`)
    .join(';');
}

/** Runs one plugin; resolves with its parsed stdout (empty object for no output), rejects with its error. */
function execPlugin(opts: CniChainOptions, list: Conflist, plugin: Conflist['plugins'][number], command: 'ADD' | 'DEL' | 'CHECK', rt: CniRuntime, prevResult?: CniResult): Promise<CniResult> {
  const stdin = JSON.stringify({ ...plugin, cniVersion: list.cniVersion, name: list.name, ...(prevResult ? { prevResult } : {}) });
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: rt.containerId,
    CNI_NETNS: rt.netns,
    CNI_IFNAME: rt.ifname,
    CNI_ARGS: argsText(rt.args),
    CNI_PATH: opts.binDir,
  };
  const bin = join(opts.binDir, plugin.type);
  const what = `CNI ${command} of plugin ${plugin.type} for sandbox ${rt.containerId.slice(0, 12)}`;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${what}: cannot run ${bin}: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let parsed: Record<string, unknown> | undefined;
      try {
        parsed = stdout.trim() === '' ? {} : (JSON.parse(stdout) as Record<string, unknown>);
      } catch {
        parsed = undefined;
      }
      if (code === 0 && parsed !== undefined) return resolve(parsed);
      const msg = parsed && typeof parsed['msg'] === 'string' ? parsed['msg'] : crashLine(stderr) || `exit ${code ?? signal}`;
      const cniCode = parsed && typeof parsed['code'] === 'number' ? parsed['code'] : undefined;
      reject(new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${what} failed${cniCode !== undefined ? ` (CNI code ${cniCode})` : ''}: ${msg}`, { details: { plugin: plugin.type, cniCode } }));
    });
    child.stdin.end(stdin);
  });
}

/**
 * The line of a plugin's stderr that says what went wrong: for a Node crash the error line
 * (`TypeError: ...`), not the trailing `Node.js v24...`; else the last line.
 */
export function crashLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.find((l) => /^(\w*Error|Error)(\s*\[\w+\])?:/.test(l)) ?? lines.filter((l) => !/^Node\.js v\d/.test(l)).pop() ?? '';
}

/** libcni's chain over one node's CNI folders. */
export class CniChain {
  constructor(private readonly opts: CniChainOptions) {}

  /** ADD through every plugin; resolves with the final result (the pod's interfaces and addresses). */
  async add(rt: CniRuntime): Promise<CniResult> {
    const list = await loadConflist(this.opts.confDir);
    let prev: CniResult | undefined;
    for (const p of list.plugins) prev = await execPlugin(this.opts, list, p, 'ADD', rt, prev);
    return prev ?? {};
  }

  /** DEL in reverse order with the final ADD result (when known); stops at the first failure, as libcni does. */
  async del(rt: CniRuntime, result?: CniResult): Promise<void> {
    const list = await loadConflist(this.opts.confDir);
    for (const p of [...list.plugins].reverse()) await execPlugin(this.opts, list, p, 'DEL', rt, result);
  }

  /** CHECK in order with the final ADD result. */
  async check(rt: CniRuntime, result: CniResult): Promise<void> {
    const list = await loadConflist(this.opts.confDir);
    for (const p of list.plugins) await execPlugin(this.opts, list, p, 'CHECK', rt, result);
  }
}

/** The pod's first IPv4 address from a CNI result (`10.244.1.7/32` → `10.244.1.7`). */
export function resultPodIp(result: CniResult): string | undefined {
  const ips = Array.isArray(result['ips']) ? (result['ips'] as Array<Record<string, unknown>>) : [];
  for (const ip of ips) {
    const a = typeof ip['address'] === 'string' ? ip['address'].split('/')[0]! : '';
    if (/^\d+\.\d+\.\d+\.\d+$/.test(a)) return a;
  }
  return undefined;
}
