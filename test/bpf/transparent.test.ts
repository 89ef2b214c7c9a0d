/**
 * The inbound proxy's transparent dial (NetnsPodSockets + connectVia): the app in the destination
 * pod sees the original client's IP (and port, when given) as source, replies reach the agent through the pod's reply
 * routing, and inbound capture (sk_lookup in BPF mode, nat prerouting in nft mode) leaves the dial
 * alone. Needs root (BPF for the BPF case, the nft binary for both).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { silentLogger } from '../../src/shared/log.js';
import { BpfCapture } from '../../src/agent/capture/redirect.js';
import { NftCapture } from '../../src/agent/capture/nft.js';
import type { Capture } from '../../src/agent/capture/capture.js';
import { originalDestination } from '../../src/agent/capture/orig-dst.js';
import { REPLY_NFT_TABLE, REPLY_ROUTE_TABLE } from '../../src/agent/capture/reply-route.js';
import { BYPASS_MARK, listenInNetns, socketFd, socketInNetns, transparentSocketInNetns } from '../../native/netns.js';
import { bpfSkipReason, closeServer, createFixture, dialApp, fetchText, isRoot, serveFd, type Fixture, type Pod } from './fixture.js';

function hasNft(): boolean {
  try {
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const nftSkip = !isRoot() ? 'requires root' : !hasNft() ? 'requires the nft binary' : undefined;
const bpfSkip = nftSkip ?? bpfSkipReason();

function inNs(netnsPath: string, argv: string[]): string {
  return execFileSync('nsenter', [`--net=${netnsPath}`, ...argv], {
    encoding: 'utf8',
    timeout: 10_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** `ip route show table N` output; '' when the table does not exist (never created or flushed). */
function routes(netnsPath: string, family: '-4' | '-6'): string {
  try {
    return inNs(netnsPath, ['ip', family, 'route', 'show', 'table', String(REPLY_ROUTE_TABLE)]).trim();
  } catch {
    return '';
  }
}

/** What the pod's netns holds of reply routing: nft table, ip rule, table routes (v4 and v6). */
function replyRouting(pod: Pod): { table: boolean; rule4: boolean; rule6: boolean; routes4: string; routes6: string } {
  return {
    table: inNs(pod.netnsPath, ['nft', 'list', 'tables']).includes(`inet ${REPLY_NFT_TABLE}`),
    rule4: /fwmark 0x111\/0xfff lookup 133/.test(inNs(pod.netnsPath, ['ip', '-4', 'rule'])),
    rule6: /fwmark 0x111\/0xfff lookup 133/.test(inNs(pod.netnsPath, ['ip', '-6', 'rule'])),
    routes4: routes(pod.netnsPath, '-4'),
    routes6: routes(pod.netnsPath, '-6'),
  };
}

interface Seen {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
}

/**
 * The app in the pod: greets each connection with the peer it sees, then echoes. `inbound`
 * records connections that reached the 15006 listener instead.
 */
function startPod(pod: Pod, servers: net.Server[]): { app: Seen[]; inbound: Seen[]; inboundServer: net.Server } {
  const app: Seen[] = [];
  const inbound: Seen[] = [];
  const appServer = net.createServer({ allowHalfOpen: true }, (s) => {
    app.push({ remoteAddress: s.remoteAddress, remotePort: s.remotePort });
    s.on('error', () => undefined);
    s.write(`hello ${s.remoteAddress}:${s.remotePort}\n`);
    s.pipe(s);
  });
  appServer.listen({ fd: listenInNetns(pod.netnsPath, { address: '0.0.0.0', port: 8080 }) });
  servers.push(appServer);
  // The same app on [::]:8081 for IPv6 dials (a dual-stack 8080 would clash with 0.0.0.0:8080).
  const app6 = net.createServer({ allowHalfOpen: true }, appServer.listeners('connection')[0] as (s: net.Socket) => void);
  app6.listen({ fd: listenInNetns(pod.netnsPath, { address: '::', port: 8081 }) });
  servers.push(app6);
  const inboundServer = serveFd(listenInNetns(pod.netnsPath, { address: '0.0.0.0', port: 15006 }), (s) => {
    inbound.push({ remoteAddress: s.remoteAddress, remotePort: s.remotePort });
    const o = originalDestination(s, 'inbound');
    return `inbound ${o.address}:${o.port}`;
  });
  servers.push(inboundServer);
  return { app, inbound, inboundServer };
}

