/**
 * Builds the local mesh's network: a bridge in the root namespace joining one netns per node, and
 * one netns per pod behind its node (point-to-point /32 veths, so all pod traffic is routed through
 * its node, where kube-proxy-like nft rules give ClusterIPs to pods the mesh does not capture).
 * Invariant: everything made carries the mesh prefix, so `cleanup(prefix)` finds leftovers of a crash.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ip, nftIn, run } from './exec.js';
import { addressPlan, bridgeName, MAX_NET, planNode, type NodePlan } from './plan.js';

export const NETNS_DIR = '/var/run/netns';
export const NETNS_ETC = '/etc/netns';

/** Creates the bridge, the node namespaces and the routes between them. */
export async function createClusterNetwork(prefix: string, nodes: number, net: number): Promise<NodePlan[]> {
  const plan = addressPlan(net);
  const br = bridgeName(prefix);
  await ip(['link', 'add', br, 'type', 'bridge']);
  await ip(['addr', 'add', `${plan.bridgeIp}/24`, 'dev', br]);
  await ip(['link', 'set', br, 'up']);
  // Safety: nothing for the mesh ranges may leave through the machine's real interfaces.
  for (const cidr of [plan.podNet, plan.serviceNet]) await ip(['route', 'replace', 'blackhole', cidr]);
  const plans: NodePlan[] = [];
  for (let i = 1; i <= nodes; i++) {
    const n = planNode(prefix, i, net);
    plans.push(n);
    await ip(['netns', 'add', n.netns]);
    await ip(['link', 'add', n.hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.netns]);
    await ip(['link', 'set', n.hostVeth, 'master', br, 'up']);
    await ip(['link', 'set', 'lo', 'up'], n.netns);
    await ip(['addr', 'add', `${n.ip}/24`, 'dev', 'eth0'], n.netns);
    await ip(['link', 'set', 'eth0', 'up'], n.netns);
    await run('ip', ['netns', 'exec', n.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
    // The root namespace reaches pods (for `ambit local` tooling and ingress) through their node.
    await ip(['route', 'replace', n.podCidr, 'via', n.ip]);
  }
  for (const n of plans) {
    for (const m of plans) if (m.index !== n.index) await ip(['route', 'add', m.podCidr, 'via', m.ip], n.netns);
  }
  return plans;
}

export interface ServiceRule {
  vip: string;
  protocol: 'tcp' | 'udp';
  port: number;
  endpoints: Array<{ ip: string; port: number }>;
}

/** Renders the kube-proxy-like nft table of a node (pure). Rules replace the table atomically. */
/** Packet mark of hairpin Service traffic (kube-proxy's masquerade bit). */
const HAIRPIN_MARK = '0x4000';

export function renderServiceRules(prefix: string, rules: ServiceRule[]): string {
  const table = `${prefix}_svc`;
  const lines: string[] = [`table ip ${table} {}`, `delete table ip ${table}`, `table ip ${table} {`];
  const chains: string[] = [];
  const pre: string[] = [];
  rules.forEach((r, i) => {
    const match = `ip daddr ${r.vip} ${r.protocol} dport ${r.port}`;
    if (r.endpoints.length === 0) {
      // As kube-proxy: a refused TCP connect, an ICMP port unreachable for UDP.
      pre.push(`    ${match} ${r.protocol === 'tcp' ? 'reject with tcp reset' : 'reject'}`);
      return;
    }
    const targets = r.endpoints.map((e, j) => {
      const name = `s${i}e${j}`;
      // Hairpin: a pod reaching itself through the ClusterIP is masqueraded (as kube-proxy
      // marks it), else its reply would come from its own address, not the ClusterIP.
      chains.push(`  chain ${name} {\n    ip saddr ${e.ip} meta mark set mark or ${HAIRPIN_MARK}\n    meta l4proto ${r.protocol} dnat ip to ${e.ip}:${e.port}\n  }`);
      return `${j} : jump ${name}`;
    });
    pre.push(`    ${match} numgen random mod ${r.endpoints.length} vmap { ${targets.join(', ')} }`);
  });
  lines.push(...chains);
  lines.push('  chain prerouting {', '    type nat hook prerouting priority -100; policy accept;', ...pre, '  }');
  lines.push('  chain postrouting {', '    type nat hook postrouting priority 100; policy accept;', `    meta mark & ${HAIRPIN_MARK} == ${HAIRPIN_MARK} masquerade`, '  }', '}');
  return lines.join('\n') + '\n';
}

export async function applyServiceRules(prefix: string, n: NodePlan, rules: ServiceRule[]): Promise<void> {
  await nftIn(n.netns, renderServiceRules(prefix, rules));
}

/** Writes a pod's /etc/hosts and /etc/resolv.conf (bind-mounted over the machine's by `ip netns exec`). */
export async function writePodDns(netns: string, hosts: string, resolvConf: string): Promise<void> {
  const dir = join(NETNS_ETC, netns);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'hosts'), hosts);
  await writeFile(join(dir, 'resolv.conf'), resolvConf);
}

/** Removes every namespace, link and /etc/netns folder carrying the prefix, and the blackhole routes. */
export async function cleanupNetwork(prefix: string): Promise<string[]> {
  const removed: string[] = [];
  const list = await ip(['netns', 'list'], undefined, { allowFailure: true });
  for (const line of list.stdout.split('\n')) {
    const name = line.split(' ')[0];
    if (name && name.startsWith(`${prefix}-`)) {
      await ip(['netns', 'del', name], undefined, { allowFailure: true });
      removed.push(`netns ${name}`);
    }
  }
  const links = await ip(['-o', 'link', 'show'], undefined, { allowFailure: true });
  for (const line of links.stdout.split('\n')) {
    const m = /^\d+: ([^:@]+)[:@]/.exec(line);
    if (m && m[1]!.startsWith(`${prefix}-`)) {
      await ip(['link', 'del', m[1]!], undefined, { allowFailure: true });
      removed.push(`link ${m[1]}`);
    }
  }
  if (existsSync(NETNS_ETC)) {
    for (const name of await readdir(NETNS_ETC)) {
      if (name.startsWith(`${prefix}-`)) await rm(join(NETNS_ETC, name), { recursive: true, force: true });
    }
  }
  const routes = await ip(['route', 'show'], undefined, { allowFailure: true });
  // An address block's safety blackholes go once no mesh routes its pods any more.
  for (let net = 0; net <= MAX_NET; net++) {
    const plan = addressPlan(net);
    const inUse = new RegExp(`^10\\.${244 + net}\\.\\d+\\.0/24 via 10\\.240\\.${net}\\.`, 'm').test(routes.stdout);
    if (inUse) continue;
    for (const cidr of [plan.podNet, plan.serviceNet]) {
      if (!routes.stdout.includes(`blackhole ${cidr}`)) continue;
      const r = await ip(['route', 'del', 'blackhole', cidr], undefined, { allowFailure: true });
      if (r.code === 0) removed.push(`route blackhole ${cidr}`);
    }
  }
  return removed;
}
