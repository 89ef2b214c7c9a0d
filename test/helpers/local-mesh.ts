/**
 * Runs `ambit local` from tests: a unique mesh name per test process, the machine-wide lock (test
 * meshes share one address block, so only one runs at a time: src/local/mesh-lock.ts), and the
 * CLI as a child process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, readFileSync, existsSync, watch } from 'node:fs';
import { join, dirname } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export { pidAlive } from '../../src/local/mesh-lock.js';
import { lockLocalMesh as lockPath, MESH_LOCK_PATH } from '../../src/local/mesh-lock.js';
import { callControl, type ExecTarget } from '../../src/local/control.js';
import { podCommand } from '../../src/local/exec.js';
import type { LocalStatus } from '../../src/local/mesh.js';

/**
 * Waits for this address block's test lock: meshes on one block share their ranges and run one at
 * a time; meshes on different blocks (other worktrees' test runs) run side by side.
 */
export function lockLocalMesh(timeoutMs?: number, net: number | string = process.env['AMBIT_LOCAL_NET'] ?? '1'): Promise<() => void> {
  return lockPath(timeoutMs, `${MESH_LOCK_PATH}.net${net}`);
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * The `skip` option of a test that needs root: false as root, else a reason starting with
 * "requires root", which `npm test` lists in its skip banner and refuses when CI is set or when
 * running as root (scripts/skip-policy.mjs).
 */
export function requiresRoot(what: string): false | string {
  return isRoot() ? false : `requires root (${what})`;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `ambit <args>` on the pinned Node; resolves with its exit code and output. */
export function ambit(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/ambit.mjs'), ...args], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 240_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** `ambit local status -o json` of mesh `name`, asked over the daemon's socket from this process. */
export function meshStatus(name: string): Promise<LocalStatus> {
  return callControl<LocalStatus>(join('/run/ambit', name), 'GET', '/status');
}

/**
 * `ambit local exec --name <name> <namespace>/<pod> -- <cmd...>` without starting the CLI: the same
 * exec target from the daemon and the same pod command (mesh cgroup, pod netns, hosts file).
 */
export async function podExec(name: string, target: string, cmd: string[], timeoutMs = 60_000): Promise<CliResult> {
  const [namespace, pod] = target.split('/', 2) as [string, string];
  const t = await callControl<ExecTarget>(join('/run/ambit', name), 'GET', `/exec-target?namespace=${encodeURIComponent(namespace)}&name=${encodeURIComponent(pod)}`);
  const [sh, args] = podCommand(t.cgroupProcs, t.netns, cmd);
  return new Promise((resolve) => {
    const child = spawn(sh, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...t.env } });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/**
 * Resolves once no network namespace in /run/netns satisfies `match`, woken by the directory's
 * change events (inotify), not by a poll; rejects after `timeoutMs` naming those still there.
 */
export function netnsGone(what: string, match: (name: string) => boolean, timeoutMs = 60_000): Promise<void> {
  const dir = '/run/netns';
  const left = (): string[] => (existsSync(dir) ? readdirSync(dir).filter(match) : []);
  return new Promise((resolve, reject) => {
    if (left().length === 0) return resolve();
    const watcher = watch(dir, () => {
      if (left().length > 0) return;
      clearTimeout(timer);
      watcher.close();
      resolve();
    });
    const timer = setTimeout(() => {
      watcher.close();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; still there: ${left().join(', ')}`));
    }, timeoutMs);
    // A removal between the first look and the watch's start has no event: look once more.
    if (left().length === 0) {
      clearTimeout(timer);
      watcher.close();
      resolve();
    }
  });
}

/** What of a mesh named `prefix` is still on the machine (empty when cleanup was complete). */
export function leftovers(prefix: string): string[] {
  const out: string[] = [];
  const ns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`${prefix}-`));
  out.push(...ns.map((n) => `netns ${n}`));
  const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
  for (const m of links.matchAll(/^\d+: ([^:@]+)[:@]/gm)) if (m[1]!.startsWith(`${prefix}-`)) out.push(`link ${m[1]}`);
  const mounts = readFileSync('/proc/mounts', 'utf8');
  const cg = /^\S+ (\S+) cgroup2 /m.exec(mounts)?.[1];
  if (cg && existsSync(join(cg, `${prefix}-mesh`))) out.push(`cgroup ${prefix}-mesh`);
  if (existsSync('/sys/fs/bpf')) {
    const pins = spawnSync('ls', ['/sys/fs/bpf'], { encoding: 'utf8' }).stdout.split('\n').filter((n) => n.startsWith(`${prefix}-`));
    out.push(...pins.map((p) => `pin ${p}`));
  }
  // The state folder keeps only its logs once the mesh is down (keys and tokens go with it).
  const state = `/run/ambit/${prefix}`;
  if (existsSync(state)) out.push(...readdirSync(state).filter((f) => f !== 'logs').map((f) => `state ${f}`));
  return out;
}


export function meshName(tag: string): string {
  return `${tag}${process.pid % 100000}`.slice(0, 8);
}

export function ensureDir(p: string): void {
  mkdirSync(p, { recursive: true });
}

/** Stops mesh `name` and removes its state folder (CA, tokens, logs): what a test made, it removes. */
/** The last warning and error lines of every log of a mesh (for assertion messages). */
export function meshLogTail(name: string, lines = 20): string {
  const dir = join('/run/ambit', name, 'logs');
  if (!existsSync(dir)) return `(no logs in ${dir})`;
  const out: string[] = [];
  for (const f of readdirSync(dir).sort()) {
    const bad = readFileSync(join(dir, f), 'utf8')
      .split('\n')
      .filter((l) => /"level":(40|50|60)|error|Error/.test(l));
    if (bad.length > 0) out.push(`--- ${f}`, ...bad.slice(-lines));
  }
  return out.join('\n');
}

export async function destroyMesh(name: string): Promise<void> {
  await ambit(['local', 'down', '--name', name]);
  rmSync(`/run/ambit/${name}`, { recursive: true, force: true });
}

/** Sum of a Prometheus counter's samples whose labels include `labels` (text exposition format). */
export function metricSum(text: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return total;
}

/** Polls `fn` until it returns a value; throws naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A TCP port on 127.0.0.1 free at the time of asking (for a server the test starts, e.g. Prometheus). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}
