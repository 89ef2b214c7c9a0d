/**
 * `ambit-local-net`, the primary CNI plugin of local mode's nodes: what a cluster's CNI (Calico,
 * Cilium, kindnet...) does for a pod, on one machine whose nodes are network namespaces. ADD
 * allocates the pod an address from its node's pod range (host-local style: one file per address,
 * handed out round-robin), joins the pod's netns to the node's netns with a veth pair, gives the
 * pod a /32 with routes through the node (so all pod traffic is routed, and a node's nft rules see
 * it) and prints the CNI result the next plugin of the chain gets as prevResult. DEL undoes it and
 * succeeds when things are already gone; CHECK confirms the address is still on the interface.
 *
 * The decisions are here; the `ip` invocations and the address files are injected (main.ts wires
 * the real ones), so tests can run the plugin against real namespaces or a fake.
 */
import { isIP } from 'node:net';
import { CniCode, cniError, errorResult, parseCniEnv, parseNetConf, requestedVersion, resultIps, versionResult, type CniEnv, type NetConf } from '../../cni/protocol.js';
import { errorMessage, isAmbitError } from '../../shared/errors.js';

export const NET_PLUGIN_TYPE = 'ambit-local-net';

/** The plugin's keys in its conflist entry. */
export interface NetPluginConf {
  /** The node's network namespace (a path). */
  nodeNetns: string;
  /** The node's pod range, e.g. 10.244.1.0/24. */
  subnet: string;
  /** The node's address on every pod veth, the pods' next hop (default: the range's first address). */
  gateway: string;
  /** Destinations routed through the node (pod, service and node ranges). */
  routes: string[];
  /** Folder of the address files (one per allocated address). */
  ipamDir: string;
  mtu?: number;
}

export interface CniInterface {
  name: string;
  mac: string;
  sandbox?: string;
  mtu?: number;
}

/** The plugin's contacts with the world. */
export interface NetPluginDeps {
  /** Runs `ip -batch -` inside netns `path` with `commands`; rejects with the output on failure. */
  ipBatch(netnsPath: string, commands: string[]): Promise<void>;
  /** The MAC of link `name` in netns `path`, undefined when there is none. */
  linkMac(netnsPath: string, name: string): Promise<string | undefined>;
  /** Addresses (CIDR) on link `name` in netns `path`; empty when the link is missing. */
  linkAddresses(netnsPath: string, name: string): Promise<string[]>;
  /** Deletes link `name` in netns `path`; no error when it does not exist. */
  deleteLink(netnsPath: string, name: string): Promise<void>;
  ipam: IpamStore;
  netnsExists(path: string): boolean;
}

/** Address files of one node: reserve atomically, find by container, release. */
export interface IpamStore {
  /** Creates the file for `ip` holding `owner`; false when it exists already. */
  reserve(ip: string, owner: string): Promise<boolean>;
  /** Every reserved address and its owner. */
  list(): Promise<Array<{ ip: string; owner: string }>>;
  release(ip: string): Promise<void>;
  /** The last address handed out (round-robin start), and its update. */
  last(): Promise<string | undefined>;
  setLast(ip: string): Promise<void>;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function ipToInt(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** First and last address of an IPv4 CIDR; undefined when it is not one. */
export function cidrRange(cidr: string): { first: number; last: number; prefix: number } | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(cidr);
  if (!m || isIP(m[1]!) !== 4) return undefined;
  const prefix = Number(m[2]);
  if (prefix > 32) return undefined;
  const size = 2 ** (32 - prefix);
  const first = Math.floor(ipToInt(m[1]!) / size) * size;
  return { first, last: first + size - 1, prefix };
}

/** Reads the plugin's keys; throws AMBIT_ERR_CNI_INVALID (CNI code 7) listing every problem. */
export function parseNetPluginConf(conf: NetConf): NetPluginConf {
  const problems: string[] = [];
  const absPath = (key: string): string => {
    const v = conf[key];
    if (typeof v !== 'string' || !v.startsWith('/')) problems.push(`${key} must be an absolute path (got ${JSON.stringify(v)})`);
    return typeof v === 'string' ? v : '';
  };
  const nodeNetns = absPath('node_netns');
  const ipamDir = absPath('ipam_dir');
  const subnet = typeof conf['subnet'] === 'string' ? conf['subnet'] : '';
  const range = cidrRange(subnet);
  if (!range || range.prefix > 30) problems.push(`subnet must be an IPv4 CIDR of at least 4 addresses (got ${JSON.stringify(conf['subnet'])})`);
  const gwRaw = conf['gateway'];
  let gateway = range ? intToIp(range.first + 1) : '';
  if (gwRaw !== undefined) {
    if (typeof gwRaw !== 'string' || isIP(gwRaw) !== 4 || (range && (ipToInt(gwRaw) <= range.first || ipToInt(gwRaw) >= range.last))) {
      problems.push(`gateway must be an IPv4 address inside subnet ${subnet} (got ${JSON.stringify(gwRaw)})`);
    } else gateway = gwRaw;
  }
  const routes: string[] = [];
  if (conf['routes'] !== undefined) {
    if (!Array.isArray(conf['routes'])) problems.push(`routes must be a list of CIDRs (got ${JSON.stringify(conf['routes'])})`);
    else for (const r of conf['routes']) {
      if (typeof r !== 'string' || !cidrRange(r)) problems.push(`routes: ${JSON.stringify(r)} is not an IPv4 CIDR`);
      else routes.push(r);
    }
  }
  const mtu = conf['mtu'];
  if (mtu !== undefined && (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 576 || mtu > 65535)) problems.push(`mtu must be an integer 576..65535 (got ${JSON.stringify(mtu)})`);
  if (problems.length > 0) throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_CONFIG, `invalid ${NET_PLUGIN_TYPE} configuration: ${problems.join('; ')}`);
  return { nodeNetns, subnet, gateway, routes, ipamDir, ...(typeof mtu === 'number' ? { mtu } : {}) };
}

