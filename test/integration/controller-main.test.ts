/**
 * The controller process (dist/src/controller/main.js) end to end: env → start → manifests →
 * admin; a manifest edit shows in /debug/config_dump; SIGTERM exits 0; bad env exits 1 naming it.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { namespace, pod } from '../unit/translate/helpers.js';
import { spawnJsonLogged, type JsonLogProcess } from '../helpers/json-process.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'controller', 'main.js');

function startMain(t: TestContext, env: Record<string, string>): JsonLogProcess {
  const p = spawnJsonLogged(MAIN, env, ['stderr']);
  t.after(() => {
    if (p.child.exitCode === null && p.child.signalCode === null && p.child.pid !== undefined) p.child.kill('SIGKILL');
  });
  return p;
}

async function waitFor<T>(what: string, get: () => T | undefined | Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  for (let i = 0; i < timeoutMs / 25; i++) {
    const v = await get();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
}

async function workloadNames(adminUrl: string): Promise<string[]> {
  const res = await fetch(`${adminUrl}/debug/config_dump`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { workloads: Array<{ name: string }> };
  return body.workloads.map((w) => w.name).sort();
}

test('controller main: serves manifests, follows edits, exits 0 on SIGTERM', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), `ambit-main${process.pid % 10000}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const manifests = join(dir, 'manifests');
  await mkdir(manifests);
  const file = join(manifests, 'app.yaml');
  await writeFile(file, [namespace('demo'), pod('web')].map((o) => JSON.stringify(o)).join('\n---\n'));
  const tokens = join(dir, 'tokens');
  await writeFile(tokens, `node-1 ${'t'.repeat(32)}\n`);

  const p = startMain(t, {
    AMBIT_CONTROLLER_LISTEN: '127.0.0.1:0',
    AMBIT_ADMIN_LISTEN: '127.0.0.1:0',
    AMBIT_STATE_DIR: join(dir, 'state'),
    AMBIT_MANIFESTS: manifests,
    AMBIT_NODE_TOKENS_FILE: tokens,
    AMBIT_LOG_LEVEL: 'info',
  });
  const ready = await waitFor('controller ready log line', () => {
    const fatal = p.lines.find((l) => l['level'] === 60);
    if (fatal) assert.fail(`controller failed: ${JSON.stringify(fatal)}`);
    return p.lines.find((l) => l['msg'] === 'controller ready');
  });
  assert.ok(!JSON.stringify(p.lines).includes('t'.repeat(32)), 'the node token never appears in logs');
  const adminUrl = `http://${String(ready['admin'])}`;
  const readyRes = await fetch(`${adminUrl}/ready`, { signal: AbortSignal.timeout(5000) });
  assert.equal(readyRes.status, 200);
  await readyRes.text();
  assert.deepEqual(await workloadNames(adminUrl), ['web']);

  await writeFile(file, [namespace('demo'), pod('web'), pod('api', { ip: '10.0.0.7' })].map((o) => JSON.stringify(o)).join('\n---\n'));
  await waitFor('api workload after the edit', async () => ((await workloadNames(adminUrl)).includes('api') ? true : undefined));

  p.child.kill('SIGTERM');
  assert.equal(await p.exited, 0);
  assert.ok(p.lines.some((l) => l['msg'] === 'controller stopped'));
});

test('controller main: invalid environment exits 1 with one fatal line naming every variable', async (t) => {
  const p = startMain(t, { AMBIT_CONTROLLER_LISTEN: 'nope', AMBIT_CERT_TTL: 'forever', AMBIT_STATE_DIR: '/tmp/x' });
  assert.equal(await p.exited, 1);
  const fatal = p.lines.filter((l) => l['level'] === 60);
  assert.equal(fatal.length, 1);
  const err = fatal[0]!['err'] as { code?: string; message?: string; stack?: string };
  assert.equal(err.code, 'AMBIT_ERR_CONFIG_INVALID', 'the error is logged under err with its code');
  assert.match(String(err.message), /AMBIT_CONTROLLER_LISTEN: must be host:port.*"nope"/);
  assert.match(String(err.message), /AMBIT_CERT_TTL: must be a duration.*"forever"/);
  assert.equal(err.stack, undefined, 'a coded error is logged without its stack');
});
