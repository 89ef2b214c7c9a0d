/**
 * Test pods for the capture suites: network namespaces joined to the host by veth pairs, a test
 * cgroup, and helpers to run a client inside a pod. Everything carries a per-process prefix and
 * is removed by cleanup(), which is safe to call twice.
 *
 * Skips are decided up front and only for the machine (not root, kernel without the program or
 * map types, no cgroup2/bpffs): once a BPF test runs, "BPF unsupported" from Ambit's own objects
 * is a failure, not a skip.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger, type Logger } from '../../src/shared/log.js';
import { findCgroup2Root } from '../../src/agent/capture/cgroup.js';
import { BpfCapture } from '../../src/agent/capture/redirect.js';
import { originalDestination } from '../../src/agent/capture/orig-dst.js';
import { BYPASS_MARK, listenInNetns, socketInNetns } from '../../native/netns.js';
import type { Capture } from '../../src/agent/capture/capture.js';
import { NetnsPodSockets } from '../../src/agent/proxy/netns-sockets.js';
import { connectVia } from '../../src/agent/proxy/sockets.js';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** The cgroup2 mount, found the way the agent finds it (/proc/mounts); undefined when none. */
export function cgroup2Root(): string | undefined {
  try {
    return findCgroup2Root();
  } catch {
    return undefined;
  }
}

/** Kernel program and map types the capture objects need (bpftool feature probe names). */
const KERNEL_FEATURES = {
  program_types: [
    'have_cgroup_sock_addr_prog_type',
    'have_sock_ops_prog_type',
    'have_cgroup_sockopt_prog_type',
    'have_sk_lookup_prog_type',
  ],
  map_types: ['have_sk_storage_map_type', 'have_hash_of_maps_map_type', 'have_sockmap_map_type', 'have_percpu_array_map_type'],
} as const;

let bpfSkip: { reason: string | undefined } | undefined;

/**
 * Why this machine can not run the BPF capture tests, or undefined when it can. Asks the kernel
 * (bpftool feature probe), never Ambit's own objects: a capture object that fails to load on a
 * kernel that has every feature is a bug the tests must report.
 */
export function bpfSkipReason(): string | undefined {
  bpfSkip ??= { reason: probeBpfSkip() };
  return bpfSkip.reason;
}

function probeBpfSkip(): string | undefined {
  if (!isRoot()) return 'requires root';
  if (cgroup2Root() === undefined) return 'no cgroup2 filesystem is mounted (scripts/setup.sh mounts one)';
  if (!readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === '/sys/fs/bpf' && l.split(' ')[2] === 'bpf')) {
    return '/sys/fs/bpf is not a bpf filesystem (scripts/setup.sh mounts it)';
  }
  let probe: Record<string, Record<string, boolean>>;
  try {
    probe = JSON.parse(execFileSync('bpftool', ['feature', 'probe', 'kernel', '-j'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 30_000 })) as typeof probe;
  } catch (e) {
    return `bpftool feature probe failed (${(e as Error).message.split('\n')[0]}); install bpftool`;
  }
  const missing = Object.entries(KERNEL_FEATURES).flatMap(([group, names]) => names.filter((n) => probe[group]?.[n] !== true));
  return missing.length > 0 ? `the kernel lacks ${missing.join(', ')}` : undefined;
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
  /** The host's IPv6 address on the pods' bridge, fd00:a:X::1. */
  hostIp6: string;
}

export interface Fixture {
  prefix: string;
  /** The cgroup2 mount the test cgroup is in. */
  cgroupRoot: string;
  /** 10.X.0.0/16: blackholed in the host; pods use 10.X.0.0/24. */
  net: string;
  pods: Pod[];
  cgroupPath: string;
  /** Moves this test process into the test cgroup (children inherit it). */
  enterCgroup(): void;
  cleanup(): void;
}

export interface FixtureOptions {
  /** cgroup2 mount to make the test cgroup in; default the one /proc/mounts lists first. */
  cgroupRoot?: string;
}

/**
 * Creates `count` pods `<prefix>pN` (10.X.0.N+1/24, fd00:a:X::N+1/64) on a host bridge
 * (10.X.0.1, fd00:a:X::1) with no other route, a blackhole route for 10.X.0.0/16 in the host,
 * and a test cgroup.
 */
