/**
 * Capture when something goes wrong, with real programs and traffic: failed map updates, full
 * maps and churn, a direct connect to the capture listener, a reused client port, and a large
 * getsockopt through the node-wide getsockopt hook. Whatever happens, an enrolled pod's
 * connection is captured or fails; it never goes direct and never reaches the wrong destination.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../src/shared/log.js';
import { NftCapture } from '../../src/agent/capture/nft.js';
import { BpfObject } from '../../native/bpf.js';
import { BYPASS_MARK, listenInNetns, socketFd, socketInNetns } from '../../native/netns.js';
import {
  bpfSkipReason,
  buildFixtureObject,
  captureTest,
  dialApp,
  dialFrom,
  fetchText,
  nftSkipReason,
  outcome,
  serveFd,
  startProxies,
  type Pod,
} from './fixture.js';

const skip = bpfSkipReason();

/** Starts a BPF capture with pods a and b enrolled (proxies from startProxies), apps on 8080 counting direct hits. */
async function enrolledPair(t: { after(fn: () => Promise<void>): void }, tag: string) {
  const { fx, servers, openBpf } = captureTest(t, tag, 2);
  const [a, b] = fx.pods as [Pod, Pod];
  const hits = { a: 0, b: 0 };
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '::', port: 8080 }), () => `app-a ${++hits.a}`));
  servers.push(serveFd(listenInNetns(b.netnsPath, { address: '::', port: 8080 }), () => `app-b ${++hits.b}`));
  const pa = startProxies(a);
  const pb = startProxies(b);
  servers.push(...pa.servers, ...pb.servers);
  const capture = await openBpf();
  await capture.enroll({ uid: 'a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(pa.inbound) });
  await capture.enroll({ uid: 'b', netnsPath: b.netnsPath, inboundListenerFd: socketFd(pb.inbound) });
  return { fx, a, b, capture, hits, pa, pb, servers };
}

test("a full handshake map fails that pod's new connections, never sends them direct, and leaves other pods alone", { skip }, async (t) => {
  const { a, b, capture, hits, pa } = await enrolledPair(t, 'f');
  const hs = capture.handshakeMap('a')!;
  t.after(() => hs.close());
  const before = capture.stats();
  // Fill a's map to its size with entries no connection will claim.
  for (let i = 0; i < hs.info.maxEntries; i++) hs.update({ address: '127.0.0.9', port: 1 + i }, { address: '10.255.0.1', port: 9, family: 'IPv4' });
  assert.throws(() => hs.update({ address: '127.0.0.9', port: 60000 }, { address: '10.255.0.1', port: 9, family: 'IPv4' }), /E2BIG/);

  const r = await outcome(dialFrom(a.netnsPath, b.ip, 8080));
  assert.match(r, /^ok:error:.*EPERM/, `the proxy got the connection but no destination (${r})`);
  assert.equal(hits.b, 0, 'nothing reached b directly');
  const now = capture.stats();
  assert.equal(now.SOCKOPS_RECORD_FAILED - before.SOCKOPS_RECORD_FAILED, 1);
  assert.equal(now.GETSOCKOPT_REFUSED - before.GETSOCKOPT_REFUSED, 1);
  assert.equal(pa.seen.outbound, 1);

  assert.equal(
    await dialFrom(b.netnsPath, a.ip, 9999),
    `proxied ${a.ip}:9999 -> inbound ${a.ip}:9999 from ${b.ip}`,
    "b's connects use b's own map; a's inbound is unaffected",
  );

  for (const k of hs.keys()) hs.delete(k);
  assert.equal(await dialFrom(a.netnsPath, b.ip, 8080).then((x) => x.replace(/\d+$/, 'N')), `proxied ${b.ip}:8080 -> inbound ${b.ip}:8080 from ${a.ip}`.replace(/\d+$/, 'N'));
});

test("connection churn leaves other connections' destinations alone: nothing is evicted, nothing left behind", { skip }, async (t) => {
  const { a, b, capture } = await enrolledPair(t, 'c');
  // A live connection from a, held open: the app's getpeername and the proxy's getsockopt answer from socket storage.
  const held = new net.Socket({ fd: socketInNetns(a.netnsPath, { family: 'IPv4' }) });
  let heldText = '';
  held.setEncoding('utf8').on('data', (d: string) => (heldText += d));
  held.on('error', () => undefined);
  const echoServer = net.createServer((s) => s.pipe(s));
  echoServer.listen({ fd: listenInNetns(b.netnsPath, { address: '0.0.0.0', port: 7777 }) });
  t.after(() => {
    held.destroy();
    echoServer.close();
  });
  // Churn: 600 short connections from b and 600 from a, each redirected and handed over.
  for (let i = 0; i < 600; i++) {
    await dialFrom(b.netnsPath, a.ip, 8080);
    await dialFrom(a.netnsPath, b.ip, 8080);
  }
  await new Promise<void>((resolve) => held.connect(7777, b.ip, resolve));
  assert.equal(held.remoteAddress, b.ip, 'getpeername still shows the original peer after the churn');
  const hsA = capture.handshakeMap('a')!;
  const hsB = capture.handshakeMap('b')!;
  try {
    assert.deepEqual([hsA.keys().length, hsB.keys().length], [0, 0], 'every handshake entry was handed over or removed');
  } finally {
    hsA.close();
    hsB.close();
  }
  held.destroy();
  assert.equal(heldText, '', 'the held connection reached the proxy (which answers only at the end)');
});

test('a reused client port never finds an earlier connection\'s destination', { skip }, async (t) => {
  const { a, b, capture } = await enrolledPair(t, 'u');
  const port = 40000 + (process.pid % 10000);
  // Each connection ends with a reset: no TIME_WAIT holds the 4-tuple, so the port really is reused.
  const fromPort = (host: string, dport: number, mark?: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = new net.Socket({ fd: socketInNetns(a.netnsPath, { family: 'IPv4', bind: { address: '127.0.0.1', port }, ...(mark ? { mark } : {}) }), allowHalfOpen: true });
      let text = '';
      s.setEncoding('utf8').on('data', (d: string) => (text += d));
      s.on('end', () => {
        s.resetAndDestroy();
        resolve(text);
      });
      s.on('error', reject);
      s.connect(dport, host);
    });
  // First connection from 127.0.0.1:<port>, redirected to the proxy with destination b:8080.
  assert.match(await fromPort(b.ip, 8080), /^proxied /);
  const before = capture.stats();
  // The same client port straight to the proxy (a marked socket gets past connect4): no destination is known.
  const r = await outcome(fromPort('127.0.0.1', 15001, BYPASS_MARK));
  assert.match(r, /^ok:error:.*EPERM/, `the proxy learns nothing, not the first connection's b:8080 (${r})`);
  assert.equal(capture.stats().GETSOCKOPT_REFUSED - before.GETSOCKOPT_REFUSED, 1);
});

