/** File descriptors and resident memory of a process (this one by default), read from /proc. */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { trimMallocHeap } from '../../native/bindings.js';

export function fdCount(pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** VmRSS in bytes. */
export function rssBytes(pid: number | 'self' = 'self'): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** A full garbage collection (the test runner does not expose gc; V8 can be asked for it). */
export const collectGarbage: () => void = (() => {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
})();

/**
 * VmRSS once garbage is collected and glibc has handed freed pages back (as the agent itself does
 * every 30 s): what a leak would still hold. Plain RSS right after a burst keeps what OpenSSL,
 * nghttp2 and V8 freed, by tens of MB and more on some machines.
 */
export function settledRssBytes(): number {
  collectGarbage();
  trimMallocHeap();
  return rssBytes();
}

/** The value of one counter series in a prom-client registry (0 when absent). */
export async function counterValue(registry: import('prom-client').Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const values = (await metric.get()).values;
  return values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((n, v) => n + v.value, 0);
}

/** Polls `check` every 20 ms until it is true or `timeoutMs` passed; returns the last result. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const TCP_STATES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING'];

/** "a.b.c.d:port" from /proc/net/tcp's little-endian hex form (IPv4 only; others kept raw). */
function procAddress(hex: string): string {
  const [ip = '', port = '0'] = hex.split(':');
  if (ip.length !== 8) return hex;
  const b = Buffer.from(ip, 'hex').reverse();
  return `${[...b].join('.')}:${parseInt(port, 16)}`;
}

/**
 * What this process's descriptors are, counted by kind; TCP sockets by "local → remote state",
 * so a leak check that fails can say which connections stayed open.
 */
export function fdReport(pid: number | 'self' = 'self'): string {
  const tcp = new Map<string, string>();
  for (const file of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      tcp.set(f[9]!, `${procAddress(f[1]!)} → ${procAddress(f[2]!)} ${TCP_STATES[parseInt(f[3]!, 16)] ?? f[3]}`);
    }
  }
  const counts = new Map<string, number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    const kind = inode !== undefined ? (tcp.get(inode) ?? 'socket (not TCP)') : target.replace(/\d+/g, 'N');
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n}× ${k}`).join('; ');
}
