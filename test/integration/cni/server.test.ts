/**
 * The agent's CNI socket with a handler of the test's own: permissions, stale and live sockets,
 * request validation, handler results, the plugin's client against it, metrics, and close.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { mkdtemp, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniServer, type CniHandler } from '../../../src/agent/cni/server.js';
import { callAgent, answerError } from '../../../src/cni/agent-client.js';
import { createLogger } from '../../../src/shared/log.js';
import { createRegistry } from '../../../src/shared/metrics.js';
import { AmbitError, isAmbitError } from '../../../src/shared/errors.js';
import type { CniPod, CniPodRef } from '../../../src/shared/cni-handoff.js';
import { LogSink } from '../../helpers/loopback-net.js';

const POD: CniPod = {
  podName: 'web-0',
  podNamespace: 'demo',
  podUid: '6b9d0c8e-1f2a-4b3c-8d4e-5f6a7b8c9d0e',
  containerId: 'c0ffee',
  netns: '/var/run/netns/cni-1',
  ifname: 'eth0',
  ips: [{ address: '10.244.1.7/24' }],
};

class RecordingHandler implements CniHandler {
  readonly calls: Array<[string, CniPodRef]> = [];
  fail: Error | undefined;
  async add(pod: CniPod): Promise<void> {
    this.calls.push(['add', pod]);
    if (this.fail) throw this.fail;
  }
  async check(pod: CniPod): Promise<void> {
    this.calls.push(['check', pod]);
    if (this.fail) throw this.fail;
  }
  async del(pod: CniPodRef): Promise<void> {
    this.calls.push(['del', pod]);
  }
}

async function setup(t: import('node:test').TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cni-srv-'));
  const socketPath = join(dir, 'run', 'cni.sock');
  const handler = new RecordingHandler();
  const sink = new LogSink();
  const registry = createRegistry();
  const server = new CniServer({ socketPath, handler, registry, log: createLogger({ level: 'debug', destination: sink as unknown as import('pino').DestinationStream }) });
  t.after(async () => {
    server.destroy();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, socketPath, handler, sink, registry, server };
}

/** A raw request to the socket: status and parsed body. */
function raw(socketPath: string, method: string, path: string, body: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('the socket is 0600 in a 0700 folder; ADD, CHECK and DEL reach the handler with the validated pod', async (t) => {
  const { socketPath, handler, server, registry } = await setup(t);
  await server.start();
  assert.equal((await stat(socketPath)).mode & 0o777, 0o600);
  assert.equal((await stat(join(socketPath, '..'))).mode & 0o777, 0o700);
  assert.deepEqual(await callAgent(socketPath, '/v1/cni/add', POD, 2000), { kind: 'ok' });
  assert.deepEqual(await callAgent(socketPath, '/v1/cni/check', POD, 2000), { kind: 'ok' });
  const ref = { podName: 'web-0', podNamespace: 'demo', podUid: '', containerId: 'c0ffee' };
  assert.deepEqual(await callAgent(socketPath, '/v1/cni/del', ref, 2000), { kind: 'ok' });
  assert.deepEqual(handler.calls, [['add', POD], ['check', POD], ['del', ref]]);
  const metrics = await registry.getSingleMetricAsString('ambit_cni_requests_total');
  assert.match(metrics, /ambit_cni_requests_total\{op="add",result="ok"\} 1/);
  assert.match(metrics, /ambit_cni_requests_total\{op="del",result="ok"\} 1/);
});

test('a handler that fails answers 500 with its message and code; the plugin\'s client turns it into AMBIT_ERR_CNI_AGENT_REFUSED', async (t) => {
  const { socketPath, handler, server, sink, registry } = await setup(t);
  await server.start();
  handler.fail = new AmbitError('AMBIT_ERR_CAPTURE_FAILED', 'attaching sk_lookup in /var/run/netns/cni-1 failed: EPERM');
  const answer = await callAgent(socketPath, '/v1/cni/add', POD, 2000);
  assert.deepEqual(answer, { kind: 'refused', status: 500, message: 'attaching sk_lookup in /var/run/netns/cni-1 failed: EPERM', code: 'AMBIT_ERR_CAPTURE_FAILED' });
  const err = answerError(answer, 'capture pod demo/web-0', socketPath)!;
  assert.ok(isAmbitError(err, 'AMBIT_ERR_CNI_AGENT_REFUSED'));
  assert.equal(err.details?.['cniCode'], 100);
  assert.ok(sink.lines.some((l) => l['msg'] === 'cni request failed in the agent' && (l['err'] as { code?: string } | undefined)?.code === 'AMBIT_ERR_CAPTURE_FAILED' && l['pod'] === 'demo/web-0'));
  assert.match(await registry.getSingleMetricAsString('ambit_cni_requests_total'), /op="add",result="refused"\} 1/);
  // The server keeps serving after a failure.
  handler.fail = undefined;
  assert.deepEqual(await callAgent(socketPath, '/v1/cni/add', POD, 2000), { kind: 'ok' });
});

