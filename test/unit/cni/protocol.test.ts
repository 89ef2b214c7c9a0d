import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isAmbitError } from '../../../src/shared/errors.js';
import {
  CniCode,
  SUPPORTED_VERSIONS,
  errorResult,
  k8sArgs,
  parseCniArgs,
  parseCniEnv,
  parseNetConf,
  passThroughResult,
  requestedVersion,
  resultIps,
  versionResult,
} from '../../../src/cni/protocol.js';

/** Runs `fn` and returns the CNI code its AmbitError carries. */
function cniCodeOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    assert.ok(isAmbitError(e, 'AMBIT_ERR_CNI_INVALID'), `expected AMBIT_ERR_CNI_INVALID, got ${String(e)}`);
    return e.details?.['cniCode'] as number;
  }
  assert.fail('expected an error');
}

const ADD_ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c0ffee', CNI_NETNS: '/var/run/netns/cni-1', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin:/usr/lib/cni' };

test('parseCniEnv reads every variable and splits CNI_ARGS and CNI_PATH', () => {
  const env = parseCniEnv({ ...ADD_ENV, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web-0;K8S_POD_UID=1234-abcd;K8S_POD_INFRA_CONTAINER_ID=c0ffee;X=a=b' });
  assert.equal(env.command, 'ADD');
  assert.equal(env.netns, '/var/run/netns/cni-1');
  assert.deepEqual(env.path, ['/opt/cni/bin', '/usr/lib/cni']);
  assert.equal(env.args['X'], 'a=b', 'a value may hold "="');
  assert.deepEqual(k8sArgs(env.args), { podNamespace: 'demo', podName: 'web-0', podUid: '1234-abcd', infraContainerId: 'c0ffee' });
  assert.deepEqual(k8sArgs({}), {});
});

test('parseCniEnv enforces what each command needs (CNI code 4); DEL and VERSION need less', () => {
  assert.equal(cniCodeOf(() => parseCniEnv({ ...ADD_ENV, CNI_COMMAND: 'PING' })), CniCode.INVALID_ENV);
  assert.equal(cniCodeOf(() => parseCniEnv({ ...ADD_ENV, CNI_NETNS: '' })), CniCode.INVALID_ENV);
  assert.equal(cniCodeOf(() => parseCniEnv({ ...ADD_ENV, CNI_COMMAND: 'CHECK', CNI_IFNAME: undefined })), CniCode.INVALID_ENV);
  assert.equal(cniCodeOf(() => parseCniEnv({ ...ADD_ENV, CNI_NETNS: 'relative/ns' })), CniCode.INVALID_ENV);
  assert.equal(cniCodeOf(() => parseCniArgs('K8S_POD_NAME')), CniCode.INVALID_ENV);
  assert.equal(parseCniEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c', CNI_IFNAME: 'eth0' }).netns, '', 'DEL runs without a netns');
  assert.equal(parseCniEnv({ CNI_COMMAND: 'VERSION' }).command, 'VERSION');
});

test('parseNetConf: JSON (code 6), supported version (code 1), name/type/prevResult (code 7)', () => {
  const ok = parseNetConf(JSON.stringify({ cniVersion: '1.0.0', name: 'k8s', type: 'ambit-cni', agent_socket: '/x', prevResult: { cniVersion: '1.0.0' } }));
  assert.equal(ok['agent_socket'], '/x', 'unknown keys are kept for the plugin to read');
  assert.equal(cniCodeOf(() => parseNetConf('{not json')), CniCode.DECODE_FAILURE);
  assert.equal(cniCodeOf(() => parseNetConf('[]')), CniCode.DECODE_FAILURE);
  assert.equal(cniCodeOf(() => parseNetConf(JSON.stringify({ cniVersion: '2.0.0', name: 'k8s', type: 't' }))), CniCode.INCOMPATIBLE_VERSION);
  assert.equal(cniCodeOf(() => parseNetConf(JSON.stringify({ name: 'k8s', type: 't' }))), CniCode.INCOMPATIBLE_VERSION);
  assert.equal(cniCodeOf(() => parseNetConf(JSON.stringify({ cniVersion: '1.0.0', type: 't' }))), CniCode.INVALID_CONFIG);
  assert.equal(cniCodeOf(() => parseNetConf(JSON.stringify({ cniVersion: '1.0.0', name: 'k8s', type: 't', prevResult: 'x' }))), CniCode.INVALID_CONFIG);
  for (const v of SUPPORTED_VERSIONS) assert.equal(parseNetConf(JSON.stringify({ cniVersion: v, name: 'n', type: 't' })).cniVersion, v);
});

test('results: VERSION lists the versions, ADD passes prevResult through unchanged, errors carry the requested version', () => {
  assert.deepEqual(versionResult('0.4.0'), { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  const prev = { cniVersion: '0.4.0', interfaces: [{ name: 'eth0', mac: '0a:58:0a:f4:01:07', sandbox: '/var/run/netns/x' }], ips: [{ version: '4', address: '10.244.1.7/24', gateway: '10.244.1.1', interface: 0 }], dns: {} };
  const conf = parseNetConf(JSON.stringify({ cniVersion: '0.4.0', name: 'k8s', type: 'ambit-cni', prevResult: prev }));
  assert.deepEqual(passThroughResult(conf), prev);
  assert.deepEqual(passThroughResult(parseNetConf(JSON.stringify({ cniVersion: '1.0.0', name: 'k8s', type: 'ambit-cni' }))), { cniVersion: '1.0.0' });
  assert.deepEqual(resultIps(prev), [{ address: '10.244.1.7/24', gateway: '10.244.1.1', interface: 0 }]);
  assert.deepEqual(resultIps(undefined), []);
  assert.deepEqual(resultIps({ ips: [{ nope: 1 }, { address: 'fd00::7/64' }] }), [{ address: 'fd00::7/64' }]);
  assert.equal(requestedVersion('{"cniVersion":"0.3.1"}'), '0.3.1');
  assert.equal(requestedVersion('garbage'), '1.0.0');
  assert.deepEqual(errorResult('1.0.0', 11, 'later'), { cniVersion: '1.0.0', code: 11, msg: 'later' });
  assert.deepEqual(errorResult('1.0.0', 7, 'bad', 'why'), { cniVersion: '1.0.0', code: 7, msg: 'bad', details: 'why' });
});
