/**
 * The benchmark's handle on one `ambit local` mesh: bring it up, run commands inside pods (through
 * `ambit local exec`, so they join the pod's netns and the mesh cgroup exactly as the tests do),
 * read agent memory, and take it down. Holds the same machine-wide lock as the tests
 * (src/local/mesh-lock.ts): local meshes share address ranges, so only one runs at a time.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AmbitError } from '../src/shared/errors.js';
import { stateDirFor, type LocalStatus, type PodStatus } from '../src/local/mesh.js';
import { callControl } from '../src/local/control.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export { lockLocalMesh, pidAlive } from '../src/local/mesh-lock.js';
import { pidAlive } from '../src/local/mesh-lock.js';

/** Address block of the bench's mesh: AMBIT_LOCAL_NET when set (each session its own), else 2. */
const BENCH_NET = process.env['AMBIT_LOCAL_NET'] ?? '2';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}


/** Signals a whole process group (children spawned with `detached: true`), ignoring a gone group. */
export function killGroup(child: ChildProcess, sig: NodeJS.Signals = 'SIGTERM'): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  }
}

/** Resolves once `child` exited; SIGKILLs its group after `timeoutMs`. */
export function waitExit(child: ChildProcess, timeoutMs: number): Promise<number> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

/** Runs `ambit <args>` on the pinned Node from the repository root. */
export function runAmbit(args: string[], timeoutMs: number, input = '', env: NodeJS.ProcessEnv = process.env): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/ambit.mjs'), ...args], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'], detached: true, env });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${timeoutMs} ms)`;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin!.end(input);
  });
}

/**
 * What a process's memory figure counts: `rss` is VmRSS (resident pages, including the Node
 * binary's file pages other processes share); `private` is the pages only this process maps
 * (Private_Clean + Private_Dirty of smaps_rollup), what stopping it would give back.
 */
export type MemoryKind = 'rss' | 'private';

function processMemoryBytes(pid: number, kind: MemoryKind): number {
  if (kind === 'rss') {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  }
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  let kb = 0;
  for (const m of text.matchAll(/^Private_(?:Clean|Dirty):\s+(\d+) kB/gm)) kb += Number(m[1]);
  return kb * 1024;
}

/** Memory of `pid` and its descendants, in bytes. */
export function treeMemoryBytes(pid: number, kind: MemoryKind = 'rss'): number {
  let total = 0;
  const seen = new Set<number>();
  const stack = [pid];
  // Bounded: a process tree under one agent is small; at most 64 processes are visited.
  while (stack.length > 0 && seen.size < 64) {
    const p = stack.pop()!;
    if (seen.has(p)) continue;
    seen.add(p);
    try {
      total += processMemoryBytes(p, kind);
      for (const t of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim();
        if (kids) stack.push(...kids.split(/\s+/).map(Number));
      }
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** CPU time (user + system) of `pid` in seconds, from /proc/<pid>/stat; undefined when it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: f[0] is field 3 (state); utime is field 14, stime field 15, in clock ticks.
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds of the processes whose command line `matches` (scanned in /proc); undefined unless
 * exactly `expected` are found (one gone or not yet started).
 */
export function cpuOfProcesses(matches: (argv: string[]) => boolean, expected: number): number | undefined {
  let total = 0;
  let found = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!matches(argv)) continue;
    const c = cpuSeconds(Number(pid));
    if (c === undefined) continue;
    total += c;
    found++;
  }
  return found === expected ? total : undefined;
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

export class BenchMesh {
  private statusCache: LocalStatus | undefined;

  constructor(readonly name: string) {}

  /**
   * `ambit local up`. When `agentsOptional`, a settle timeout whose only reasons are agents not
   * connected is accepted (the non-mesh paths do not need agents); every pod must still be ready.
   */
  async up(files: string[], opts: { timeoutMs: number; agentsOptional: boolean; env?: NodeJS.ProcessEnv }): Promise<{ agentsConnected: boolean }> {
    // Address block 2 by default: a mesh the user keeps on block 0 (the demo) or tests on block 1 do not collide.
    const args = ['local', 'up', '--name', this.name, '--nodes', '2', '--net', BENCH_NET, '--timeout', `${Math.round(opts.timeoutMs / 1000)}s`];
    for (const f of files) args.push('-f', f);
    // The mesh daemon, and through it the agents and pod containers, inherit this environment.
    const r = await runAmbit(args, opts.timeoutMs + 60_000, '', opts.env ?? process.env);
    if (r.code === 0) return { agentsConnected: true };
    const reasons = /did not settle within \d+ ms: (.*)$/m.exec(r.stderr)?.[1];
    const onlyAgents = reasons !== undefined && reasons.split('; ').every((x) => /^agent on \S+ not connected$/.test(x));
    if (opts.agentsOptional && onlyAgents) {
      const st = await this.status(true);
      if (st.pods.every((p) => p.ready)) return { agentsConnected: false };
    }
    throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `ambit local up --name ${this.name} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  }

  async status(refresh = false): Promise<LocalStatus> {
    if (!refresh && this.statusCache) return this.statusCache;
    const r = await runAmbit(['local', 'status', '--name', this.name, '-o', 'json'], 30_000);
    if (r.code !== 0) throw new AmbitError('AMBIT_ERR_LOCAL_NOT_RUNNING', `ambit local status --name ${this.name} failed: ${r.stderr.trim()}`);
    this.statusCache = JSON.parse(r.stdout) as LocalStatus;
    return this.statusCache;
  }

  async pod(namespace: string, name: string): Promise<PodStatus> {
    const p = (await this.status()).pods.find((x) => x.namespace === namespace && x.name === name);
    if (!p) throw new AmbitError('AMBIT_ERR_LOCAL_POD_NOT_FOUND', `benchmark pod ${namespace}/${name} is missing from the mesh; check bench/manifests/`);
    return p;
  }

  /** Runs `argv` inside pod `ns/pod` and waits for it (bounded by `timeoutMs`). */
  exec(target: string, argv: string[], timeoutMs: number, input = ''): Promise<CommandResult> {
    return runAmbit(['local', 'exec', '--name', this.name, target, '--', ...argv], timeoutMs, input);
  }

  /** Runs the load generator in pod `target` and returns its JSON line. */
  async load<T>(target: string, args: string[], timeoutMs: number): Promise<T> {
    const r = await this.exec(target, [process.execPath, join(repoRoot, 'dist/bench/load.js'), ...args], timeoutMs);
    const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
    const parsed = line ? (JSON.parse(line) as T & { error?: string }) : undefined;
    if (r.code !== 0 || !parsed || parsed.error) {
      throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `load ${args.join(' ')} in ${target} failed (exit ${r.code}): ${parsed?.error ?? (r.stderr.trim() || r.stdout.trim())}`);
    }
    return parsed;
  }

  /** Starts a long-running command in a pod as a process group this process owns (stop with killGroup). */
  spawnIn(target: string, argv: string[]): ChildProcess {
    return spawn(process.execPath, [join(repoRoot, 'bin/ambit.mjs'), 'local', 'exec', '--name', this.name, target, '--', ...argv], {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
  }

  /** TCP ports listening inside a pod's netns. */
  async listening(namespace: string, name: string): Promise<Set<number>> {
    const p = await this.pod(namespace, name);
    const r = spawnSync('ip', ['netns', 'exec', p.netns, 'ss', '-Hltn'], { encoding: 'utf8', timeout: 10_000 });
    const ports = new Set<number>();
    for (const line of (r.stdout ?? '').split('\n')) {
      const m = /\s\S*:(\d+)\s/.exec(line);
      if (m) ports.add(Number(m[1]));
    }
    return ports;
  }

  /** Waits until every port in `ports` listens inside the pod (bounded by `timeoutMs`). */
  async waitListening(namespace: string, name: string, ports: number[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const have = await this.listening(namespace, name);
      if (ports.every((p) => have.has(p))) return;
      if (Date.now() > deadline) {
        throw new AmbitError('AMBIT_ERR_LOCAL_TIMEOUT', `ports ${ports.join(',')} not listening in ${namespace}/${name} after ${timeoutMs} ms (listening: ${[...have].join(',') || 'none'})`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Memory of each node's agent in bytes, by node name (undefined when an agent is not running). */
  async agentMemory(kind: MemoryKind = 'rss'): Promise<Record<string, number | undefined>> {
    const st = await this.status(true);
    const out: Record<string, number | undefined> = {};
    for (const n of st.nodes) out[n.name] = n.agentPid !== undefined && pidAlive(n.agentPid) ? treeMemoryBytes(n.agentPid, kind) : undefined;
    return out;
  }

  /**
   * Lets a pod's netns reuse TIME_WAIT ports for new outbound connections and widens its ephemeral
   * range: the new-connections runs leave tens of thousands of TIME_WAIT sockets, and without this a
   * later run (or path sharing the pod) slows down searching for a free port. Only this pod's netns changes.
   */
  async tunePod(namespace: string, name: string): Promise<void> {
    const p = await this.pod(namespace, name);
    const r = spawnSync('ip', ['netns', 'exec', p.netns, 'sysctl', '-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=10000 65000'], { encoding: 'utf8', timeout: 10_000 });
    if (r.status !== 0) throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `cannot tune sysctls of pod ${namespace}/${name} (netns ${p.netns}): ${r.stderr || r.error?.message}`);
  }

  /** CPU seconds used so far by each node's agent (uses the last status: call agentMemory or status(true) after restarts). */
  async agentCpu(): Promise<Record<string, number | undefined>> {
    const st = await this.status();
    return Object.fromEntries(st.nodes.map((n) => [n.name, n.agentPid !== undefined ? cpuSeconds(n.agentPid) : undefined]));
  }

  /**
   * Restarts every node's agent with `workers` data-path threads (null: the agent's default) and
   * waits until the pods in `ready` have their agent ports again (the new agent enrolled them).
   */
  async restartAgents(workers: number | null, ready: { namespace: string; name: string; ports: number[] }[], timeoutMs = 60_000): Promise<void> {
    const st = await this.status(true);
    for (const n of st.nodes) await callControl(stateDirFor(this.name), 'POST', '/restart-agent', { node: n.name, workers }, timeoutMs);
    for (const p of ready) await this.waitListening(p.namespace, p.name, p.ports, timeoutMs);
    // The new agents' pids, for agentCpu.
    await this.status(true);
  }

  /** Takes the mesh down and removes its state folder (CA, tokens, logs): the bench leaves nothing. */
  async down(): Promise<CommandResult> {
    const r = await runAmbit(['local', 'down', '--name', this.name], 90_000);
    rmSync(`/run/ambit/${this.name}`, { recursive: true, force: true });
    return r;
  }
}
