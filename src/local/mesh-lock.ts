/**
 * The machine-wide lock of programs that bring local meshes up and down one after another (the
 * tests and the benchmark). Local meshes share their address ranges, so only one may run at a
 * time; `ambit local up` refuses a second one, and this lock lets such programs wait their turn
 * instead of failing.
 *
 * The lock is a file holding the holder's pid, created whole by link(2): it exists with its pid or
 * not at all, so a waiter never mistakes a lock being taken for a stale one. A holder that died is
 * detected by pid; release removes the file only while it still names the releasing process.
 */
import { linkSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { AmbitError } from '../shared/errors.js';

export const MESH_LOCK_PATH = '/run/ambit-test-local.lock';

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false; // kill(0) would signal our own group
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function holderOf(path: string): number | undefined {
  try {
    return Number(readFileSync(path, 'utf8').trim() || '0');
  } catch {
    return undefined;
  }
}

/** Waits for the lock (up to timeoutMs) and returns its release function. */
export async function lockLocalMesh(timeoutMs = 600_000, path = MESH_LOCK_PATH): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  const mine = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  writeFileSync(mine, String(process.pid));
  try {
    for (;;) {
      try {
        linkSync(mine, path);
        return () => {
          if (holderOf(path) === process.pid) rmSync(path, { force: true });
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      // Older versions of the helpers used a directory here; one left behind is stale.
      if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) rmSync(path, { recursive: true, force: true });
      const holder = holderOf(path);
      if (holder === undefined) continue; // released just now
      if (!pidAlive(holder) && holderOf(path) === holder) rmSync(path, { force: true });
      if (Date.now() > deadline) {
        throw new AmbitError('AMBIT_ERR_LOCAL_ALREADY_RUNNING', `local mesh lock ${path} held by pid ${holder} for more than ${timeoutMs} ms; is a test or a benchmark running?`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    rmSync(mine, { force: true });
  }
}
