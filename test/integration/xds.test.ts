/** Config stream over real gRPC on 127.0.0.1: ConfigServer ⇄ ConfigClient. */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { ConfigServer, type ConfigServerOptions } from '../../src/controller/xds/server.js';
import { buildSnapshot, type Snapshot } from '../../src/controller/xds/snapshot.js';
import { isAmbitError } from '../../src/shared/errors.js';
import { silentLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { TYPE_SERVICE, TYPE_WORKLOAD } from '../../src/shared/resources.js';
import { type Workload } from '../../src/shared/model.js';
import { ConfigClient, type ConfigChange, type ConfigClientOptions, type ConfigState } from '../../src/shared/xds/client.js';
import type { NodeInfo, WorkloadStatus } from '../../src/shared/xds/node.js';
import { CONFIG_SERVICE_PATH, configServiceDefinition, type DeltaConfigRequestMessage } from '../../src/shared/xds/proto.js';
import { authorization, service, workload } from '../unit/xds/fixtures.js';

interface Served {
  server: ConfigServer;
  registry: Registry;
  port: number;
  stop: () => void;
}

async function serve(t: TestContext, opts: Partial<ConfigServerOptions> = {}, port = 0): Promise<Served> {
  const registry = createRegistry();
  const server = new ConfigServer({ log: silentLogger(), registry, debounceMs: 20, ...opts });
  const grpcServer = new grpc.Server();
  server.addToServer(grpcServer);
  const bound = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    server.close();
    grpcServer.forceShutdown();
  };
  t.after(stop);
  return { server, registry, port: bound, stop };
}

interface Connected {
  client: ConfigClient;
  registry: Registry;
  updates: Array<{ state: ConfigState; change: ConfigChange }>;
}

function connect(t: TestContext, port: number, opts: Partial<ConfigClientOptions> = {}): Connected {
  const registry = createRegistry();
  const updates: Connected['updates'] = [];
  const node: NodeInfo = { id: `agent~node-1~${process.pid}`, nodeName: 'node-1', role: 'agent' };
  const client = new ConfigClient({
    address: `127.0.0.1:${port}`,
    credentials: grpc.credentials.createInsecure(),
    node,
    onUpdate: (state, change) => {
      updates.push({ state, change });
    },
    log: silentLogger(),
    registry,
    backoff: { baseMs: 20, capMs: 200 },
    ...opts,
  });
  t.after(() => client.close());
  client.start();
  return { client, registry, updates };
}

