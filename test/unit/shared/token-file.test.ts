import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAmbitError } from '../../../src/shared/errors.js';
import { createLogger } from '../../../src/shared/log.js';
import { TokenFile } from '../../../src/shared/token-file.js';

async function tempDir(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-token-file-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a missing, empty or multi-word token file is AMBIT_ERR_TOKEN_FILE naming the file', async (t) => {
  const file = join(await tempDir(t), 'istio-token');
  const rejects = (why: RegExp) =>
    assert.rejects(new TokenFile(file).read(), (e) => isAmbitError(e, 'AMBIT_ERR_TOKEN_FILE') && e.message.includes(file) && why.test(e.message));
  await rejects(/cannot be read: .*ENOENT/);
  await writeFile(file, ' \n');
  await rejects(/is empty/);
  await writeFile(file, 'two words');
  await rejects(/more than one word/);
});

test('the token is trimmed, re-read when the file is rewritten, and kept when a re-read fails', async (t) => {
  const file = join(await tempDir(t), 'istio-token');
  const lines: string[] = [];
  const log = createLogger({ level: 'info', name: 'test', destination: { write: (s: string) => void lines.push(s) } });
  const tokens = new TokenFile(file, { log });
  await writeFile(file, 'first-token\n');
  assert.equal(await tokens.read(), 'first-token');
  assert.equal(await tokens.read(), 'first-token');
  await writeFile(file, 'second-token-longer');
  assert.equal(await tokens.read(), 'second-token-longer', 'rewritten in place: seen');
  await unlink(file);
  assert.equal(await tokens.read(), 'second-token-longer', 'gone for a moment: the last token is still presented');
  await writeFile(file, 'third');
  assert.equal(await tokens.read(), 'third');
  const text = lines.join('');
  assert.match(text, /token file changed/);
  assert.match(text, /AMBIT_ERR_TOKEN_FILE/);
  for (const secret of ['first-token', 'second-token-longer', 'third']) assert.ok(!text.includes(secret), `${secret} is never logged`);
});
