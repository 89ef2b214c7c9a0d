/**
 * BPF capture end to end on real namespaces: outbound connect redirect to the in-pod 15001
 * listener, original destination via SO_ORIGINAL_DST, getpeername, the 0x539 bypass, sk_lookup
 * steering to 15006, IPv6 in both directions (captured with IPv6 listeners, refused without),
 * unenroll and uninstall. Needs root and a kernel with the program types (bpfSkipReason).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { silentLogger } from '../../src/shared/log.js';
import { BpfCapture, CGROUP_PROGRAMS } from '../../src/agent/capture/redirect.js';
import { detectCaptureMode } from '../../src/agent/capture/detect.js';
import { BYPASS_MARK, closeFd, listenInNetns, netnsCookie, socketFd, socketInNetns } from '../../native/netns.js';
import {
  bpfSkipReason,
  captureTest,
  dialFrom,
  fetchText,
  linksOn,
  outcome,
  runClient,
  serveFd,
  startProxies,
  type Pod,
} from './fixture.js';

const skip = bpfSkipReason();

test('detectCaptureMode picks bpf on a machine that can load the programs', { skip }, () => {
  const d = detectCaptureMode();
  assert.deepEqual(d, { mode: 'bpf' });
  assert.equal(readdirSync('/sys/fs/bpf').some((n) => n.startsWith('ambit-probe-')), false, 'probe pins are removed');
});

test('detectCaptureMode falls back to nft without a bpf filesystem', { skip }, () => {
  const d = detectCaptureMode({ mounts: 'cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n' });
  assert.equal(d.mode, 'nft');
  assert.match(d.reason ?? '', /not a bpf filesystem/);
});

test('bpf capture redirects, steers, bypasses and cleans up', { skip }, async (t) => {
  const { fx, servers, openBpf } = captureTest(t, 'r', 2);
  const [a, b] = fx.pods as [Pod, Pod];
  const pinDir = `/sys/fs/bpf/${fx.prefix}`;

  servers.push(serveFd(listenInNetns(b.netnsPath, { address: '::', port: 8080 }), (s) => `app-b ${s.localAddress?.replace(/^::ffff:/, '')}:${s.localPort}`));
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '::', port: 8080 }), (s) => `app-a ${s.localAddress?.replace(/^::ffff:/, '')}`));
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 9090 }), () => 'excluded-a'));
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 15008 }), () => 'hbone-a'));
  const proxies = startProxies(a, { ipv6: true });
  servers.push(...proxies.servers);

  const capture = await openBpf();
  await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(proxies.inbound), excludeInboundPorts: [9090], ipv6: true });
  assert.deepEqual(capture.enrolled(), ['pod-a']);
  const cookie = netnsCookie(a.netnsPath);
  assert.equal(capture.netnsCookieOf('pod-a'), cookie);
  assert.ok(existsSync(`${pinDir}/pods/${cookie}/steer`), 'sk_lookup link is pinned under the netns cookie');
  const before = capture.stats();

  await t.test('an app connect is redirected to the in-pod 15001 listener', async () => {
    const r = await runClient(a, b.ip, 8080, fx.cgroupPath);
    assert.equal(r.error, undefined);
    assert.equal(r.data, `proxied ${b.ip}:8080 -> app-b ${b.ip}:8080`);
    assert.equal(r.remoteAddress, b.ip, 'getpeername shows the original peer');
    assert.equal(r.remotePort, 8080);
    assert.equal(r.localAddress, '127.0.0.1', 'the connection really went to pod loopback');
    const hs = capture.handshakeMap('pod-a')!;
    try {
      assert.deepEqual(hs.keys(), [], 'the handshake entry moved to the accepted socket: nothing is left behind');
    } finally {
      hs.close();
    }
  });

  await t.test('a dual-stack socket connecting to a v4-mapped address is redirected too', async () => {
    const r = await runClient(a, `::ffff:${b.ip}`, 8080, fx.cgroupPath);
    assert.equal(r.data, `proxied ${b.ip}:8080 -> app-b ${b.ip}:8080`);
    assert.equal(r.remoteAddress, `::ffff:${b.ip}`);
  });

  await t.test('a socket marked 0x539 bypasses capture', async () => {
    assert.equal(await dialFrom(a.netnsPath, b.ip, 8080, { mark: BYPASS_MARK }), `app-b ${b.ip}:8080`);
    assert.match(await dialFrom(a.netnsPath, b.ip, 8080), /^proxied /, 'the same dial unmarked is captured');
  });

  await t.test('loopback destinations are not captured', async () => {
    assert.equal(await dialFrom(a.netnsPath, '127.0.0.1', 8080), 'app-a 127.0.0.1');
    assert.equal(await dialFrom(a.netnsPath, '::1', 8080), 'app-a ::1');
  });

  await t.test('inbound connections are steered to 15006 with the original local address', async () => {
    assert.equal(await fetchText(new net.Socket(), 8080, a.ip), `inbound ${a.ip}:8080 from ${a.hostIp}`);
    assert.equal(await fetchText(new net.Socket(), 4321, a.ip), `inbound ${a.ip}:4321 from ${a.hostIp}`);
  });

  await t.test('15008, excluded ports and the pod talking to itself are not steered', async () => {
    assert.equal(await fetchText(new net.Socket(), 15008, a.ip), 'hbone-a');
    assert.equal(await fetchText(new net.Socket(), 9090, a.ip), 'excluded-a');
    assert.equal(await dialFrom(a.netnsPath, a.ip, 8080, { mark: BYPASS_MARK }), `app-a ${a.ip}`);
  });

  await t.test('native IPv6 out: redirected to [::1]:15001, the proxy reads the IPv6 original', async () => {
    const r = await runClient(a, b.ip6, 8080, fx.cgroupPath);
    assert.equal(r.data, `proxied [${b.ip6}]:8080 -> app-b ${b.ip6}:8080`);
    assert.equal(r.remoteAddress, b.ip6, 'getpeername6 shows the original peer');
    assert.equal(r.localAddress, '::1');
  });

  await t.test('native IPv6 in: steered to the dual-stack 15006 listener, from a pod and from the host', async () => {
    assert.equal(await dialFrom(b.netnsPath, a.ip6, 8080), `inbound [${a.ip6}]:8080 from ${b.ip6}`);
    assert.equal(await fetchText(new net.Socket(), 7070, a.ip6), `inbound [${a.ip6}]:7070 from ${a.hostIp6}`);
  });

  await t.test('counters record the decisions', () => {
    const now = capture.stats();
    const d = (k: keyof typeof now): number => now[k] - before[k];
    assert.ok(d('CONNECT_REDIRECTED') >= 4);
    assert.ok(d('CONNECT_BYPASS_MARK') >= 3);
    assert.ok(d('CONNECT_LOOPBACK') >= 2);
    assert.ok(d('SOCKOPS_RECORDED') >= 4);
    assert.ok(d('SOCKOPS_HANDED_OVER') >= 4);
    assert.ok(d('GETSOCKOPT_ANSWERED') >= 4);
    assert.ok(d('GETPEERNAME_REWRITTEN') >= 3);
    assert.ok(d('STEER_ASSIGNED') >= 4);
    assert.ok(d('STEER_SKIP_PORT') >= 2);
    assert.ok(d('STEER_SKIP_LOCAL') >= 1);
    assert.equal(d('STEER_REFUSED_NO_SOCKET') + d('STEER_REFUSED_ASSIGN') + d('CONNECT_IPV6_REFUSED'), 0);
  });

  await t.test('a failed enroll rolls back: no link, no pin, not enrolled', async () => {
    const notListening = socketInNetns(b.netnsPath, { family: 'IPv4' });
    try {
      await assert.rejects(capture.enroll({ uid: 'pod-b', netnsPath: b.netnsPath, inboundListenerFd: notListening }), (e: unknown) => {
        const x = e as { code?: string; cause?: { code?: string } };
        assert.equal(x.code, 'AMBIT_ERR_CAPTURE_FAILED');
        assert.equal(x.cause?.code, 'AMBIT_ERR_BPF_MAP');
        return true;
      });
    } finally {
      closeFd(notListening);
    }
    assert.deepEqual(capture.enrolled(), ['pod-a']);
    assert.deepEqual(linksOn({ netnsPath: b.netnsPath }), []);
    assert.equal(existsSync(`${pinDir}/pods/${netnsCookie(b.netnsPath)}`), false);
    assert.equal((await runClient(b, a.ip, 8080, fx.cgroupPath)).data, `inbound ${a.ip}:8080 from ${b.ip}`, 'pod b is not captured');
  });

  await t.test('unenroll restores direct traffic and detaches the netns link', async () => {
    await capture.unenroll('pod-a');
    assert.deepEqual(capture.enrolled(), []);
    assert.equal((await runClient(a, b.ip, 8080, fx.cgroupPath)).data, `app-b ${b.ip}:8080`);
    assert.equal(await fetchText(new net.Socket(), 8080, a.ip), `app-a ${a.ip}`);
    assert.deepEqual(linksOn({ netnsPath: a.netnsPath }), []);
    assert.equal(existsSync(`${pinDir}/pods/${cookie}`), false);
  });

  await t.test('uninstall leaves no pins and no links', async () => {
    await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(proxies.inbound) });
    assert.equal(linksOn({ netnsPath: a.netnsPath }).length, 1);
    assert.equal(linksOn({ cgroupPath: fx.cgroupPath }).length, CGROUP_PROGRAMS.length);
    await capture.uninstall();
    await capture.uninstall();
    assert.equal(existsSync(pinDir), false);
    assert.deepEqual(linksOn({ cgroupPath: fx.cgroupPath, netnsPath: a.netnsPath }), []);
    assert.equal(await fetchText(new net.Socket(), 8080, a.ip), `app-a ${a.ip}`);
  });
});

test('without an IPv6 outbound listener and with an IPv4-only inbound listener, native IPv6 is refused both ways', { skip }, async (t) => {
  const { fx, servers, openBpf } = captureTest(t, '6', 2);
  const [a, b] = fx.pods as [Pod, Pod];
  let appA = 0;
  let appB = 0;
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '::', port: 8080 }), () => `app-a ${++appA}`));
  servers.push(serveFd(listenInNetns(b.netnsPath, { address: '::', port: 8080 }), () => `app-b ${++appB}`));
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '127.0.0.1', port: 15001 }), () => 'proxy'));
  const inbound4 = serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 15006 }), () => 'inbound4');
  servers.push(inbound4);
  const capture = await openBpf();
  await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(inbound4) });
  const before = capture.stats();

  assert.equal(await outcome(dialFrom(a.netnsPath, b.ip6, 8080)), 'EPERM', 'the IPv6 connect out is refused');
  assert.equal(await outcome(dialFrom(b.netnsPath, a.ip6, 8080)), 'ECONNREFUSED', 'the IPv6 connection in is refused');
  assert.equal(await outcome(dialFrom(b.netnsPath, a.ip, 8080)), 'ok:inbound4', 'IPv4 in is still captured');
  assert.deepEqual({ appA, appB }, { appA: 0, appB: 0 }, 'neither app was reached directly');
  const now = capture.stats();
  assert.equal(now.CONNECT_IPV6_REFUSED - before.CONNECT_IPV6_REFUSED, 1);
  assert.equal(now.STEER_REFUSED_ASSIGN - before.STEER_REFUSED_ASSIGN, 1);
});

test('open() refuses to own a whole bpf filesystem', { skip }, async () => {
  await assert.rejects(BpfCapture.open({ cgroupPath: '/sys/fs/cgroup', pinDir: '/sys/fs/bpf', log: silentLogger() }), {
    code: 'AMBIT_ERR_CAPTURE_FAILED',
    message: /mount point/,
  });
  assert.ok(existsSync('/sys/fs/bpf'), 'nothing was removed');
});
