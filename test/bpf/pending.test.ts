/**
 * The pending state (a pod's netns handed over at start, before its listeners exist): every TCP
 * connection it makes or receives is refused until it is enrolled, in both capture modes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/shared/log.js';
import type { Capture } from '../../src/agent/capture/capture.js';
import { NftCapture } from '../../src/agent/capture/nft.js';
import { socketFd } from '../../native/netns.js';
import { bpfSkipReason, captureTest, dialFrom, linksOn, nftSkipReason, outcome, startApps, startProxies, type Pod } from './fixture.js';

const bpfSkip = bpfSkipReason();

const nftSkip = nftSkipReason();

/** Apps on 8080 in every pod, counting what reaches them. */
for (const mode of ['bpf', 'nft'] as const) {
  test(`${mode}: a pending pod refuses all its TCP both ways until it is enrolled`, { skip: mode === 'bpf' ? bpfSkip : nftSkip }, async (t) => {
    const { fx, servers, openBpf, own } = captureTest(t, mode === 'bpf' ? 'w' : 'y', 2);
    const [a, b] = fx.pods as [Pod, Pod];
    const hits = startApps([a, b], servers);
    const capture: Capture = mode === 'bpf' ? await openBpf() : own(new NftCapture({ log: silentLogger() }));
    await capture.prepare({ uid: 'pod-a', netnsPath: a.netnsPath });
    assert.deepEqual([capture.pending(), capture.enrolled()], [['pod-a'], []]);
    // Outbound refusal: EPERM from connect4 (BPF) or a reset from the nft reject (nft).
    const refusedOut = mode === 'bpf' ? 'EPERM' : 'ECONNREFUSED';

    assert.equal(await outcome(dialFrom(a.netnsPath, b.ip, 8080)), refusedOut, 'a connect out is refused');
    assert.equal(await outcome(dialFrom(a.netnsPath, b.ip6, 8080)), refusedOut, 'IPv6 too');
    assert.equal(await outcome(dialFrom(b.netnsPath, a.ip, 8080)), 'ECONNREFUSED', 'a connection in is refused');
    assert.equal(await outcome(dialFrom(b.netnsPath, a.ip6, 8080)), 'ECONNREFUSED', 'IPv6 too');
    assert.equal(await outcome(dialFrom(a.netnsPath, '127.0.0.1', 8080)), `ok:app ${a.name} from 127.0.0.1`, 'pod-local traffic works');
    assert.deepEqual(Object.fromEntries(hits), { [a.name]: 1, [b.name]: 0 }, 'nothing went direct');
    const pendingLinks = mode === 'bpf' ? linksOn({ netnsPath: a.netnsPath }) : [];

    // Preparing again (a retried CNI ADD) changes nothing.
    await capture.prepare({ uid: 'pod-a', netnsPath: a.netnsPath });
    const proxies = startProxies(a);
    servers.push(...proxies.servers);
    await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(proxies.inbound) });
    assert.deepEqual([capture.pending(), capture.enrolled()], [[], ['pod-a']]);
    if (mode === 'bpf') assert.deepEqual(linksOn({ netnsPath: a.netnsPath }), pendingLinks, 'the same link, updated in place');
    assert.equal(await dialFrom(a.netnsPath, b.ip, 8080), `proxied ${b.ip}:8080 -> app ${b.name} from ${a.ip}`);
    assert.equal(await dialFrom(b.netnsPath, a.ip, 8080), `inbound ${a.ip}:8080 from ${b.ip}`);

    // Prepared under one uid (the CNI's) and enrolled under another: one pod, known by the new uid.
    await capture.prepare({ uid: 'cni-b', netnsPath: b.netnsPath });
    const pb = startProxies(b);
    servers.push(...pb.servers);
    await capture.enroll({ uid: 'pod-b', netnsPath: b.netnsPath, inboundListenerFd: socketFd(pb.inbound) });
    assert.deepEqual([capture.pending(), capture.enrolled().sort()], [[], ['pod-a', 'pod-b']]);
    await capture.unenroll('cni-b');
    assert.equal(await dialFrom(a.netnsPath, b.ip, 8080).then((x) => x.startsWith('proxied')), true, 'the old uid no longer reaches the pod');
    assert.equal(await dialFrom(b.netnsPath, a.ip, 8080).then((x) => x.startsWith('proxied')), true, 'b is still captured');
    await capture.unenroll('pod-b');

    // A pending pod released without ever being enrolled goes direct again.
    await capture.prepare({ uid: 'pod-b', netnsPath: b.netnsPath });
    assert.equal(await outcome(dialFrom(b.netnsPath, a.ip, 8080)), refusedOut);
    await capture.unenroll('pod-b');
    assert.deepEqual(capture.pending(), []);
    assert.equal(await dialFrom(a.netnsPath, b.ip, 8080).then((x) => x.startsWith('proxied')), true);
    assert.equal(await outcome(dialFrom(a.netnsPath, '127.0.0.1', 8080)), `ok:app ${a.name} from 127.0.0.1`);
  });
}
