/**
 * BPF capture end to end on real namespaces: outbound connect redirect to the in-pod 15001
 * listener, original destination via SO_ORIGINAL_DST, getpeername, the 0x539 bypass, sk_lookup
 * steering to 15006, unenroll, close() and stale-pin cleanup. Needs root and BPF.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../src/shared/log.js';
import { isAmbitError } from '../../src/shared/errors.js';
import { BpfCapture } from '../../src/agent/capture/redirect.js';
import { originalDestination } from '../../src/agent/capture/orig-dst.js';
import { detectCaptureMode } from '../../src/agent/capture/detect.js';
import { BYPASS_MARK, closeFd, listenInNetns, netnsCookie, socketFd, socketInNetns } from '../../native/netns.js';
import { bpfUnsupportedReason } from '../../native/bpf.js';
import { closeServer, createFixture, fetchText, isRoot, linksOn, runClient, serveFd, type Fixture } from './fixture.js';

const skipReason = !isRoot() ? 'requires root' : bpfUnsupportedReason();

function dial(netnsPath: string, host: string, port: number, mark?: number): Promise<string> {
  const family = net.isIPv6(host) ? 'IPv6' : 'IPv4';
  const fd = socketInNetns(netnsPath, mark === undefined ? { family } : { family, mark });
  return fetchText(new net.Socket({ fd }), port, host);
}

async function openOrSkip(t: { skip(msg: string): void }, fx: Fixture, pinDir: string): Promise<BpfCapture | undefined> {
  try {
    return await BpfCapture.open({ cgroupPath: fx.cgroupPath, pinDir, log: silentLogger() });
  } catch (e) {
    if (isAmbitError(e, 'AMBIT_ERR_BPF_UNSUPPORTED')) {
      t.skip(`bpf unsupported: ${e.message}`);
      return undefined;
    }
    throw e;
  }
}

test('detectCaptureMode picks bpf on a machine that can load the programs', { skip: skipReason }, () => {
  const d = detectCaptureMode();
  assert.deepEqual(d, { mode: 'bpf' });
  assert.equal(readdirSync('/sys/fs/bpf').some((n) => n.startsWith('ambit-probe-')), false, 'probe pins are removed');
});

test('detectCaptureMode falls back to nft without a bpf filesystem', { skip: skipReason }, () => {
  const d = detectCaptureMode({ mounts: 'cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n' });
  assert.equal(d.mode, 'nft');
  assert.match(d.reason ?? '', /not a bpf filesystem/);
});

test('bpf capture redirects, steers, bypasses and cleans up', { skip: skipReason }, async (t) => {
  const fx = createFixture('r', 2);
  let capture: BpfCapture | undefined;
  const servers: net.Server[] = [];
  // One hook, in reverse order of creation: capture, servers, then the namespaces.
  t.after(async () => {
    await capture?.close();
    for (const s of servers) await closeServer(s);
    fx.cleanup();
  });
  fx.enterCgroup();
  const [a, b] = fx.pods as [(typeof fx.pods)[0], (typeof fx.pods)[0]];
  const pinDir = `/sys/fs/bpf/${fx.prefix}`;

  servers.push(serveFd(listenInNetns(b.netnsPath, { address: '0.0.0.0', port: 8080 }), (s) => `app-b ${s.localAddress}:${s.localPort}`));
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 8080 }), () => 'app-a'));
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 9090 }), () => 'excluded-a'));
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 15008 }), () => 'hbone-a'));
  // Pod a's outbound proxy: read the original destination and dial it from the pod, marked.
  servers.push(
    serveFd(listenInNetns(a.netnsPath, { address: '127.0.0.1', port: 15001 }), async (s) => {
      const orig = originalDestination(s, 'outbound');
      const text = await dial(a.netnsPath, orig.address, orig.port, BYPASS_MARK);
      return `proxied ${orig.address}:${orig.port} -> ${text}`;
    }),
  );
  const inbound = serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 15006 }), (s) => {
    const o = originalDestination(s, 'inbound');
    return `inbound ${o.address}:${o.port} from ${s.remoteAddress}`;
  });
  servers.push(inbound);

  capture = await openOrSkip(t, fx, pinDir);
  if (capture === undefined) return;
  await capture.enroll({
    uid: 'pod-a',
    netnsPath: a.netnsPath,
    inboundListenerFd: socketFd(inbound),
    excludeInboundPorts: [9090],
  });
  assert.deepEqual(capture.enrolled(), ['pod-a']);
  assert.equal(capture.netnsCookieOf('pod-a'), netnsCookie(a.netnsPath));
  assert.ok(existsSync(`${pinDir}/pods/pod-a/steer`), 'sk_lookup link is pinned');
  const before = capture.stats();

  await t.test('an app connect is redirected to the in-pod 15001 listener', async () => {
    const r = await runClient(a, b.ip, 8080, fx.cgroupPath);
    assert.equal(r.error, undefined);
    assert.equal(r.data, `proxied ${b.ip}:8080 -> app-b ${b.ip}:8080`);
    assert.equal(r.remoteAddress, b.ip, 'getpeername shows the original peer');
    assert.equal(r.remotePort, 8080);
    assert.equal(r.localAddress, '127.0.0.1', 'the connection really went to pod loopback');
    assert.deepEqual(
      capture.recordedOriginal({ netnsCookie: netnsCookie(a.netnsPath), address: '127.0.0.1', port: r.localPort! }),
      { address: b.ip, port: 8080, family: 'IPv4' },
    );
  });

  await t.test('a dual-stack socket connecting to a v4-mapped address is redirected too', async () => {
    const r = await runClient(a, `::ffff:${b.ip}`, 8080, fx.cgroupPath);
    assert.equal(r.data, `proxied ${b.ip}:8080 -> app-b ${b.ip}:8080`);
    assert.equal(r.remoteAddress, `::ffff:${b.ip}`);
  });

  await t.test('a socket marked 0x539 bypasses capture', async () => {
    assert.equal(await dial(a.netnsPath, b.ip, 8080, BYPASS_MARK), `app-b ${b.ip}:8080`);
    assert.match(await dial(a.netnsPath, b.ip, 8080), /^proxied /, 'the same dial unmarked is captured');
  });

  await t.test('loopback destinations are not captured', async () => {
    assert.equal(await dial(a.netnsPath, '127.0.0.1', 8080), 'app-a');
  });

  await t.test('inbound connections are steered to 15006 with the original local address', async () => {
    const text = await fetchText(new net.Socket(), 8080, a.ip);
    assert.equal(text, `inbound ${a.ip}:8080 from ${a.hostIp}`);
    assert.equal(await fetchText(new net.Socket(), 4321, a.ip), `inbound ${a.ip}:4321 from ${a.hostIp}`);
  });

  await t.test('15008, excluded ports and the pod talking to itself are not steered', async () => {
    assert.equal(await fetchText(new net.Socket(), 15008, a.ip), 'hbone-a');
    assert.equal(await fetchText(new net.Socket(), 9090, a.ip), 'excluded-a');
    assert.equal(await dial(a.netnsPath, a.ip, 8080, BYPASS_MARK), 'app-a');
  });

  await t.test('native IPv6 goes direct unless the pod is enrolled with ipv6', async () => {
    servers.push(serveFd(listenInNetns(b.netnsPath, { address: '::', port: 8081 }), (s) => `app-b6 ${s.localAddress}`));
    const direct = await runClient(a, b.ip6, 8081, fx.cgroupPath);
    assert.equal(direct.data, `app-b6 ${b.ip6}`);
    servers.push(
      serveFd(listenInNetns(a.netnsPath, { address: '::1', port: 15001 }), async (s) => {
        const orig = originalDestination(s, 'outbound');
        const text = await dial(a.netnsPath, orig.address, orig.port, BYPASS_MARK);
        return `proxied6 [${orig.address}]:${orig.port} ${orig.family} -> ${text}`;
      }),
    );
    await capture!.enroll({
      uid: 'pod-a',
      netnsPath: a.netnsPath,
      inboundListenerFd: socketFd(inbound),
      excludeInboundPorts: [9090],
      ipv6: true,
    });
    const r = await runClient(a, b.ip6, 8081, fx.cgroupPath);
    assert.equal(r.data, `proxied6 [${b.ip6}]:8081 IPv6 -> app-b6 ${b.ip6}`);
    assert.equal(r.remoteAddress, b.ip6, 'getpeername6 shows the original peer');
    assert.equal(r.localAddress, '::1');
  });

  await t.test('a failed enroll rolls back: no link, no pin, not enrolled', async () => {
    const notListening = socketInNetns(b.netnsPath, { family: 'IPv4' });
    try {
      await assert.rejects(
        capture!.enroll({ uid: 'pod-b', netnsPath: b.netnsPath, inboundListenerFd: notListening }),
        (e: unknown) => {
          const x = e as { code?: string; cause?: { code?: string; details?: { errno?: string } } };
          assert.equal(x.code, 'AMBIT_ERR_CAPTURE_FAILED');
          assert.equal(x.cause?.code, 'AMBIT_ERR_BPF_MAP');
          return true;
        },
      );
    } finally {
      closeFd(notListening);
    }
    assert.deepEqual(capture!.enrolled(), ['pod-a']);
    assert.deepEqual(linksOn({ netnsPath: b.netnsPath }), []);
    assert.equal(existsSync(`${pinDir}/pods/pod-b`), false);
    assert.equal((await runClient(b, a.ip, 8080, fx.cgroupPath)).data, `inbound ${a.ip}:8080 from ${b.ip}`, 'pod b is not captured');
  });

  await t.test('counters record the decisions', () => {
    const now = capture.stats();
    assert.ok(now.CONNECT_REDIRECTED - before.CONNECT_REDIRECTED >= 3);
    assert.ok(now.CONNECT_BYPASS_MARK - before.CONNECT_BYPASS_MARK >= 3);
    assert.ok(now.CONNECT_LOOPBACK - before.CONNECT_LOOPBACK >= 1);
    assert.ok(now.CONNECT_IPV6_DISABLED - before.CONNECT_IPV6_DISABLED >= 1);
    assert.ok(now.GETSOCKOPT_ANSWERED - before.GETSOCKOPT_ANSWERED >= 3);
    assert.ok(now.GETPEERNAME_REWRITTEN - before.GETPEERNAME_REWRITTEN >= 2);
    assert.ok(now.STEER_ASSIGNED - before.STEER_ASSIGNED >= 2);
    assert.ok(now.STEER_SKIP_PORT - before.STEER_SKIP_PORT >= 2);
    assert.ok(now.STEER_SKIP_LOCAL - before.STEER_SKIP_LOCAL >= 1);
  });

  await t.test('unenroll restores direct traffic and detaches the netns link', async () => {
    await capture.unenroll('pod-a');
    assert.deepEqual(capture.enrolled(), []);
    const r = await runClient(a, b.ip, 8080, fx.cgroupPath);
    assert.equal(r.data, `app-b ${b.ip}:8080`);
    assert.equal(await fetchText(new net.Socket(), 8080, a.ip), 'app-a');
    assert.deepEqual(linksOn({ netnsPath: a.netnsPath }), []);
    assert.equal(existsSync(`${pinDir}/pods/pod-a`), false);
  });

  await t.test('close leaves no pins and no links', async () => {
    await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(inbound) });
    assert.equal(linksOn({ netnsPath: a.netnsPath }).length, 1);
    assert.equal(linksOn({ cgroupPath: fx.cgroupPath }).length, 6);
    await capture.close();
    await capture.close();
    assert.equal(existsSync(pinDir), false);
    assert.deepEqual(linksOn({ cgroupPath: fx.cgroupPath, netnsPath: a.netnsPath }), []);
    assert.equal(await fetchText(new net.Socket(), 8080, a.ip), 'app-a');
  });
});

test('open() refuses to own a whole bpf filesystem', { skip: skipReason }, async () => {
  await assert.rejects(
    BpfCapture.open({ cgroupPath: '/sys/fs/cgroup/unified', pinDir: '/sys/fs/bpf', log: silentLogger() }),
    { code: 'AMBIT_ERR_CAPTURE_FAILED', message: /mount point/ },
  );
  assert.ok(existsSync('/sys/fs/bpf'), 'nothing was removed');
});

test('open() removes the pins of a crashed run, which detaches its programs', { skip: skipReason }, async (t) => {
  const fx = createFixture('s', 1);
  let capture: BpfCapture | undefined;
  let child: ReturnType<typeof spawn> | undefined;
  t.after(async () => {
    child?.kill('SIGKILL');
    await capture?.close();
    fx.cleanup();
  });
  const [a] = fx.pods as [(typeof fx.pods)[0]];
  const pinDir = `/sys/fs/bpf/${fx.prefix}`;
  const redirectJs = fileURLToPath(new URL('../../src/agent/capture/redirect.js', import.meta.url));
  const netnsJs = fileURLToPath(new URL('../../native/netns.js', import.meta.url));
  const logJs = fileURLToPath(new URL('../../src/shared/log.js', import.meta.url));
  const script = `
    const { BpfCapture } = await import(${JSON.stringify(redirectJs)});
    const { listenInNetns } = await import(${JSON.stringify(netnsJs)});
    const { silentLogger } = await import(${JSON.stringify(logJs)});
    const c = await BpfCapture.open({ cgroupPath: ${JSON.stringify(fx.cgroupPath)}, pinDir: ${JSON.stringify(pinDir)}, log: silentLogger() });
    const fd = listenInNetns(${JSON.stringify(a.netnsPath)}, { address: '0.0.0.0', port: 15006 });
    await c.enroll({ uid: 'crashed', netnsPath: ${JSON.stringify(a.netnsPath)}, inboundListenerFd: fd });
    console.log('ready');
    setInterval(() => {}, 1000);`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  child = proc;
  let out = '';
  let err = '';
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  proc.stdout.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child not ready: ${err}`)), 15_000);
    proc.stdout.on('data', (d: string) => {
      out += d;
      if (out.includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on('exit', () => reject(new Error(`child exited: ${err}`)));
  }).catch((e: unknown) => {
    if (/AMBIT_ERR_BPF_UNSUPPORTED/.test(err)) t.skip('bpf unsupported');
    throw e;
  });
  proc.kill('SIGKILL');
  await once(proc, 'close');

  const staleCg = linksOn({ cgroupPath: fx.cgroupPath });
  const staleNs = linksOn({ netnsPath: a.netnsPath });
  assert.equal(staleCg.length, 6, 'pinned cgroup links outlive the crashed process');
  assert.equal(staleNs.length, 1, 'the pinned sk_lookup link outlives it too');
  assert.ok(existsSync(`${pinDir}/pods/crashed/steer`));

  capture = await openOrSkip(t, fx, pinDir);
  if (capture === undefined) return;
  assert.deepEqual(linksOn({ netnsPath: a.netnsPath }), [], 'the stale sk_lookup link is gone');
  const fresh = linksOn({ cgroupPath: fx.cgroupPath });
  assert.equal(fresh.length, 6);
  assert.equal(fresh.some((id) => staleCg.includes(id)), false, 'only the new cgroup links are attached');
  assert.equal(existsSync(`${pinDir}/pods/crashed`), false);
  await capture.close();
  assert.deepEqual(linksOn({ cgroupPath: fx.cgroupPath }), []);
});
