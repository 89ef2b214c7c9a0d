import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ambit, destroyMesh, isRoot, leftovers, lockLocalMesh, meshName, pidAlive, repoRoot } from '../helpers/local-mesh.js';
import type { LocalStatus } from '../../src/local/mesh.js';

const fixture = join(repoRoot, 'test/fixtures/local/four-pods.yaml');
/** The address block the runner gives test meshes (scripts/run-tests.mjs; `--net`), and its ranges. */
const net = Number(process.env.AMBIT_LOCAL_NET ?? '0');
const podOctet = String(244 + net);
const serviceOctet = String(96 + net);

test('ambit local: 2 nodes and 4 pods, exec, names, ClusterIP, and nothing left after down', { skip: isRoot() ? false : 'requires root (network namespaces, cgroups)' }, async (t) => {
  const unlock = await lockLocalMesh();
  const name = meshName('tl');
  t.after(async () => {
    await destroyMesh(name);
    unlock();
  });

  const up = await ambit(['local', 'up', '-f', fixture, '--name', name, '--nodes', '2']);
  assert.equal(up.code, 0, `up failed: ${up.stderr}`);
  assert.match(up.stdout, new RegExp(`client-a\\s+node1\\s+10\\.${podOctet}\\.1\\.\\d+\\s+yes`));

  const st = JSON.parse((await ambit(['local', 'status', '--name', name, '-o', 'json'])).stdout) as LocalStatus;
  assert.equal(st.net, net, 'the mesh runs on the address block it was given');
  assert.equal(st.controller, `10.240.${net}.1:15012`);
  assert.equal(st.nodes.length, 2);
  assert.equal(st.pods.length, 4);
  assert.ok(st.pods.every((p) => p.ready && new RegExp(`^10\\.${podOctet}\\.[12]\\.\\d+$`).test(p.ip) && !p.enrolled), JSON.stringify(st.pods));
  const echoNodes = new Set(st.pods.filter((p) => p.name.startsWith('echo-')).map((p) => p.node));
  assert.equal(echoNodes.size, 2, 'the two echo replicas are spread over both nodes');
  assert.equal(st.pods.find((p) => p.name === 'client-b')?.node, 'node2', 'spec.nodeName is honoured');
  const svc = st.services.find((s) => s.name === 'echo');
  assert.ok(svc && new RegExp(`^10\\.${serviceOctet}\\.\\d+\\.\\d+$`).test(svc.clusterIP), JSON.stringify(svc));

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
  assert.match(missing.stderr, /AMBIT_ERR_LOCAL_POD_NOT_FOUND: no running pod plain\/nope in the local mesh/);

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

test('meshes on different address blocks run side by side; a second mesh on a block in use is refused', { skip: isRoot() ? false : 'requires root' }, async (t) => {
  const unlock = await lockLocalMesh();
  const a = meshName('ta');
  const b = `tz${process.pid % 100000}`.slice(0, 8);
  // Block 0 is kept free for this second mesh (block 1 is the tests', 2 the bench's, 3-7 are
  // for development checkouts); a run on block 0 itself takes 1.
  const otherNet = String(net === 0 ? 1 : 0);
  // The second block is locked too: test runs of other checkouts may use it for the same purpose.
  const unlockOther = await lockLocalMesh(undefined, otherNet);
  t.after(async () => {
    await destroyMesh(b);
    await destroyMesh(a);
    unlockOther();
    unlock();
  });
  const curlEcho = async (mesh: string): Promise<string> => {
    const r = await ambit(['local', 'exec', '--name', mesh, 'plain/client-a', '--', 'curl', '-s', '-m', '3', 'http://echo.plain/']);
    assert.equal(r.code, 0, `curl in ${mesh}: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { client: string }).client.replace('::ffff:', '');
  };
  const upA = await ambit(['local', 'up', '-f', fixture, '--name', a]);
  assert.equal(upA.code, 0, upA.stderr);

  const clash = await ambit(['local', 'up', '-f', fixture, '--name', b, '--net', String(net)]);
  assert.equal(clash.code, 1);
  assert.match(clash.stderr, new RegExp(`AMBIT_ERR_LOCAL_ALREADY_RUNNING: local mesh "${a}" is running on address block ${net}`));
  assert.deepEqual(leftovers(b), [], 'the refused mesh made nothing');

  // The other block's bridge address on an interface no mesh made: refused, nothing created.
  const foreign = `${b.slice(0, 6)}fx`;
  const stale = `ts${process.pid % 100000}`.slice(0, 8);
  const bridgeIp = `10.240.${otherNet}.1/24`;
  t.after(() => {
    spawnSync('ip', ['link', 'del', foreign]);
    spawnSync('ip', ['link', 'del', `${stale}-br`]);
    spawnSync('ip', ['netns', 'del', `${stale}-node1`]);
  });
  for (const args of [['link', 'add', foreign, 'type', 'bridge'], ['addr', 'add', bridgeIp, 'dev', foreign]]) assert.equal(spawnSync('ip', args).status, 0, `ip ${args.join(' ')}`);
  const taken = await ambit(['local', 'up', '-f', fixture, '--name', b, '--net', otherNet]);
  assert.equal(taken.code, 1, taken.stderr);
  assert.match(taken.stderr, new RegExp(`AMBIT_ERR_LOCAL_SETUP: address block ${otherNet}: its bridge address 10\\.240\\.${otherNet}\\.1 is already on interface ${foreign}, which no local mesh made`));
  assert.deepEqual(leftovers(b), [], 'the refused mesh made nothing');
  assert.equal(spawnSync('ip', ['link', 'del', foreign]).status, 0);

  // What a mesh whose daemon died leaves (its bridge on the block, a node netns) is removed, and said.
  for (const args of [['link', 'add', `${stale}-br`, 'type', 'bridge'], ['addr', 'add', bridgeIp, 'dev', `${stale}-br`], ['link', 'set', `${stale}-br`, 'up'], ['netns', 'add', `${stale}-node1`]]) {
    assert.equal(spawnSync('ip', args).status, 0, `ip ${args.join(' ')}`);
  }
  const upB = await ambit(['local', 'up', '-f', fixture, '--name', b, '--net', otherNet]);
  assert.equal(upB.code, 0, upB.stderr);
  assert.match(upB.stderr, new RegExp(`address block ${otherNet} was held by stopped local mesh "${stale}" \\(its daemon is gone\\); removed its leftovers: .*netns ${stale}-node1.*link ${stale}-br`));
  assert.deepEqual(leftovers(stale), []);
  assert.match(await curlEcho(b), new RegExp(`^10\\.${244 + Number(otherNet)}\\.`), 'mesh B serves its ClusterIP from its own pod range');
  assert.match(await curlEcho(a), new RegExp(`^10\\.${podOctet}\\.`), 'mesh A still works alongside');

  const downB = await ambit(['local', 'down', '--name', b]);
  assert.equal(downB.code, 0, downB.stderr);
  assert.deepEqual(leftovers(b), []);
  assert.match(await curlEcho(a), new RegExp(`^10\\.${podOctet}\\.`), "taking B down leaves A's routes alone");
  const downA = await ambit(['local', 'down', '--name', a]);
  assert.equal(downA.code, 0, downA.stderr);
  const routes = spawnSync('ip', ['route', 'show'], { encoding: 'utf8' }).stdout;
  assert.doesNotMatch(routes, new RegExp(`blackhole 10\\.(${podOctet}|${244 + Number(otherNet)})\\.0\\.0/16`), 'both blocks released their safety routes');
});
