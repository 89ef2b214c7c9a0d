/**
 * The same-node fast path through the real OutboundProxy and InboundHbone: a connection between
 * two pods the same agent serves is handed over in-process (no tunnel opened), the destination's
 * policy still decides it (a DENY resets it), and both sides report the same labels as over HBONE.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as net from 'node:net';
import { createLoopbackMesh, testWorkload, type LoopbackMesh } from '../helpers/loopback-net.js';
import { startEchoServer } from '../helpers/echo.js';
import { emptyMatch, type Authorization } from '../../src/shared/model.js';

const BASE = `127.${10 + (process.pid % 200)}.7.`;
const A_IP = BASE + '1';
const B_IP = BASE + '2';

/** Writes one line; resolves `echo` when it comes back, `reset` on ECONNRESET, else `eof`. */
function echoes(s: net.Socket, text = 'ping'): Promise<'echo' | 'reset' | 'eof'> {
  return new Promise((resolve) => {
    let reset = false;
    s.on('error', (e: NodeJS.ErrnoException) => (reset ||= e.code === 'ECONNRESET'));
    s.once('data', (d: Buffer) => {
      s.end();
      resolve(d.toString() === text ? 'echo' : 'eof');
    });
    s.once('close', () => resolve(reset ? 'reset' : 'eof'));
    const go = (): void => void s.write(text);
    if (s.connecting) s.once('connect', go);
    else go();
  });
}

async function series(mesh: LoopbackMesh, name: string): Promise<Array<{ labels: Record<string, string | number>; value: number }>> {
  return (await mesh.registry.getSingleMetric(name)!.get()).values as Array<{ labels: Record<string, string | number>; value: number }>;
}

test('a connection between two pods of one node skips the tunnel and still obeys the destination policy', { timeout: 30_000 }, async (t) => {
  const mesh = await createLoopbackMesh();
  const echo = await startEchoServer(B_IP);
  t.after(async () => {
    await mesh.close();
    await echo.close();
  });
  const wa = testWorkload({ name: 'client', namespace: 'frontend', ip: A_IP, serviceAccount: 'fe' });
  const wb = testWorkload({ name: 'server', namespace: 'backend', ip: B_IP, serviceAccount: 'be' });
  const a = await mesh.addPod(wa, { sameNode: true });
  await mesh.addPod(wb);

  const s = mesh.appConnect(a, { address: B_IP, port: echo.port });
  assert.equal(await echoes(s, 'hello same node'), 'echo', 'the echo came back');
  await new Promise((r) => s.once('close', r));
  assert.deepEqual(a.pool.stats(), [], 'no HBONE tunnel was opened');
  await t.test('both sides report the connection with the labels of an mTLS tunnel', async () => {
    // The access-log close runs on the pipe's close; wait until both reporters counted it.
    const closed = async (): Promise<number> => (await series(mesh, 'istio_tcp_connections_closed_total')).reduce((n, v) => n + v.value, 0);
    for (let i = 0; i < 100 && (await closed()) < 2; i++) await new Promise((r) => setTimeout(r, 20));
    const opened = await series(mesh, 'istio_tcp_connections_opened_total');
    const byReporter = new Map(opened.map((v) => [v.labels['reporter'], v]));
    for (const reporter of ['source', 'destination']) {
      const v = byReporter.get(reporter);
      assert.ok(v, `reporter=${reporter} counted`);
      assert.equal(v.value, 1);
      assert.equal(v.labels['connection_security_policy'], 'mutual_tls');
      assert.equal(v.labels['source_principal'], 'spiffe://cluster.local/ns/frontend/sa/fe');
      assert.equal(v.labels['destination_principal'], 'spiffe://cluster.local/ns/backend/sa/be');
      assert.equal(v.labels['source_workload'], 'client');
      assert.equal(v.labels['destination_workload'], 'server');
    }
    const sent = await series(mesh, 'istio_tcp_received_bytes_total');
    for (const reporter of ['source', 'destination']) {
      assert.equal(sent.find((v) => v.labels['reporter'] === reporter)?.value, 'hello same node'.length, `reporter=${reporter} counted the bytes`);
    }
    assert.equal(await closed(), 2);
  });

  await t.test('a DENY policy at the destination resets the connection and is counted there', async () => {
    const deny: Authorization = {
      name: 'deny-fe',
      namespace: 'backend',
      scope: 'namespace',
      action: 'DENY',
      dryRun: false,
      rules: [{ clauses: [{ matches: [emptyMatch({ principals: [{ exact: 'cluster.local/ns/frontend/sa/fe' }] })] }] }],
    };
    mesh.setConfig({ authorizations: [deny] });
    const s2 = mesh.appConnect(a, { address: B_IP, port: echo.port });
    assert.equal(await echoes(s2), 'reset');
    const denials = await series(mesh, 'ambit_policy_denials_total');
    assert.equal(denials.find((v) => v.labels['reason'] === 'deny_match')?.value, 1);
    assert.deepEqual(a.pool.stats(), [], 'still no tunnel');
  });
});
