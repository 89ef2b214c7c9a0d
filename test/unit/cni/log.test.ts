import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOG_FILE_MAX_BYTES, createPluginLog } from '../../../src/cni/log.js';

test('the plugin log writes pino-shaped JSON lines at or above its level, to the writer and the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cni-log-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const lines: string[] = [];
  const file = join(dir, 'plugin.log');
  const log = createPluginLog({ level: 'info', file, write: (l) => lines.push(l), bindings: { command: 'ADD' } });
  log.debug({ x: 1 }, 'hidden');
  log.info({ pod: 'demo/web' }, 'pod captured by the node agent');
  log.error({ cniCode: 11 }, 'cni command failed');
  assert.equal(lines.length, 2);
  const first = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(first['level'], 30);
  assert.equal(first['msg'], 'pod captured by the node agent');
  assert.equal(first['command'], 'ADD');
  assert.equal(first['pod'], 'demo/web');
  assert.equal(await readFile(file, 'utf8'), lines.join(''));
  assert.equal((await stat(file)).mode & 0o777, 0o600);
});

test('the log file is moved to .1 once it passes its size bound, so it stays bounded', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cni-log-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'plugin.log');
  await writeFile(file, 'x'.repeat(LOG_FILE_MAX_BYTES + 1));
  createPluginLog({ level: 'info', file, write: () => undefined }).info({}, 'after rotation');
  assert.equal((await stat(`${file}.1`)).size, LOG_FILE_MAX_BYTES + 1);
  assert.match(await readFile(file, 'utf8'), /^\{.*"msg":"after rotation"\}\n$/);
  // A file that cannot be written does not throw: the line still went to the writer.
  const lines: string[] = [];
  createPluginLog({ level: 'info', file: join(dir, 'missing', 'x.log'), write: (l) => lines.push(l) }).warn({}, 'still logged');
  assert.equal(lines.length, 1);
});
