/** runPlugin with injected lookups and agent: every branch of ADD/CHECK/DEL, fast. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AmbitError } from '../../../src/shared/errors.js';
import { runPlugin, type PluginDeps } from '../../../src/cni/plugin.js';
import type { AgentAnswer } from '../../../src/cni/agent-client.js';
import type { NamespaceFacts, PodFacts } from '../../../src/cni/decide.js';

interface Fake {
  deps: PluginDeps;
  agentCalls: Array<{ path: string; body: Record<string, unknown> }>;
  lookups: number;
  logs: string[];
}

function fake(opts: { podLabels?: Record<string, string>; nsLabels?: Record<string, string>; answer?: AgentAnswer; lookupFails?: boolean; netns?: boolean } = {}): Fake {
  const f: Fake = {
    agentCalls: [],
    lookups: 0,
    logs: [],
    deps: {
      async lookup(_s, namespace, name) {
        f.lookups++;
        if (opts.lookupFails) throw new AmbitError('AMBIT_ERR_CNI_KUBE_LOOKUP', 'GET /api/v1/namespaces/demo/pods/web failed: connect ECONNREFUSED');
        const pod: PodFacts = { metadata: { name, namespace, uid: 'uid-1', labels: opts.podLabels ?? {} }, spec: {} };
        const ns: NamespaceFacts = { metadata: { name: namespace, labels: opts.nsLabels ?? {} } };
        return { pod, namespace: ns };
      },
      async callAgent(_socket, path, body) {
        f.agentCalls.push({ path, body: body as Record<string, unknown> });
        return opts.answer ?? { kind: 'ok' };
      },
      netnsExists: () => opts.netns ?? true,
      writeLog: (line) => f.logs.push(line),
    },
  };
  return f;
}

const PREV = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', mac: '0a:58:0a:f4:01:07', sandbox: '/var/run/netns/cni-1' }], ips: [{ address: '10.244.1.7/24', gateway: '10.244.1.1', interface: 0 }] };
const stdin = (extra: Record<string, unknown> = {}): string => JSON.stringify({ cniVersion: '1.0.0', name: 'k8s', type: 'ambit-cni', prevResult: PREV, ...extra });
const env = (command: string, ns = 'demo', name = 'web'): Record<string, string> => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: '/var/run/netns/cni-1',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: `K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${name};K8S_POD_UID=uid-1`,
});
const AMBIENT = { 'istio.io/dataplane-mode': 'ambient' };

test('ADD for an enrolled pod hands it to the agent and prints prevResult unchanged', async () => {
  const f = fake({ nsLabels: AMBIENT });
  const out = await runPlugin(env('ADD'), stdin(), f.deps);
  assert.equal(out.exitCode, 0);
  assert.deepEqual(JSON.parse(out.stdout), PREV);
  assert.deepEqual(f.agentCalls, [
    {
      path: '/v1/cni/add',
      body: { podName: 'web', podNamespace: 'demo', podUid: 'uid-1', containerId: 'c0ffee', netns: '/var/run/netns/cni-1', ifname: 'eth0', ips: [{ address: '10.244.1.7/24', gateway: '10.244.1.1', interface: 0 }] },
    },
  ]);
  assert.ok(f.logs.some((l) => JSON.parse(l).msg === 'pod captured by the node agent'), 'logged to stderr, not stdout');
});

test('ADD fails closed for an enrolled pod: agent unreachable → code 11, agent refuses → code 100, lookup fails → code 11', async () => {
  const unreachable = await runPlugin(env('ADD'), stdin(), fake({ nsLabels: AMBIENT, answer: { kind: 'unreachable', message: 'the socket does not exist' } }).deps);
  assert.equal(unreachable.exitCode, 1);
  const u = JSON.parse(unreachable.stdout);
  assert.equal(u.code, 11);
  assert.equal(u.cniVersion, '1.0.0');
  assert.match(u.msg, /did not answer.*must not start.*socket does not exist/);
  const refused = JSON.parse((await runPlugin(env('ADD'), stdin(), fake({ podLabels: AMBIENT, answer: { kind: 'refused', status: 500, message: 'bpf attach failed: EPERM' } }).deps)).stdout);
  assert.equal(refused.code, 100);
  assert.match(refused.msg, /could not capture pod demo\/web: bpf attach failed: EPERM/);
  const lookup = JSON.parse((await runPlugin(env('ADD'), stdin(), fake({ lookupFails: true }).deps)).stdout);
  assert.equal(lookup.code, 11);
  const noNetns = JSON.parse((await runPlugin(env('ADD'), stdin(), fake({ nsLabels: AMBIENT, netns: false }).deps)).stdout);
  assert.equal(noNetns.code, 3);
});

test('ADD passes through pods not to capture without calling the agent, even when it is down', async () => {
  for (const [name, f, e] of [
    ['not enrolled', fake({ answer: { kind: 'unreachable', message: 'down' } }), env('ADD')],
    ['opted out', fake({ nsLabels: AMBIENT, podLabels: { 'istio.io/dataplane-mode': 'none' }, answer: { kind: 'unreachable', message: 'down' } }), env('ADD')],
    ['excluded namespace (no lookup either)', fake({ answer: { kind: 'unreachable', message: 'down' } }), env('ADD', 'kube-system', 'coredns')],
  ] as const) {
    const out = await runPlugin(e, stdin(), f.deps);
    assert.equal(out.exitCode, 0, name);
    assert.deepEqual(JSON.parse(out.stdout), PREV, name);
    assert.equal(f.agentCalls.length, 0, name);
  }
  const first = await runPlugin(env('ADD'), stdin({ prevResult: undefined }), fake().deps);
  assert.deepEqual(JSON.parse(first.stdout), { cniVersion: '1.0.0' }, 'first in the chain: {cniVersion}');
});

test('DEL tells the agent without an API lookup and succeeds even when the agent is gone', async () => {
  const f = fake();
  const out = await runPlugin(env('DEL'), stdin(), f.deps);
  assert.deepEqual(out, { stdout: '', exitCode: 0 });
  assert.equal(f.lookups, 0);
  assert.deepEqual(f.agentCalls, [{ path: '/v1/cni/del', body: { podName: 'web', podNamespace: 'demo', podUid: 'uid-1', containerId: 'c0ffee', netns: '/var/run/netns/cni-1' } }]);
  const down = fake({ answer: { kind: 'unreachable', message: 'down' } });
  assert.deepEqual(await runPlugin({ ...env('DEL'), CNI_NETNS: '' }, stdin(), down.deps), { stdout: '', exitCode: 0 });
  assert.equal(down.agentCalls[0]!.body['netns'], undefined, 'no netns sent when the runtime has none');
  assert.ok(down.logs.some((l) => JSON.parse(l).level === 40), 'a warning is logged');
});

test('CHECK asks the agent for enrolled pods, needs prevResult, and does not exist before 0.4.0', async () => {
  const f = fake({ nsLabels: AMBIENT });
  assert.deepEqual(await runPlugin(env('CHECK'), stdin(), f.deps), { stdout: '', exitCode: 0 });
  assert.equal(f.agentCalls[0]!.path, '/v1/cni/check');
  const lost = JSON.parse((await runPlugin(env('CHECK'), stdin(), fake({ nsLabels: AMBIENT, answer: { kind: 'refused', status: 500, message: 'not captured' } }).deps)).stdout);
  assert.equal(lost.code, 100);
  assert.equal(JSON.parse((await runPlugin(env('CHECK'), stdin({ prevResult: undefined }), fake().deps)).stdout).code, 7);
  assert.equal(JSON.parse((await runPlugin(env('CHECK'), stdin({ cniVersion: '0.3.1' }), fake().deps)).stdout).code, 1);
});

test('VERSION, STATUS and GC answer without touching anything; bad input answers with the spec\'s codes', async () => {
  const f = fake();
  const v = await runPlugin({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.4.0"}', f.deps);
  assert.deepEqual(JSON.parse(v.stdout), { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  assert.deepEqual(await runPlugin({ CNI_COMMAND: 'STATUS' }, stdin({ cniVersion: '1.1.0' }), f.deps), { stdout: '', exitCode: 0 });
  assert.deepEqual(await runPlugin({ CNI_COMMAND: 'GC' }, stdin({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [] }), f.deps), { stdout: '', exitCode: 0 });
  assert.equal(f.agentCalls.length + f.lookups, 0);
  const badVersion = JSON.parse((await runPlugin(env('ADD'), stdin({ cniVersion: '9.9.9' }), f.deps)).stdout);
  assert.deepEqual([badVersion.code, badVersion.cniVersion], [1, '9.9.9']);
  assert.equal(JSON.parse((await runPlugin(env('ADD'), '{', f.deps)).stdout).code, 6);
  assert.equal(JSON.parse((await runPlugin({ CNI_COMMAND: 'ADD' }, stdin(), f.deps)).stdout).code, 4);
  assert.equal(JSON.parse((await runPlugin(env('ADD'), stdin({ agent_timeout: 'never' }), f.deps)).stdout).code, 7);
});
