/**
 * Config stream authentication and authorization over real gRPC on 127.0.0.1 (issue 7, items 3
 * and 4): a stream is authenticated from its bearer token before it is registered, authorized from
 * that token alone (never from the node it claims), never displaces another caller's stream, and
 * streams that do not subscribe are bounded in number and in time.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ConfigServer, type ConfigServerOptions } from '../../src/controller/xds/server.js';
import { buildSnapshot } from '../../src/controller/xds/snapshot.js';
import { refuseSubscription, StaticTokenAuthenticator, type AccessView, type Caller, type PodRecord } from '../../src/controller/callers.js';
import { silentLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { TYPE_GATEWAY_LISTENER, TYPE_WORKLOAD } from '../../src/shared/resources.js';
import { encodeDeltaConfigRequest, decodeDeltaConfigResponse, type DeltaConfigRequestInput } from '../../src/shared/api/wire.js';
import { CONFIG_SERVICE_PATH } from '../../src/shared/xds/proto.js';
import { workload } from '../unit/xds/fixtures.js';

const TOKENS = { node1: 'node1-token-0123456789abcdef', node2: 'node2-token-0123456789abcdef', gateway: 'gateway-token-0123456789abcdef' };
const pods: PodRecord[] = [
  { namespace: 'istio-system', name: 'gw-0', serviceAccount: 'istio-ingressgateway', node: 'node-1', labels: { istio: 'ingressgateway' } },
];
const view: AccessView = {
  trustDomain: 'cluster.local',
  podsOnNode: (node) => pods.filter((p) => p.node === node),
  pod: (ns, name) => pods.find((p) => p.namespace === ns && p.name === name),
};

async function serve(t: TestContext, opts: Partial<ConfigServerOptions> = {}) {
  const registry = createRegistry();
  const auth = new StaticTokenAuthenticator({ [TOKENS.node1]: 'node-1', [TOKENS.node2]: 'node-2' });
  auth.set(TOKENS.gateway, { kind: 'pod', namespace: 'istio-system', pod: 'gw-0', serviceAccount: 'istio-ingressgateway' });
  const server = new ConfigServer({
    log: silentLogger(),
    registry,
    debounceMs: 10,
    authenticate: (token) => auth.authenticate(token),
    authorize: (caller, node) => refuseSubscription(caller, node, view),
    ...opts,
  });
  // A secret every gateway snapshot would carry: the test checks it never reaches a refused stream.
  server.setSnapshot(buildSnapshot({ workloads: [workload('web')] }));
  const grpcServer = new grpc.Server();
  server.addToServer(grpcServer);
  const port = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  t.after(() => {
    server.close();
    grpcServer.forceShutdown();
  });
  const refused = async (reason: string): Promise<number> =>
    (await registry.getSingleMetric('ambit_config_streams_refused_total')!.get()).values.find((v) => v.labels['reason'] === reason)?.value ?? 0;
  return { server, port, refused };
}

interface Stream {
  /** Resolves with the final status of the stream. */
  status: Promise<grpc.StatusObject>;
  /** Responses received (type URLs). */
  received: string[];
  write(m: DeltaConfigRequestInput): void;
  cancel(): void;
}

function open(t: TestContext, port: number, token: string | undefined): Stream {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(CONFIG_SERVICE_PATH, (b) => b, (b) => b, md);
  const received: string[] = [];
  call.on('data', (b: Buffer) => received.push(decodeDeltaConfigResponse(b).typeUrl));
  call.on('error', () => undefined);
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  void status.then(() => client.close());
  t.after(() => {
    call.cancel();
    client.close();
  });
  return { status, received, write: (m) => call.write(encodeDeltaConfigRequest(m)), cancel: () => call.cancel() };
}

