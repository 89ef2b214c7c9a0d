/**
 * Controller admin over real sockets on 127.0.0.1: a Controller with its admin server, real
 * ConfigClients over TLS (trusting the controller's root), /debug/syncz, /metrics, /ready,
 * /debug/config_dump and `ambit proxy-status` reading them; a NACKing client shows NACKED.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { mayReadDebug, type SynczReport } from '../../src/controller/admin.js';
import { Controller } from '../../src/controller/controller.js';
import { runProxyStatus } from '../../src/cli/proxy-status.js';
import { isAmbitError } from '../../src/shared/errors.js';
import { silentLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { TYPE_SERVICE } from '../../src/shared/resources.js';
import { ConfigClient } from '../../src/shared/xds/client.js';
import type { WorkloadStatus } from '../../src/shared/xds/node.js';
import { namespace, pod, service } from '../unit/translate/helpers.js';

const TOKENS = { node1: 'n1-token-0123456789abcdef', node2: 'n2-token-0123456789abcdef' };

async function startController(t: TestContext, adminToken?: string): Promise<{ controller: Controller; adminUrl: string }> {
  const stateDir = await mkdtemp(join(tmpdir(), `ambit-ctl${process.pid % 10000}-`));
  t.after(() => rm(stateDir, { recursive: true, force: true }));
  const controller = await Controller.start({
    stateDir,
    host: '127.0.0.1',
    port: 0,
    trustDomain: 'cluster.local',
    auth: {
      nodeTokens: new Map([
        [TOKENS.node1, 'node-1'],
        [TOKENS.node2, 'node-2'],
      ]),
    },
    log: silentLogger(),
    debounceMs: 10,
    admin: { host: '127.0.0.1', port: 0 },
    ...(adminToken !== undefined ? { adminToken } : {}),
  });
  t.after(() => controller.close());
  assert.ok(controller.adminServer, 'admin server started');
  controller.store.apply([
    namespace('demo', { 'istio.io/dataplane-mode': 'ambient' }),
    pod('web', { node: 'node-1', ip: '10.0.0.1' }),
    pod('db', { node: 'node-2', ip: '10.0.0.2' }),
    service('web'),
  ]);
  return { controller, adminUrl: controller.adminServer.url };
}

function connect(
  t: TestContext,
  controller: Controller,
  nodeName: string,
  token: string,
  opts: { onUpdate?: ConstructorParameters<typeof ConfigClient>[0]['onUpdate']; status?: WorkloadStatus[] } = {},
): ConfigClient {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  const client = new ConfigClient({
    address: controller.address,
    credentials: grpc.credentials.createSsl(Buffer.from(controller.ca.rootCertPem)),
    callMetadata: md,
    node: { id: `agent~${nodeName}~${process.pid}`, nodeName, role: 'agent' },
    onUpdate: opts.onUpdate ?? (() => undefined),
    statusProvider: () => opts.status ?? [],
    log: silentLogger(),
    registry: createRegistry(),
    // A failed apply is retried only after >= 30s: the NACK stays the last word during the test.
    backoff: { baseMs: 60_000, capMs: 60_000 },
    random: () => 0.5,
  });
  t.after(() => client.close());
  client.start();
  return client;
}

async function getText(url: string): Promise<{ status: number; body: string; type: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') ?? '' };
}

async function syncz(adminUrl: string): Promise<SynczReport> {
  return JSON.parse((await getText(`${adminUrl}/debug/syncz`)).body) as SynczReport;
}

/** Polls `cond` every 20ms (at most `timeoutMs`). */
async function eventually<T>(what: string, get: () => Promise<T>, cond: (v: T) => boolean, timeoutMs = 8000): Promise<T> {
  let last: T | undefined;
  for (let i = 0; i < timeoutMs / 20; i++) {
    last = await get();
    if (cond(last)) return last;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

function captureIo(): { io: { out: (s: string) => void; err: (s: string) => void }; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return { io: { out: (s) => void (out += s), err: (s) => void (err += s) }, out: () => out, err: () => err };
}

test('a TLS config client shows SYNCED in /debug/syncz and in ambit proxy-status', async (t) => {
  const { controller, adminUrl } = await startController(t);
  const status: WorkloadStatus[] = [
    { uid: 'w1', captured: true, mode: 'ambient', message: '' },
    { uid: 'w2', captured: false, mode: 'none', message: 'namespace not enrolled' },
  ];
  const client = connect(t, controller, 'node-1', TOKENS.node1, { status });
  await client.whenSynced();
  await controller.waitForSync(1, 8000);

  const report = await eventually('node-1 synced with status', () => syncz(adminUrl), (r) =>
    r.subscribers.length === 1 && r.subscribers[0]!.capture.total === 2 && r.subscribers[0]!.types.every((x) => x.state === 'SYNCED'));
  const sub = report.subscribers[0]!;
  assert.equal(sub.name, 'node-1/agent');
  assert.equal(report.controller, controller.address);
  assert.deepEqual(sub.types.map((x) => x.type), ['authorization', 'service', 'workload']);
  for (const ty of sub.types) {
    assert.equal(ty.ackedVersion, ty.targetVersion);
    assert.equal(ty.pending, null);
    assert.equal(ty.lastNack, null);
  }
  assert.equal(sub.types.find((x) => x.type === 'workload')!.resources, 2, 'both pods are workloads the agent holds');
  assert.deepEqual(sub.capture, { total: 2, captured: 1, modes: { ambient: 1, none: 1 }, problems: [{ uid: 'w2', mode: 'none', message: 'namespace not enrolled' }] });

  const table = captureIo();
  assert.equal(await runProxyStatus(['--controller', adminUrl], table.io), 0);
  const lines = table.out().trimEnd().split('\n');
  assert.match(lines[0]!, /^NAME\s+WORKLOAD\s+SERVICE\s+AUTHORIZATION\s+CAPTURED$/);
  assert.equal(lines.length, 2);
  const version = sub.types.find((x) => x.type === 'workload')!.ackedVersion!.slice(0, 8);
  assert.match(lines[1]!, new RegExp(`^node-1/agent\\s+SYNCED \\(${version}\\)\\s+SYNCED \\(\\w+\\)\\s+SYNCED \\(\\w+\\)\\s+1/2 \\(ambient=1, none=1\\)$`));

  const json = captureIo();
  assert.equal(await runProxyStatus(['--controller', adminUrl, '-o', 'json'], json.io), 0);
  const parsed = JSON.parse(json.out()) as SynczReport;
  assert.equal(parsed.subscribers[0]?.name, 'node-1/agent');
  assert.equal(parsed.subscribers[0]?.types.length, 3);
});

test('a client that rejects an update shows NACKED with its message', async (t) => {
  const { controller, adminUrl } = await startController(t);
  connect(t, controller, 'node-1', TOKENS.node1);
  connect(t, controller, 'node-2', TOKENS.node2, {
    onUpdate: (_state, change) => {
      if (change.typeUrl === TYPE_SERVICE) throw new Error('service table full on test node');
    },
  });
  const report = await eventually('node-2 NACKED service', () => syncz(adminUrl), (r) =>
    r.subscribers.some((s) => s.nodeName === 'node-2' && s.types.some((x) => x.type === 'service' && x.state === 'NACKED')) &&
    r.subscribers.some((s) => s.nodeName === 'node-1' && s.types.length === 3 && s.types.every((x) => x.state === 'SYNCED')));
  const n2 = report.subscribers.find((s) => s.nodeName === 'node-2')!;
  const svc = n2.types.find((x) => x.type === 'service')!;
  assert.match(svc.lastNack?.message ?? '', /service table full on test node/);
  assert.equal(svc.nackCount, 1);
  assert.equal(svc.ackedVersion, null);
  assert.equal(n2.types.find((x) => x.type === 'workload')!.state, 'SYNCED', 'other types are unaffected');

  const out = captureIo();
  assert.equal(await runProxyStatus(['--controller', adminUrl], out.io), 0);
  const rows = out.out().trimEnd().split('\n');
  assert.equal(rows.length, 6, out.out());
  assert.match(rows[1]!, /^node-1\/agent\s+SYNCED/);
  assert.match(rows[2]!, /^node-2\/agent\s+SYNCED \(\w+\)\s+NACKED: applying service config version \w{8} failed: serv[^.]*\.\.\.\s+SYNCED \(\w+\)\s+0\/0$/);
  assert.equal(rows[3], '');
  assert.match(rows[4]!, /^Rejected config/);
  assert.match(rows[5]!, /^  node-2\/agent service: applying service config version \w{8} failed: service table full on test node$/);

  // The controller's wait reports the same rejection.
  await assert.rejects(controller.waitForSync(2, 3000), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_XDS_NACK') && /service table full/.test((e as Error).message));
});

test('admin serves /ready, /metrics with controller gauges, /debug/config_dump without key material, 404 and 405', async (t) => {
  const { controller, adminUrl } = await startController(t);
  const ready = await getText(`${adminUrl}/ready`);
  assert.equal(ready.status, 200);

  const metrics = await getText(`${adminUrl}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.type, /text\/plain/);
  assert.match(metrics.body, /^ambit_controller_uptime_seconds \d+(\.\d+)?$/m);
  assert.match(metrics.body, /^ambit_config_objects\{kind="Pod"\} 2$/m);
  assert.match(metrics.body, /^ambit_config_objects\{kind="Service"\} 1$/m);
  assert.match(metrics.body, /^ambit_config_objects\{kind="AuthorizationPolicy"\} 0$/m);
  assert.match(metrics.body, /^# TYPE ambit_config_subscribers gauge$/m, 'config server metrics share the registry');
  assert.match(metrics.body, /^# TYPE ambit_ca_/m, 'CA metrics share the registry');

  const dump = await getText(`${adminUrl}/debug/config_dump`);
  assert.equal(dump.status, 200);
  const body = JSON.parse(dump.body) as { workloads: Array<{ name: string }>; services: Array<{ name: string }>; authorizations: unknown[] };
  assert.deepEqual(body.workloads.map((w) => w.name).sort(), ['db', 'web']);
  assert.deepEqual(body.services.map((s) => s.name), ['web']);
  assert.ok(Array.isArray(body.authorizations));
  assert.ok(!/PRIVATE KEY|BEGIN CERTIFICATE/.test(dump.body), 'no key or certificate material');

  assert.equal((await getText(`${adminUrl}/nope`)).status, 404);
  const post = await fetch(`${adminUrl}/ready`, { method: 'POST', signal: AbortSignal.timeout(5000) });
  await post.text();
  assert.equal(post.status, 405);

  const empty = captureIo();
  assert.equal(await runProxyStatus(['--controller', adminUrl], empty.io), 0);
  assert.match(empty.out(), new RegExp(`no agents, waypoints or gateways are connected to the controller at ${controller.address}`));
});

test('proxy-status reports an unreachable controller and bad usage with their codes', async () => {
  const io = captureIo();
  // Port 1 on loopback: nothing listens there.
  await assert.rejects(runProxyStatus(['--controller', 'http://127.0.0.1:1'], io.io, {}), (e: unknown) =>
    isAmbitError(e, 'AMBIT_ERR_ADMIN_UNAVAILABLE') && /http:\/\/127\.0\.0\.1:1\/debug\/syncz/.test((e as Error).message));
  await assert.rejects(runProxyStatus(['-o', 'yaml'], io.io), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_CLI_USAGE'));
  await assert.rejects(runProxyStatus(['--bogus'], io.io), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_CLI_USAGE'));
});

test('with an admin token, /debug/* needs it while /metrics and /ready stay open; proxy-status sends it', async (t) => {
  const adminToken = 'admin-token-0123456789abcdef';
  const { controller, adminUrl } = await startController(t, adminToken);
  const get = (path: string, token?: string) =>
    fetch(`${adminUrl}${path}`, { signal: AbortSignal.timeout(5000), ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  for (const path of ['/debug/syncz', '/debug/config_dump']) {
    const none = await get(path);
    assert.equal(none.status, 401, `${path} without a token`);
    assert.doesNotMatch(await none.text(), /spiffe|node-1/, 'a refusal reveals nothing of the config');
    assert.equal((await get(path, 'wrong-token-0123456789abcdef')).status, 401, `${path} with a wrong token`);
    assert.equal((await get(path, adminToken)).status, 200, `${path} with the admin token`);
  }
  assert.equal((await get('/metrics')).status, 200);
  assert.equal((await get('/ready')).status, 200);

  connect(t, controller, 'node-1', TOKENS.node1);
  await controller.waitForSync(1, 8000);
  const dir = await mkdtemp(join(tmpdir(), `ambit-adm${process.pid % 10000}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, `${adminToken}\n`, { mode: 0o600 });
  const out = captureIo();
  assert.equal(await runProxyStatus(['--controller', adminUrl, '--token-file', tokenFile], out.io), 0);
  assert.match(out.out(), /node-1\/agent/);
  const missing = join(dir, 'no-such-file');
  await assert.rejects(runProxyStatus(['--controller', adminUrl, '--token-file', missing], captureIo().io), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_CLI_USAGE'));
  await assert.rejects(
    runProxyStatus(['--controller', adminUrl], captureIo().io, { defaultTokenFile: missing }),
    (e: unknown) => isAmbitError(e, 'AMBIT_ERR_ADMIN_UNAVAILABLE') && /--token-file/.test((e as Error).message),
    'without the token the CLI says how to pass it',
  );
});

test('without an admin token, /debug/* answers only loopback peers', () => {
  const req = (remoteAddress: string, authorization?: string) => ({ socket: { remoteAddress }, headers: authorization ? { authorization } : {} }) as unknown as Parameters<typeof mayReadDebug>[0];
  assert.equal(mayReadDebug(req('127.0.0.1'), undefined), true);
  assert.equal(mayReadDebug(req('::1'), undefined), true);
  assert.equal(mayReadDebug(req('::ffff:127.0.0.1'), undefined), true);
  assert.equal(mayReadDebug(req('10.244.1.5', 'Bearer anything-at-all-0123456'), undefined), false, 'a pod on the bridge is refused');
  assert.equal(mayReadDebug(req('10.244.1.5', 'Bearer right-token-0123456789'), 'right-token-0123456789'), true);
  assert.equal(mayReadDebug(req('127.0.0.1'), 'right-token-0123456789'), false, 'with a token configured, loopback needs it too');
});
