/**
 * Pure parts of finding pods' network namespaces: addresses read from /proc/<pid>/net texts,
 * canonical IP text, matching a pod to one namespace, the state file's shape, and the redirection
 * annotation plan.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalIp, matchNetns, parseFibTrieLocal, parseIfInet6, type HostNetns } from '../../../src/agent/netns/host-scan.js';
import { parseState } from '../../../src/agent/netns/pod-netns.js';
import { ANNOTATION_REDIRECTION, planRedirectionPatches } from '../../../src/agent/kube/redirection.js';
import { podRefOfUid, podWorkloadUid } from '../../../src/agent/agent.js';
import type { NodePod } from '../../../src/agent/kube/client.js';

// A pod netns as the kernel prints it: eth0 10.244.1.7/24, lo, and a /32 route that is not local.
const FIB_TRIE = `Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.244.1.0/24 2 0 2
        +-- 10.244.1.0/29 2 0 2
           |-- 10.244.1.0
              /24 link UNICAST
           |-- 10.244.1.7
              /32 host LOCAL
        |-- 10.244.1.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
     |-- 192.0.2.9
        /32 universe UNICAST
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.244.1.0/24 2 0 2
           |-- 10.244.1.7
              /32 host LOCAL
`;

const IF_INET6 = `fd000000000000000000000000000007 02 40 00 80     eth0
fe800000000000004ceb05fffe6e3849 02 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
20010db8000000000000000000000a0b 02 40 00 80     eth0
`;

test('fib_trie: only the /32 host LOCAL leaves, loopback left out, each once', () => {
  assert.deepEqual(parseFibTrieLocal(FIB_TRIE), ['10.244.1.7']);
  assert.deepEqual(parseFibTrieLocal(''), []);
});

test('if_inet6: global and ULA addresses in canonical form; link-local and loopback left out', () => {
  assert.deepEqual(parseIfInet6(IF_INET6), ['fd00::7', '2001:db8::a0b']);
  assert.deepEqual(parseIfInet6('garbage\n'), []);
});

test('canonicalIp: one text per address', () => {
  const cases: Array<[string, string | undefined]> = [
    ['10.0.0.1', '10.0.0.1'],
    ['FD00:0:0:0:0:0:0:7', 'fd00::7'],
    ['fd00::7', 'fd00::7'],
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['not-an-ip', undefined],
    ['10.0.0.256', undefined],
  ];
  for (const [input, want] of cases) assert.equal(canonicalIp(input), want, input);
  // Round trip: canonical text is its own canonical form.
  for (const [, want] of cases) if (want !== undefined) assert.equal(canonicalIp(want), want);
});

test('matchNetns: one namespace by any pod address; two are ambiguous; none without addresses', () => {
  const scan: HostNetns[] = [
    { key: '4:1', pids: [10], addresses: ['10.244.1.7', 'fd00::7'] },
    { key: '4:2', pids: [20, 21], addresses: ['10.244.1.8'] },
    { key: '4:3', pids: [30], addresses: ['10.244.1.9'] },
  ];
  const found = (ips: string[]): string => {
    const m = matchNetns(scan, ips);
    return m.kind === 'found' ? m.netns.key : m.kind;
  };
  assert.equal(found(['10.244.1.8']), '4:2');
  assert.equal(found(['FD00::0:7']), '4:1', 'IPv6 in another spelling');
  assert.equal(found(['10.9.9.9']), 'none');
  assert.equal(found([]), 'none');
  assert.equal(found(['10.244.1.8', '10.244.1.9']), 'ambiguous', 'two namespaces hold the pod addresses');
  assert.deepEqual(matchNetns([...scan, { key: '4:4', pids: [40], addresses: ['10.244.1.9'] }], ['10.244.1.9']), { kind: 'ambiguous', keys: ['4:3', '4:4'] });
});

test('state file: valid documents parse and re-serialize; anything else is refused whole', () => {
  const doc = { version: 1, pods: [{ uid: 'Kubernetes//v1/Pod/demo/web', netnsPath: '/var/run/netns/cni-1', key: '4:4026532300', containerId: 'abc', podUid: 'u-1' }] };
  const pods = parseState(JSON.stringify(doc));
  assert.deepEqual(pods, doc.pods);
  assert.deepEqual(parseState(JSON.stringify({ version: 1, pods })), pods, 'round trip');
  const bad: unknown[] = [
    'not json',
    { version: 2, pods: [] },
    { version: 1 },
    { version: 1, pods: [{ uid: 'x', netnsPath: 'relative', key: '4:1' }] },
    { version: 1, pods: [{ uid: 'x', netnsPath: '/p', key: '' }] },
    { version: 1, pods: [{ uid: 'x', netnsPath: '/p', key: '4:1', containerId: 7 }] },
    { version: 1, pods: [null] },
  ];
  for (const b of bad) assert.equal(parseState(typeof b === 'string' ? b : JSON.stringify(b)), undefined, JSON.stringify(b));
});

test('workload uid <-> pod reference', () => {
  const uid = podWorkloadUid('Kubernetes', 'demo', 'web-0');
  assert.equal(uid, 'Kubernetes//v1/Pod/demo/web-0');
  assert.deepEqual(podRefOfUid(uid), { namespace: 'demo', name: 'web-0' });
  assert.equal(podRefOfUid('Kubernetes//v1/Service/demo/web'), undefined);
});

test('redirection plan: patch only what differs, on this node, for the same pod uid', () => {
  const pod = (name: string, annotations: Record<string, string> = {}, nodeName = 'node-1', uid = `uid-${name}`): NodePod => ({ namespace: 'demo', name, uid, nodeName, annotations });
  const pods = [
    pod('enrolled'),
    pod('already', { [ANNOTATION_REDIRECTION]: 'enabled' }),
    pod('pending'),
    pod('was-pending', { [ANNOTATION_REDIRECTION]: 'pending' }),
    pod('left', { [ANNOTATION_REDIRECTION]: 'enabled', other: 'kept' }),
    pod('elsewhere', {}, 'node-2'),
    pod('recreated'),
    pod('plain', { other: 'x' }),
  ];
  const wanted = [
    { uid: 'u1', namespace: 'demo', name: 'enrolled', state: 'enabled' as const },
    { uid: 'u2', namespace: 'demo', name: 'already', state: 'enabled' as const },
    { uid: 'u3', namespace: 'demo', name: 'pending', state: 'pending' as const },
    { uid: 'u4', namespace: 'demo', name: 'was-pending', state: 'enabled' as const },
    { uid: 'u5', namespace: 'demo', name: 'elsewhere', state: 'enabled' as const },
    { uid: 'u6', namespace: 'demo', name: 'recreated', podUid: 'old-uid', state: 'pending' as const },
  ];
  const plan = planRedirectionPatches(pods, wanted, 'node-1').map((p) => [p.pod.name, p.value]);
  assert.deepEqual(plan, [
    ['enrolled', 'enabled'],
    ['pending', 'pending'],
    ['was-pending', 'enabled'],
    ['left', null],
  ]);
});
