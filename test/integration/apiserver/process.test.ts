/**
 * The API server as its own process (main.js): objects survive a clean stop and a crash
 * (SIGKILL right after a write), resourceVersions keep growing across restarts, the port is
 * kept, and a second process on the same state folder is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { runKubectl, startServerProcess, stopProcess } from './helpers.js';

test('objects and resourceVersions survive restarts and crashes of the API server process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-apiserver-proc-'));
  const stateDir = join(dir, 'state');
  const cache = join(dir, 'cache');
  const children: Array<import('node:child_process').ChildProcess> = [];
  t.after(async () => {
    for (const c of children) await stopProcess(c, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const kubectl = async (kubeconfig: string, args: string[]): Promise<string> => {
    const r = await runKubectl(kubeconfig, cache, args);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  const one = await startServerProcess(stateDir);
  children.push(one.child);
  await kubectl(one.kubeconfig, ['create', 'namespace', 'keep']);
  await kubectl(one.kubeconfig, ['create', 'configmap', 'a', '-n', 'keep', '--from-literal=v=1']);
  const rv1 = Number(await kubectl(one.kubeconfig, ['get', 'cm', 'a', '-n', 'keep', '-o', 'jsonpath={.metadata.resourceVersion}']));

  const clash = spawnSync(process.execPath, [new URL('../../../src/local/apiserver/main.js', import.meta.url).pathname, '--state-dir', stateDir, '--port', '0', '--log-level', 'silent'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(clash.status, 2);
  assert.match(clash.stderr, /state folder .* is in use by process \d+/);

  assert.equal(await stopProcess(one.child, 'SIGTERM'), 0);
  const two = await startServerProcess(stateDir);
  children.push(two.child);
  assert.equal(two.url, one.url, 'the same address after a restart');
  assert.equal(await kubectl(two.kubeconfig, ['get', 'cm', 'a', '-n', 'keep', '-o', 'jsonpath={.data.v}']), '1');
  await kubectl(two.kubeconfig, ['patch', 'cm', 'a', '-n', 'keep', '--type', 'merge', '-p', '{"data":{"v":"2"}}']);
  const rv2 = Number(await kubectl(two.kubeconfig, ['get', 'cm', 'a', '-n', 'keep', '-o', 'jsonpath={.metadata.resourceVersion}']));
  assert.ok(rv2 > rv1, `resourceVersion ${rv2} after the restart exceeds ${rv1}`);

  // A crash right after the write: the write was on disk before the answer.
  await stopProcess(two.child, 'SIGKILL');
  const three = await startServerProcess(stateDir);
  children.push(three.child);
  assert.equal(await kubectl(three.kubeconfig, ['get', 'cm', 'a', '-n', 'keep', '-o', 'jsonpath={.data.v}']), '2');
  await kubectl(three.kubeconfig, ['create', 'configmap', 'b', '-n', 'keep']);
  const rv3 = Number(await kubectl(three.kubeconfig, ['get', 'cm', 'b', '-n', 'keep', '-o', 'jsonpath={.metadata.resourceVersion}']));
  assert.ok(rv3 > rv2);
  assert.equal(await stopProcess(three.child, 'SIGTERM'), 0);
});
