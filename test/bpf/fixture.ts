/**
 * Test pods for the capture suites: network namespaces joined to the host by veth pairs, a test
 * cgroup, and helpers to run a client inside a pod. Everything carries a per-process prefix and
 * is removed by cleanup(), which is safe to call twice.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';

export const CGROUP2_ROOT = '/sys/fs/cgroup/unified';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

function tryRun(cmd: string, args: string[]): boolean {
  try {
    run(cmd, args);
    return true;
  } catch {
    return false;
  }
}

export interface Pod {
  name: string;
  netnsPath: string;
  /** The pod's address, e.g. 10.X.0.2. */
  ip: string;
  /** The host's address on the pods' bridge, 10.X.0.1. */
  hostIp: string;
  /** The pod's IPv6 address, fd00:a:X::N+1 (no DAD, usable at once). */
  ip6: string;
}

export interface Fixture {
  prefix: string;
  /** 10.X.0.0/16: blackholed in the host; pods use 10.X.0.0/24. */
  net: string;
  pods: Pod[];
  cgroupPath: string;
  /** Moves this test process into the test cgroup (children inherit it). */
  enterCgroup(): void;
  cleanup(): void;
}

/**
 * Creates `count` pods `<prefix>pN` (10.X.0.N+1/24) on a host bridge (10.X.0.1) with no other
 * route, a blackhole route for 10.X.0.0/16 in the host, and a test cgroup.
 */
export function createFixture(tag: string, count: number): Fixture {
  const prefix = `a${tag}${process.pid % 10000}`;
  const undo: (() => void)[] = [];
  const cleanup = (): void => {
    while (undo.length > 0) {
      try {
        undo.pop()!();
      } catch {
        // keep removing the rest
      }
    }
  };
  try {
    // Pick a /16 no other test holds: the blackhole route add fails if it exists.
    let x = -1;
    for (let i = 0; i < 40 && x < 0; i++) {
      const cand = 100 + ((process.pid + i * 7) % 150);
      if (tryRun('ip', ['route', 'add', 'blackhole', `10.${cand}.0.0/16`])) x = cand;
    }
    if (x < 0) throw new Error('no free 10.X.0.0/16 for the test');
    const net16 = `10.${x}.0.0/16`;
    undo.push(() => run('ip', ['route', 'del', 'blackhole', net16]));
    // Pods share one bridge in the host: L2 switching, so the test needs no ip_forward.
    const bridge = `${prefix}br`;
    const hostIp = `10.${x}.0.1`;
    run('ip', ['link', 'add', bridge, 'type', 'bridge']);
    undo.push(() => run('ip', ['link', 'del', bridge]));
    run('ip', ['addr', 'add', `${hostIp}/24`, 'dev', bridge]);
    run('ip', ['link', 'set', bridge, 'up']);
    const pods: Pod[] = [];
    for (let n = 1; n <= count; n++) {
      const name = `${prefix}p${n}`;
      const host = `${prefix}h${n}`;
      const peer = `${prefix}v${n}`;
      run('ip', ['netns', 'add', name]);
      undo.push(() => run('ip', ['netns', 'del', name]));
      run('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', peer, 'netns', name]);
      undo.push(() => run('ip', ['link', 'del', host]));
      const ip = `10.${x}.0.${n + 1}`;
      run('ip', ['link', 'set', host, 'master', bridge]);
      run('ip', ['link', 'set', host, 'up']);
      run('ip', ['-n', name, 'addr', 'add', `${ip}/24`, 'dev', peer]);
      const ip6 = `fd00:a:${x}::${n + 1}`;
      run('ip', ['-n', name, 'addr', 'add', `${ip6}/64`, 'dev', peer, 'nodad']);
      run('ip', ['-n', name, 'link', 'set', peer, 'up']);
      run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
      pods.push({ name, netnsPath: `/var/run/netns/${name}`, ip, hostIp, ip6 });
    }
    const cgroupPath = `${CGROUP2_ROOT}/${prefix}`;
    mkdirSync(cgroupPath);
    undo.push(() => {
      // Move everything back to the root cgroup, then remove ours.
      const procs = readFileSync(`${cgroupPath}/cgroup.procs`, 'utf8').split('\n').filter(Boolean);
      for (const pid of procs) {
        try {
          writeFileSync(`${CGROUP2_ROOT}/cgroup.procs`, pid);
        } catch {
          // the process exited meanwhile
        }
      }
      if (existsSync(cgroupPath)) rmdirSync(cgroupPath);
    });
    return {
      prefix,
      net: net16,
      pods,
      cgroupPath,
      enterCgroup: () => writeFileSync(`${cgroupPath}/cgroup.procs`, String(process.pid)),
      cleanup,
    };
  } catch (e) {
    cleanup();
    throw e;
  }
}

