/**
 * The controller process (dist/src/controller/main.js) in Kubernetes mode: AMBIT_KUBECONFIG names
 * a kubeconfig of the controller's service account; it lists the cluster, leads, serves, answers
 * /ready and writes the CA Secret, and exits 0 on SIGTERM, releasing its Lease.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { startCluster, waitUntil } from './helpers.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src', 'controller', 'main.js');

test('controller main in Kubernetes mode: leads, serves, is ready, releases its Lease on SIGTERM', async (t) => {
  const c = await startCluster(t);
  const kubeconfig = join(c.ts.dir, 'controller.kubeconfig');
  writeFileSync(kubeconfig, c.controllerKubeconfig, { mode: 0o600 });
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env['PATH'] ?? '',
      AMBIT_KUBECONFIG: kubeconfig,
      POD_NAMESPACE: 'istio-system',
      AMBIT_CONTROLLER_LISTEN: '127.0.0.1:0',
      AMBIT_ADMIN_LISTEN: '127.0.0.1:0',
      AMBIT_STATE_DIR: join(c.ts.dir, 'controller-state'),
      AMBIT_PROXY_IMAGE: 'localhost/ambit:test',
      AMBIT_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines: Array<Record<string, unknown>> = [];
  let buf = '';
  child.stderr!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      try {
        lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
      } catch {
        lines.push({ msg: buf.slice(0, i) });
      }
      buf = buf.slice(i + 1);
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const ready = await waitUntil('controller ready', () => {
    const fatal = lines.find((l) => l['level'] === 60);
    if (fatal) assert.fail(`controller failed: ${JSON.stringify(fatal)}`);
    return lines.find((l) => l['msg'] === 'controller ready');
  }, 30_000);
  const res = await fetch(`http://${String(ready['admin'])}/ready`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  await res.text();
  await waitUntil('the Lease held', async () => {
    const r = await c.ts.kubectl(['get', 'lease', '-n', 'istio-system', 'ambit-controller', '-o', 'yaml']);
    return r.code === 0 && parse(r.stdout).spec?.holderIdentity ? true : undefined;
  });
  const secret = await c.ts.kubectl(['get', 'secret', '-n', 'istio-system', 'ambit-ca', '-o', 'name']);
  assert.equal(secret.stdout.trim(), 'secret/ambit-ca');
  assert.ok(!JSON.stringify(lines).includes('BEGIN RSA PRIVATE KEY') && !JSON.stringify(lines).includes('BEGIN PRIVATE KEY'), 'no key material in logs');

  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  const lease = parse((await c.ts.kubectl(['get', 'lease', '-n', 'istio-system', 'ambit-controller', '-o', 'yaml'])).stdout);
  assert.ok(!lease.spec.holderIdentity, 'released on shutdown');
});
