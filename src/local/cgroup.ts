/** The cgroup v2 directory a local mesh puts its agents and pods in (BPF capture attaches there). */
import { readFileSync, existsSync } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AmbitError } from '../shared/errors.js';

/** Mount point of the cgroup v2 hierarchy, from /proc/mounts. */
export function cgroup2Root(mounts = readFileSync('/proc/mounts', 'utf8')): string {
  for (const line of mounts.split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'cgroup2' && f[1]) return f[1];
  }
  throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', 'no cgroup2 hierarchy is mounted; run scripts/setup.sh (it mounts one)');
}

export async function createCgroup(name: string): Promise<string> {
  const dir = join(cgroup2Root(), name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Moves every process still in the cgroup back to the root, then removes it. */
export async function removeCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  const root = join(dir, '..');
  try {
    const pids = (await readFile(join(dir, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean);
    for (const pid of pids) await writeFile(join(root, 'cgroup.procs'), pid).catch(() => undefined);
    await rmdir(dir);
  } catch {
    // a process that is exiting may hold it a moment longer
    await new Promise((r) => setTimeout(r, 200));
    await rmdir(dir).catch(() => undefined);
  }
}
