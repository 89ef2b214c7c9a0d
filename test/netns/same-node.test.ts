/**
 * The same-node fast path in real network namespaces with capture attached: a client and a server
 * pod on node1 talk without an HBONE tunnel (node1's pool stays empty while a connection to a pod
 * on node2 opens one), both reporters count the connection as mutual TLS, and a DENY policy at the
 * destination still resets it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ambit, destroyMesh, isRoot, lockLocalMesh, meshLogTail, meshName, metricSum, repoRoot } from '../helpers/local-mesh.js';
import { RAISE_NOFILE } from '../../src/local/exec.js';
import type { LocalStatus } from '../../src/local/mesh.js';

const fx = (f: string): string => join(repoRoot, 'test/fixtures/same-node', f);
const netload = join(repoRoot, 'dist/test/helpers/netload.js');
const skip = isRoot() ? false : 'requires root (network namespaces, BPF, nftables)';

/** The value of an unlabelled gauge in a Prometheus text exposition. */
function gauge(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  assert.ok(line, `${name} is exported`);
  return Number(line.slice(name.length + 1));
}

test('same-node fast path: no tunnel between pods of one node, policy and metrics as over HBONE', { skip, timeout: 300_000 }, async (t) => {
  const unlock = await lockLocalMesh();
  const name = meshName('sn');
  t.after(async () => {
    await destroyMesh(name);
    unlock();
  });
  const up = await ambit(['local', 'up', '-f', fx('topology.yaml'), '--name', name, '--timeout', '90s']);
  assert.equal(up.code, 0, `local up failed:\n${up.stderr}`);
  const st = JSON.parse((await ambit(['local', 'status', '--name', name, '-o', 'json'])).stdout) as LocalStatus;
  const node1 = st.nodes.find((n) => n.name === 'node1')!;
  const metrics1 = (): Promise<string> => fetch(node1.metrics).then((r) => r.text());
  const load = async <T>(args: string[]): Promise<T> => {
    const r = await ambit(['local', 'exec', '--name', name, 'same/client', '--', 'sh', '-c', `${RAISE_NOFILE} exec "$0" "$@"`, process.execPath, netload, ...args]);
    const last = r.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(last) as T;
    } catch {
      throw new Error(`netload ${args.join(' ')} printed ${JSON.stringify(r.stdout)} (stderr ${r.stderr})\n${meshLogTail(name)}`);
    }
  };
  const sourcePrincipal = 'spiffe://cluster.local/ns/same/sa/client';

  await t.test('the connection works and node1 opens no HBONE tunnel for it', async () => {
    const marker = `same-node-${process.pid}`;
    const r = await load<{ reply: string }>(['send', 'server.same', '9000', marker]);
    assert.equal(r.reply, marker, `the echo came back\n${meshLogTail(name)}`);
    const text = await metrics1();
    assert.equal(gauge(text, 'ambit_tunnel_pool_connections'), 0, 'node1 has no pooled tunnel');
    for (const reporter of ['source', 'destination']) {
      const labels = { reporter, source_principal: sourcePrincipal, destination_workload: 'server', connection_security_policy: 'mutual_tls' };
      assert.equal(metricSum(text, 'istio_tcp_connections_opened_total', labels), 1, `node1 counts reporter=${reporter} as mutual_tls`);
      assert.ok(metricSum(text, 'istio_tcp_received_bytes_total', labels) >= marker.length, `reporter=${reporter} counted the bytes`);
    }
  });

  await t.test("the server sees the client pod's address and port", async () => {
    const r = await ambit(['local', 'exec', '--name', name, 'same/client', '--', 'curl', '-s', '-m', '5', '-w', '\n%{local_port}', 'http://server.same:8080/']);
    assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
    const cut = r.stdout.lastIndexOf('\n');
    const seen = JSON.parse(r.stdout.slice(0, cut)) as { client: string; clientPort: number };
    assert.equal(seen.client.replace('::ffff:', ''), st.pods.find((p) => p.namespace === 'same' && p.name === 'client')?.ip);
    // curl's own socket is connected to the agent on loopback (capture redirects the connect), from this port.
    assert.equal(seen.clientPort, Number(r.stdout.slice(cut + 1)));
  });

  await t.test('a pod on the other node is still reached through a tunnel (the gauge sees tunnels)', async () => {
    const r = await load<{ reply: string }>(['send', 'far.same', '9000', 'far']);
    assert.equal(r.reply, 'far');
    assert.equal(gauge(await metrics1(), 'ambit_tunnel_pool_connections'), 1, 'node1 pooled one tunnel, to node2');
  });

  await t.test('a DENY policy at the destination resets the same-node connection', async () => {
    const before = metricSum(await metrics1(), 'ambit_policy_denials_total', { reason: 'deny_match' });
    const applied = await ambit(['local', 'apply', '--name', name, '-f', fx('deny-client.yaml')]);
    assert.equal(applied.code, 0, applied.stderr);
    const r = await load<{ outcome: string }>(['probe', 'server.same', '9000']);
    assert.equal(r.outcome, 'reset', 'the connection is reset');
    assert.equal(metricSum(await metrics1(), 'ambit_policy_denials_total', { reason: 'deny_match' }) - before, 1, 'node1 counted one deny_match');
    assert.equal(gauge(await metrics1(), 'ambit_tunnel_pool_connections'), 1, 'still only the tunnel to node2');
  });
});
