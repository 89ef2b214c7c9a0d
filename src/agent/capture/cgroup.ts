/**
 * Where capture attaches: the cgroup v2 hierarchy. Found from /proc/mounts (stock Debian 12 and
 * systemd hosts mount it at /sys/fs/cgroup; hybrid hosts at /sys/fs/cgroup/unified), and checked
 * to really be cgroup2 before anything is attached there.
 */
import { readFileSync, statSync, statfsSync } from 'node:fs';
import { AmbitError, errorMessage } from '../../shared/errors.js';

/** statfs f_type of a cgroup v2 filesystem (linux/magic.h). */
export const CGROUP2_SUPER_MAGIC = 0x63677270;

/** Mount points of cgroup2 filesystems in `mounts` (/proc/mounts text), in mount order. */
export function cgroup2Mounts(mounts: string): string[] {
  const out: string[] = [];
  for (const line of mounts.split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'cgroup2' && f[1]) out.push(f[1].replace(/\\040/g, ' '));
  }
  return out;
}

/**
 * The cgroup v2 mount to attach at by default (the first in /proc/mounts). Throws
 * AMBIT_ERR_BPF_UNSUPPORTED naming the fix when there is none.
 */
export function findCgroup2Root(mounts?: string): string {
  let text = mounts;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/mounts', 'utf8');
    } catch (e) {
      throw new AmbitError('AMBIT_ERR_BPF_UNSUPPORTED', `reading /proc/mounts to find cgroup2 failed: ${errorMessage(e)}`, { cause: e });
    }
  }
  const found = cgroup2Mounts(text)[0];
  if (found === undefined) {
    throw new AmbitError(
      'AMBIT_ERR_BPF_UNSUPPORTED',
      'no cgroup2 filesystem is mounted; mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) or set AMBIT_CGROUP_PATH',
    );
  }
  return found;
}

/**
 * Throws AMBIT_ERR_BPF_UNSUPPORTED unless `path` is a folder of a cgroup v2 filesystem: cgroup
 * programs can not attach to a v1 hierarchy or to the tmpfs that holds v1 controllers on hybrid
 * hosts (/sys/fs/cgroup there).
 */
export function checkCgroup2(path: string, mounts?: string): void {
  let type: number;
  try {
    type = Number(statfsSync(path).type);
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_BPF_UNSUPPORTED', `cgroup path ${path} can not be read (${errorMessage(e)}); set AMBIT_CGROUP_PATH to a cgroup2 folder`, {
      cause: e,
      details: { cgroupPath: path },
    });
  }
  if (type !== CGROUP2_SUPER_MAGIC) {
    let hint = 'no cgroup2 filesystem is mounted';
    try {
      hint = `cgroup2 is mounted at ${findCgroup2Root(mounts)}`;
    } catch {
      // keep the generic hint
    }
    throw new AmbitError(
      'AMBIT_ERR_BPF_UNSUPPORTED',
      `cgroup path ${path} is not a cgroup2 filesystem (statfs type 0x${type.toString(16)}); ${hint}: set AMBIT_CGROUP_PATH to it (or unset it to use it)`,
      { details: { cgroupPath: path, fsType: type } },
    );
  }
}

/** The cgroup id the kernel reports for links attached at `path` (the folder's inode). */
export function cgroupId(path: string): bigint {
  return statSync(path, { bigint: true }).ino;
}
