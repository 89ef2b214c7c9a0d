/**
 * The container runtime of a local node: each container of a pod is a host process in the pod's
 * network namespace (and the mesh cgroup, where BPF capture attaches), in a mount namespace of
 * its own where the pod's volumes are bind-mounted at their mountPaths (read-only when asked, the
 * root filesystem too with readOnlyRootFilesystem), running as the user and with the capabilities
 * its securityContext asks for (util-linux `setpriv`): root containers get the container
 * runtime's default capability set (no CAP_NET_ADMIN, no CAP_SYS_ADMIN) plus `add` minus `drop`;
 * other users get none; privileged containers keep everything. Restarts follow restartPolicy with
 * backoff; readiness is "running and listening on every declared port" read from
 * /proc/<pid>/net/tcp of the container itself, so no probe traffic is sent.
 *
 * Invariants: a pod's processes are tracked by pid; stop() signals each process group, then kills
 * after the grace period; nothing is restarted after stop().
 */
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { AmbitError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { RAISE_NOFILE, spawnLogged } from '../exec.js';

/** The container runtimes' default capabilities (containerd, CRI-O, Docker). */
export const DEFAULT_CAPABILITIES: readonly string[] = ['chown', 'dac_override', 'fsetid', 'fowner', 'mknod', 'net_raw', 'setgid', 'setuid', 'setfcap', 'setpcap', 'net_bind_service', 'sys_chroot', 'kill', 'audit_write'];

/** Every Linux capability setpriv knows (capability(7)). */
export const ALL_CAPABILITIES: readonly string[] = [
  ...DEFAULT_CAPABILITIES,
  'dac_read_search', 'linux_immutable', 'net_broadcast', 'net_admin', 'ipc_lock', 'ipc_owner', 'sys_module', 'sys_rawio', 'sys_ptrace', 'sys_pacct',
  'sys_admin', 'sys_boot', 'sys_nice', 'sys_resource', 'sys_time', 'sys_tty_config', 'lease', 'audit_control', 'mac_override', 'mac_admin', 'syslog',
  'wake_alarm', 'block_suspend', 'audit_read', 'perfmon', 'bpf', 'checkpoint_restore',
];

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

export interface ContainerUser {
  uid: number;
  gid: number;
  groups: number[];
}

export interface ContainerSpec {
  name: string;
  /** command + args. */
  argv: string[];
  env: Record<string, string>;
  /** Ports that must listen for the container to be ready. */
  ports: number[];
  workingDir?: string;
  /** Undefined: root with every privilege (privileged: true). */
  user?: ContainerUser;
  /** The capability bounding set (lowercase names without `cap_`); ignored when privileged. */
  capabilities: string[];
  noNewPrivs: boolean;
  readOnlyRoot: boolean;
  mounts: Mount[];
  privileged: boolean;
}

/** `NET_ADMIN`, `CAP_NET_ADMIN` → `net_admin`; undefined for an unknown name (`ALL` is kept as `all`). */
export function capabilityName(raw: string): string | undefined {
  const n = raw.toLowerCase().replace(/^cap_/, '');
  if (n === 'all') return 'all';
  return ALL_CAPABILITIES.includes(n) ? n : undefined;
}

/** The bounding set of a container: the defaults, plus `add`, minus `drop` (`ALL` drops everything first). */
export function capabilitySet(add: readonly string[], drop: readonly string[], where: string): string[] {
  const bad = [...add, ...drop].filter((c) => capabilityName(c) === undefined);
  if (bad.length > 0) throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: unknown capabilities ${bad.map((b) => JSON.stringify(b)).join(', ')}`);
  const a = add.map((c) => capabilityName(c)!);
  const d = drop.map((c) => capabilityName(c)!);
  let set = d.includes('all') ? [] : DEFAULT_CAPABILITIES.filter((c) => !d.includes(c));
  set = a.includes('all') ? [...ALL_CAPABILITIES] : [...new Set([...set, ...a])];
  return set.sort();
}

/** Quotes `s` for sh. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The program a container runs as: join the mesh cgroup (before `ip netns exec`, which remounts
 * /sys), enter the pod's netns and a new mount namespace (`ip netns exec` also bind-mounts the
 * pod's /etc/hosts), mount the volumes, then drop to the container's user and capabilities and
 * exec its command.
 */
export function containerCommand(spec: ContainerSpec, cgroupProcs: string, netns: string): [string, string[]] {
  const inner: string[] = ['set -e'];
  for (const m of spec.mounts) {
    inner.push(`mount --bind ${shellQuote(m.source)} ${shellQuote(m.target)}`);
    if (m.readOnly) inner.push(`mount -o remount,bind,ro ${shellQuote(m.target)}`);
  }
  if (spec.readOnlyRoot) inner.push('mount -o remount,bind,ro /');
  if (spec.workingDir) inner.push(`cd ${shellQuote(spec.workingDir)}`);
  if (spec.privileged || !spec.user) inner.push('exec "$@"');
  else {
    const u = spec.user;
    const caps = spec.capabilities.length > 0 ? `-all,${spec.capabilities.map((c) => `+${c}`).join(',')}` : '-all';
    const groups = u.groups.length > 0 ? `--groups=${u.groups.join(',')}` : '--clear-groups';
    inner.push(`exec setpriv --reuid=${u.uid} --regid=${u.gid} ${groups} --bounding-set=${caps} --inh-caps=-all${spec.noNewPrivs ? ' --no-new-privs' : ''} -- "$@"`);
  }
  const outer = `${RAISE_NOFILE} echo $$ > "$1" && shift && exec ip netns exec "$@"`;
  return ['sh', ['-c', outer, 'sh', cgroupProcs, netns, 'sh', '-c', inner.join('\n'), 'sh', ...spec.argv]];
}

/**
 * TCP ports in LISTEN state in the netns of `pid` (from /proc/<pid>/net/tcp and tcp6). The kernel
 * lists listening sockets before the rest, so reading stops at the first other line: a pod netns
 * holding thousands of TIME_WAIT sockets (a load test) would otherwise make every readiness check
 * format all of them.
 */
export function listeningPorts(pid: number): Set<number> {
  const ports = new Set<number>();
  const chunk = Buffer.alloc(16 * 1024);
  for (const file of ['tcp', 'tcp6']) {
    let fd: number;
    try {
      fd = openSync(`/proc/${pid}/net/${file}`, 'r');
    } catch {
      continue;
    }
    try {
      let rest = '';
      let header = true;
      reading: for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, null);
        if (n === 0) break;
        const lines = (rest + chunk.toString('latin1', 0, n)).split('\n');
        rest = lines.pop()!;
        for (const line of lines) {
          if (header) {
            header = false;
            continue;
          }
          const f = line.trim().split(/\s+/);
          if (f.length <= 3) continue;
          if (f[3] !== '0A') break reading;
          ports.add(parseInt(f[1]!.split(':')[1]!, 16));
        }
      }
    } catch {
      // The process went away while its table was read: what was read stands.
    } finally {
      closeSync(fd);
    }
  }
  return ports;
}

export interface RunningContainer {
  spec: ContainerSpec;
  child?: ChildProcess;
  pid?: number;
  restarts: number;
  exitCode?: number;
  startedAt?: string;
  finishedAt?: string;
  /** The previous run's end, for lastState. */
  last?: { exitCode: number; startedAt?: string; finishedAt: string };
  stopped: boolean;
  timer?: NodeJS.Timeout;
  /** The pid whose declared ports were all seen listening: ready until the container restarts. */
  readyPid?: number;
}

export interface PodProcessOptions {
  /** `namespace/name`, for logs. */
  key: string;
  netns: string;
  cgroupProcs: string;
  logDir: string;
  restartPolicy: 'Always' | 'OnFailure' | 'Never';
  containers: ContainerSpec[];
  cwd: string;
  log: Logger;
  onChange: () => void;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The processes of one pod. */
export class PodProcesses {
  readonly containers: RunningContainer[];
  private closed = false;

  constructor(private readonly opts: PodProcessOptions) {
    this.containers = opts.containers.map((spec) => ({ spec, restarts: 0, stopped: false }));
  }

  start(): void {
    for (const c of this.containers) this.launch(c);
  }

  private launch(c: RunningContainer): void {
    if (this.closed) return;
    const o = this.opts;
    const logPath = join(o.logDir, `${o.key.replace('/', '_')}_${c.spec.name}.log`);
    const [sh, argv] = containerCommand(c.spec, o.cgroupProcs, o.netns);
    const child = spawnLogged(sh, argv, logPath, 0o600, { cwd: o.cwd, env: c.spec.env, detached: true });
    c.child = child;
    if (child.pid !== undefined) c.pid = child.pid;
    c.startedAt = now();
    delete c.exitCode;
    delete c.finishedAt;
    child.on('error', (err) => {
      try {
        appendFileSync(logPath, `cannot start: ${err.message}\n`);
      } catch {
        // The log folder went with the mesh; the exit handler still records the failure.
      }
    });
    child.on('exit', (code, signal) => {
      c.exitCode = code ?? (signal ? 128 : 1);
      c.finishedAt = now();
      c.last = { exitCode: c.exitCode, finishedAt: c.finishedAt, ...(c.startedAt ? { startedAt: c.startedAt } : {}) };
      delete c.pid;
      delete c.child;
      o.log.info({ pod: o.key, container: c.spec.name, exitCode: c.exitCode }, 'container exited');
      const again = !this.closed && !c.stopped && (o.restartPolicy === 'Always' || (o.restartPolicy === 'OnFailure' && c.exitCode !== 0));
      if (again) {
        const waitMs = Math.min(10_000, 500 * 2 ** Math.min(c.restarts, 5));
        c.restarts++;
        c.timer = setTimeout(() => this.launch(c), waitMs);
      }
      o.onChange();
    });
    o.onChange();
  }

  /**
   * Whether container `c` runs and has listened on each port it declared. Once it has, it stays
   * ready until it restarts (as a Kubernetes container without a readiness probe): the node's
   * checks every 300 ms would otherwise read /proc/<pid>/net/tcp* for every settled pod, and the
   * kernel walks the node-wide established table for each read.
   */
  containerReady(c: RunningContainer): boolean {
    if (c.pid === undefined) return false;
    if (c.spec.ports.length === 0 || c.readyPid === c.pid) return true;
    const listening = listeningPorts(c.pid);
    if (!c.spec.ports.every((p) => listening.has(p))) return false;
    c.readyPid = c.pid;
    return true;
  }

  ready(): boolean {
    return this.containers.every((c) => this.containerReady(c));
  }

  phase(): 'Pending' | 'Running' | 'Succeeded' | 'Failed' {
    if (this.containers.some((c) => c.pid !== undefined)) return 'Running';
    if (this.containers.every((c) => c.exitCode === 0)) return 'Succeeded';
    const done = this.containers.every((c) => c.exitCode !== undefined);
    if (done && (this.opts.restartPolicy === 'Never' || (this.opts.restartPolicy === 'OnFailure' && this.containers.every((c) => c.exitCode === 0)))) return 'Failed';
    return this.containers.some((c) => c.startedAt !== undefined) ? 'Running' : 'Pending';
  }

  /** A pid of a running container (for `ambit local exec`), if any. */
  anyPid(): number | undefined {
    return this.containers.find((c) => c.pid !== undefined)?.pid;
  }

  /** SIGTERM to each container's process group, SIGKILL after `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    this.closed = true;
    const waits: Promise<void>[] = [];
    for (const c of this.containers) {
      c.stopped = true;
      if (c.timer) clearTimeout(c.timer);
      const child = c.child;
      const pid = c.pid;
      if (!child || pid === undefined) continue;
      waits.push(
        new Promise<void>((resolve) => {
          const kill = setTimeout(() => signalGroup(pid, 'SIGKILL'), graceMs);
          child.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          signalGroup(pid, 'SIGTERM');
        }),
      );
    }
    await Promise.all(waits);
  }
}

export function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}
