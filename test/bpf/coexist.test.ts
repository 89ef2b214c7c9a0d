/**
 * Coexistence with another product's connect programs (Cilium's socket load balancer is the
 * common one): Ambit lists them at open (its cgroup's and the ancestors', BPF_F_QUERY_EFFECTIVE)
 * with one warning saying what to set, ignores other Ambit agents' programs, and keeps its place
 * in the hook's order across a restart (links updated in place), so it keeps seeing the service
 * address the app asked for.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { createLogger } from '../../src/shared/log.js';
import { BpfCapture } from '../../src/agent/capture/redirect.js';
import { AttachType, BpfObject, attachedPrograms, type BpfLink } from '../../native/bpf.js';
import { listenInNetns, socketFd } from '../../native/netns.js';
import { ipToBytes16 } from '../../native/sockaddr.js';
import { LogSink } from '../helpers/loopback-net.js';
import { bpfSkipReason, buildFixtureObject, closeServer, createFixture, dialFrom, serveFd, startProxies, type Pod } from './fixture.js';

const skip = bpfSkipReason();

test("another product's connect program is reported once with what to set, and Ambit keeps seeing the service across a restart", { skip }, async (t) => {
  const fx = createFixture('l', 2);
  // Capture attaches at a cgroup below the fixture's; the test process runs in it.
  const inner = join(fx.cgroupPath, 'pods');
  mkdirSync(inner);
  const dir = mkdtempSync(join(tmpdir(), 'ambit-lb-'));
  const pinRoot = `/sys/fs/bpf/${fx.prefix}-lb`;
  mkdirSync(pinRoot, { recursive: true });
  const servers: net.Server[] = [];
  const captures: BpfCapture[] = [];
  let lb: BpfObject | undefined;
  let lbLink: BpfLink | undefined;
  t.after(async () => {
    for (const c of captures.reverse()) await c.uninstall().catch(() => undefined);
    lbLink?.detach();
    lb?.close();
    for (const s of servers) await closeServer(s);
    rmSync(pinRoot, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
    writeFileSync(join(fx.cgroupPath, 'cgroup.procs'), String(process.pid));
    rmdirSync(inner);
    fx.cleanup();
  });
  writeFileSync(join(inner, 'cgroup.procs'), String(process.pid));
  const [a, b] = fx.pods as [Pod, Pod];
  servers.push(serveFd(listenInNetns(b.netnsPath, { address: '0.0.0.0', port: 8080 }), () => 'backend b'));
  const proxies = startProxies(a);
  servers.push(...proxies.servers);

  const open = async (pinDir: string): Promise<{ capture: BpfCapture; warnings: Record<string, unknown>[] }> => {
    const sink = new LogSink();
    const capture = await BpfCapture.open({ cgroupPath: inner, pinDir, log: createLogger({ level: 'info', destination: sink as never }) });
    captures.push(capture);
    await new Promise((r) => setImmediate(r));
    return { capture, warnings: sink.lines.filter((l) => l['level'] === 40) };
  };
  const pinDir = `/sys/fs/bpf/${fx.prefix}`;
  let { capture, warnings } = await open(pinDir);
  assert.deepEqual(warnings, [], 'nothing else at the connect hooks yet');
  await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(proxies.inbound) });

  // The other product attaches after Ambit, at the inner cgroup: a service 10.96.77.77:80 -> b:8080.
  lb = BpfObject.open(buildFixtureObject('foreign-connect', dir), { pinRoot });
  const addr = (ip: string, port: number): Buffer => {
    const v = Buffer.alloc(8);
    Buffer.from(ipToBytes16(ip).subarray(12)).copy(v, 0);
    v.writeUInt16BE(port, 4);
    return v;
  };
  const svcMap = lb.map('lb_service');
  svcMap.update(Buffer.from([0, 0, 0, 0]), addr('10.96.77.77', 80));
  svcMap.update(Buffer.from([1, 0, 0, 0]), addr(b.ip, 8080));
  lbLink = lb.attachCgroup('other_lb_connect4', inner);
  const order = (): string[] => attachedPrograms(inner, AttachType.cgroupInet4Connect).map((p) => p.name);
  assert.deepEqual(order(), ['ambit_connect4', 'other_lb_connec'], 'Ambit runs first (kernel names are cut at 15 characters)');
  assert.equal(await dialFrom(a.netnsPath, '10.96.77.77', 80), `proxied 10.96.77.77:80 -> backend b`, 'Ambit sees the service the app asked for');

  await t.test('a restarted Ambit reports the other program once, naming what to set, and keeps its place', async () => {
    await capture.close();
    captures.pop();
    ({ capture, warnings } = await open(pinDir));
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.match(String(warnings[0]!['msg']), /socketLB\.hostNamespaceOnly=true/);
    assert.deepEqual(warnings[0]!['programs'], [`other_lb_connec (id ${capture.foreignConnectPrograms()[0]!.id})`]);
    assert.deepEqual(order(), ['ambit_connect4', 'other_lb_connec'], 'the updated link kept Ambit first');
    await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(proxies.inbound) });
    assert.equal(await dialFrom(a.netnsPath, '10.96.77.77', 80), `proxied 10.96.77.77:80 -> backend b`, 'still the service address, not the backend');
  });

  await t.test("another Ambit agent's programs at the same cgroup are not reported", async () => {
    const second = await open(`/sys/fs/bpf/${fx.prefix}-second`);
    assert.deepEqual(
      second.capture.foreignConnectPrograms().map((p) => p.name),
      ['other_lb_connec'],
    );
  });
});