/** Sends `ping`, half-closes, reads everything until the app closes. */
async function exchange(socket: net.Socket): Promise<string> {
  const done = fetchText(socket);
  socket.end('ping');
  return done;
}

async function checkTransparentDial(
  capture: Capture,
  client: Pod,
  server: Pod,
  seen: ReturnType<typeof startPod>,
  family: 'IPv4' | 'IPv6' = 'IPv4',
  srcPort?: number,
): Promise<number> {
  const [src, dst, dstPort] = family === 'IPv4' ? [client.ip, server.ip, 8080] : [client.ip6, server.ip6, 8081];
  const socket = await dialApp({ capture, uid: 'pod-a', netnsPath: server.netnsPath, source: { address: src, ...(srcPort ? { port: srcPort } : {}) }, destination: { address: dst, port: dstPort } });
  assert.equal(socket.localAddress, src, 'the socket is bound to the client address');
  const port = socket.localPort!;
  const text = await exchange(socket);
  assert.equal(text, `hello ${src}:${port}\nping`, 'the app sees the client address and data flows both ways');
  assert.deepEqual(seen.app.at(-1), { remoteAddress: src, remotePort: port });
  assert.equal(seen.inbound.length, 0, 'the 15006 listener did not receive the dial');
  if (!socket.destroyed) await once(socket, 'close');
  return port;
}

function openBpf(fx: Fixture): Promise<BpfCapture> {
  return BpfCapture.open({ cgroupPath: fx.cgroupPath, pinDir: `/sys/fs/bpf/${fx.prefix}`, log: silentLogger() });
}