test('bad requests get 400 naming the fields, unknown paths 404, other methods 405, huge bodies 413; the handler is not called', async (t) => {
  const { socketPath, handler, server } = await setup(t);
  await server.start();
  const bad = await raw(socketPath, 'POST', '/v1/cni/add', JSON.stringify({ ...POD, podNamespace: 'Demo', netns: 'relative' }));
  assert.equal(bad.status, 400);
  assert.equal(bad.body['code'], 'AMBIT_ERR_CNI_REQUEST_INVALID');
  assert.match(String(bad.body['error']), /podNamespace: must be a namespace name.*"Demo".*netns: must be an absolute path/);
  assert.equal((await raw(socketPath, 'POST', '/v1/cni/add', '{oops')).status, 400);
  assert.equal((await raw(socketPath, 'POST', '/v1/cni/nope', '{}')).status, 404);
  assert.equal((await raw(socketPath, 'GET', '/v1/cni/add', '')).status, 405);
  assert.equal((await raw(socketPath, 'POST', '/v1/cni/add', JSON.stringify({ pad: 'x'.repeat(100_000) }))).status, 413);
  assert.equal(handler.calls.length, 0);
});

test('a stale socket file is replaced; a live socket of another agent, or a non-socket file, is refused', async (t) => {
  const { dir, socketPath, server } = await setup(t);
  await mkdir(join(dir, 'run'), { recursive: true });
  // A socket left by a crashed agent: the file exists, nobody listens.
  const stale = createNetServer();
  await new Promise<void>((r) => stale.listen(socketPath, r));
  await new Promise<void>((r) => {
    stale.close(() => r());
  });
  await writeFile(join(dir, 'marker'), '');
  const lingering = createNetServer();
  await new Promise<void>((r) => lingering.listen(join(dir, 'run', 'other.sock'), r));
  t.after(() => lingering.close());
  await server.start();
  assert.deepEqual(await callAgent(socketPath, '/v1/cni/del', { podName: 'a', podNamespace: 'b', podUid: '', containerId: 'c' }, 2000), { kind: 'ok' });

  const second = new CniServer({ socketPath, handler: new RecordingHandler(), log: createLogger({ level: 'silent' }) });
  await assert.rejects(second.start(), (e) => isAmbitError(e, 'AMBIT_ERR_CONFIG_INVALID') && /already serves/.test(e.message));
  const notSocket = new CniServer({ socketPath: join(dir, 'marker'), handler: new RecordingHandler(), log: createLogger({ level: 'silent' }) });
  await assert.rejects(notSocket.start(), (e) => isAmbitError(e, 'AMBIT_ERR_CONFIG_INVALID') && /not a socket/.test(e.message));
});

test('close waits for an ADD in progress, refuses new ones, then removes the socket; the client reports unreachable after', async (t) => {
  const { socketPath, server, handler } = await setup(t);
  let release!: () => void;
  const started = new Promise<void>((resolveStarted) => {
    handler.add = () =>
      new Promise<void>((resolve) => {
        release = resolve;
        resolveStarted();
      });
  });
  await server.start();
  const inFlight = callAgent(socketPath, '/v1/cni/add', POD, 10_000);
  await started;
  const closing = server.close(10_000);
  release();
  assert.deepEqual(await inFlight, { kind: 'ok' }, 'the pod that was being captured gets its answer');
  await closing;
  await assert.rejects(stat(socketPath), /ENOENT/);
  const after = await callAgent(socketPath, '/v1/cni/add', POD, 2000);
  assert.equal(after.kind, 'unreachable');
  assert.match((after as { message: string }).message, /socket does not exist/);
});

test('an agent that does not answer in time is reported unreachable by the client (the plugin then fails ADD)', async (t) => {
  const { socketPath, server, handler } = await setup(t);
  let release!: () => void;
  handler.add = () => new Promise<void>((resolve) => (release = resolve));
  await server.start();
  const answer = await callAgent(socketPath, '/v1/cni/add', POD, 300);
  assert.deepEqual(answer, { kind: 'unreachable', message: 'no answer within 300 ms' });
  release();
});
