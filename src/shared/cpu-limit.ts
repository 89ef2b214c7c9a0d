/**
 * How many CPUs this process may use, as ztunnel sizes its workers: the smallest cgroup v2
 * `cpu.max` quota of its own cgroup and of those above it (rounded up), never more than the CPUs it
 * may run on (os.availableParallelism), at least 1. The agent and the waypoint size their worker
 * pools by it.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** CPUs a `cpu.max` line ("<quota> <period>" or "max <period>") allows; undefined: no limit. */
export function cpuQuota(cpuMax: string): number | undefined {
  const m = /^\s*(max|\d+)\s+(\d+)\s*$/.exec(cpuMax);
  if (!m || m[1] === 'max') return undefined;
  const period = Number(m[2]);
  if (!(period > 0)) return undefined;
  return Math.max(1, Math.ceil(Number(m[1]) / period));
}

/** The CPU limit given the `cpu.max` lines of a cgroup and its parents (undefined: no file there). */
export function cpuLimit(cpuMaxLines: ReadonlyArray<string | undefined> = readCpuMaxLines()): number {
  let cpus = availableParallelism();
  for (const line of cpuMaxLines) {
    const q = line === undefined ? undefined : cpuQuota(line);
    if (q !== undefined) cpus = Math.min(cpus, q);
  }
  return Math.max(1, cpus);
}

/** cpu.max of this process's cgroup and of each cgroup above it (a container sees its own as the root). */
export function ownCpuMaxFiles(): string[] {
  let path = '/';
  try {
    path = /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1]?.trim() ?? '/';
  } catch {
    // Not Linux, or no cgroup v2: only the root is looked at.
  }
  const files: string[] = [];
  // Bounded by the depth of the path.
  for (let p = path || '/'; ; p = p.slice(0, p.lastIndexOf('/')) || '/') {
    files.push(`/sys/fs/cgroup${p === '/' ? '' : p}/cpu.max`);
    if (p === '/') break;
  }
  return files;
}

/** The contents of `files` (undefined for one that cannot be read: no CPU controller there). */
export function readCpuMaxLines(files: readonly string[] = ownCpuMaxFiles()): Array<string | undefined> {
  return files.map((f) => {
    try {
      return readFileSync(f, 'utf8');
    } catch {
      return undefined;
    }
  });
}