/** The node-side veth of a pod address: `vp<offset in the range>` (at most 15 characters). */
export function hostVethName(conf: NetPluginConf, ip: string): string {
  return `vp${ipToInt(ip) - cidrRange(conf.subnet)!.first}`;
}

/** Who owns an address file: the sandbox and the interface in it. */
export function ownerOf(env: Pick<CniEnv, 'containerId' | 'ifname'>): string {
  return `${env.containerId}/${env.ifname}`;
}

/** Picks a free address round-robin after `last` (skipping network, gateway and broadcast); undefined when full. */
export function nextCandidates(conf: NetPluginConf, last: string | undefined, taken: ReadonlySet<string>): string[] {
  const range = cidrRange(conf.subnet)!;
  const gw = ipToInt(conf.gateway);
  const first = range.first + 1;
  const end = range.last - 1;
  const size = end - first + 1;
  const start = last !== undefined && ipToInt(last) >= first && ipToInt(last) <= end ? ipToInt(last) + 1 : first;
  const out: string[] = [];
  for (let i = 0; i < size; i++) {
    const n = first + ((start - first + i) % size);
    if (n === gw) continue;
    const ip = intToIp(n);
    if (!taken.has(ip)) out.push(ip);
  }
  return out;
}

async function allocate(conf: NetPluginConf, owner: string, ipam: IpamStore): Promise<string> {
  const existing = (await ipam.list()).find((e) => e.owner === owner);
  if (existing) return existing.ip;
  const taken = new Set((await ipam.list()).map((e) => e.ip));
  for (const ip of nextCandidates(conf, await ipam.last(), taken)) {
    if (await ipam.reserve(ip, owner)) {
      await ipam.setLast(ip);
      return ip;
    }
  }
  throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.TRY_AGAIN_LATER, `no free pod address left in ${conf.subnet} (every address is in use); delete pods on this node`);
}

/** The result ADD prints, in the requested version's shape. */
export function addResult(cniVersion: string, conf: NetPluginConf, ip: string, hostIf: CniInterface, podIf: CniInterface): Record<string, unknown> {
  const legacy = cniVersion.startsWith('0.');
  return {
    cniVersion,
    interfaces: [hostIf, podIf],
    ips: [{ ...(legacy ? { version: '4' } : {}), address: `${ip}/32`, gateway: conf.gateway, interface: 1 }],
    routes: [{ dst: `${conf.gateway}/32` }, ...conf.routes.map((dst) => ({ dst, gw: conf.gateway }))],
    dns: {},
  };
}

