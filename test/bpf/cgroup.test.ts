/**
 * Where capture attaches: the cgroup v2 hierarchy, found from /proc/mounts the way the agent
 * finds it, on both layouts (systemd hosts: /sys/fs/cgroup itself; hybrid hosts such as this
 * one: /sys/fs/cgroup/unified), and a clear fallback to nft when the configured path is not
 * cgroup2 (for example /sys/fs/cgroup on a hybrid host, where it is a tmpfs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, silentLogger } from '../../src/shared/log.js';
import { cgroup2Mounts, checkCgroup2, findCgroup2Root } from '../../src/agent/capture/cgroup.js';
import { detectCaptureMode } from '../../src/agent/capture/detect.js';
import { openCapture } from '../../src/agent/capture/open.js';
import { BpfCapture } from '../../src/agent/capture/redirect.js';
import { listenInNetns, socketFd } from '../../native/netns.js';
import { LogSink } from '../helpers/loopback-net.js';
import { bpfSkipReason, captureTest, cgroup2Root, dialFrom, serveFd, startProxies, type Pod } from './fixture.js';

const HYBRID = [
  'tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0',
  'cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0',
  'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0',
  'bpf /sys/fs/bpf bpf rw,relatime 0 0',
].join('\n');
const UNIFIED = ['cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0', 'bpf /sys/fs/bpf bpf rw 0 0'].join('\n');

test('the cgroup2 mount is found on both layouts', () => {
  assert.equal(findCgroup2Root(HYBRID), '/sys/fs/cgroup/unified');
  assert.equal(findCgroup2Root(UNIFIED), '/sys/fs/cgroup');
  assert.deepEqual(cgroup2Mounts(`${UNIFIED}\ncgroup2 /run/x\\040y cgroup2 rw 0 0`), ['/sys/fs/cgroup', '/run/x y']);
  assert.throws(() => findCgroup2Root('tmpfs /sys/fs/cgroup tmpfs rw 0 0\n'), { code: 'AMBIT_ERR_BPF_UNSUPPORTED', message: /no cgroup2 filesystem is mounted/ });
});

test('a cgroup path that is not cgroup2 falls back to nft, saying where cgroup2 is', { skip: bpfSkipReason() }, async (t) => {
  const notCgroup = mkdtempSync(join(tmpdir(), 'ambit-notcg-'));
  t.after(() => rmSync(notCgroup, { recursive: true, force: true }));
  const root = cgroup2Root()!;
  assert.throws(() => checkCgroup2(notCgroup), (e: unknown) => {
    const x = e as { code?: string; message: string };
    assert.equal(x.code, 'AMBIT_ERR_BPF_UNSUPPORTED');
    assert.ok(x.message.includes(`cgroup path ${notCgroup} is not a cgroup2 filesystem`), x.message);
    assert.ok(x.message.includes(`cgroup2 is mounted at ${root}: set AMBIT_CGROUP_PATH`), x.message);
    return true;
  });
  assert.doesNotThrow(() => checkCgroup2(root));
  const d = detectCaptureMode({ cgroupPath: notCgroup });
  assert.equal(d.mode, 'nft');
  assert.match(d.reason ?? '', /is not a cgroup2 filesystem/);
  await assert.rejects(BpfCapture.open({ cgroupPath: notCgroup, pinDir: `/sys/fs/bpf/ambit-notcg-${process.pid}`, log: silentLogger() }), {
    code: 'AMBIT_ERR_BPF_UNSUPPORTED',
  });

  const sink = new LogSink();
  const { capture, decision } = await openCapture({ cgroupPath: notCgroup, pinDir: `/sys/fs/bpf/ambit-notcg-${process.pid}`, log: createLogger({ level: 'info', destination: sink as never }) });
  await new Promise((r) => setImmediate(r));
  assert.equal(capture.mode, 'nft');
  assert.match(decision.reason ?? '', /not a cgroup2 filesystem/);
  assert.ok(sink.lines.some((l) => l['level'] === 40 && l['mode'] === 'nft' && /not a cgroup2 filesystem/.test(String(l['reason']))), 'one warning says why');
  await capture.close();

  // Unset, the agent uses the cgroup2 mount (not attached here: that would be the whole machine).
  assert.deepEqual(detectCaptureMode({ cgroupPath: findCgroup2Root() }), { mode: 'bpf' });
  assert.equal(findCgroup2Root(), root);
});

test('capture works through a cgroup2 mounted at its own mount point (the systemd layout)', { skip: bpfSkipReason() }, async (t) => {
  // A second mount of the same cgroup2 hierarchy, as /sys/fs/cgroup is on a systemd host.
  const mnt = mkdtempSync(join(tmpdir(), 'ambit-cg2-'));
  execFileSync('mount', ['-t', 'cgroup2', 'none', mnt]);
  const { fx, servers, openBpf } = captureTest(t, 'z', 2, { cgroupRoot: mnt });
  // After the fixture's own cleanup (hooks run in the order they are registered).
  t.after(async () => {
    execFileSync('umount', [mnt]);
    rmdirSync(mnt);
  });
  assert.equal(fx.cgroupPath, join(mnt, fx.prefix));
  const [a, b] = fx.pods as [Pod, Pod];
  servers.push(serveFd(listenInNetns(b.netnsPath, { address: '0.0.0.0', port: 8080 }), () => 'app-b'));
  const proxies = startProxies(a);
  servers.push(...proxies.servers);
  const capture = await openBpf();
  await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(proxies.inbound) });
  assert.equal(await dialFrom(a.netnsPath, b.ip, 8080), `proxied ${b.ip}:8080 -> app-b`);
  assert.equal(await dialFrom(b.netnsPath, a.ip, 8080), `inbound ${a.ip}:8080 from ${b.ip}`);
});

