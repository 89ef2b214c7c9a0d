/**
 * Mount points on the host for pods' volumes. Local pods see the host's filesystem, so a volume
 * mounted at `/var/run/secrets/tokens` needs that folder to exist on the host (the bind mount
 * itself lives only in the container's mount namespace). Folders (and files, for subPath mounts
 * of a file) made for that are recorded in a file of the mesh's state folder and removed, deepest
 * first and only when still empty, when the mesh goes down or its leftovers are cleaned up.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rmdir, unlink, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, normalize } from 'node:path';
import { AmbitError } from '../../shared/errors.js';

export const MOUNTPOINTS_FILE = 'mountpoints.json';

export class MountPoints {
  private readonly made: string[];
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly recordFile: string) {
    this.made = readRecord(recordFile);
  }

  /** Makes `target` (a folder, or an empty file when `file`) and its missing parents. */
  ensure(target: string, file: boolean): Promise<void> {
    const run = this.queue.then(() => this.make(target, file));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async make(target: string, file: boolean): Promise<void> {
    const t = normalize(target);
    if (!isAbsolute(t) || t === '/') throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `mountPath ${JSON.stringify(target)} must be an absolute path below /`);
    if (existsSync(t)) {
      const isDir = statSync(t).isDirectory();
      if (isDir === file) throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `mountPath ${t} exists on the host as a ${isDir ? 'folder' : 'file'}, but the volume is a ${file ? 'file' : 'folder'}`);
      return;
    }
    const missing: string[] = [];
    for (let p = file ? dirname(t) : t; !existsSync(p); p = dirname(p)) missing.unshift(p);
    for (const p of missing) {
      await mkdir(p, { mode: 0o755 });
      this.made.push(p);
    }
    if (file) {
      await writeFile(t, '', { mode: 0o644, flag: 'wx' });
      this.made.push(t);
    }
    await writeFile(this.recordFile, JSON.stringify(this.made), { mode: 0o600 });
  }

  /** Removes what was made (see removeRecorded). */
  async removeAll(): Promise<string[]> {
    await this.queue;
    return removeRecorded(this.recordFile);
  }
}

function readRecord(file: string): string[] {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && isAbsolute(x)) : [];
  } catch {
    return [];
  }
}

/** Removes the recorded mount points, deepest first, each only if still empty; then the record. */
export async function removeRecorded(file: string): Promise<string[]> {
  const removed: string[] = [];
  for (const p of [...readRecord(file)].sort((a, b) => b.length - a.length)) {
    try {
      const st = statSync(p);
      if (st.isDirectory()) await rmdir(p);
      else if (st.size === 0) await unlink(p);
      else continue;
      removed.push(p);
    } catch {
      // busy (still mounted somewhere), not empty, or gone: leave it
    }
  }
  await unlink(file).catch(() => undefined);
  return removed;
}
