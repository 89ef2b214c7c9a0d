/** Runs system tools (ip, nft, nsenter) for local mode; failures become AmbitErrors naming the command. */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { AmbitError, type ErrorCode } from '../shared/errors.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string;
  /** Error code when the command fails; default AMBIT_ERR_LOCAL_SETUP. */
  code?: ErrorCode;
  /** Do not throw on a non-zero exit. */
  allowFailure?: boolean;
  timeoutMs?: number;
}

/** Runs `cmd args` without a shell; resolves with its output, throws when it fails unless allowed. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new AmbitError(opts.code ?? 'AMBIT_ERR_LOCAL_SETUP', `cannot run ${cmd}: ${err.message}; is it installed? (scripts/setup.sh installs it)`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code: code ?? (signal ? 128 : 1), stdout, stderr };
      if (result.code !== 0 && !opts.allowFailure) {
        const shown = [cmd, ...args].join(' ');
        reject(
          new AmbitError(opts.code ?? 'AMBIT_ERR_LOCAL_SETUP', `${shown} failed (exit ${result.code}): ${stderr.trim() || stdout.trim()}`, {
            details: { cmd, args },
          }),
        );
        return;
      }
      resolve(result);
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/** `ip ...` in the root namespace, or in netns `ns` when given. */
export function ip(args: string[], ns?: string, opts: RunOptions = {}): Promise<RunResult> {
  return run('ip', ns ? ['-n', ns, ...args] : args, opts);
}

/** Loads an nft script inside netns `ns` (a name under /var/run/netns). */
export function nftIn(ns: string, script: string, opts: RunOptions = {}): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { ...opts, input: script, code: opts.code ?? 'AMBIT_ERR_NFT_APPLY' });
}

/** Runs a command inside netns `ns` without changing the mount namespace (unlike `ip netns exec`). */
export function inNetns(ns: string, cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('nsenter', [`--net=/var/run/netns/${ns}`, cmd, ...args], opts);
}

/**
 * Shell prefix raising the open-files limit for a process that holds many connections: 65536, or
 * the hard limit when that is lower and the process may not raise it (EPERM without
 * CAP_SYS_RESOURCE, as on some CI machines); silent either way.
 */
export const RAISE_NOFILE = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -H -n)" 2>/dev/null;';

/**
 * argv that runs `cmd` as a pod process: first join the mesh cgroup (BPF capture attaches there),
 * then enter the pod's netns with `ip netns exec`, which also bind-mounts /etc/netns/<pod>/hosts.
 * Joining the cgroup must come first: `ip netns exec` remounts /sys, hiding cgroup2.
 */
export function podCommand(cgroupProcs: string, netns: string, cmd: string[]): [string, string[]] {
  return ['sh', ['-c', `${RAISE_NOFILE} echo $$ > "$1" && shift && exec ip netns exec "$@"`, 'sh', cgroupProcs, netns, ...cmd]];
}

/**
 * Spawns a long-running process (an agent, a pod's container) whose stdout and stderr are an
 * O_APPEND descriptor of `logPath`: it writes its log file itself, so this daemon does no work per
 * line (piping agents' access logs through here cost a sixth of a core at ~900 new connections/s,
 * on the cores of the mesh it runs). The daemon's copy of the descriptor is closed at once.
 */
export function spawnLogged(cmd: string, args: string[], logPath: string, mode: number, opts: Omit<SpawnOptions, 'stdio'>): ChildProcess {
  const fd = openSync(logPath, 'a', mode);
  try {
    return spawn(cmd, args, { ...opts, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
}
