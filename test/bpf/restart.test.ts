/**
 * Capture across agent deaths and restarts, with a real agent process (test/bpf/agent-stub.ts)
 * killed and restarted under real traffic:
 * - killed: an enrolled pod's inbound and outbound connections are refused, never direct;
 * - restarted: the pinned links are updated in place (same link ids), the pod map is never
 *   cleared, and no connection goes direct while the new agent starts;
 * - graceful: an established connection survives while the new agent serves new ones;
 * - a new agent prunes what the old left for pods no longer wanted, keeps pending ones, and only
 *   ever removes what Ambit pinned.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { createLogger, silentLogger } from '../../src/shared/log.js';
import { LogSink } from '../helpers/loopback-net.js';
import { BpfCapture, CGROUP_PROGRAMS } from '../../src/agent/capture/redirect.js';
import { BpfMap, RAW_CODEC } from '../../native/bpf.js';
import { listenInNetns, netnsCookie, socketInNetns } from '../../native/netns.js';
import { bpfSkipReason, captureTest, dialFrom, linksOn, outcome, serveFd, type Fixture, type Pod } from './fixture.js';

const skip = bpfSkipReason();
const stubJs = fileURLToPath(new URL('./agent-stub.js', import.meta.url));

interface Stub {
  proc: ChildProcess;
  stdout(): string;
}

/** Starts a stand-in agent and waits until it has enrolled its pods. */
async function startAgent(fx: Fixture, tag: string, pods: Pod[], prepare: Pod[] = []): Promise<Stub> {
  const arg = {
    cgroupPath: fx.cgroupPath,
    pinDir: `/sys/fs/bpf/${fx.prefix}`,
    tag,
    pods: pods.map((p) => ({ uid: p.name, netnsPath: p.netnsPath })),
    prepare: prepare.map((p) => ({ uid: p.name, netnsPath: p.netnsPath })),
  };
  const proc = spawn(process.execPath, [stubJs, JSON.stringify(arg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent ${tag} not ready: ${err}`)), 30_000);
    const check = (): void => {
      if (out.includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent ${tag} exited ${code}: ${err}`));
    });
  });
  return { proc, stdout: () => out };
}

async function kill9(stub: Stub): Promise<void> {
  if (stub.proc.exitCode !== null || stub.proc.signalCode !== null) return;
  const exited = once(stub.proc, 'exit');
  stub.proc.kill('SIGKILL');
  await exited;
}

/** Link ids on the cgroup and the pod's netns (bpftool). */
function links(fx: Fixture, pod: Pod): { cgroup: number[]; netns: number[] } {
  return { cgroup: linksOn({ cgroupPath: fx.cgroupPath }).sort(), netns: linksOn({ netnsPath: pod.netnsPath }).sort() };
}

/** Keys of a pinned map of the agent (raw bytes, hex). */
function pinnedKeys(fx: Fixture, map: string): string[] {
  const m = BpfMap.fromPin(`/sys/fs/bpf/${fx.prefix}/maps/${map}`, RAW_CODEC);
  try {
    return m
      .keys()
      .map((k) => k.toString('hex'))
      .sort();
  } finally {
    m.close();
  }
}

/**
 * The test's pods and servers (captureTest), and the stand-in agents it starts: killed after the
 * test (captureTest then adopts and removes what they pinned).
 */
function restartTest(t: { after(fn: () => Promise<void>): void }, tag: string, count: number): { fx: Fixture; servers: net.Server[]; stubs: Stub[] } {
  const { fx, servers, own } = captureTest(t, tag, count);
  const stubs: Stub[] = [];
  own({
    uninstall: async () => {
      for (const s of stubs) await kill9(s);
    },
  });
  return { fx, servers, stubs };
}

/** Apps that count what reaches them directly (uncaptured). */
function startApps(pods: Pod[], servers: net.Server[]): Map<string, number> {
  const direct = new Map<string, number>();
  for (const p of pods) {
    direct.set(p.name, 0);
    servers.push(
      serveFd(listenInNetns(p.netnsPath, { address: '::', port: 8080 }), () => {
        direct.set(p.name, direct.get(p.name)! + 1);
        return `app ${p.name}`;
      }),
    );
  }
  return direct;
}