const subscribeAs = (node: { id: string; nodeName: string; role: string; metadata?: Record<string, string> }, typeUrl = TYPE_WORKLOAD): DeltaConfigRequestInput => ({
  node: { ...node, role: `ROLE_${node.role.toUpperCase()}` },
  typeUrl,
});

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 8000): Promise<void> {
  for (let i = 0; i < timeoutMs / 20; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('a stream without a valid token is refused before it is registered', async (t) => {
  const { server, port, refused } = await serve(t);
  for (const token of [undefined, 'not-a-known-token-0123456789']) {
    const s = open(t, port, token);
    s.write(subscribeAs({ id: 'agent~node-1', nodeName: 'node-1', role: 'agent' }));
    const st = await s.status;
    assert.equal(st.code, grpc.status.UNAUTHENTICATED, `token ${token ?? '(none)'}: ${st.details}`);
    assert.deepEqual(s.received, [], 'nothing was sent to an unauthenticated stream');
  }
  assert.equal(await refused('unauthenticated'), 2);
  assert.equal(server.subscribers().length, 0);
});

test("a node token cannot subscribe as a gateway pod and receive that gateway's keys", async (t) => {
  const { server, port, refused } = await serve(t);
  const s = open(t, port, TOKENS.node1);
  s.write(subscribeAs({ id: 'gateway~x', nodeName: 'node-1', role: 'gateway', metadata: { pod: 'istio-system/gw-0' } }, TYPE_GATEWAY_LISTENER));
  const st = await s.status;
  assert.equal(st.code, grpc.status.PERMISSION_DENIED, st.details);
  assert.match(st.details, /node\/node-1 may not subscribe as a gateway/);
  assert.deepEqual(s.received, []);
  assert.equal(await refused('forbidden'), 1);

  const own = open(t, port, TOKENS.gateway);
  own.write(subscribeAs({ id: 'gateway~gw-0', nodeName: 'node-1', role: 'gateway', metadata: { pod: 'istio-system/gw-0' } }, TYPE_GATEWAY_LISTENER));
  await until('the gateway pod with its own credential subscribed', () => own.received.length === 1);
  assert.equal(server.subscribers().length, 1);
});

test("a node token cannot take over another node's agent stream", async (t) => {
  const { server, port, refused } = await serve(t);
  const node2 = open(t, port, TOKENS.node2);
  node2.write(subscribeAs({ id: 'agent~node-2', nodeName: 'node-2', role: 'agent' }));
  await until('node-2 subscribed', () => node2.received.length === 1);

  // As node-2 by name: refused.
  const impostor = open(t, port, TOKENS.node1);
  impostor.write(subscribeAs({ id: 'agent~node-2', nodeName: 'node-2', role: 'agent' }));
  assert.equal((await impostor.status).code, grpc.status.PERMISSION_DENIED);
  assert.equal(await refused('forbidden'), 1);

  // As itself but reusing node-2's stream id: allowed for node-1's own view, and node-2 stays.
  const sameId = open(t, port, TOKENS.node1);
  sameId.write(subscribeAs({ id: 'agent~node-2', nodeName: 'node-1', role: 'agent' }));
  await until('node-1 subscribed under the reused id', () => sameId.received.length === 1);
  const byNode = server.subscribers().map((s) => s.nodeName).sort();
  assert.deepEqual(byNode, ['node-1', 'node-2'], 'the node-2 stream was not displaced');

  // A reconnect of the same caller with the same id does replace its own older stream.
  const again = open(t, port, TOKENS.node2);
  again.write(subscribeAs({ id: 'agent~node-2', nodeName: 'node-2', role: 'agent' }));
  assert.equal((await node2.status).code, grpc.status.ABORTED, 'the older stream of the same caller is superseded');
  await until('the new node-2 stream subscribed', () => again.received.length === 1);
});

test('streams that never subscribe are limited per peer and time out', async (t) => {
  const { server, port, refused } = await serve(t, { limits: { maxPendingPerPeer: 3, identifyTimeoutMs: 400 } });
  const idle = [0, 1, 2].map(() => open(t, port, TOKENS.node1));
  // Let the three register as pending before the fourth arrives.
  await new Promise((r) => setTimeout(r, 100));
  const fourth = open(t, port, TOKENS.node1);
  const st4 = await fourth.status;
  assert.equal(st4.code, grpc.status.RESOURCE_EXHAUSTED, st4.details);
  assert.equal(await refused('peer_limit'), 1);
  for (const s of idle) {
    const st = await s.status;
    assert.equal(st.code, grpc.status.DEADLINE_EXCEEDED, st.details);
  }
  assert.equal(await refused('identify_timeout'), 3);
  // Room again: a well-behaved agent subscribes.
  const ok = open(t, port, TOKENS.node1);
  ok.write(subscribeAs({ id: 'agent~node-1', nodeName: 'node-1', role: 'agent' }));
  await until('a new stream subscribes once the idle ones are gone', () => ok.received.length === 1);
  assert.equal(server.subscribers().length, 1);
});

test('requests piled up while authentication is pending end the stream', async (t) => {
  let release: (c: Caller | undefined) => void = () => undefined;
  const { port, refused } = await serve(t, { authenticate: () => new Promise((r) => (release = r)), limits: { maxQueuedBeforeIdentify: 2 } });
  const s = open(t, port, TOKENS.node1);
  for (let i = 0; i < 5; i++) s.write(subscribeAs({ id: `agent~n${i}`, nodeName: 'node-1', role: 'agent' }));
  const st = await s.status;
  release({ kind: 'node', node: 'node-1' });
  assert.equal(st.code, grpc.status.RESOURCE_EXHAUSTED, st.details);
  assert.equal(await refused('flood'), 1);
});

test('one caller holds a bounded number of streams', async (t) => {
  const { port, refused } = await serve(t, { limits: { maxStreamsPerCaller: 2 } });
  const streams = [0, 1].map((i) => {
    const s = open(t, port, TOKENS.node1);
    s.write(subscribeAs({ id: `agent~node-1~${i}`, nodeName: 'node-1', role: 'agent' }));
    return s;
  });
  await until('two streams subscribed', () => streams.every((s) => s.received.length === 1));
  const third = open(t, port, TOKENS.node1);
  third.write(subscribeAs({ id: 'agent~node-1~2', nodeName: 'node-1', role: 'agent' }));
  assert.equal((await third.status).code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(await refused('caller_limit'), 1);
});
