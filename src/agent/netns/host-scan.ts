/**
 * Finds pods' network namespaces on the node by their addresses, for pods the CNI never handed
 * over (they predate the agent, or their namespace was labelled later), as istio-cni does: every
 * process's `/proc/<pid>/ns/net` grouped by namespace inode, each namespace's local addresses read
 * from `/proc/<pid>/net/{fib_trie,if_inet6}` (no setns, no netlink), and a namespace matched to a
 * pod by the pod's IPs from its Workload.
 *
 * Invariants: the scanning process's own namespace (the host's, for a hostNetwork agent) is never
 * a match; a pod whose address appears in two namespaces is ambiguous and matches none; a process
 * that exits mid-scan is skipped, never an error.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';

/** One network namespace seen on the host. */
export interface HostNetns {
  /** `<dev>:<inode>` of the nsfs file: equal for every path naming this namespace. */
  key: string;
  /** Processes in it (ascending), any of which names it as /proc/<pid>/ns/net. */
  pids: number[];
  /** Its local unicast addresses (IPv4 and IPv6, canonical text). */
  addresses: string[];
}

export interface HostScanOptions {
  /** The proc filesystem (default /proc). */
  procRoot?: string;
}

/** `<dev>:<inode>` of the namespace `path` names (stat follows /proc magic links and bind mounts). */
export async function netnsKey(path: string): Promise<string | undefined> {
  try {
    const s = await stat(path);
    return `${s.dev}:${s.ino}`;
  } catch {
    return undefined;
  }
}

/**
 * Canonical text of an IP address for comparisons: IPv4 as is, IPv6 in RFC 5952 form (what the
 * WHATWG URL parser serializes: `FD00:0:0:0:0:0:0:7` and `fd00::7` are equal), IPv4-mapped IPv6
 * as its IPv4; undefined when `text` is not an address.
 */
export function canonicalIp(text: string): string | undefined {
  const ip = text.trim();
  const family = isIP(ip);
  if (family === 4) return ip;
  if (family !== 6) return undefined;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1];
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

/**
 * The local unicast IPv4 addresses in a `/proc/<pid>/net/fib_trie` text: each `|-- <ip>` leaf
 * followed by a `/32 host LOCAL` line (the Local table's entries for the namespace's own
 * addresses). Loopback addresses are left out.
 */
export function parseFibTrieLocal(text: string): string[] {
  const out = new Set<string>();
  let leaf: string | undefined;
  for (const line of text.split('\n')) {
    const l = /^\s*\|--\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (l) {
      leaf = l[1];
      continue;
    }
    if (leaf !== undefined && /^\s*\/32 host LOCAL\s*$/.test(line) && !leaf.startsWith('127.')) out.add(leaf);
    // Another prefix line or the next leaf ends the entries of this leaf.
    if (/^\s*\+--/.test(line)) leaf = undefined;
  }
  return [...out];
}

/**
 * The IPv6 addresses in a `/proc/<pid>/net/if_inet6` text (32 hex digits, index, prefix length,
 * scope, flags, interface), canonical; link-local (fe80::/10) and loopback are left out.
 */
export function parseIfInet6(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]{32})\s+[0-9a-fA-F]+\s+[0-9a-fA-F]+\s+([0-9a-fA-F]+)\s/.exec(line);
    if (!m) continue;
    const hex = m[1]!.toLowerCase();
    const scope = parseInt(m[2]!, 16);
    // Scope 0x20 is link, 0x10 host (loopback): never a pod's address.
    if (scope === 0x20 || scope === 0x10) continue;
    const ip = canonicalIp(hex.match(/.{4}/g)!.join(':'));
    if (ip !== undefined) out.push(ip);
  }
  return out;
}

async function readOptional(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return '';
  }
}

/** The addresses of the namespace of `pid`, or undefined when the process is gone. */
async function addressesOf(procRoot: string, pid: number): Promise<string[] | undefined> {
  try {
    const trie = await readFile(join(procRoot, String(pid), 'net', 'fib_trie'), 'utf8');
    const inet6 = await readOptional(join(procRoot, String(pid), 'net', 'if_inet6'));
    return [...parseFibTrieLocal(trie), ...parseIfInet6(inet6)];
  } catch {
    return undefined;
  }
}

/** Every network namespace some process on the host is in, except the scanner's own. */
export async function scanHostNetns(opts: HostScanOptions = {}): Promise<HostNetns[]> {
  const procRoot = opts.procRoot ?? '/proc';
  const own = await netnsKey(join(procRoot, 'self', 'ns', 'net'));
  const pids = (await readdir(procRoot)).filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  const byKey = new Map<string, number[]>();
  const keys = await Promise.all(pids.map((pid) => netnsKey(join(procRoot, String(pid), 'ns', 'net'))));
  pids.forEach((pid, i) => {
    const key = keys[i];
    if (key === undefined || key === own) return;
    const list = byKey.get(key);
    if (list) list.push(pid);
    else byKey.set(key, [pid]);
  });
  const out: HostNetns[] = [];
  for (const [key, list] of byKey) {
    // The first process still alive names the namespace's addresses.
    for (const pid of list) {
      const addresses = await addressesOf(procRoot, pid);
      if (addresses === undefined) continue;
      out.push({ key, pids: list, addresses });
      break;
    }
  }
  return out;
}

export type NetnsMatch = { kind: 'found'; netns: HostNetns } | { kind: 'ambiguous'; keys: string[] } | { kind: 'none' };

/**
 * The namespace holding any of `podIps`. Two namespaces holding the pod's addresses (a pod's IP
 * reused while an old sandbox lingers) match none: capturing the wrong pod is worse than waiting.
 */
export function matchNetns(scan: readonly HostNetns[], podIps: readonly string[]): NetnsMatch {
  const wanted = new Set(podIps.map(canonicalIp).filter((ip): ip is string => ip !== undefined));
  if (wanted.size === 0) return { kind: 'none' };
  const hits = scan.filter((n) => n.addresses.some((a) => wanted.has(a)));
  if (hits.length === 1) return { kind: 'found', netns: hits[0]! };
  if (hits.length > 1) return { kind: 'ambiguous', keys: hits.map((h) => h.key) };
  return { kind: 'none' };
}

/**
 * Names under `dirs` (e.g. /var/run/netns, where runtimes bind-mount pod sandboxes' namespaces)
 * by namespace key: a stable path for a scanned namespace that outlives any one process.
 */
export async function boundNetnsPaths(dirs: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      const path = join(dir, name);
      const key = await netnsKey(path);
      // A plain file (a bind mount whose namespace is gone) has the folder's dev, not nsfs's: the
      // key then matches no scanned namespace and is harmless.
      if (key !== undefined && !out.has(key)) out.set(key, path);
    }
  }
  return out;
}