test('a killed agent leaves the pod refused both ways; a restart takes over in place and loses no capture', { skip }, async (t) => {
  const { fx, servers, stubs } = restartTest(t, 'k', 2);
  const [a, b] = fx.pods as [Pod, Pod];
  const direct = startApps([a, b], servers);

  const first = await startAgent(fx, 'agent1', [a]);
  stubs.push(first);
  assert.equal(await dialFrom(b.netnsPath, a.ip, 8080), `inbound ${a.ip}:8080 via agent1`);
  assert.equal(await dialFrom(a.netnsPath, b.ip, 8080), `via agent1\napp ${b.name}`);
  direct.set(b.name, 0);
  const before = { links: links(fx, a), pods: pinnedKeys(fx, 'ambit_pods') };
  assert.equal(before.links.cgroup.length, CGROUP_PROGRAMS.length);
  assert.equal(before.links.netns.length, 1);
  assert.deepEqual(before.pods.length, 1);

  await kill9(first);

  await t.test('while no agent runs, plaintext in and connects out are refused: zero direct successes', async () => {
    for (let i = 0; i < 20; i++) {
      assert.equal(await outcome(dialFrom(b.netnsPath, a.ip, 8080)), 'ECONNREFUSED', `inbound attempt ${i}`);
      assert.equal(await outcome(dialFrom(b.netnsPath, a.ip6, 8080)), 'ECONNREFUSED', `inbound IPv6 attempt ${i}`);
      assert.equal(await outcome(dialFrom(a.netnsPath, b.ip, 8080)), 'ECONNREFUSED', `outbound attempt ${i}`);
    }
    assert.deepEqual(Object.fromEntries(direct), { [a.name]: 0, [b.name]: 0 }, 'no app was reached directly');
    assert.deepEqual(links(fx, a), before.links, 'the pinned links stay attached');
  });

  await t.test('a new agent takes over in place: same links, same pod map, and nothing goes direct meanwhile', async () => {
    // Clients keep trying in both directions from before the new agent starts until it serves.
    let stop = false;
    const results: string[] = [];
    const hammer = (async () => {
      for (let i = 0; i < 2000 && !stop; i++) {
        results.push(await outcome(dialFrom(b.netnsPath, a.ip, 8080)));
        results.push(await outcome(dialFrom(a.netnsPath, b.ip, 8080)));
      }
    })();
    const second = await startAgent(fx, 'agent2', [a]);
    stubs.push(second);
    // Until both directions have been seen through the new agent.
    for (let i = 0; i < 200 && !(results.some((r) => r.includes('inbound') && r.includes('agent2')) && results.some((r) => r.includes('via agent2'))); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    stop = true;
    await hammer;
    const served = results.filter((r) => r.startsWith('ok:'));
    assert.ok(served.some((r) => r.includes('agent2')), `the new agent serves (${results.length} attempts)`);
    assert.deepEqual(served.filter((r) => !r.includes('agent2')), [], 'every connection that got through went through the new agent');
    assert.deepEqual(
      results.filter((r) => !r.startsWith('ok:') && r !== 'ECONNREFUSED'),
      [],
      'while the agent started, connections were refused, nothing else',
    );
    // b's app also counts what agent2 proxied there; every outbound success carried "via agent2" above.
    assert.equal(direct.get(a.name), 0, "a's app was never reached directly");
    assert.deepEqual(links(fx, a), before.links, 'the same link ids: updated in place, never detached');
    assert.deepEqual(pinnedKeys(fx, 'ambit_pods'), before.pods, 'the pod map was not cleared');
  });
});

test('a graceful restart keeps an established connection while the new agent serves new ones', { skip }, async (t) => {
  const { fx, servers, stubs } = restartTest(t, 'g', 2);
  const [a, b] = fx.pods as [Pod, Pod];
  // An echo server in b.
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  echo.listen({ fd: listenInNetns(b.netnsPath, { address: '0.0.0.0', port: 7000 }) });
  servers.push(echo);

  const first = await startAgent(fx, 'agent1', [a]);
  stubs.push(first);
  const before = links(fx, a);
  // A long-lived connection from a's app to b's echo, through agent1.
  const conn = new net.Socket({ fd: socketInNetns(a.netnsPath, { family: 'IPv4' }) });
  conn.setEncoding('utf8');
  let received = '';
  conn.on('data', (d: string) => (received += d));
  const until = async (text: string): Promise<void> => {
    for (let i = 0; i < 400 && !received.includes(text); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(received.includes(text), `received ${JSON.stringify(received)}, waiting for ${JSON.stringify(text)}`);
  };
  conn.connect(7000, b.ip);
  conn.write('one;');
  await until('via agent1\none;');

  // Graceful stop of agent1 (it drains), and agent2 starts while agent1 still holds the connection.
  first.proc.kill('SIGTERM');
  const second = await startAgent(fx, 'agent2', [a]);
  stubs.push(second);
  assert.equal(first.proc.exitCode, null, 'agent1 is still draining the established connection');
  const fresh = new net.Socket({ fd: socketInNetns(a.netnsPath, { family: 'IPv4' }) });
  fresh.setEncoding('utf8');
  let freshText = '';
  fresh.on('data', (d: string) => (freshText += d));
  fresh.connect(7000, b.ip);
  fresh.write('new;');
  for (let i = 0; i < 400 && !freshText.includes('new;'); i++) await new Promise((r) => setTimeout(r, 25));
  assert.equal(freshText, 'via agent2\nnew;', 'a new connection goes through the new agent');
  fresh.destroy();

  conn.write('two;');
  await until('one;two;');
  assert.equal(received, 'via agent1\none;two;', 'the established connection kept working across the restart');
  conn.end();
  const [code] = (await once(first.proc, 'exit')) as [number | null];
  assert.equal(code, 0, 'agent1 finished draining and exited cleanly');
  assert.match(first.stdout(), /drained/);
  assert.deepEqual(links(fx, a), before, 'capture stayed attached through both agents');
});

test('a new agent prunes pods no longer wanted, keeps pending ones, and removes only what Ambit pinned', { skip }, async (t) => {
  const { fx, servers, stubs } = restartTest(t, 'q', 3);
  const pinDir = `/sys/fs/bpf/${fx.prefix}`;
  let capture: BpfCapture | undefined;
  // What the test put there that is not Ambit's (after the stubs' pins are gone).
  t.after(async () => {
    await capture?.uninstall();
    execFileSync('rm', ['-rf', pinDir]);
  });
  const [a, b, c] = fx.pods as [Pod, Pod, Pod];
  const direct = startApps([a, b, c], servers);
  const old = await startAgent(fx, 'agent1', [a, b], [c]);
  stubs.push(old);
  await kill9(old);
  // Something in the pin folder that is not Ambit's.
  mkdirSync(`${pinDir}/not-ambit`);
  execFileSync('bpftool', ['map', 'create', `${pinDir}/maps/not_ambit`, 'type', 'hash', 'key', '4', 'value', '4', 'entries', '4', 'name', 'not_ambit']);

  // A pod entry with no pin folder, as a run that crashed halfway through unenrolling leaves.
  const podsMap = BpfMap.fromPin(`${pinDir}/maps/ambit_pods`, RAW_CODEC);
  const orphan = Buffer.alloc(8);
  orphan.writeBigUInt64LE(0xfffffffffff0n);
  podsMap.update(orphan, Buffer.from([0x99, 0x3a, 0, 0, 0, 0, 0, 0]));
  podsMap.close();
  capture = await BpfCapture.open({ cgroupPath: fx.cgroupPath, pinDir, log: silentLogger() });
  const cookies = new Map([a, b, c].map((p) => [p.name, netnsCookie(p.netnsPath)]));
  assert.deepEqual(capture.adopted().sort(), [...cookies.values()].sort(), 'the new agent adopts the three pods');
  assert.equal(await outcome(dialFrom(a.netnsPath, b.ip, 8080)), 'ECONNREFUSED', 'adopted, not yet enrolled: refused');

  const released = await capture.prune({ keepNetns: [a.netnsPath] });
  assert.equal(released, 2, 'b is no longer wanted, and the orphan entry goes');
  assert.equal(pinnedKeys(fx, 'ambit_pods').includes(orphan.toString('hex')), false);
  assert.equal(await capture.prune({ keepNetns: [a.netnsPath] }), 0, 'a second prune finds nothing more');
  assert.deepEqual(capture.adopted().sort(), [cookies.get(a.name)!, cookies.get(c.name)!].sort(), 'a is wanted, c is pending');
  assert.deepEqual(linksOn({ netnsPath: b.netnsPath }), [], "b's link is gone");
  assert.equal(await dialFrom(b.netnsPath, a.ip, 8080).catch((e: { code?: string }) => e.code), 'ECONNREFUSED', 'a stays refused until enrolled');
  assert.equal(await dialFrom(a.netnsPath, b.ip, 8080).catch((e: { code?: string }) => e.code), 'ECONNREFUSED');
  assert.equal(await dialFrom(c.netnsPath, b.ip, 8080).catch((e: { code?: string }) => e.code), 'EPERM', 'c stays pending');
  assert.equal(await dialFrom(c.netnsPath, a.ip, 8080).catch(() => 'refused'), 'refused');
  assert.equal(await dialFrom(a.netnsPath, c.ip, 8080).catch((e: { code?: string }) => e.code), 'ECONNREFUSED', 'c refuses inbound too');
  assert.equal(await dialFrom(b.netnsPath, b.ip, 8080), `app ${b.name}`, 'b is direct again');
  assert.equal(direct.get(a.name), 0);
  assert.equal(direct.get(c.name), 0);

  await capture.uninstall();
  capture = undefined;
  assert.deepEqual(readdirSync(pinDir).sort(), ['maps', 'not-ambit'], 'the folder that is not Ambit\'s stays');
  assert.deepEqual(readdirSync(`${pinDir}/maps`), ['not_ambit'], 'the map that is not Ambit\'s stays');
  assert.ok(existsSync(`${pinDir}/not-ambit`));
  assert.deepEqual(linksOn({ cgroupPath: fx.cgroupPath, netnsPath: a.netnsPath }), []);
  assert.deepEqual(linksOn({ netnsPath: c.netnsPath }), []);
});

test('a pinned map of an older shape is replaced with a warning, and a failed open leaves nothing of its own', { skip }, async (t) => {
  const { fx, own } = captureTest(t, 'v', 1);
  const pinDir = `/sys/fs/bpf/${fx.prefix}`;
  mkdirSync(`${pinDir}/maps`, { recursive: true });
  // ambit_pods as an older agent might have pinned it: a different value size.
  execFileSync('bpftool', ['map', 'create', `${pinDir}/maps/ambit_pods`, 'type', 'hash', 'key', '8', 'value', '4', 'entries', '16', 'name', 'ambit_pods']);
  const sink = new LogSink();
  const capture = own(await BpfCapture.open({ cgroupPath: fx.cgroupPath, pinDir, log: createLogger({ level: 'info', destination: sink as never }) }));
  await new Promise((r) => setImmediate(r));
  assert.ok(sink.lines.some((l) => l['level'] === 40 && /older layout were replaced/.test(String(l['msg']))), 'one warning');
  const pods = BpfMap.fromPin(`${pinDir}/maps/ambit_pods`, RAW_CODEC);
  try {
    assert.equal(pods.info.valueSize, 8, 'the pin now holds the current map');
  } finally {
    pods.close();
  }
  await capture.uninstall();

  // An open that fails halfway (after its maps are pinned): something that is not a link sits
  // where the first link pin goes.
  const failDir = `${pinDir}-fail`;
  t.after(async () => execFileSync('rm', ['-rf', failDir]));
  mkdirSync(`${failDir}/links/ambit_sockops`, { recursive: true });
  await assert.rejects(BpfCapture.open({ cgroupPath: fx.cgroupPath, pinDir: failDir, log: silentLogger() }), { code: 'AMBIT_ERR_BPF_ATTACH' });
  assert.deepEqual(readdirSync(failDir), ['links'], 'its map pins and empty folders are gone');
  assert.deepEqual(readdirSync(`${failDir}/links`), ['ambit_sockops'], 'what it did not make is left');
  assert.deepEqual(linksOn({ cgroupPath: fx.cgroupPath }), [], 'nothing stays attached');
});
