/** The machine-wide local-mesh lock: exclusive, survives a dead holder, released only by its holder. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockLocalMesh, pidAlive } from '../../../src/local/mesh-lock.js';

function tempLock(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'lock');
}

/** A pid that is certainly not running: a child that has already exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

test('the lock holds the holder pid; a second taker waits until it is released', async (t) => {
  const path = tempLock(t);
  const release = await lockLocalMesh(5_000, path);
  assert.equal(readFileSync(path, 'utf8'), String(process.pid));
  let second = false;
  const waiting = lockLocalMesh(5_000, path).then((r) => {
    second = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(second, false, 'the second taker is still waiting');
  release();
  const release2 = await waiting;
  assert.equal(second, true);
  release2();
  assert.equal(existsSync(path), false);
});

test('a lock whose holder died is taken over; a timeout names the live holder', async (t) => {
  const path = tempLock(t);
  writeFileSync(path, String(deadPid()));
  const release = await lockLocalMesh(5_000, path);
  assert.equal(readFileSync(path, 'utf8'), String(process.pid));
  release();
  writeFileSync(path, '1'); // pid 1 is alive
  await assert.rejects(lockLocalMesh(300, path), (e: Error & { code?: string }) => e.code === 'AMBIT_ERR_LOCAL_ALREADY_RUNNING' && /held by pid 1 /.test(e.message));
});

test('release leaves a lock another process holds; an old directory lock counts as stale', async (t) => {
  const path = tempLock(t);
  const release = await lockLocalMesh(5_000, path);
  writeFileSync(path, '1'); // as if another process had taken it over
  release();
  assert.equal(readFileSync(path, 'utf8'), '1', 'not ours, not removed');
  rmSync(path);
  mkdirSync(path);
  const r2 = await lockLocalMesh(5_000, path);
  assert.equal(readFileSync(path, 'utf8'), String(process.pid));
  r2();
  assert.equal(pidAlive(0), false, 'pid 0 is never a live holder');
});