test('bpf capture: a transparent dial keeps the client address and is not steered to 15006', { skip: bpfSkip }, async (t) => {
  const fx = createFixture('t', 2);
  let capture: BpfCapture | undefined;
  const servers: net.Server[] = [];
  t.after(async () => {
    await capture?.uninstall();
    for (const s of servers) await closeServer(s);
    fx.cleanup();
  });
  fx.enterCgroup();
  const [a, b] = fx.pods as [Pod, Pod];
  const seen = startPod(a, servers);
  capture = await openBpf(fx);
  await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(seen.inboundServer) });
  assert.equal(capture.preservesSource('pod-a'), true);
  assert.deepEqual(replyRouting(a), {
    table: true,
    rule4: true,
    rule6: true,
    routes4: 'local default dev lo scope host',
    routes6: 'local default dev lo metric 1024 pref medium',
  });
  assert.equal(replyRouting(b).rule4, false, 'only the enrolled pod gets reply routing');

  await t.test('inbound connections are still steered to 15006', async () => {
    assert.equal(await fetchText(new net.Socket(), 8080, a.ip), `inbound ${a.ip}:8080`);
    assert.equal(seen.inbound.length, 1);
    seen.inbound.length = 0;
  });

  await t.test('the app sees the client pod address, data flows, close works', async () => {
    const skipped = capture!.stats().STEER_SKIP_DIRECT;
    await checkTransparentDial(capture!, b, a, seen);
    assert.equal(capture!.stats().STEER_SKIP_DIRECT, skipped + 1, 'sk_lookup let the listed tuple through');
    assert.deepEqual(capture!.directTuples('pod-a'), [], 'sockops removed the tuple once connected');
  });

  await t.test('IPv6: the app sees the client pod IPv6 address (v6 key, v6 reply route)', async () => {
    const skipped = capture!.stats().STEER_SKIP_DIRECT;
    await checkTransparentDial(capture!, b, a, seen, 'IPv6');
    assert.equal(capture!.stats().STEER_SKIP_DIRECT, skipped + 1, 'sk_lookup matched the IPv6 tuple');
  });

  await t.test('several dials in a row each get their own tuple', async () => {
    const before = seen.app.length;
    for (let i = 0; i < 3; i++) await checkTransparentDial(capture!, b, a, seen);
    assert.equal(seen.app.length, before + 3);
  });

  await t.test("the dial keeps the client's port; a port held by a listener or a live tuple gets another", async () => {
    const skipped = capture!.stats().STEER_SKIP_DIRECT;
    assert.equal(await checkTransparentDial(capture!, b, a, seen, 'IPv4', 47001), 47001, 'the app sees the client port');
    // The dial closed first, so b.ip:47001 -> a.ip:8080 is in TIME_WAIT in a's netns. A socket
    // bound to its port takes such a tuple over when TCP timestamps guard it (tcp_twsk_unique).
    assert.match(inNs(a.netnsPath, ['ss', '-tan', 'state', 'time-wait', 'src', `${b.ip}:47001`]), new RegExp(`${a.ip.replaceAll('.', '\\.')}:8080`));
    assert.equal(await checkTransparentDial(capture!, b, a, seen, 'IPv4', 47001), 47001, 'the TIME_WAIT tuple is reused');
    // The same tuple still open: connect refuses it (EADDRNOTAVAIL) and the dial is made again
    // from a port the kernel picks.
    const held = await dialApp({ capture: capture!, uid: 'pod-a', netnsPath: a.netnsPath, source: { address: b.ip, port: 47005 }, destination: { address: a.ip, port: 8080 } });
    assert.equal(held.localPort, 47005);
    const other = await checkTransparentDial(capture!, b, a, seen, 'IPv4', 47005);
    assert.ok(other > 0 && other !== 47005, `another port: ${other}`);
    held.destroy();
    // 15006 is a listener on every address in a's netns: bind refuses it (EADDRINUSE).
    assert.notEqual(await checkTransparentDial(capture!, b, a, seen, 'IPv4', 15006), 15006);
    assert.equal(await checkTransparentDial(capture!, b, a, seen, 'IPv6', 47002), 47002, 'IPv6 too');
    assert.equal(capture!.stats().STEER_SKIP_DIRECT, skipped + 6, 'every dial was let through, none steered');
    assert.deepEqual(capture!.directTuples('pod-a'), []);
  });

  await t.test('with SYN cookies (as when the app\'s SYN queue overflows) the dial still reaches the app', async () => {
    // 2: every SYN is answered with a cookie, so the handshake's last ACK finds no request
    // socket and goes through sk_lookup too; the dial's entry must outlive it.
    inNs(a.netnsPath, ['sysctl', '-q', '-w', 'net.ipv4.tcp_syncookies=2']);
    try {
      await checkTransparentDial(capture!, b, a, seen);
      await checkTransparentDial(capture!, b, a, seen, 'IPv6');
    } finally {
      inNs(a.netnsPath, ['sysctl', '-q', '-w', 'net.ipv4.tcp_syncookies=1']);
    }
    assert.deepEqual(capture!.directTuples('pod-a'), [], 'the app\'s side removed the tuples once established');
  });

  await t.test("a marked dial from another pod's netns is listed in that pod's own map only: steered to 15006", async () => {
    const seenB = startPod(b, servers);
    await capture!.enroll({ uid: 'pod-b', netnsPath: b.netnsPath, inboundListenerFd: socketFd(seenB.inboundServer) });
    const exempted = capture!.stats().SOCKOPS_DIAL_EXEMPTED;
    // A dial like the agent's (mark and priority), made in b's netns from b's own address.
    const tagged = transparentSocketInNetns(b.netnsPath, { source: { address: b.ip }, mark: BYPASS_MARK });
    assert.equal(await fetchText(new net.Socket({ fd: tagged.fd, allowHalfOpen: true }), 8080, a.ip), `inbound ${a.ip}:8080`);
    assert.equal(capture!.stats().SOCKOPS_DIAL_EXEMPTED, exempted + 1, "sockops listed it, in b's map");
    assert.deepEqual(seen.inbound.map((x) => x.remoteAddress), [b.ip]);
    seen.inbound.length = 0;
    // The agent's other marked sockets in a pod (tunnels, passthrough dials) are not listed.
    const plain = new net.Socket({ fd: socketInNetns(b.netnsPath, { family: 'IPv4', mark: BYPASS_MARK }), allowHalfOpen: true });
    assert.equal(await fetchText(plain, 8080, a.ip), `inbound ${a.ip}:8080`);
    assert.equal(capture!.stats().SOCKOPS_DIAL_EXEMPTED, exempted + 1, 'a marked socket without the dial priority is not listed');
    seen.inbound.length = 0;
    await capture!.unenroll('pod-b');
  });

  await t.test('a refused dial rejects and forgets its tuple', async () => {
    await assert.rejects(
      dialApp({ capture: capture!, uid: 'pod-a', netnsPath: a.netnsPath, source: { address: b.ip }, destination: { address: a.ip, port: 15008 } }),
      (e: unknown) => (e as NodeJS.ErrnoException).code === 'ECONNREFUSED',
    );
    assert.deepEqual(capture!.directTuples('pod-a'), []);
  });

  await t.test('unenroll removes the rules, routes and table', async () => {
    await capture!.unenroll('pod-a');
    assert.equal(capture!.preservesSource('pod-a'), false);
    assert.deepEqual(replyRouting(a), { table: false, rule4: false, rule6: false, routes4: '', routes6: '' });
  });
});

