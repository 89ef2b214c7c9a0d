/**
 * Address and name plan of a local mesh (pure). A mesh uses one address block `net` (0-7, default
 * 0; `ambit local up --net K`), so meshes on different blocks can run side by side. Block K:
 *   node network  10.240.K.0/24     bridge `<prefix>-br` in the root namespace at .1, node i at .(10+i)
 *   pod network   10.(244+K).0.0/16 node i owns 10.(244+K).i.0/24, its gateway .1, pods from .2
 *   services      10.(96+K).0.0/16  ClusterIPs handed out from 10.(96+K).0.10
 * Interface names stay within Linux's 15 characters: the prefix is at most 8 characters.
 */
import { AmbitError } from '../shared/errors.js';

/** Address blocks 0..MAX_NET. */
export const MAX_NET = 7;

export interface AddressPlan {
  net: number;
  nodeNet: string;
  podNet: string;
  serviceNet: string;
  bridgeIp: string;
}

export function validateNet(net: number, what = '--net'): number {
  if (!Number.isInteger(net) || net < 0 || net > MAX_NET) {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `${what} ${JSON.stringify(net)} is not an address block 0-${MAX_NET}`);
  }
  return net;
}

export function addressPlan(net: number): AddressPlan {
  validateNet(net);
  return { net, nodeNet: `10.240.${net}.0/24`, podNet: `10.${244 + net}.0.0/16`, serviceNet: `10.${96 + net}.0.0/16`, bridgeIp: `10.240.${net}.1` };
}
/** An interface in the root namespace holding a block's bridge address; `mesh` names the local mesh whose bridge it is. */
export interface BlockHolder {
  iface: string;
  mesh?: string;
}

/**
 * Which interfaces hold block `net`'s bridge address, from `ip -o -4 addr show` (pure). The kernel
 * is the truth about a block: a mesh whose daemon died still holds its addresses and routes.
 */
export function blockHolders(ipAddrOutput: string, net: number): BlockHolder[] {
  const { bridgeIp } = addressPlan(net);
  const holders: BlockHolder[] = [];
  for (const line of ipAddrOutput.split('\n')) {
    const m = /^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)\//.exec(line);
    if (!m || m[2] !== bridgeIp) continue;
    const iface = m[1]!.split('@')[0]!;
    const mesh = /^([a-z][a-z0-9]{0,7})-br$/.exec(iface)?.[1];
    holders.push(mesh ? { iface, mesh } : { iface });
  }
  return holders;
}

export const CONTROLLER_PORT = 15012;
export const MAX_NODES = 200;
export const MAX_PODS_PER_NODE = 250;

export interface NodePlan {
  index: number;
  name: string;
  netns: string;
  /** veth end in the root namespace (attached to the bridge). */
  hostVeth: string;
  ip: string;
  podCidr: string;
  podGateway: string;
}

export function validatePrefix(prefix: string): string {
  if (!/^[a-z][a-z0-9]{0,7}$/.test(prefix)) {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `invalid local mesh name ${JSON.stringify(prefix)}: use 1-8 lowercase letters or digits, starting with a letter`);
  }
  return prefix;
}

export function bridgeName(prefix: string): string {
  return `${prefix}-br`;
}

export function cgroupName(prefix: string): string {
  return `${prefix}-mesh`;
}

export function planNode(prefix: string, index: number, net: number): NodePlan {
  if (!Number.isInteger(index) || index < 1 || index > MAX_NODES) {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `node index ${index} out of range 1..${MAX_NODES}`);
  }
  return {
    index,
    name: `node${index}`,
    netns: `${prefix}-node${index}`,
    hostVeth: `${prefix}-n${index}`,
    ip: `10.240.${net}.${10 + index}`,
    podCidr: `10.${244 + net}.${index}.0/24`,
    podGateway: `10.${244 + net}.${index}.1`,
  };
}

/** Pod IP for slot `slot` (0-based) on node `nodeIndex`. */

/** The state folder of mesh `prefix` (its pid file, control socket, keys, logs): a crashed run's leftovers are found there. */
export function stateDirFor(prefix: string): string {
  return `/run/ambit/${prefix}`;
}
