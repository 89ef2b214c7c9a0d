/** loadConfig: defaults, every problem collected, frozen result. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../../src/agent/config.js';
import { isAmbitError } from '../../../src/shared/errors.js';

const minimal = {
  AMBIT_NODE_NAME: 'node-1',
  AMBIT_CONTROLLER_ADDR: 'ambit-controller.ambit-system:15012',
  AMBIT_CA_ROOT_FILE: '/var/run/ambit/root-cert.pem',
  AMBIT_TOKEN_FILE: '/var/run/ambit/token',
};

test('config: minimal environment gets Istio-compatible defaults', () => {
  const c = loadConfig(minimal);
  assert.deepEqual(c.controller, { host: 'ambit-controller.ambit-system', port: 15012 });
  assert.deepEqual(c.metricsAddr, { host: '0.0.0.0', port: 15020 });
  assert.deepEqual(c.readyAddr, { host: '0.0.0.0', port: 15021 });
  assert.deepEqual(c.adminAddr, { host: '127.0.0.1', port: 15000 });
  assert.equal(c.capture, 'auto');
  assert.equal(c.cgroupPath, undefined, 'unset: capture attaches at the cgroup2 mount found in /proc/mounts');
  assert.equal(c.pinDir, '/sys/fs/bpf/ambit');
  assert.equal(c.trustDomain, 'cluster.local');
  assert.equal(c.poolIdleTimeoutMs, 300_000);
  assert.equal(c.certTtlSec, 86_400);
  assert.equal(c.logLevel, 'info');
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.controller));
});

test('config: explicit values parse, IPv6 in brackets', () => {
  const c = loadConfig({ ...minimal, AMBIT_CAPTURE: 'nft', AMBIT_ADMIN_ADDR: '[::1]:15000', AMBIT_POOL_IDLE_TIMEOUT: '30s', AMBIT_DRAIN_DEADLINE: '1.5s', AMBIT_LOG_LEVEL: 'debug' });
  assert.equal(c.capture, 'nft');
  assert.equal(loadConfig({ ...minimal, AMBIT_CGROUP_PATH: '/sys/fs/cgroup/unified' }).cgroupPath, '/sys/fs/cgroup/unified');
  assert.deepEqual(c.adminAddr, { host: '::1', port: 15000 });
  assert.equal(c.poolIdleTimeoutMs, 30_000);
  assert.equal(c.drainDeadlineMs, 1500);
});

test('config: every problem is reported at once', () => {
  try {
    loadConfig({ AMBIT_CONTROLLER_ADDR: 'nohost', AMBIT_CA_ROOT_FILE: 'relative.pem', AMBIT_CAPTURE: 'ebpf', AMBIT_METRICS_ADDR: '0.0.0.0:15021', AMBIT_LOG_LEVEL: 'loud', AMBIT_POOL_IDLE_TIMEOUT: 'soon' });
    assert.fail('expected AMBIT_ERR_CONFIG_INVALID');
  } catch (e) {
    assert.ok(isAmbitError(e, 'AMBIT_ERR_CONFIG_INVALID'));
    for (const name of ['AMBIT_NODE_NAME', 'AMBIT_CONTROLLER_ADDR', 'AMBIT_CA_ROOT_FILE', 'AMBIT_TOKEN_FILE', 'AMBIT_CAPTURE', 'AMBIT_READY_ADDR', 'AMBIT_LOG_LEVEL', 'AMBIT_POOL_IDLE_TIMEOUT']) {
      assert.match(e.message, new RegExp(name), `${name} reported`);
    }
    assert.match(e.message, /\(got "ebpf"\)/);
  }
});

test('config: the CNI hand-off, its state file and the Kubernetes API are opt-in, each named by one variable', () => {
  const none = loadConfig(minimal);
  assert.deepEqual([none.cniSocket, none.netnsStateFile, none.kube], [undefined, undefined, undefined], 'local mode without a CNI chain nor an API');
  const node = loadConfig({ ...minimal, AMBIT_CNI_SOCKET: '/var/run/ambit/cni.sock', KUBERNETES_SERVICE_HOST: '10.96.0.1' });
  assert.equal(node.cniSocket, '/var/run/ambit/cni.sock');
  assert.equal(node.netnsStateFile, '/var/run/ambit/netns-state.json', 'beside the socket, node-local');
  assert.deepEqual(node.kube, { inCluster: true, server: 'https://10.96.0.1:443' });
  assert.deepEqual(loadConfig({ ...minimal, KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }).kube, { inCluster: true, server: 'https://[fd00::1]:6443' }, 'an IPv6 API address in brackets');
  const local = loadConfig({ ...minimal, AMBIT_CNI_SOCKET: '/run/x/cni.sock', AMBIT_NETNS_STATE_FILE: '/run/x/state.json', AMBIT_KUBECONFIG: '/run/x/kubeconfig', KUBERNETES_SERVICE_HOST: '10.96.0.1' });
  assert.equal(local.netnsStateFile, '/run/x/state.json');
  assert.deepEqual(local.kube, { kubeconfig: '/run/x/kubeconfig' }, 'a kubeconfig wins over in-cluster credentials');
  assert.throws(() => loadConfig({ ...minimal, AMBIT_CNI_SOCKET: 'cni.sock', AMBIT_KUBECONFIG: 'kubeconfig', AMBIT_NETNS_STATE_FILE: 'state.json' }), (e: unknown) => {
    assert.ok(isAmbitError(e, 'AMBIT_ERR_CONFIG_INVALID'));
    for (const name of ['AMBIT_CNI_SOCKET', 'AMBIT_KUBECONFIG', 'AMBIT_NETNS_STATE_FILE']) assert.match(e.message, new RegExp(`${name}: must be an absolute path`));
    return true;
  });
});

test('config: DNS capture is on by default; upstreams come from resolv.conf unless given', () => {
  const c = loadConfig(minimal);
  assert.equal(c.dnsCapture, true);
  assert.equal(c.dnsUpstreams, undefined);
  const d = loadConfig({ ...minimal, AMBIT_DNS_CAPTURE: 'off', AMBIT_DNS_UPSTREAMS: '127.0.0.53, 10.0.0.10:5353,[fd00::a]:53,fd00::b' });
  assert.equal(d.dnsCapture, false);
  assert.deepEqual(d.dnsUpstreams, [
    { host: '127.0.0.53', port: 53 },
    { host: '10.0.0.10', port: 5353 },
    { host: 'fd00::a', port: 53 },
    { host: 'fd00::b', port: 53 },
  ]);
});

test('config: bad DNS settings name the variable and the value', () => {
  for (const [env, re] of [
    [{ AMBIT_DNS_CAPTURE: 'maybe' }, /AMBIT_DNS_CAPTURE: must be one of on, off \(got "maybe"\)/],
    [{ AMBIT_DNS_UPSTREAMS: 'dns.example.com:53' }, /AMBIT_DNS_UPSTREAMS: each resolver must be an IP address/],
    [{ AMBIT_DNS_UPSTREAMS: '10.0.0.1:0' }, /AMBIT_DNS_UPSTREAMS: each resolver must be an IP address/],
    [{ AMBIT_DNS_UPSTREAMS: '10.0.0.1,,10.0.0.2' }, /AMBIT_DNS_UPSTREAMS: must be a comma-separated list/],
  ] as const) {
    assert.throws(() => loadConfig({ ...minimal, ...env }), (e: unknown) => isAmbitError(e) && e.code === 'AMBIT_ERR_CONFIG_INVALID' && re.test(e.message), JSON.stringify(env));
  }
});
