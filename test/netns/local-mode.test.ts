import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ambit, destroyMesh, isRoot, leftovers, lockLocalMesh, meshName, pidAlive, repoRoot } from '../helpers/local-mesh.js';
import type { LocalStatus } from '../../src/local/mesh.js';

const fixture = join(repoRoot, 'test/fixtures/local/four-pods.yaml');

test('ambit local: 2 nodes and 4 pods, exec, names, ClusterIP, and nothing left after down', { skip: isRoot() ? false : 'requires root (network namespaces, cgroups)' }, async (t) => {
  const unlock = await lockLocalMesh();
  const name = meshName('tl');
  t.after(async () => {
    await destroyMesh(name);
    unlock();
  });

  const up = await ambit(['local', 'up', '-f', fixture, '--name', name, '--nodes', '2']);
  assert.equal(up.code, 0, `up failed: ${up.stderr}`);
  assert.match(up.stdout, /client-a\s+node1\s+10\.244\.1\.\d+\s+yes/);

  const st = JSON.parse((await ambit(['local', 'status', '--name', name, '-o', 'json'])).stdout) as LocalStatus;
  assert.equal(st.nodes.length, 2);
  assert.equal(st.pods.length, 4);
  assert.ok(st.pods.every((p) => p.ready && /^10\.244\.[12]\.\d+$/.test(p.ip) && !p.enrolled), JSON.stringify(st.pods));
  const echoNodes = new Set(st.pods.filter((p) => p.name.startsWith('echo-')).map((p) => p.node));
  assert.equal(echoNodes.size, 2, 'the two echo replicas are spread over both nodes');
  assert.equal(st.pods.find((p) => p.name === 'client-b')?.node, 'node2', 'spec.nodeName is honoured');
  const svc = st.services.find((s) => s.name === 'echo');
  assert.ok(svc && /^10\.96\.\d+\.\d+$/.test(svc.clusterIP));

  // Names resolve to the ClusterIP in every form.
  for (const host of ['echo', 'echo.plain', 'echo.plain.svc.cluster.local']) {
    const r = await ambit(['local', 'exec', '--name', name, 'plain/client-a', '--', 'getent', 'hosts', host]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split(/\s+/)[0], svc.clusterIP, `${host} resolves to the ClusterIP`);
  }

  // The ClusterIP reaches both replicas from a pod on either node (bounded: 12 requests).
  const served = new Set<string>();
  for (const client of ['plain/client-a', 'plain/client-b']) {
    for (let i = 0; i < 6; i++) {
      const r = await ambit(['local', 'exec', '--name', name, client, '--', 'curl', '-s', '-m', '3', 'http://echo/']);
      assert.equal(r.code, 0, `curl from ${client}: ${r.stderr}`);
      const body = JSON.parse(r.stdout) as { pod: string; client: string };
      served.add(body.pod);
      const me = st.pods.find((p) => `plain/${p.name}` === client)!;
      assert.equal(body.client.replace('::ffff:', ''), me.ip, 'the server sees the client pod IP');
    }
  }
  assert.ok(served.size >= 1);

  // Pod to pod IP across nodes, stdin and exit codes pass through exec.
  const target = st.pods.find((p) => p.name.startsWith('echo-') && p.node === 'node2')!;
  const direct = await ambit(['local', 'exec', '--name', name, 'plain/client-a', '--', 'curl', '-s', '-m', '3', `http://${target.ip}:8080/x`]);
  assert.equal(JSON.parse(direct.stdout).path, '/x');
  const cat = await ambit(['local', 'exec', '--name', name, 'plain/client-a', '--', 'cat'], { input: 'through stdin\n' });
  assert.equal(cat.stdout, 'through stdin\n');
  const exit = await ambit(['local', 'exec', '--name', name, 'plain/client-a', '--', 'sh', '-c', 'echo err >&2; exit 7']);
  assert.equal(exit.code, 7);
  assert.equal(exit.stderr, 'err\n');
  const missing = await ambit(['local', 'exec', '--name', name, 'plain/nope', '--', 'true']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /AMBIT_ERR_LOCAL_POD_NOT_FOUND: no pod plain\/nope/);

  const pids = st.nodes.map((n) => n.agentPid).filter((p): p is number => p !== undefined);
  const down = await ambit(['local', 'down', '--name', name]);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(leftovers(name), []);
  for (const pid of pids) assert.equal(pidAlive(pid), false, `agent pid ${pid} is gone`);
});

test('ambit local up rejects bad manifests before creating anything', { skip: isRoot() ? false : 'requires root' }, async (t) => {
  const unlock = await lockLocalMesh();
  const name = meshName('tb');
  t.after(async () => {
    await destroyMesh(name);
    unlock();
  });
  const bad = join(repoRoot, 'test/fixtures/local/bad.yaml');
  const r = await ambit(['local', 'up', '-f', bad, '--name', name]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /AMBIT_ERR_MANIFEST_INVALID/);
  assert.match(r.stderr, /bad\.yaml/);
  assert.match(r.stderr, /replicas/);
  assert.match(r.stderr, /Frobnicator/);
  assert.deepEqual(leftovers(name), [], 'nothing was created');
});