export function createFixture(tag: string, count: number, opts: FixtureOptions = {}): Fixture {
  const prefix = `a${tag}${process.pid % 10000}`;
  const root = opts.cgroupRoot ?? cgroup2Root();
  if (root === undefined) throw new Error('no cgroup2 filesystem is mounted');
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
    const hostIp6 = `fd00:a:${x}::1`;
    run('ip', ['addr', 'add', `${hostIp6}/64`, 'dev', bridge, 'nodad']);
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
      pods.push({ name, netnsPath: `/var/run/netns/${name}`, ip, hostIp, ip6, hostIp6 });
    }
    const cgroupPath = join(root, prefix);
    mkdirSync(cgroupPath);
    undo.push(() => {
      // Move everything back to the root cgroup, then remove ours.
      const procs = readFileSync(`${cgroupPath}/cgroup.procs`, 'utf8').split('\n').filter(Boolean);
      for (const pid of procs) {
        try {
          writeFileSync(join(root, 'cgroup.procs'), pid);
        } catch {
          // the process exited meanwhile
        }
      }
      if (existsSync(cgroupPath)) rmdirSync(cgroupPath);
    });
    return {
      prefix,
      cgroupRoot: root,
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
/** An app on port 8080 (dual-stack) in each pod, answering with its name and the peer; counts hits per pod. */
export function startApps(pods: Pod[], servers: net.Server[]): Map<string, number> {
  const hits = new Map<string, number>();
  for (const p of pods) {
    hits.set(p.name, 0);
    servers.push(
      serveFd(listenInNetns(p.netnsPath, { address: '::', port: 8080 }), (s) => {
        hits.set(p.name, hits.get(p.name)! + 1);
        return `app ${p.name} from ${s.remoteAddress?.replace(/^::ffff:/, '')}`;
      }),
    );
  }
  return hits;
}

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

/** A connection made from inside `netnsPath` by the test process (in the test cgroup), read until the server ends. */
export function dialFrom(netnsPath: string, host: string, port: number, opts: { mark?: number; protocol?: number } = {}): Promise<string> {
  const family = net.isIPv6(host) ? 'IPv6' : 'IPv4';
  const fd = socketInNetns(netnsPath, { family, ...opts });
  return fetchText(new net.Socket({ fd }), port, host);
}

/** dialFrom that reports the outcome instead of throwing: the text, or the error code. */
export async function outcome(p: Promise<string>): Promise<string> {
  try {
    return `ok:${await p}`;
  } catch (e) {
    return (e as { code?: string }).code ?? (e as Error).message;
  }
}

export interface PodProxies {
  servers: net.Server[];
  /** The 15006 listener ("::", dual-stack): its fd goes to enroll(). */
  inbound: net.Server;
  /** Accepted connections per listener, for "nothing reached X" assertions. */
  seen: { outbound: number; inbound: number };
}

/**
 * A pod's stand-in agent listeners: 127.0.0.1:15001 (and [::1]:15001 with `ipv6`) read the
 * original destination and dial it from the pod with the bypass mark, answering
 * `proxied <dst> -> <reply>`; [::]:15006 answers `inbound <orig> from <peer>`.
 */
export function startProxies(pod: Pod, opts: { ipv6?: boolean } = {}): PodProxies {
  const seen = { outbound: 0, inbound: 0 };
  const servers: net.Server[] = [];
  const outbound = async (s: net.Socket): Promise<string> => {
    seen.outbound++;
    const orig = originalDestination(s, 'outbound');
    const text = await dialFrom(pod.netnsPath, orig.address, orig.port, { mark: BYPASS_MARK });
    return `proxied ${net.isIPv6(orig.address) ? `[${orig.address}]` : orig.address}:${orig.port} -> ${text}`;
  };
  servers.push(serveFd(listenInNetns(pod.netnsPath, { address: '127.0.0.1', port: 15001 }), outbound));
  if (opts.ipv6) servers.push(serveFd(listenInNetns(pod.netnsPath, { address: '::1', port: 15001 }), outbound));
  const inbound = serveFd(listenInNetns(pod.netnsPath, { address: '::', port: 15006 }), (s) => {
    seen.inbound++;
    const o = originalDestination(s, 'inbound');
    return `inbound ${net.isIPv6(o.address) ? `[${o.address}]` : o.address}:${o.port} from ${s.remoteAddress?.replace(/^::ffff:/, '')}`;
  });
  servers.push(inbound);
  return { servers, inbound, seen };
}

/** The repository's bpf/ folder (compiled tests run from dist/test/bpf). */
export const BPF_DIR = fileURLToPath(new URL('../../../bpf/', import.meta.url));

/**
 * Builds test/bpf/fixtures/<name>.bpf.c into `dir` with the flags bpf/Makefile uses
 * (`make print-cflags`), so fixtures compile exactly like Ambit's own objects.
 */
export function buildFixtureObject(name: string, dir: string): string {
  const flags = execFileSync('make', ['-s', '-C', BPF_DIR, 'print-cflags'], { encoding: 'utf8' })
    .trim()
    .split(/\s+/)
    .map((f) => (f === '-Iinclude' ? `-I${join(BPF_DIR, 'include')}` : f));
  const src = fileURLToPath(new URL(`../../../test/bpf/fixtures/${name}.bpf.c`, import.meta.url));
  const out = join(dir, `${name}.bpf.o`);
  execFileSync('clang', [...flags, '-c', src, '-o', out], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
  return out;
}

/** Why the nft tests can not run here, or undefined. */
export function nftSkipReason(): string | undefined {
  if (!isRoot()) return 'requires root';
  try {
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'requires the nft binary';
  }
}

/** A test's pods, servers and captures, all released after the test (captures uninstalled first). */
export interface CaptureTest {
  fx: Fixture;
  servers: net.Server[];
  /** A BPF capture at the fixture's cgroup and pin folder, uninstalled after the test. */
  openBpf(opts?: { log?: Logger; pinDir?: string; cgroupPath?: string }): Promise<BpfCapture>;
  /** Uninstalls `capture` after the test (before the servers close and the namespaces go). */
  own<T extends { uninstall(): Promise<void> }>(capture: T): T;
}

/** createFixture + cleanup in t.after; with `enterCgroup` (default) this process joins the test cgroup. */
export function captureTest(
  t: { after(fn: () => Promise<void>): void },
  tag: string,
  count: number,
  opts: FixtureOptions & { enterCgroup?: boolean } = {},
): CaptureTest {
  const fx = createFixture(tag, count, opts);
  const servers: net.Server[] = [];
  const owned: { uninstall(): Promise<void> }[] = [];
  const pinDir = `/sys/fs/bpf/${fx.prefix}`;
  t.after(async () => {
    for (const c of owned.reverse()) await c.uninstall().catch(() => undefined);
    // A capture closed (not uninstalled) leaves its pins on purpose: adopt them and remove them.
    if (existsSync(pinDir)) await (await BpfCapture.open({ cgroupPath: fx.cgroupPath, pinDir, log: silentLogger() })).uninstall();
    for (const s of servers) await closeServer(s);
    fx.cleanup();
  });
  if (opts.enterCgroup !== false) fx.enterCgroup();
  const own = <T extends { uninstall(): Promise<void> }>(c: T): T => {
    owned.push(c);
    return c;
  };
  return {
    fx,
    servers,
    own,
    openBpf: async (o = {}) => own(await BpfCapture.open({ cgroupPath: o.cgroupPath ?? fx.cgroupPath, pinDir: o.pinDir ?? pinDir, log: o.log ?? silentLogger() })),
  };
}

/**
 * The inbound proxy's dial to the app, as the agent makes it (NetnsPodSockets + connectVia): from
 * `source` (the original client, transparent when capture preserves sources for `uid`), and from
 * `source.port` when given (the client's own port; another one when that is taken).
 */
export function dialApp(o: { capture: Capture | undefined; uid: string; netnsPath: string; source: { address: string; port?: number }; destination: { address: string; port: number }; timeoutMs?: number }): Promise<net.Socket> {
  const sockets = new NetnsPodSockets(o.netnsPath, { ...(o.capture ? { capture: o.capture } : {}), uid: o.uid });
  const done = connectVia(sockets, { address: o.destination.address, port: o.destination.port, localAddress: o.source.address, ...(o.source.port ? { localPort: o.source.port } : {}) }, o.timeoutMs ?? 5000);
  return done.finally(() => sockets.release());
}
