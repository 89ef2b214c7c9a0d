import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isAmbitError } from '../../../src/shared/errors.js';
import { DEFAULT_SETTINGS, decideCapture, parsePluginSettings, triage, type NamespaceFacts, type PodFacts } from '../../../src/cni/decide.js';
import type { NetConf } from '../../../src/cni/protocol.js';

const conf = (extra: Record<string, unknown> = {}): NetConf => ({ cniVersion: '1.0.0', name: 'k8s-pod-network', type: 'ambit-cni', ...extra });

test('plugin settings: defaults, every key read, every problem listed at once (CNI code 7)', () => {
  assert.deepEqual(parsePluginSettings(conf()), DEFAULT_SETTINGS);
  const s = parsePluginSettings(
    conf({ agent_socket: '/run/a.sock', agent_timeout: '1.5s', kubeconfig: '/k', kube_timeout: '250ms', exclude_namespaces: ['x'], agent_pod_namespace: 'mesh', agent_pod_prefix: 'node-agent-', log_level: 'debug', log_file: '/tmp/p.log' }),
  );
  assert.deepEqual(s, { agentSocket: '/run/a.sock', agentTimeoutMs: 1500, kubeconfig: '/k', kubeTimeoutMs: 250, excludeNamespaces: ['x'], agentPodNamespace: 'mesh', agentPodPrefix: 'node-agent-', logLevel: 'debug', logFile: '/tmp/p.log' });
  try {
    parsePluginSettings(conf({ agent_socket: 'rel', agent_timeout: 'soon', exclude_namespaces: 'kube-system', log_level: 'loud' }));
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(isAmbitError(e, 'AMBIT_ERR_CNI_INVALID'));
    assert.equal(e.details?.['cniCode'], 7);
    for (const key of ['agent_socket', 'agent_timeout', 'exclude_namespaces', 'log_level']) assert.match(e.message, new RegExp(key));
    assert.match(e.message, /k8s-pod-network/, 'names the network');
  }
});

test('triage: non-Kubernetes invocations, excluded namespaces and the agent\'s own pods pass without an API call', () => {
  const s = DEFAULT_SETTINGS;
  assert.equal(triage(s, {}).action, 'pass');
  assert.equal(triage(s, { podNamespace: 'demo' }).action, 'pass');
  assert.equal(triage(s, { podNamespace: 'kube-system', podName: 'coredns-1' }).action, 'pass');
  assert.equal(triage({ ...s, excludeNamespaces: [] }, { podNamespace: 'istio-system', podName: 'ambit-agent-x7k2p' }).action, 'pass', 'the agent pod even when its namespace is not excluded');
  assert.deepEqual(triage({ ...s, excludeNamespaces: [] }, { podNamespace: 'istio-system', podName: 'ambit-controller-1' }), { action: 'lookup', namespace: 'istio-system', name: 'ambit-controller-1' });
  assert.deepEqual(triage(s, { podNamespace: 'demo', podName: 'web', podUid: 'u1' }), { action: 'lookup', namespace: 'demo', name: 'web', uid: 'u1' });
});

const pod = (labels: Record<string, string> = {}, extra: Partial<PodFacts> = {}): PodFacts => ({ metadata: { name: 'web', namespace: 'demo', uid: 'u1', labels }, spec: {}, ...extra });
const ns = (labels: Record<string, string> = {}): NamespaceFacts => ({ metadata: { name: 'demo', labels } });
const AMBIENT = { 'istio.io/dataplane-mode': 'ambient' };
const NONE = { 'istio.io/dataplane-mode': 'none' };

test('capture decision follows Istio: namespace or pod ambient, pod none opts out, host-network and sidecar pods never', () => {
  const cases: Array<[string, PodFacts, NamespaceFacts, boolean]> = [
    ['namespace ambient', pod(), ns(AMBIENT), true],
    ['pod ambient, namespace not', pod(AMBIENT), ns(), true],
    ['pod none in an ambient namespace', pod(NONE), ns(AMBIENT), false],
    ['neither labelled', pod(), ns(), false],
    ['pod with another value falls back to the namespace', pod({ 'istio.io/dataplane-mode': 'sidecar' }), ns(AMBIENT), true],
    ['host network', pod({}, { spec: { hostNetwork: true } }), ns(AMBIENT), false],
    ['sidecar-injected', { metadata: { ...pod().metadata, annotations: { 'sidecar.istio.io/status': '{}' } } }, ns(AMBIENT), false],
  ];
  for (const [name, p, n, want] of cases) assert.equal(decideCapture(p, n).capture, want, name);
  assert.match(decideCapture(pod(NONE), ns(AMBIENT)).reason, /none/);
});

test('a pod re-created under the same name while its sandbox was made is not decided for (CNI code 11)', () => {
  assert.equal(decideCapture(pod(), ns(AMBIENT), 'u1').capture, true);
  try {
    decideCapture(pod(), ns(AMBIENT), 'u2');
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(isAmbitError(e, 'AMBIT_ERR_CNI_KUBE_LOOKUP'));
    assert.equal(e.details?.['cniCode'], 11);
    assert.match(e.message, /re-created/);
  }
});
