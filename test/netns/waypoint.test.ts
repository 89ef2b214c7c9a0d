/**
 * Waypoints end to end in `ambit local`: a namespace bound to a waypoint Gateway, the seeds'
 * VirtualService 90/10 over DestinationRule subsets v1/v2 unchanged, a header match, an L7 DENY on
 * the waypoint, the waypoint's Istio metrics, a TCP service carried through the waypoint as TCP,
 * and a client dialing a backend pod directly refused by
 * the destination agent (waypoint-bound traffic must come through the waypoint).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ambit, destroyMesh, isRoot, lockLocalMesh, meshName, metricSum, repoRoot, waitFor } from '../helpers/local-mesh.js';
import type { LocalStatus } from '../../src/local/mesh.js';

const fx = (f: string): string => join(repoRoot, 'test/fixtures/waypoint-e2e', f);
const SEED_VS = join(repoRoot, 'test/fixtures/manifests/valid/istio-docs/reviews-90-10.yaml');
const skip = isRoot() ? false : 'requires root (network namespaces, BPF, nftables)';
const URL = 'http://reviews:9080/reviews/1';

interface LoadResult {
  texts: Record<string, number>;
  statuses: Record<string, number>;
  errors: number;
  stopped?: string;
}

interface Mesh {
  name: string;
  status(): Promise<LocalStatus>;
  /** Runs argv in the client pod. */
  exec(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  load(args: string[]): Promise<LoadResult>;
  apply(file: string): Promise<void>;
  remove(file: string): Promise<void>;
}

async function startMesh(t: TestContext): Promise<Mesh> {
  const unlock = await lockLocalMesh();
  const name = meshName('tw');
  t.after(async () => {
    await destroyMesh(name);
    unlock();
  });
  const up = await ambit(['local', 'up', '-f', fx('app.yaml'), '-f', SEED_VS, '--name', name, '--timeout', '120s']);
  assert.equal(up.code, 0, `local up failed:\n${up.stderr}`);
  const status = async (): Promise<LocalStatus> => JSON.parse((await ambit(['local', 'status', '--name', name, '-o', 'json'])).stdout) as LocalStatus;
  const client = (await status()).pods.find((p) => p.namespace === 'bookinfo' && p.name.startsWith('client-'));
  assert.ok(client, 'the client pod runs');
  const exec = (argv: string[]) => ambit(['local', 'exec', '--name', name, `bookinfo/${client.name}`, '--', ...argv]);
  return {
    name,
    status,
    exec,
    load: async (args) => {
      const r = await exec([process.execPath, fx('load.mjs'), ...args]);
      const last = r.stdout.trim().split('\n').pop() ?? '';
      try {
        return JSON.parse(last) as LoadResult;
      } catch {
        throw new Error(`load ${args.join(' ')} printed ${JSON.stringify(r.stdout)} (stderr ${r.stderr})`);
      }
    },
    apply: async (file) => {
      const r = await ambit(['local', 'apply', '--name', name, '-f', file]);
      assert.equal(r.code, 0, `apply ${file}: ${r.stderr}`);
    },
    remove: async (file) => {
      const r = await ambit(['local', 'delete', '--name', name, '-f', file]);
      assert.equal(r.code, 0, `delete ${file}: ${r.stderr}`);
    },
  };
}