/** Polls `cond` every 10ms; fails with `what` after `timeoutMs` (bounded in count and time). */
async function eventually(what: string, cond: () => boolean, timeoutMs = 8000): Promise<void> {
  for (let i = 0; i < timeoutMs / 10; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for: ${what}`);
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  const data = await m.get();
  const hit = data.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val) && !('le' in v.labels));
  return hit?.value ?? 0;
}

function baseSnapshot(): Snapshot {
  return buildSnapshot({ workloads: [workload('web-1'), workload('web-2', 'default', { addresses: ['10.0.1.8'] })], services: [service()], authorizations: [authorization()] });
}

test('subscribe, receive, ACK recorded in subscribers(), waitForSync resolves', async (t) => {
  const s = await serve(t);
  s.server.setSnapshot(baseSnapshot());
  const c = connect(t, s.port);
  await c.client.whenSynced();
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });

  assert.deepEqual([...c.client.state.workloads.keys()].sort(), ['cluster1//v1/Pod/default/web-1', 'cluster1//v1/Pod/default/web-2']);
  assert.equal(c.client.state.services.get('default/web.default.svc.cluster.local')?.vips[0], '10.96.0.10');
  assert.equal(c.client.state.authorizations.size, 1);
  assert.throws(() => (c.client.state.workloads.get('cluster1//v1/Pod/default/web-1') as Workload).addresses.push('x'), 'state is immutable');

  const subs = s.server.subscribers();
  assert.equal(subs.length, 1);
  const sub = subs[0]!;
  assert.equal(sub.role, 'agent');
  assert.equal(sub.nodeName, 'node-1');
  assert.equal(sub.types.length, 3);
  for (const ts of sub.types) {
    assert.equal(ts.pending, undefined, `${ts.typeUrl} has no pending push`);
    assert.equal(ts.ackedVersion, ts.targetVersion, `${ts.typeUrl} acked the current version`);
    assert.equal(ts.ackedVersion, c.client.state.systemVersions.get(ts.typeUrl), 'client and server agree on the version');
  }
  assert.equal(sub.types.find((x) => x.typeUrl === TYPE_WORKLOAD)?.resourceCount, 2);
  assert.equal(await metricValue(s.registry, 'ambit_config_subscribers', { role: 'agent' }), 1);
  assert.equal(await metricValue(s.registry, 'ambit_config_pushes_total', { type: 'workload' }), 1);
  // The same figures under istiod's and ztunnel's names (Istio's dashboards read these).
  assert.equal(await metricValue(s.registry, 'pilot_xds_pushes', { type: 'workload' }), 1);
  assert.equal(await metricValue(s.registry, 'pilot_xds'), 1);
  assert.equal(await metricValue(c.registry, 'istio_xds_message_total', { url: TYPE_WORKLOAD }), 1);
  const firstBytes = await metricValue(c.registry, 'istio_xds_message_bytes_total', { url: TYPE_WORKLOAD });
  const bodies = [...c.client.state.workloads.values()].reduce((n, w) => n + JSON.stringify(w).length, 0);
  assert.ok(firstBytes > bodies / 2, `the first workload response's bytes are counted (${firstBytes} for ${bodies} bytes of workloads)`);
  assert.equal(await metricValue(c.registry, 'ambit_config_connected'), 1);
  assert.equal(await metricValue(c.registry, 'ambit_config_synced', { type: 'service' }), 1);

  // A change is pushed as a delta and waitForSync waits for its ACK.
  s.server.setSnapshot(buildSnapshot({ workloads: [workload('web-1')], services: [service()], authorizations: [authorization()] }));
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
  assert.deepEqual([...c.client.state.workloads.keys()], ['cluster1//v1/Pod/default/web-1']);
  const last = c.updates.at(-1)!.change;
  assert.deepEqual({ type: last.typeUrl, updated: last.updated, removed: last.removed }, { type: TYPE_WORKLOAD, updated: [], removed: ['cluster1//v1/Pod/default/web-2'] });
  const deltaBytes = (await metricValue(c.registry, 'istio_xds_message_bytes_total', { url: TYPE_WORKLOAD })) - firstBytes;
  assert.ok(deltaBytes > 0 && deltaBytes < firstBytes / 2, `a removal is a small delta on the wire (${deltaBytes} bytes after ${firstBytes})`);
  const histogram = await s.registry.getSingleMetric('ambit_config_push_latency_seconds')!.get();
  assert.equal(histogram.values.find((v) => (v as { metricName?: string }).metricName === 'ambit_config_push_latency_seconds_count')?.value, 1, 'notify → ACK latency observed once');
});

test('first responses in flight are bounded by maxInitialSyncBytes: later subscriptions wait for an ACK, then all sync', async (t) => {
  // One byte: one first response at a time (one is always let through).
  const s = await serve(t, { limits: { maxInitialSyncBytes: 1 } });
  s.server.setSnapshot(baseSnapshot());
  // The first client holds its first update unanswered until released.
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const first = connect(t, s.port, { node: { id: 'agent~node-a', nodeName: 'node-a', role: 'agent' }, onUpdate: () => held });
  await eventually('the first client received a response', () => s.server.subscribers().some((x) => x.types.some((ts) => ts.pending !== undefined)));
  const others = [connect(t, s.port, { node: { id: 'agent~node-b', nodeName: 'node-b', role: 'agent' } }), connect(t, s.port, { node: { id: 'agent~node-c', nodeName: 'node-c', role: 'agent' } })];
  await eventually('three subscribers', () => s.server.subscribers().length === 3 && s.server.subscribers().every((x) => x.types.length === 3));
  // A change meanwhile does not push to the waiting subscriptions either.
  s.server.setSnapshot(buildSnapshot({ workloads: [workload('web-1')], services: [service()], authorizations: [authorization()] }));
  await new Promise((r) => setTimeout(r, 200));
  const inFlight = s.server.subscribers().flatMap((x) => x.types.filter((ts) => ts.pending !== undefined));
  assert.equal(inFlight.length, 1, 'one first response in flight');
  assert.deepEqual(others.map((o) => o.updates.length), [0, 0], 'the other subscribers wait');
  release();
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 3 });
  for (const c of [first, ...others]) assert.deepEqual([...c.client.state.workloads.keys()], ['cluster1//v1/Pod/default/web-1'], 'each holds the current state');
});