export interface ClientResult {
  error?: string;
  localAddress?: string;
  localPort?: number;
  remoteAddress?: string;
  remotePort?: number;
  data?: string;
}

/**
 * Runs a Node client inside the pod's netns (`ip netns exec`), in the cgroup of this process
 * or `cgroupPath`: it waits for a line on stdin (sent after the pid is in the cgroup), connects
 * to host:port, reads until the server ends, and prints what it saw as JSON.
 */
export async function runClient(pod: Pod, host: string, port: number, cgroupPath?: string): Promise<ClientResult> {
  const script = `
    const net = require('node:net');
    process.stdin.once('data', () => {
      const out = {};
      const s = net.connect({ host: ${JSON.stringify(host)}, port: ${port} });
      let data = '';
      s.setEncoding('utf8');
      s.on('connect', () => {
        out.localAddress = s.localAddress; out.localPort = s.localPort;
        out.remoteAddress = s.remoteAddress; out.remotePort = s.remotePort;
      });
      s.on('data', (d) => { data += d; });
      s.on('end', () => { out.data = data; console.log(JSON.stringify(out)); process.exit(0); });
      s.on('error', (e) => { out.error = e.code || e.message; console.log(JSON.stringify(out)); process.exit(0); });
      setTimeout(() => { out.error = 'timeout'; console.log(JSON.stringify(out)); process.exit(0); }, 5000).unref();
    });`;
  const child = spawn('ip', ['netns', 'exec', pod.name, process.execPath, '-e', script], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  try {
    if (cgroupPath !== undefined && child.pid !== undefined) {
      writeFileSync(`${cgroupPath}/cgroup.procs`, String(child.pid));
    }
    child.stdin.write('go\n');
    const [code] = (await once(child, 'close')) as [number | null];
    const line = stdout.trim().split('\n').pop() ?? '';
    if (line === '') throw new Error(`client exited ${code} without output: ${stderr.trim()}`);
    return JSON.parse(line) as ClientResult;
  } finally {
    clearTimeout(killer);
  }
}

const openSockets = new WeakMap<net.Server, Set<net.Socket>>();

/** A server on an fd that answers every connection with `reply(socket)` and ends it. */
export function serveFd(fd: number, reply: (s: net.Socket) => string | Promise<string>): net.Server {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    Promise.resolve()
      .then(() => reply(s))
      .then(
        (text) => s.end(text),
        (e: unknown) => s.end(`error:${(e as Error).message}`),
      );
  });
  server.listen({ fd });
  openSockets.set(server, sockets);
  return server;
}

/** Connects a client socket and collects everything until end. */
export async function fetchText(socket: net.Socket, port?: number, host?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('timeout'));
    }, 5000);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    socket.on('end', () => {
      clearTimeout(timer);
      resolve(data);
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    if (port !== undefined && host !== undefined) socket.connect(port, host);
  });
}

/** Closes the server and destroys connections still open (a peer may be gone with its netns). */
export function closeServer(server: net.Server): Promise<void> {
  for (const s of openSockets.get(server) ?? []) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** IDs of BPF links attached to the cgroup or netns inode given (bpftool link show -j). */
export function linksOn(opts: { cgroupPath?: string; netnsPath?: string }): number[] {
  const links = JSON.parse(run('bpftool', ['link', 'show', '-j'])) as {
    id: number;
    cgroup_id?: number;
    netns_ino?: number;
  }[];
  const cgId = opts.cgroupPath !== undefined ? Number(execFileSync('stat', ['-c', '%i', opts.cgroupPath], { encoding: 'utf8' }).trim()) : -1;
  const nsIno =
    opts.netnsPath !== undefined ? Number(execFileSync('stat', ['-L', '-c', '%i', opts.netnsPath], { encoding: 'utf8' }).trim()) : -1;
  return links.filter((l) => l.cgroup_id === cgId || l.netns_ino === nsIno).map((l) => l.id);
}