test('a direct connect to the capture listener is refused: by connect4 (BPF), and by the proxy reading its own address', { skip }, async (t) => {
  const { a, capture, pa } = await enrolledPair(t, 'd');
  const before = capture.stats();
  const seen = pa.seen.outbound;
  assert.equal(await outcome(dialFrom(a.netnsPath, '127.0.0.1', 15001)), 'EPERM', 'the app can not connect to 127.0.0.1:15001');
  assert.equal(await outcome(dialFrom(a.netnsPath, '0.0.0.0', 15001)), 'EPERM', 'nor through 0.0.0.0');
  assert.equal(await outcome(dialFrom(a.netnsPath, '::ffff:127.0.0.1', 15001)), 'EPERM', 'nor v4-mapped');
  assert.equal(capture.stats().CONNECT_CAPTURE_PORT_REFUSED - before.CONNECT_CAPTURE_PORT_REFUSED, 3);
  assert.equal(pa.seen.outbound, seen, 'the proxy never saw them');
});

test('nft: a direct connect to the capture listener gets no destination (conntrack would answer 127.0.0.1:15001)', { skip: nftSkipReason() }, async (t) => {
  const { fx, servers, own } = captureTest(t, 'n', 1, { enterCgroup: false });
  const capture = own(new NftCapture({ log: silentLogger() }));
  const [a] = fx.pods as [Pod];
  const pa = startProxies(a);
  servers.push(...pa.servers);
  await capture.enroll({ uid: 'a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(pa.inbound) });
  const r = await outcome(dialFrom(a.netnsPath, '127.0.0.1', 15001));
  assert.match(r, /^ok:error:original destination 127\.0\.0\.1:15001 is local to the pod/, r);
});

test("a full map of the agent's own dials: the dial it can not list is refused with the pod's other unlisted inbound for a second, never steered to 15006", { skip }, async (t) => {
  const { a, b, capture, pa } = await enrolledPair(t, 'e');
  const direct = capture.directMap('a')!;
  t.after(() => direct.close());
  assert.deepEqual(direct.keys(), [{ sourceAddress: '::', sourcePort: 0, destinationPort: 0 }], 'only the overflow slot');
  // Fill a's map to its size with exemptions no dial will use.
  for (let i = 1; i < direct.info.maxEntries; i++) direct.update({ sourceAddress: '10.254.0.1', sourcePort: i, destinationPort: 1 }, 0n);
  assert.throws(() => direct.update({ sourceAddress: '10.254.0.1', sourcePort: 60000, destinationPort: 1 }, 0n), /E2BIG/, 'a plain hash: full, it refuses');
  const before = capture.stats();
  const inboundBefore = pa.seen.inbound;
  const dial = (): Promise<net.Socket> =>
    dialApp({ capture, uid: 'a', netnsPath: a.netnsPath, source: { address: b.ip }, destination: { address: a.ip, port: 8080 } });
  await assert.rejects(dial(), (e: unknown) => (e as NodeJS.ErrnoException).code === 'ECONNREFUSED');
  const after = capture.stats();
  assert.equal(after.SOCKOPS_DIAL_EXEMPT_FAILED - before.SOCKOPS_DIAL_EXEMPT_FAILED, 1);
  assert.equal(after.STEER_REFUSED_OVERFLOW - before.STEER_REFUSED_OVERFLOW, 1);
  assert.ok((direct.lookup({ sourceAddress: '::', sourcePort: 0, destinationPort: 0 }) ?? 0n) > 0n, 'the overflow slot holds when');
  assert.equal(await outcome(fetchText(new net.Socket(), 8080, a.ip)), 'ECONNREFUSED', 'other unlisted inbound is refused meanwhile');
  assert.equal(pa.seen.inbound, inboundBefore, 'nothing reached the 15006 listener');

  // Room again, and a second later the pod is back to normal.
  direct.delete({ sourceAddress: '10.254.0.1', sourcePort: 1, destinationPort: 1 });
  await new Promise((r) => setTimeout(r, 1100));
  const socket = await dial();
  assert.match(await fetchText(socket), /^app-a /, 'the dial reached the app');
  assert.match(await fetchText(new net.Socket(), 8080, a.ip), /^inbound /, 'and inbound is steered to 15006 again');
});

test('a getsockopt larger than a page through the node-wide hook: capture sets optlen to 0, the caller gets the whole answer', { skip }, async (t) => {
  const { fx, openBpf } = captureTest(t, 'o', 1, { enterCgroup: false });
  const dir = mkdtempSync(join(tmpdir(), 'ambit-sockopt-'));
  const pinRoot = `/sys/fs/bpf/${fx.prefix}-spy`;
  mkdirSync(pinRoot, { recursive: true });
  let spy: BpfObject | undefined;
  let link: { detach(): void } | undefined;
  t.after(async () => {
    link?.detach();
    spy?.close();
    rmSync(pinRoot, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });
  await openBpf();
  // Attached after capture's program, so it runs after it and sees the optlen capture left.
  spy = BpfObject.open(buildFixtureObject('sockopt-spy', dir), { pinRoot });
  link = spy.attachCgroup('spy_getsockopt', fx.cgroupPath);
  const seen = spy.map('spy_optlen');

  const bindingsJs = fileURLToPath(new URL('../../native/bindings.js', import.meta.url));
  // A process with 2000 supplementary groups reads SO_PEERGROUPS of its own unix connection: 8000 bytes.
  const script = `
    const net = await import('node:net');
    const { libc } = await import(${JSON.stringify(bindingsJs)});
    process.setgroups(Array.from({ length: 2000 }, (_, i) => 100000 + i));
    const path = ${JSON.stringify(join(dir, 'sock'))};
    const server = net.createServer((s) => {
      const out = Buffer.alloc(16384);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(out.length);
      const rc = libc().getsockopt(s._handle.fd, 1, 59, out, len);
      const n = len.readUInt32LE(0);
      console.log(JSON.stringify({ rc, len: n, last: n >= 4 ? out.readUInt32LE(n - 4) : -1 }));
      process.exit(0);
    }).listen(path, () => net.connect(path));`;
  const r = spawnSync('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', fx.cgroupPath, process.execPath, '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  assert.ok(line.startsWith('{'), `child printed ${JSON.stringify(r.stdout)} ${r.stderr}`);
  assert.deepEqual(JSON.parse(line), { rc: 0, len: 8000, last: 101999 }, 'the caller gets the kernel\'s whole answer');
  const key = (k: number): Buffer => Buffer.from([k, 0, 0, 0]);
  assert.equal(seen.lookup(key(1))?.readUInt32LE(0), 1, 'the spy saw the call');
  assert.equal(seen.lookup(key(0))?.readUInt32LE(0), 0, 'capture set optlen to 0 (left at 8000, kernels before 6.5 fail the call with EFAULT)');
});
