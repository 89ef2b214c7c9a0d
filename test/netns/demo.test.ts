/**
 * The README demo end to end: `ambit local demo` brings up examples/demo, sends requests from the
 * client pod and from the root namespace through the ingress gateway (Host: demo.example.com), and
 * prints the split per backend version for both, the waypoint's and the gateway's request counts;
 * it exits 0 only when every request succeeded, and leaves the mesh up for the user to explore.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ambit, destroyMesh, isRoot, leftovers, lockLocalMesh, meshLogTail, meshName } from '../helpers/local-mesh.js';

const skip = isRoot() ? false : 'requires root (network namespaces, BPF, nftables)';

function curlHost(host: string, url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '-f', '-m', '10', '-H', `Host: ${host}`, url], { encoding: 'utf8' }, (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)));
  });
}

test('ambit local demo: split through the waypoint from the client pod and through the ingress gateway', { skip, timeout: 300_000 }, async (t) => {
  const unlock = await lockLocalMesh();
  const name = meshName('td');
  t.after(async () => {
    await destroyMesh(name);
    unlock();
  });
  const r = await ambit(['local', 'demo', '--name', name]);
  t.diagnostic(r.stdout.slice(r.stdout.indexOf('sending')));
  assert.equal(r.code, 0, `demo failed:\n${r.stdout}\n${r.stderr}\n${meshLogTail(name)}`);
  const out = r.stdout;

  const row = (text: string): [number, number] => {
    const m = new RegExp(`^${text}\\s+(\\d+)\\s+(\\d+)\\s*$`, 'm').exec(out);
    return m ? [Number(m[1]), Number(m[2])] : [0, 0];
  };
  assert.match(out, /^BACKEND\s+FROM CLIENT POD\s+FROM INGRESS\s*$/m);
  const [v1Client, v1Ingress] = row('backend v1');
  const [v2Client, v2Ingress] = row('backend v2');
  assert.deepEqual({ client: v1Client + v2Client, ingress: v1Ingress + v2Ingress }, { client: 100, ingress: 100 }, out);
  // 90/10 split: below 70 of 100 for v1 has probability ~1e-8; no v2 in 200 has ~1e-9.
  assert.ok(v1Client >= 70 && v1Ingress >= 70 && v2Client + v2Ingress > 0, `90/10 split on both paths: ${JSON.stringify({ v1Client, v2Client, v1Ingress, v2Ingress })}`);
  assert.doesNotMatch(out, /^failed\s/m);
  assert.match(out, /^100\/100 requests from the client pod and 100\/100 through the ingress gateway succeeded\.$/m);
  assert.match(out, /the backend saw requests from \S+, the waypoint pod/);

  const waypoint = /the waypoint \(\S+\) handled (\d+) HTTP requests, (\d+) of them sent by the ingress gateway/.exec(out);
  assert.ok(waypoint, out);
  assert.ok(Number(waypoint[1]) >= 400 && Number(waypoint[2]) >= 100, `waypoint counts (client and ingress requests, two hops each): ${waypoint[0]}`);
  const gateway = /the ingress gateway \(istio-system\/istio-ingressgateway-\S+\) answered (\d+) requests for demo\.example\.com with 200/.exec(out);
  assert.ok(gateway && Number(gateway[1]) >= 100, `gateway count: ${gateway?.[0]}`);

  // The hint the demo prints works: the mesh is still up and the ingress answers from the root namespace.
  const hint = new RegExp(`^  curl -H 'Host: demo\\.example\\.com' (http://[0-9.]+:80/)$`, 'm').exec(out);
  assert.ok(hint, `the demo prints a curl through the ingress:\n${out}`);
  const body = JSON.parse(await curlHost('demo.example.com', hint[1]!)) as { backend: { text: string } };
  assert.match(body.backend.text, /^backend v[12]$/);
  assert.match(out, new RegExp(`npx ambit local down --name ${name}`));

  const down = await ambit(['local', 'down', '--name', name]);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(leftovers(name), []);
  // The demo apps stop on SIGTERM (exit code 0), not by SIGKILL after the grace period.
  const daemonLog = readFileSync(join('/run/ambit', name, 'logs', 'daemon.log'), 'utf8');
  const exits = daemonLog.slice(daemonLog.indexOf('stopping local mesh')).split('\n').filter((l) => l.includes('"msg":"container exited"') && /"container":"(frontend|backend)"/.test(l));
  assert.equal(exits.length, 3, exits.join('\n'));
  for (const l of exits) assert.match(l, /"exitCode":0/, l);
});