async function add(env: CniEnv, netConf: NetConf, conf: NetPluginConf, deps: NetPluginDeps): Promise<Record<string, unknown>> {
  if (!deps.netnsExists(env.netns)) throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.UNKNOWN_CONTAINER, `the pod's network namespace ${env.netns} does not exist`);
  if (!deps.netnsExists(conf.nodeNetns)) throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_CONFIG, `the node's network namespace ${conf.nodeNetns} does not exist`);
  const owner = ownerOf(env);
  const ip = await allocate(conf, owner, deps.ipam);
  const veth = hostVethName(conf, ip);
  const mtu = conf.mtu !== undefined ? ` mtu ${conf.mtu}` : '';
  try {
    // A veth left by an ADD that failed half way (or a crashed runtime) is replaced.
    await deps.deleteLink(conf.nodeNetns, veth);
    await deps.ipBatch(conf.nodeNetns, [`link add ${veth}${mtu} type veth peer name ${env.ifname} netns ${env.netns}`]);
    await deps.ipBatch(env.netns, [
      'link set lo up',
      `addr add ${ip}/32 dev ${env.ifname}`,
      `link set ${env.ifname} up`,
      `route add ${conf.gateway} dev ${env.ifname} scope link`,
      ...conf.routes.map((r) => `route add ${r} via ${conf.gateway} src ${ip}`),
    ]);
    await deps.ipBatch(conf.nodeNetns, [`addr add ${conf.gateway}/32 dev ${veth}`, `link set ${veth} up`, `route add ${ip}/32 dev ${veth} scope link`]);
    const hostMac = (await deps.linkMac(conf.nodeNetns, veth)) ?? '';
    const podMac = (await deps.linkMac(env.netns, env.ifname)) ?? '';
    return addResult(netConf.cniVersion, conf, ip, { name: veth, mac: hostMac }, { name: env.ifname, mac: podMac, sandbox: env.netns });
  } catch (e) {
    await deps.deleteLink(conf.nodeNetns, veth).catch(() => undefined);
    await deps.ipam.release(ip).catch(() => undefined);
    if (isAmbitError(e)) throw e;
    throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.IO_FAILURE, `cannot wire pod address ${ip} on ${veth}: ${errorMessage(e)}`, undefined, e);
  }
}

async function del(env: CniEnv, conf: NetPluginConf, deps: NetPluginDeps): Promise<void> {
  const owner = ownerOf(env);
  for (const e of await deps.ipam.list()) {
    if (e.owner !== owner) continue;
    await deps.deleteLink(conf.nodeNetns, hostVethName(conf, e.ip));
    await deps.ipam.release(e.ip);
  }
}

async function check(env: CniEnv, netConf: NetConf, deps: NetPluginDeps): Promise<void> {
  if (netConf.prevResult === undefined) throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_CONFIG, 'CHECK needs prevResult in the network configuration');
  const want = resultIps(netConf.prevResult).map((i) => i.address);
  if (!deps.netnsExists(env.netns)) throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.UNKNOWN_CONTAINER, `the pod's network namespace ${env.netns} does not exist`);
  const have = await deps.linkAddresses(env.netns, env.ifname);
  const missing = want.filter((a) => !have.includes(a));
  if (missing.length > 0) throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.IO_FAILURE, `${env.ifname} in ${env.netns} lacks ${missing.join(', ')} (has ${have.join(', ') || 'nothing'})`);
}

/** One invocation: the text for stdout and the exit code; never rejects. */
export async function runNetPlugin(envVars: Readonly<Record<string, string | undefined>>, stdin: string, deps: NetPluginDeps): Promise<{ stdout: string; exitCode: number }> {
  let version = requestedVersion(stdin);
  const json = (v: unknown): string => JSON.stringify(v) + '\n';
  try {
    const env = parseCniEnv(envVars);
    if (env.command === 'VERSION') return { stdout: json(versionResult(version)), exitCode: 0 };
    if (env.command === 'STATUS' || env.command === 'GC') return { stdout: '', exitCode: 0 };
    const netConf = parseNetConf(stdin);
    version = netConf.cniVersion;
    const conf = parseNetPluginConf(netConf);
    if (isRecord(netConf.prevResult) && env.command === 'ADD') {
      throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_CONFIG, `${NET_PLUGIN_TYPE} is a primary plugin: it must come first in the chain (it got a prevResult)`);
    }
    switch (env.command) {
      case 'ADD':
        return { stdout: json(await add(env, netConf, conf, deps)), exitCode: 0 };
      case 'DEL':
        await del(env, conf, deps);
        return { stdout: '', exitCode: 0 };
      case 'CHECK':
        await check(env, netConf, deps);
        return { stdout: '', exitCode: 0 };
    }
  } catch (e) {
    const code = isAmbitError(e) && typeof e.details?.['cniCode'] === 'number' ? (e.details['cniCode'] as number) : 101;
    return { stdout: json(errorResult(version, code, errorMessage(e))), exitCode: 1 };
  }
}