test('waypoint: 90/10 subsets, header match, L7 deny, metrics, no bypass', { skip, timeout: 600_000 }, async (t) => {
  const m = await startMesh(t);
  const st = await m.status();
  const wp = st.pods.find((p) => p.namespace === 'bookinfo' && p.name.startsWith('waypoint-waypoint-'));
  assert.ok(wp, `a waypoint pod runs for the Gateway: ${JSON.stringify(st.pods.map((p) => p.name))}`);
  assert.equal(wp.enrolled, false, 'the waypoint pod itself is not captured');
  assert.ok(wp.ready, 'the waypoint pod is ready (HBONE and metrics listening)');
  const v1 = st.pods.find((p) => p.name.startsWith('reviews-v1-'))!;

  // The first requests may race the agents learning the waypoint's address; wait for one via the waypoint.
  const metricsUrl = `http://${wp.ip}:15020/metrics`;
  assert.deepEqual(st.waypoints, [{ namespace: 'bookinfo', gateway: 'waypoint', pod: wp.name, ip: wp.ip, metrics: metricsUrl }], 'status lists the waypoint and its metrics address');
  await waitFor('a request through the waypoint', async () => {
    await m.load([URL, '5', '1']);
    const text = await fetch(metricsUrl).then((r) => r.text()).catch(() => '');
    return metricSum(text, 'istio_requests_total', { reporter: 'waypoint' }) > 0 ? true : undefined;
  });

  // 2000 requests: the ±3 point bound is 4.5 standard deviations of a fair 90/10 split.
  await t.test('the seed VirtualService splits 90/10 between subsets v1 and v2 (2000 requests, ±3 points)', async () => {
    const n = 2000;
    const r = await m.load([URL, String(n), '8']);
    t.diagnostic(JSON.stringify(r));
    assert.deepEqual({ errors: r.errors, ok: r.statuses['200'] }, { errors: 0, ok: n }, JSON.stringify(r));
    const v2 = r.texts['v2'] ?? 0;
    assert.equal((r.texts['v1'] ?? 0) + v2, n, JSON.stringify(r.texts));
    assert.ok(Math.abs(v2 / n - 0.1) <= 0.03, `v2 share ${(100 * v2) / n}% is within 10±3%`);
  });

  await t.test('a header match sends the marked user to v2 only; others still split', async () => {
    await m.apply(fx('reviews-jason.yaml'));
    const jason = await m.load([URL, '200', '4', 'end-user:jason']);
    assert.deepEqual(jason.texts, { v2: 200 }, JSON.stringify(jason));
    const others = await m.load([URL, '300', '4', 'end-user:alice']);
    assert.ok((others.texts['v1'] ?? 0) > 200, `unmarked users mostly get v1: ${JSON.stringify(others)}`);
  });

  await t.test('an L7 AuthorizationPolicy on the waypoint denies /admin with 403; other paths pass', async () => {
    const denied = await m.load(['http://reviews:9080/admin/x', '10', '2']);
    assert.deepEqual(denied.statuses, { '403': 10 }, JSON.stringify(denied));
    const body = await m.exec(['curl', '-s', '-m', '5', 'http://reviews:9080/admin']);
    assert.match(body.stdout, /RBAC: access denied/i);
    const allowed = await m.load(['http://reviews:9080/ok', '10', '2']);
    assert.deepEqual(allowed.statuses, { '200': 10 }, JSON.stringify(allowed));
  });

  await t.test('the waypoint reports istio_requests_total with reporter=waypoint and response codes on :15020', async () => {
    const text = await fetch(metricsUrl).then((r) => r.text());
    const ok = metricSum(text, 'istio_requests_total', { reporter: 'waypoint', response_code: '200', destination_service_name: 'reviews' });
    const forbidden = metricSum(text, 'istio_requests_total', { reporter: 'waypoint', response_code: '403' });
    assert.ok(ok >= 1500, `200s counted: ${ok}`);
    assert.ok(forbidden >= 10, `403s counted: ${forbidden}`);
    assert.ok(metricSum(text, 'istio_requests_total', { reporter: 'waypoint', destination_version: 'v2' }) > 0, 'destination_version is labelled');
  });

  await t.test('a TCP service bound to the waypoint is carried through it as TCP', async () => {
    const marker = `tcp-through-waypoint-${process.pid}`;
    const r = await m.exec([process.execPath, join(repoRoot, 'dist/test/helpers/netload.js'), 'send', 'echo', '9000', marker]);
    assert.equal((JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { reply?: string }).reply, marker, `${r.stdout} ${r.stderr}`);
    const text = await waitFor('the tcp connection to be counted as closed', async () => {
      const t2 = await fetch(metricsUrl).then((res) => res.text());
      return metricSum(t2, 'istio_tcp_connections_closed_total', { reporter: 'waypoint', destination_service: 'echo.bookinfo.svc.cluster.local' }) >= 1 ? t2 : undefined;
    });
    assert.ok(metricSum(text, 'istio_tcp_received_bytes_total', { reporter: 'waypoint', destination_service: 'echo.bookinfo.svc.cluster.local' }) >= marker.length);
  });

  await t.test('dialing a backend pod directly is refused by the destination agent (only the waypoint may reach it)', async () => {
    const r = await m.exec(['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${v1.ip}:9080/direct`]);
    assert.ok(r.code !== 0 || r.stdout.trim() === '000', `direct call must fail: exit ${r.code}, status ${r.stdout}`);
    const via = await m.load([URL, '5', '1']);
    assert.equal(via.statuses['200'], 5, 'the service through the waypoint still works');
  });

  await t.test('deleting the waypoint Gateway removes its pod; traffic then goes straight to the endpoints', async () => {
    await m.remove(fx('gateway.yaml'));
    const after = await m.status();
    assert.equal(after.pods.some((p) => p.name.startsWith('waypoint-waypoint-')), false, 'the waypoint pod is gone');
    const r = await m.load(['http://reviews:9080/admin/x', '40', '1', '-', 'close']);
    assert.equal(r.statuses['200'], 40, `no L7 policy without the waypoint, and no refusal: ${JSON.stringify(r)}`);
    assert.ok((r.texts['v1'] ?? 0) > 0 && (r.texts['v2'] ?? 0) > 0, `L4 balancing reaches both versions: ${JSON.stringify(r.texts)}`);
  });
});
