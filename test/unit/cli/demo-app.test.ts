import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as http2 from 'node:http2';
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { createExtAuthzDemo, createHttpEcho, failsRequest, intFlag, runDemoApp, type HttpEchoOptions } from '../../../src/cli/demo-app.js';
import { createGrpcEcho, echoServiceDefinition } from '../../../src/cli/grpc-echo.js';

async function startEcho(t: TestContext, o: Partial<HttpEchoOptions>): Promise<string> {
  const server = createHttpEcho({ text: 'v1', pod: 'pod-a', failStatus: 500, delayMs: 0, ...o });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('failsRequest: every Nth request (1-based) fails; none without N', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => failsRequest(n, 2)), [false, true, false, true, false, true]);
  assert.deepEqual([1, 2, 3].map((n) => failsRequest(n, 1)), [true, true, true]);
  assert.deepEqual([1, 2, 3].map((n) => failsRequest(n, undefined)), [false, false, false]);
  assert.deepEqual([1, 2, 3].map((n) => failsRequest(n, 0)), [false, false, false]);
});

test('intFlag names the flag and the value it refuses', () => {
  assert.equal(intFlag('delay-ms', undefined, 0, 10, 3), 3);
  assert.equal(intFlag('delay-ms', '7', 0, 10), 7);
  assert.throws(() => intFlag('fail-every', 'x', 0, 10), /--fail-every must be an integer 0\.\.10 \(got "x"\)/);
  assert.throws(() => intFlag('port', '70000', 1, 65535), /--port must be an integer 1\.\.65535 \(got "70000"\)/);
  assert.throws(() => intFlag('port', '', 1, 65535), /--port/);
});

test('http-echo --fail-every 2 fails every second request with --fail-status; /count tells served and failed', async (t) => {
  const url = await startEcho(t, { failEvery: 2, failStatus: 503 });
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await fetch(`${url}/x`);
    const body = (await r.json()) as { text: string; error?: string };
    assert.equal(body.text, 'v1');
    assert.equal(body.error !== undefined, r.status === 503);
    statuses.push(r.status);
  }
  assert.deepEqual(statuses, [200, 503, 200, 503, 200, 503]);
  const count = (await (await fetch(`${url}/count`)).json()) as Record<string, unknown>;
  assert.deepEqual(count, { requests: 6, failed: 3, text: 'v1', pod: 'pod-a' });
  // /count is not itself counted.
  assert.equal(((await (await fetch(`${url}/count`)).json()) as { requests: number }).requests, 6);
});

test('http-echo --delay-ms waits before answering', async (t) => {
  const url = await startEcho(t, { delayMs: 150 });
  const start = performance.now();
  const r = await fetch(`${url}/slow`);
  await r.text();
  assert.equal(r.status, 200);
  assert.ok(performance.now() - start >= 140, `answered after ${performance.now() - start} ms`);
});

test('grpc-echo answers Say with its text, or fails with the status the call asks for', async (t) => {
  const server = createGrpcEcho({ text: 'g1', pod: 'pod-g', delayMs: 0 });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  t.after(() => server.forceShutdown());
  const Client = grpc.makeGenericClientConstructor(echoServiceDefinition(), 'Echo');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (req: unknown, cb: (e: grpc.ServiceError | null, r?: unknown) => void) => void>;
  t.after(() => client.close());
  const call = (req: unknown): Promise<{ err: grpc.ServiceError | null; reply?: unknown }> => new Promise((resolve) => client['Say']!(req, (err, reply) => resolve({ err, reply })));
  const ok = await call({ message: 'hi' });
  assert.equal(ok.err, null);
  assert.deepEqual(ok.reply, { text: 'g1', pod: 'pod-g', message: 'hi' });
  const failed = await call({ message: 'x', status: grpc.status.NOT_FOUND });
  assert.equal(failed.err?.code, grpc.status.NOT_FOUND);
  assert.match(failed.err?.details ?? '', /status 5 requested/);
});

test('runDemoApp refuses unknown kinds and flags of another kind with a clear message', async () => {
  let err = '';
  assert.equal(await runDemoApp(['nope'], { out: () => {}, err: (s) => (err += s) }), 2);
  assert.match(err, /usage: ambit demo-app <http-echo\|http-front\|tcp-echo\|grpc-echo\|ext-authz>/);
  await assert.rejects(runDemoApp(['tcp-echo', '--fail-every', '2'], { out: () => {}, err: () => {} }), /--fail-every and --fail-status are http-echo options/);
  await assert.rejects(runDemoApp(['http-echo', '--delay-ms=-1'], { out: () => {}, err: () => {} }), /--delay-ms must be an integer 0\.\.600000 \(got "-1"\)/);
});

test('the ext-authz demo app allows `x-ext-authz: allow` and denies the rest as Istio\'s sample does', async (t) => {
  const server = createExtAuthzDemo('authz-0');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/any/path`;
  const ok = await fetch(base, { headers: { 'x-ext-authz': 'allow' } });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('x-ext-authz-check-result'), 'allowed');
  const no = await fetch(base, { headers: { 'x-ext-authz': 'deny' } });
  assert.equal(no.status, 403);
  assert.equal(no.headers.get('x-ext-authz-check-result'), 'denied');
  assert.match(await no.text(), /denied by ext_authz for not found header `x-ext-authz: allow`/);
});

const ambitBin = join(fileURLToPath(import.meta.url), '..', '..', '..', '..', '..', 'bin', 'ambit.mjs');

async function freePort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function connectOnce(port: number): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', () => resolve(undefined));
  });
}

// Local mode stops pods with SIGTERM and kills what is left after a grace period: a demo app
// that ignored SIGTERM (its servers kept the process alive) slowed every `ambit local down`.
for (const kind of ['http-echo', 'http-front', 'tcp-echo', 'grpc-echo']) {
  test(`demo-app ${kind} exits 0 on SIGTERM, even with a connection open`, { timeout: 30_000 }, async (t) => {
    const port = await freePort();
    const args = [ambitBin, 'demo-app', kind, '--port', String(port), ...(kind === 'http-front' ? ['--backend', 'http://127.0.0.1:9/'] : [])];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    t.after(() => child.kill('SIGKILL'));
    let sock: Socket | undefined;
    for (let i = 0; i < 100 && !sock && child.exitCode === null; i++) {
      sock = await connectOnce(port);
      if (!sock) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(sock, `${kind} listens on ${port}: ${stderr}`);
    sock.on('error', () => undefined);
    // gRPC: an HTTP/2 session (a bare socket before the preface is not a gRPC connection yet).
    const session = kind === 'grpc-echo' ? http2.connect(`http://127.0.0.1:${port}`) : undefined;
    if (session) {
      session.on('error', () => undefined);
      await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
      sock.destroy();
    }
    child.kill('SIGTERM');
    const done = await Promise.race([exited, new Promise<'still running'>((r) => setTimeout(() => r('still running'), 10_000))]);
    sock.destroy();
    session?.destroy();
    assert.deepEqual(done, { code: 0, signal: null }, stderr);
  });
}
