/**
 * What a local mesh may leave on the machine, and its removal: processes in its cgroup, netns,
 * links, /etc/netns folders, bpffs pins, the cgroup itself and host mount points of pod volumes.
 * Kept apart from the mesh so the CLI's short verbs (`down`, `status`) load none of the mesh.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../shared/log.js';
import { cgroup2Root, removeCgroup } from './cgroup.js';
import { cleanupNetwork } from './network.js';
import { MOUNTPOINTS_FILE, removeRecorded } from './node/mountpoints.js';
import { signalGroup } from './node/containers.js';
import { cgroupName, stateDirFor } from './plan.js';

/**
 * Empties a stopped mesh's state folder but for its logs: the CA's and API server's keys, tokens
 * and kubeconfigs must not outlive the mesh. Returns what it removed.
 */
export async function removeState(stateDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(stateDir).catch(() => [] as string[])) {
    if (name === 'logs') continue;
    await rm(join(stateDir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/**
 * Pids of live daemons of mesh `prefix` (from /proc, so a daemon still starting, before its control
 * socket answers, counts too).
 */
export async function meshDaemonPids(prefix: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const at = argv.indexOf('--prefix');
    if (at > 0 && argv[at + 1] === prefix && argv.some((a) => a.endsWith('/local/daemon-main.js'))) pids.push(Number(entry));
  }
  return pids;
}

/**
 * Removes what a mesh with this prefix may have left: processes in its cgroup, netns, links,
 * /etc/netns folders, bpffs pins and the cgroup itself. Safe to run when nothing is left.
 */
export async function cleanupLeftovers(prefix: string, log?: Logger, stateDir = stateDirFor(prefix)): Promise<string[]> {
  const removed: string[] = [];
  let cgroupDir: string | undefined;
  try {
    cgroupDir = join(cgroup2Root(), cgroupName(prefix));
  } catch {
    cgroupDir = undefined;
  }
  if (cgroupDir && existsSync(cgroupDir)) {
    const procs = (await readFile(join(cgroupDir, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
    if (procs.length > 0) {
      if (existsSync(join(cgroupDir, 'cgroup.kill'))) await writeFile(join(cgroupDir, 'cgroup.kill'), '1').catch(() => undefined);
      for (const pid of procs) signalGroup(Number(pid), 'SIGKILL');
      removed.push(`${procs.length} process(es)`);
      for (let i = 0; i < 50; i++) {
        const left = (await readFile(join(cgroupDir, 'cgroup.procs'), 'utf8').catch(() => '')).trim();
        if (!left) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  removed.push(...(await cleanupNetwork(prefix)));
  if (existsSync('/sys/fs/bpf')) {
    for (const name of await readdir('/sys/fs/bpf').catch(() => [] as string[])) {
      if (name.startsWith(`${prefix}-`)) {
        await rm(join('/sys/fs/bpf', name), { recursive: true, force: true });
        removed.push(`pin ${name}`);
      }
    }
  }
  if (cgroupDir && existsSync(cgroupDir)) {
    await removeCgroup(cgroupDir);
    removed.push(`cgroup ${cgroupDir}`);
  }
  // Mount points made on the host for pods' volumes (recorded in the state folder).
  removed.push(...(await removeRecorded(join(stateDir, MOUNTPOINTS_FILE))).map((p) => `mount point ${p}`));
  if (removed.length > 0) log?.info({ removed }, 'removed leftovers');
  return removed;
}
