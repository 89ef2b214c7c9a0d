/**
 * The buffered log destination: lines below the 4 KiB buffer still reach the file by the timer,
 * and an idle destination stops flushing (no empty writes waking the process).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { bufferedDestination } from '../../../src/shared/log.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `check` every 20 ms until it holds or `ms` pass; returns whether it held. The default is
 * long on purpose: the checks count timer ticks, which a loaded machine delays without bound
 * (10 ticks of 100 ms took over 5 s once at load 8), and a passing check returns at once.
 */
async function eventually(check: () => boolean, ms = 60_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

test('buffered destination: a short line is written by the timer, which then flushes exactly 10 more times and stops', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-log-'));
  const file = join(dir, 'out.log');
  const fd = openSync(file, 'w');
  const dest = bufferedDestination(fd);
  t.after(async () => {
    // End the destination rather than closing its fd under it: a flush's write may still be in
    // flight (under load it outlives the test), and it would then write to a closed fd (EBADF).
    await new Promise<void>((resolve) => {
      (dest as unknown as NodeJS.EventEmitter).once('close', () => resolve());
      (dest as unknown as { end(): void }).end();
    });
    rmSync(dir, { recursive: true, force: true });
  });
  let flushes = 0;
  const flush = dest.flush.bind(dest);
  dest.flush = () => {
    flushes++;
    flush();
  };
  const log = pino({ base: null }, dest);

  await sleep(300);
  assert.equal(flushes, 0, 'nothing logged yet: no flushes');

  log.info({ n: 1 }, 'first');
  assert.equal(readFileSync(file, 'utf8'), '', 'the line waits in the buffer (under 4 KiB)');
  assert.ok(await eventually(() => /"msg":"first"/.test(readFileSync(file, 'utf8'))), 'the timer wrote it without the buffer filling');
  // Counting flushes, not time: the line arms 10 ticks, each flushes once, then the timer idles.
  assert.ok(await eventually(() => flushes === 10), `10 flushes follow the line (saw ${flushes})`);
  await sleep(500);
  assert.equal(flushes, 10, 'an idle destination does not flush');

  log.info({ n: 2 }, 'second');
  assert.ok(await eventually(() => /"msg":"second"/.test(readFileSync(file, 'utf8'))));
  assert.ok(await eventually(() => flushes === 20), `a new line arms 10 more (saw ${flushes})`);
});
