/**
 * The buffered log destination: lines below the 4 KiB buffer still reach the file within the
 * flush period, and an idle destination stops flushing (no empty writes waking the process).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { bufferedDestination } from '../../../src/shared/log.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('buffered destination: a short line is written within the flush period, then flushing stops while idle', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-log-'));
  const file = join(dir, 'out.log');
  const fd = openSync(file, 'w');
  t.after(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  const dest = bufferedDestination(fd);
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
  assert.equal(readFileSync(file, 'utf8'), '', 'the line waits in the buffer');
  await sleep(300);
  assert.match(readFileSync(file, 'utf8'), /"msg":"first"/, 'the timer wrote it without the buffer filling');

  await sleep(1200);
  const settled = flushes;
  assert.ok(settled >= 1 && settled <= 10, `a bounded number of flushes after the last line (${settled})`);
  await sleep(500);
  assert.equal(flushes, settled, 'an idle destination does not flush');

  log.info({ n: 2 }, 'second');
  await sleep(300);
  assert.match(readFileSync(file, 'utf8'), /"msg":"second"/);
  assert.ok(flushes > settled, 'a new line restarts the flushing');
});
