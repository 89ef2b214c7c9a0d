/**
 * Address and name plan of a local mesh (pure). Documented ranges:
 *   node network  10.240.0.0/24  bridge `<prefix>-br` in the root namespace at .1, node i at .(10+i)
 *   pod network   10.244.0.0/16  node i owns 10.244.i.0/24, its gateway 10.244.i.1, pods from .2
 *   services      10.96.0.0/16   ClusterIPs handed out from 10.96.0.10
 * Interface names stay within Linux's 15 characters: the prefix is at most 8 characters.
 */
import { AmbitError } from '../shared/errors.js';

export const NODE_NET = '10.240.0.0/24';
export const POD_NET = '10.244.0.0/16';
export const SERVICE_NET = '10.96.0.0/16';
export const BRIDGE_IP = '10.240.0.1';
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

export function planNode(prefix: string, index: number): NodePlan {
  if (!Number.isInteger(index) || index < 1 || index > MAX_NODES) {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `node index ${index} out of range 1..${MAX_NODES}`);
  }
  return {
    index,
    name: `node${index}`,
    netns: `${prefix}-node${index}`,
    hostVeth: `${prefix}-n${index}`,
    ip: `10.240.0.${10 + index}`,
    podCidr: `10.244.${index}.0/24`,
    podGateway: `10.244.${index}.1`,
  };
}

/** Pod IP for slot `slot` (0-based) on node `nodeIndex`. */
export function podIp(nodeIndex: number, slot: number): string {
  if (slot < 0 || slot >= MAX_PODS_PER_NODE) throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `node${nodeIndex} has no free pod address (max ${MAX_PODS_PER_NODE})`);
  return `10.244.${nodeIndex}.${slot + 2}`;
}

/** ClusterIP for service slot `slot` (0-based). */
export function serviceIp(slot: number): string {
  const n = slot + 10;
  if (n > 65_000) throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', 'service address range 10.96.0.0/16 exhausted');
  return `10.96.${Math.floor(n / 256)}.${n % 256}`;
}

/** Netns name of a pod: `<prefix>-p-<slot>` on its node, short and unique. */
export function podNetnsName(prefix: string, nodeIndex: number, slot: number): string {
  return `${prefix}-n${nodeIndex}p${slot}`;
}

/** Node-side veth of a pod (inside the node's netns). */
export function podVethName(slot: number): string {
  return `vp${slot}`;
}

/** Spreads a new pod over nodes: the node with the fewest pods, lowest index first. */
export function pickNode(podCounts: number[]): number {
  let best = 0;
  for (let i = 1; i < podCounts.length; i++) if (podCounts[i]! < podCounts[best]!) best = i;
  return best + 1;
}
