/**
 * A local node's CNI folders, as a cluster's primary CNI and Ambit's installer leave them on a
 * node: `bin/` with launchers for `ambit-local-net` (the primary plugin) and `ambit-cni`, and
 * `net.d/10-ambit-local.conflist` with the primary plugin first and the Ambit plugin chained after
 * it (what the installer's chainPlugin() does on a cluster), with its own kubeconfig and the
 * node agent's socket.
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chainPlugin, kubeconfigText, launcherText, PLUGIN_MAIN, PLUGIN_TYPE, type PluginEntry } from '../../cni/install.js';
import { NET_PLUGIN_TYPE } from '../cni-net/plugin.js';
import { addressPlan, type NodePlan } from '../plan.js';
import { NETNS_DIR } from '../network.js';

export const CONFLIST_FILE = '10-ambit-local.conflist';
export const NET_PLUGIN_MAIN = join('dist', 'src', 'local', 'cni-net', 'main.js');

export interface NodeCniPaths {
  binDir: string;
  confDir: string;
  ipamDir: string;
}

export function nodeCniPaths(nodeDir: string): NodeCniPaths {
  return { binDir: join(nodeDir, 'cni', 'bin'), confDir: join(nodeDir, 'cni', 'net.d'), ipamDir: join(nodeDir, 'cni', 'ipam') };
}

async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

/** The primary conflist of node `n` (the Ambit plugin not chained yet). */
export function primaryConflist(n: NodePlan, net: number, ipamDir: string): Record<string, unknown> {
  const plan = addressPlan(net);
  return {
    cniVersion: '1.0.0',
    name: 'ambit-local',
    plugins: [
      {
        type: NET_PLUGIN_TYPE,
        node_netns: join(NETNS_DIR, n.netns),
        subnet: n.podCidr,
        gateway: n.podGateway,
        routes: [plan.podNet, plan.serviceNet, plan.nodeNet],
        ipam_dir: ipamDir,
      },
    ],
  };
}

/** Writes the node's bin launchers and its primary conflist. */
export async function writePrimaryCni(paths: NodeCniPaths, n: NodePlan, net: number, repoRoot: string, nodeBinary: string): Promise<void> {
  for (const d of [paths.binDir, paths.confDir, paths.ipamDir]) await mkdir(d, { recursive: true, mode: 0o700 });
  await writeAtomic(join(paths.binDir, NET_PLUGIN_TYPE), launcherText(nodeBinary, join(repoRoot, NET_PLUGIN_MAIN)), 0o700);
  await writeAtomic(join(paths.confDir, CONFLIST_FILE), JSON.stringify(primaryConflist(n, net, paths.ipamDir), null, 2) + '\n', 0o600);
}

/** Installs the Ambit plugin as the installer does: its launcher, and its entry chained into the conflist. */
export async function chainAmbitPlugin(paths: NodeCniPaths, entry: PluginEntry, repoRoot: string, nodeBinary: string): Promise<void> {
  await writeAtomic(join(paths.binDir, PLUGIN_TYPE), launcherText(nodeBinary, join(repoRoot, PLUGIN_MAIN)), 0o700);
  const file = join(paths.confDir, CONFLIST_FILE);
  const chained = chainPlugin(await readFile(file, 'utf8'), file, entry);
  if (chained.changed) await writeAtomic(chained.file, chained.text, 0o600);
}

/** What local mode gives the Ambit plugin on one node (the installer's job on a cluster). */
export interface AmbitPluginInstall {
  /** The node's folder for the plugin's kubeconfig, token and the agent's socket (root only). */
  dir: string;
  apiServer: string;
  caPem: string;
  /** A token of the plugin's service account (ambit-cni), bound to the node. */
  token: string;
  /** Where the plugin appends its log lines. */
  logFile: string;
  logLevel: PluginEntry['log_level'];
}

/** The node's agent socket the plugin hands pods to (the agent's AMBIT_CNI_SOCKET). */
export function agentCniSocket(dir: string): string {
  return join(dir, 'agent.sock');
}

/**
 * Installs the Ambit plugin on a node as the CNI installer does on a cluster: the plugin's token
 * and kubeconfig (0600), its launcher, and its entry chained after the node's network plugin,
 * pointing at the node agent's socket. Returns that socket.
 */
export async function installAmbitPlugin(paths: NodeCniPaths, p: AmbitPluginInstall, repoRoot: string, nodeBinary: string): Promise<string> {
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  const tokenFile = join(p.dir, 'token');
  const kubeconfig = join(p.dir, 'kubeconfig');
  await writeAtomic(tokenFile, p.token, 0o600);
  await writeAtomic(kubeconfig, kubeconfigText(p.apiServer, Buffer.from(p.caPem), tokenFile), 0o600);
  const socket = agentCniSocket(p.dir);
  const entry: PluginEntry = {
    type: PLUGIN_TYPE,
    agent_socket: socket,
    agent_timeout: '5s',
    kubeconfig,
    kube_timeout: '5s',
    exclude_namespaces: ['kube-system', 'istio-system'],
    agent_pod_namespace: 'istio-system',
    agent_pod_prefix: 'ambit-agent-',
    log_level: p.logLevel,
    log_file: p.logFile,
  };
  await chainAmbitPlugin(paths, entry, repoRoot, nodeBinary);
  return socket;
}