test('an invalid resource is NACKed: client keeps the last good config, server records the NACK', async (t) => {
  // The server-side check is replaced so the invalid resource reaches the wire (version skew case).
  const s = await serve(t, { validate: () => [] });
  s.server.setSnapshot(baseSnapshot());
  const c = connect(t, s.port);
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
  const good = c.client.state;

  const bad = workload('web-3', 'default', { addresses: ['10.0.1.999'] });
  s.server.setSnapshot(buildSnapshot({ workloads: [workload('web-1'), bad], services: [service('api')], authorizations: [authorization()] }));
  await assert.rejects(s.server.waitForSync(() => true, 8000, { minSubscribers: 1 }), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_XDS_NACK') && /10\.0\.1\.999/.test(e.message));

  assert.equal(c.client.state.workloads, good.workloads, 'workloads are the last good ones');
  assert.ok(c.client.state.workloads.has('cluster1//v1/Pod/default/web-2'), 'nothing of the rejected response was applied');
  const sub = s.server.subscribers()[0]!;
  const wts = sub.types.find((x) => x.typeUrl === TYPE_WORKLOAD)!;
  assert.equal(wts.nackCount, 1);
  assert.match(wts.lastNack?.message ?? '', /workload\[cluster1\/\/v1\/Pod\/default\/web-3\]\.addresses\[0\].*10\.0\.1\.999/);
  assert.notEqual(wts.ackedVersion, wts.targetVersion);
  assert.equal(await metricValue(s.registry, 'ambit_config_nacks_total', { type: 'workload' }), 1);
  assert.equal(await metricValue(c.registry, 'ambit_config_rejected_total', { type: 'workload' }), 1);
  assert.equal(await metricValue(s.registry, 'pilot_total_xds_rejects', { type: 'workload' }), 1);
  assert.equal(await metricValue(c.registry, 'ambit_config_synced', { type: 'workload' }), 0);

  // Other types in the same push were valid and applied.
  await eventually('service api applied', () => c.client.state.services.has('default/api.default.svc.cluster.local'));

  // Fixing the resource syncs again.
  s.server.setSnapshot(buildSnapshot({ workloads: [workload('web-1'), workload('web-3')], services: [service('api')], authorizations: [authorization()] }));
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
  assert.deepEqual([...c.client.state.workloads.keys()].sort(), ['cluster1//v1/Pod/default/web-1', 'cluster1//v1/Pod/default/web-3']);
});

test('the server does not send a resource failing validation; the last good version stays', async (t) => {
  const s = await serve(t);
  s.server.setSnapshot(baseSnapshot());
  const c = connect(t, s.port);
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
  const before = c.client.state.versions.get(TYPE_WORKLOAD)!.get('cluster1//v1/Pod/default/web-2');

  const broken = workload('web-2', 'default', { addresses: ['not-an-ip'] });
  const fresh = workload('web-4');
  s.server.setSnapshot(buildSnapshot({ workloads: [workload('web-1'), broken, fresh], services: [service()], authorizations: [authorization()] }));
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
  assert.equal(c.client.state.workloads.get('cluster1//v1/Pod/default/web-2')?.addresses[0], '10.0.1.8');
  assert.equal(c.client.state.versions.get(TYPE_WORKLOAD)!.get('cluster1//v1/Pod/default/web-2'), before);
  assert.ok(c.client.state.workloads.has(fresh.uid), 'valid changes still flow');
  assert.equal(await metricValue(s.registry, 'ambit_config_invalid_resources_total', { type: 'workload' }), 1);
  assert.equal(await metricValue(s.registry, 'ambit_config_nacks_total', { type: 'workload' }), 0);
});

test('onUpdate throwing NACKs the response and keeps the previous state', async (t) => {
  const s = await serve(t);
  s.server.setSnapshot(baseSnapshot());
  let fail = false;
  const c = connect(t, s.port, {
    onUpdate: () => {
      if (fail) throw new Error('capture map full');
    },
  });
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
  const good = c.client.state;
  fail = true;
  s.server.setSnapshot(buildSnapshot({ workloads: [workload('web-1')], services: [service()], authorizations: [authorization()] }));
  await assert.rejects(s.server.waitForSync(() => true, 8000, { minSubscribers: 1 }), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_XDS_NACK') && /capture map full/.test(e.message));
  assert.equal(c.client.state, good);
  assert.equal(c.client.state.workloads.size, 2);

  // The client retries the failed apply by itself (resubscribe after backoff), without a new push.
  fail = false;
  await eventually('failed apply retried', () => c.client.state.workloads.size === 1);
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
});

test('debounce coalesces rapid notify() calls into one push', async (t) => {
  const s = await serve(t, { debounceMs: 50 });
  let generation = 0;
  s.server.setSnapshotProvider(() => buildSnapshot({ workloads: [workload('web-1', 'default', { labels: { gen: String(generation) } })] }));
  const c = connect(t, s.port, { types: [TYPE_WORKLOAD] });
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
  const pushesBefore = await metricValue(s.registry, 'ambit_config_pushes_total', { type: 'workload' });
  const updatesBefore = c.updates.length;

  for (let i = 0; i < 10; i++) {
    generation++;
    s.server.notify();
  }
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
  assert.equal(await metricValue(s.registry, 'ambit_config_pushes_total', { type: 'workload' }), pushesBefore + 1, 'ten notify() calls, one push');
  assert.equal(c.updates.length, updatesBefore + 1);
  assert.equal(c.client.state.workloads.get('cluster1//v1/Pod/default/web-1')?.labels['gen'], '10', 'the push carries the latest state');
});

test('server restart: client reconnects with backoff and resyncs through initial_resource_versions', async (t) => {
  const s1 = await serve(t);
  s1.server.setSnapshot(baseSnapshot());
  const c = connect(t, s1.port);
  await s1.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
  const webOneVersion = c.client.state.versions.get(TYPE_WORKLOAD)!.get('cluster1//v1/Pod/default/web-1');

  s1.stop();
  await eventually('client notices the stream is down', () => !c.client.isConnected);
  assert.equal(c.client.state.workloads.size, 2, 'the last good config stays while disconnected');

  const s2 = await serve(t, {}, s1.port);
  s2.server.setSnapshot(buildSnapshot({ workloads: [workload('web-1')], services: [service('api')], authorizations: [] }));
  await s2.server.waitForSync(() => true, 8000, { minSubscribers: 1 });

  assert.deepEqual([...c.client.state.workloads.keys()], ['cluster1//v1/Pod/default/web-1']);
  assert.deepEqual([...c.client.state.services.keys()], ['default/api.default.svc.cluster.local']);
  assert.equal(c.client.state.authorizations.size, 0, 'removed resources are removed');
  assert.equal(c.client.state.versions.get(TYPE_WORKLOAD)!.get('cluster1//v1/Pod/default/web-1'), webOneVersion);
  const resync = c.updates.filter((u) => u.change.typeUrl === TYPE_WORKLOAD).at(-1)!.change;
  assert.deepEqual(resync.updated, [], 'an unchanged resource is not resent after reconnect');
  assert.deepEqual(resync.removed, ['cluster1//v1/Pod/default/web-2']);
  assert.ok((await metricValue(c.registry, 'ambit_config_reconnects_total')) >= 1);
  const terminations = (await c.registry.getSingleMetric('istio_xds_connection_terminations_total')!.get()).values;
  assert.ok(terminations.reduce((n, v) => n + v.value, 0) >= 1, `the ended stream is counted as a termination: ${JSON.stringify(terminations)}`);
  assert.equal(c.client.isConnected, true);
});

test('status reported by the client is visible in subscribers()', async (t) => {
  const s = await serve(t);
  s.server.setSnapshot(baseSnapshot());
  let statuses: WorkloadStatus[] = [{ uid: 'cluster1//v1/Pod/default/web-1', captured: true, mode: 'ambient', message: '' }];
  const c = connect(t, s.port, { statusProvider: () => statuses });
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
  assert.deepEqual(s.server.subscribers()[0]!.workloadStatus, statuses, 'status rides on the ACKs');

  statuses = [
    { uid: 'cluster1//v1/Pod/default/web-1', captured: true, mode: 'ambient', message: '' },
    { uid: 'cluster1//v1/Pod/default/web-2', captured: false, mode: 'failed', message: 'cgroup not found' },
  ];
  c.client.reportStatus();
  await eventually('server sees the new status', () => s.server.subscribers()[0]?.workloadStatus.length === 2);
  assert.deepEqual(s.server.subscribers()[0]!.workloadStatus, statuses);
  const sub = s.server.subscribers()[0]!;
  assert.ok(sub.types.every((x) => x.nackCount === 0 && x.ackedVersion === x.targetVersion), 'a status report is neither a NACK nor a new subscription');
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 1 });
});

