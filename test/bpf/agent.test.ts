/**
 * The Agent with real BPF capture in real namespaces: its in-pod listeners are dual-stack, so a
 * pod's IPv6 is captured both ways; a captured connection aimed at the pod's own agent ports is
 * closed rather than dialed back into the agent; the CNI hand-off (preparePod / releasePod) keeps
 * a new pod refused until the config enrolls it; a restarted agent prunes what it no longer wants.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Capture } from '../../src/agent/capture/capture.js';
import { testWorkload } from '../helpers/loopback-net.js';
import { bpfSkipReason, captureTest, dialFrom, outcome, startApps, type Pod } from './fixture.js';
import { snapshot, startWorkerAgent, type WorkerAgent } from './worker-agent.js';

const skip = bpfSkipReason();

/** An Agent over `capture` as main.ts wires it with one worker (no controller: the test applies snapshots). */
function startAgent(capture: Capture): WorkerAgent {
  return startWorkerAgent(capture, { workers: 1 });
}

test("the agent's dual-stack listeners capture a pod's IPv6 both ways; its own ports are never dialed back", { skip }, async (t) => {
  const { fx, servers, openBpf, own } = captureTest(t, 'j', 2);
  const [a, b] = fx.pods as [Pod, Pod];
  const hits = startApps([a, b], servers);
  const capture = await openBpf();
  const { agent, registry } = startAgent(capture);
  own({ uninstall: () => agent.close(200) });
  const wa = testWorkload({ name: 'client', namespace: 'demo', ip: a.ip, netns: a.netnsPath });
  await agent.applyConfig(snapshot([wa]));
  assert.equal(agent.statusProvider()[0]?.captured, true);

  await t.test('IPv6 out: through [::1]:15001 and the agent, from the pod', async () => {
    assert.equal(await dialFrom(a.netnsPath, b.ip6, 8080), `app ${b.name} from ${a.ip6}`);
    assert.equal(capture.stats().CONNECT_IPV6_REFUSED, 0);
  });

  await t.test('IPv6 in: through the dual-stack [::]:15006 (PERMISSIVE), the client address kept', async () => {
    assert.equal(await dialFrom(b.netnsPath, a.ip6, 8080), `app ${a.name} from ${b.ip6}`);
    assert.equal(capture.stats().STEER_REFUSED_ASSIGN, 0);
  });

  await t.test("connections to the pod's own agent ports are closed, not looped", async () => {
    const rejected = async (): Promise<number> =>
      (await registry.getSingleMetric('ambit_connections_rejected_total')!.get()).values
        .filter((v) => v.labels['reason'] === 'self_call')
        .reduce((n, v) => n + v.value, 0);
    const before = await rejected();
    const appBefore = hits.get(a.name);
    // From b to a's 15006 and 15001: steered to 15006, whose original destination is an agent port.
    for (const port of [15006, 15001]) assert.match(await outcome(dialFrom(b.netnsPath, a.ip, port)), /^(ok:|ECONNRESET)$/, `:${port} closed without data`);
    // From a's app to its own pod address on 15006: captured, and the agent will not dial itself.
    assert.match(await outcome(dialFrom(a.netnsPath, a.ip, 15006)), /^(ok:|ECONNRESET)$/);
    assert.equal(await rejected(), before + 3);
    assert.equal(hits.get(a.name), appBefore);
  });
});