test('nft capture: a transparent dial keeps the client address and is not redirected to 15006', { skip: nftSkip }, async (t) => {
  const fx = createFixture('u', 2);
  const capture = new NftCapture({ log: silentLogger() });
  const servers: net.Server[] = [];
  t.after(async () => {
    await capture.uninstall();
    for (const s of servers) await closeServer(s);
    fx.cleanup();
  });
  const [a, b] = fx.pods as [Pod, Pod];
  const seen = startPod(a, servers);
  await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(seen.inboundServer) });
  assert.equal(capture.preservesSource('pod-a'), true);
  assert.equal(replyRouting(a).rule4, true);
  assert.equal(replyRouting(a).table, true);

  await t.test('inbound connections are still redirected to 15006', async () => {
    assert.equal(await fetchText(new net.Socket(), 8080, a.ip), `inbound ${a.ip}:8080`);
    seen.inbound.length = 0;
  });

  await t.test('the app sees the client pod address, data flows, close works', async () => {
    await checkTransparentDial(capture, b, a, seen);
    await checkTransparentDial(capture, b, a, seen);
    await checkTransparentDial(capture, b, a, seen, 'IPv6');
  });

  await t.test('unenroll removes the rules, routes and tables', async () => {
    await capture.unenroll('pod-a');
    assert.deepEqual(replyRouting(a), { table: false, rule4: false, rule6: false, routes4: '', routes6: '' });
    assert.doesNotMatch(inNs(a.netnsPath, ['nft', 'list', 'tables']), /ambit/);
  });
});

test('without reply routing the dial falls back to the pod address', { skip: nftSkip }, async (t) => {
  const fx = createFixture('v', 1);
  const servers: net.Server[] = [];
  t.after(async () => {
    for (const s of servers) await closeServer(s);
    fx.cleanup();
  });
  const [a] = fx.pods as [Pod];
  const seen = startPod(a, servers);
  const socket = await dialApp({ capture: undefined, uid: 'pod-a', netnsPath: a.netnsPath, source: { address: '10.1.2.3', port: 61003 }, destination: { address: a.ip, port: 8080 } });
  const port = socket.localPort;
  assert.notEqual(port, 61003, 'nor its port (61003 is outside the ephemeral range the kernel picks from)');
  assert.equal(await exchange(socket), `hello ${a.ip}:${port}\nping`);
  assert.equal(seen.app[0]?.remoteAddress, a.ip);
});