test('per-subscriber snapshots: the provider scopes by node', async (t) => {
  const s = await serve(t);
  const all = [workload('a-1', 'default', { node: 'node-a' }), workload('b-1', 'default', { node: 'node-b', addresses: ['10.0.2.1'] })];
  s.server.setSnapshotProvider((node) => buildSnapshot({ workloads: all.filter((w) => w.node === node.nodeName) }));
  const a = connect(t, s.port, { node: { id: 'agent~a', nodeName: 'node-a', role: 'agent' }, types: [TYPE_WORKLOAD] });
  const b = connect(t, s.port, { node: { id: 'agent~b', nodeName: 'node-b', role: 'agent' }, types: [TYPE_WORKLOAD] });
  await s.server.waitForSync(() => true, 8000, { minSubscribers: 2 });
  assert.deepEqual([...a.client.state.workloads.keys()], ['cluster1//v1/Pod/default/a-1']);
  assert.deepEqual([...b.client.state.workloads.keys()], ['cluster1//v1/Pod/default/b-1']);
  assert.equal(await metricValue(s.registry, 'ambit_config_subscribers', { role: 'agent' }), 2);
});

test('waitForSync times out when too few subscribers are connected', async (t) => {
  const s = await serve(t);
  s.server.setSnapshot(baseSnapshot());
  await assert.rejects(s.server.waitForSync(() => true, 50, { minSubscribers: 1 }), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_XDS_SYNC_TIMEOUT'));
});

/** Opens a raw stream, sends `messages`, resolves with the final status. */
function rawStream(port: number, messages: Buffer[]): Promise<grpc.StatusObject> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(CONFIG_SERVICE_PATH, (b) => b, (b) => b, new grpc.Metadata());
  return new Promise((resolve) => {
    call.on('data', () => {});
    call.on('error', () => {});
    call.on('status', (st) => {
      client.close();
      resolve(st);
    });
    for (const m of messages) call.write(m);
    setTimeout(() => call.cancel(), 3000).unref();
  });
}