test('the CNI hand-off: preparePod refuses the pod until the config enrolls it with that netns; checkPod confirms it; releasePod lets it go', { skip }, async (t) => {
  const { fx, servers, openBpf, own } = captureTest(t, 'h', 3);
  const [a, b, c] = fx.pods as [Pod, Pod, Pod];
  const hits = startApps([a, b, c], servers);
  const capture = await openBpf();
  const { agent } = startAgent(capture);
  own({ uninstall: () => agent.close(200) });
  // The controller knows the pods but not their netns yet.
  const wa = testWorkload({ name: 'client', namespace: 'demo', ip: a.ip });
  const wc = testWorkload({ name: 'legacy', namespace: 'demo', ip: c.ip, tunnelProtocol: 'NONE' });

  await agent.preparePod({ uid: wa.uid, netnsPath: a.netnsPath });
  await agent.preparePod({ uid: wc.uid, netnsPath: c.netnsPath });
  assert.deepEqual(capture.pending().sort(), [wa.uid, wc.uid].sort());
  await agent.checkPod({ uid: wa.uid, netnsPath: a.netnsPath });
  await assert.rejects(agent.checkPod({ uid: wa.uid, netnsPath: b.netnsPath }), { code: 'AMBIT_ERR_CAPTURE_FAILED' }, 'another netns is not where its capture is');
  await assert.rejects(agent.checkPod({ uid: 'nobody', netnsPath: b.netnsPath }), { code: 'AMBIT_ERR_CAPTURE_FAILED' });
  assert.equal(await outcome(dialFrom(a.netnsPath, b.ip, 8080)), 'EPERM', 'before the config arrives, the pod is refused');
  assert.equal(await outcome(dialFrom(b.netnsPath, a.ip, 8080)), 'ECONNREFUSED');

  await agent.applyConfig(snapshot([wa, wc]));
  assert.deepEqual(capture.enrolled(), [wa.uid], 'enrolled with the netns the CNI handed over');
  assert.deepEqual(capture.pending(), [], 'the pod the config does not put in the mesh is released');
  assert.equal(agent.statusProvider().find((s) => s.uid === wa.uid)?.captured, true);
  assert.equal(await dialFrom(a.netnsPath, b.ip, 8080), `app ${b.name} from ${a.ip}`, 'captured: passed through by the agent from the pod');
  assert.equal(await dialFrom(b.netnsPath, a.ip, 8080), `app ${a.name} from ${b.ip}`, 'captured inbound: PERMISSIVE plaintext reaches the app, source kept');
  assert.equal(await dialFrom(c.netnsPath, b.ip, 8080), `app ${b.name} from ${c.ip}`, 'the released pod is direct');

  // The controller now reports the netns: the same netns, nothing changes.
  await agent.applyConfig(snapshot([{ ...wa, netns: a.netnsPath }, wc]));
  assert.deepEqual(capture.enrolled(), [wa.uid]);
  await agent.checkPod({ uid: wa.uid, netnsPath: a.netnsPath });
  await agent.releasePod(wa.uid);
  assert.deepEqual(capture.enrolled(), []);
  await assert.rejects(agent.checkPod({ uid: wa.uid, netnsPath: a.netnsPath }), { code: 'AMBIT_ERR_CAPTURE_FAILED' }, 'released: no longer captured');
  assert.equal(await dialFrom(a.netnsPath, b.ip, 8080), `app ${b.name} from ${a.ip}`);
  assert.equal(hits.get(a.name), 1, 'only the captured, authorized connection reached a');
});

test('a restarted agent keeps the pods it still wants captured and releases the others after its first config', { skip }, async (t) => {
  const { fx, servers, openBpf, own } = captureTest(t, 'e', 2);
  const [a, b] = fx.pods as [Pod, Pod];
  startApps([a, b], servers);
  const wa = testWorkload({ name: 'client', namespace: 'demo', ip: a.ip, netns: a.netnsPath });
  const wb = testWorkload({ name: 'server', namespace: 'demo', ip: b.ip, netns: b.netnsPath });
  const first = startAgent(await openBpf()).agent;
  await first.applyConfig(snapshot([wa, wb]));
  await first.close(200);
  // b left the mesh while no agent ran.
  const capture = await openBpf();
  const { agent } = startAgent(capture);
  own({ uninstall: () => agent.close(200) });
  assert.equal(capture.adopted().length, 2, 'both pods were left captured');
  assert.equal(await outcome(dialFrom(b.netnsPath, a.ip, 8080)), 'ECONNREFUSED', 'refused until the new agent enrolls a');
  await agent.applyConfig(snapshot([wa, { ...wb, tunnelProtocol: 'NONE' }]));
  assert.deepEqual(capture.adopted(), [], 'a is enrolled again, b released');
  assert.deepEqual(capture.enrolled(), [wa.uid]);
  assert.equal(await dialFrom(b.netnsPath, a.ip, 8080), `app ${a.name} from ${b.ip}`, 'a is captured again (PERMISSIVE)');
  assert.equal(await dialFrom(b.netnsPath, b.ip, 8080), `app ${b.name} from ${b.ip}`, 'b is direct');
});