function encodeRequest(r: Partial<DeltaConfigRequestMessage>): Buffer {
  const ser = configServiceDefinition()['DeltaConfig']!.requestSerialize as (v: unknown) => Buffer;
  return ser(r);
}

test('bad subscriber input ends that stream with an error and never hurts the server', async (t) => {
  const s = await serve(t);
  s.server.setSnapshot(baseSnapshot());
  const node = { id: 'agent~bad', nodeName: 'n', role: 'ROLE_AGENT', metadata: {} };

  const garbage = await rawStream(s.port, [Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])]);
  assert.notEqual(garbage.code, grpc.status.OK, 'undecodable bytes fail the stream');

  const noNode = await rawStream(s.port, [encodeRequest({ typeUrl: TYPE_WORKLOAD })]);
  assert.equal(noNode.code, grpc.status.INVALID_ARGUMENT);
  assert.match(noNode.details, /node\.id/);

  const unknownType = await rawStream(s.port, [encodeRequest({ node: node as never, typeUrl: 'type.example/Nope' })]);
  assert.equal(unknownType.code, grpc.status.INVALID_ARGUMENT);
  assert.match(unknownType.details, /type\.example\/Nope/);

  const bogusNack = await rawStream(s.port, [
    encodeRequest({ node: node as never, typeUrl: TYPE_SERVICE }),
    encodeRequest({ typeUrl: TYPE_SERVICE, responseNonce: 'no-such-nonce', errorDetail: { code: 3, message: 'x' } }),
    encodeRequest({ typeUrl: 'bogus' }),
  ]);
  assert.equal(bogusNack.code, grpc.status.INVALID_ARGUMENT);

  // The server still serves a well-behaved client.
  const c = connect(t, s.port);
  await s.server.waitForSync((x) => x.nodeId !== 'agent~bad', 8000, { minSubscribers: 1 });
  assert.equal(c.client.state.workloads.size, 2);
  assert.equal(s.server.subscribers().length, 1, 'failed streams are gone from subscribers()');
});
