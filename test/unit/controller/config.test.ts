/** Controller environment parsing: defaults, every problem reported at once, frozen result, node tokens. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig, parseNodeTokens, readNodeTokens } from '../../../src/controller/config.js';
import { AmbitError, isAmbitError } from '../../../src/shared/errors.js';

test('loadConfig: defaults when nothing is set', () => {
  const c = loadConfig({});
  assert.deepEqual(c.listen, { host: '0.0.0.0', port: 15012 });
  assert.deepEqual(c.admin, { host: '0.0.0.0', port: 15014 });
  assert.equal(c.trustDomain, 'cluster.local');
  assert.equal(c.clusterId, 'Kubernetes', 'Istio\'s default cluster id, the one agents and waypoints use');
  assert.equal(c.certTtlMs, 24 * 3_600_000);
  assert.equal(c.logLevel, 'info');
  assert.deepEqual(c.manifests, []);
  assert.equal(c.nodeTokensFile, undefined);
  assert.ok(c.stateDir.startsWith('/'));
});

test('loadConfig: reads every variable, IPv6 listen, comma-separated manifests', () => {
  const c = loadConfig({
    AMBIT_CONTROLLER_LISTEN: '[::1]:0',
    AMBIT_ADMIN_LISTEN: '127.0.0.1:9000',
    AMBIT_STATE_DIR: '/tmp/ambit-ctl',
    AMBIT_TRUST_DOMAIN: 'example.org',
    AMBIT_CLUSTER_ID: 'east-1',
    AMBIT_MANIFESTS: ' /etc/mesh/a.yaml, /etc/mesh/dir ',
    AMBIT_NODE_TOKENS_FILE: '/etc/mesh/tokens',
    AMBIT_CERT_TTL: '1h30m',
    AMBIT_LOG_LEVEL: 'debug',
  });
  assert.deepEqual(c.listen, { host: '::1', port: 0 });
  assert.deepEqual(c.admin, { host: '127.0.0.1', port: 9000 });
  assert.equal(c.stateDir, '/tmp/ambit-ctl');
  assert.equal(c.trustDomain, 'example.org');
  assert.equal(c.clusterId, 'east-1');
  assert.deepEqual(c.manifests, ['/etc/mesh/a.yaml', '/etc/mesh/dir']);
  assert.equal(c.nodeTokensFile, '/etc/mesh/tokens');
  assert.equal(c.certTtlMs, 90 * 60_000);
  assert.equal(c.logLevel, 'debug');
});

test('loadConfig: the result is deep-frozen', () => {
  const c = loadConfig({ AMBIT_MANIFESTS: '/a' });
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.listen));
  assert.ok(Object.isFrozen(c.manifests));
  assert.throws(() => (c.manifests as string[]).push('/b'), TypeError);
  assert.throws(() => {
    (c.listen as { port: number }).port = 1;
  }, TypeError);
});

test('loadConfig: every problem is listed in one AMBIT_ERR_CONFIG_INVALID naming variable, problem and value', () => {
  const env = {
    AMBIT_CONTROLLER_LISTEN: 'nohost',
    AMBIT_ADMIN_LISTEN: '127.0.0.1:70000',
    AMBIT_STATE_DIR: 'relative/dir',
    AMBIT_TRUST_DOMAIN: 'Bad Domain',
    AMBIT_MANIFESTS: '/a,,/b',
    AMBIT_CERT_TTL: '5x',
    AMBIT_LOG_LEVEL: 'loud',
  };
  let caught: unknown;
  try {
    loadConfig(env);
  } catch (e) {
    caught = e;
  }
  assert.ok(isAmbitError(caught, 'AMBIT_ERR_CONFIG_INVALID'), 'throws AMBIT_ERR_CONFIG_INVALID');
  const err = caught as AmbitError;
  const issues = err.details?.['issues'] as Array<{ path: string }>;
  assert.deepEqual(
    issues.map((i) => i.path).sort(),
    ['AMBIT_ADMIN_LISTEN', 'AMBIT_CERT_TTL', 'AMBIT_CONTROLLER_LISTEN', 'AMBIT_LOG_LEVEL', 'AMBIT_MANIFESTS', 'AMBIT_STATE_DIR', 'AMBIT_TRUST_DOMAIN'],
  );
  assert.match(err.message, /7 problem\(s\)/);
  assert.match(err.message, /AMBIT_CONTROLLER_LISTEN: must be host:port.*\(got "nohost"\)/);
  assert.match(err.message, /AMBIT_ADMIN_LISTEN: port must be between 0 and 65535 \(got "127\.0\.0\.1:70000"\)/);
  assert.match(err.message, /AMBIT_CERT_TTL: must be a duration.*\(got "5x"\)/);
  assert.match(err.message, /AMBIT_LOG_LEVEL: must be one of .*\(got "loud"\)/);
  assert.match(err.message, /AMBIT_STATE_DIR: must be an absolute path \(got "relative\/dir"\)/);
});

test('loadConfig: cert TTL outside bounds and colliding listeners are rejected', () => {
  for (const [ttl, ok] of [['30s', false], ['1m', true], ['2160h', true], ['2161h', false]] as const) {
    if (ok) assert.doesNotThrow(() => loadConfig({ AMBIT_CERT_TTL: ttl }), ttl);
    else assert.throws(() => loadConfig({ AMBIT_CERT_TTL: ttl }), /AMBIT_CERT_TTL: must be between/, ttl);
  }
  assert.throws(
    () => loadConfig({ AMBIT_CONTROLLER_LISTEN: '127.0.0.1:9000', AMBIT_ADMIN_LISTEN: '127.0.0.1:9000' }),
    /AMBIT_ADMIN_LISTEN: must differ from AMBIT_CONTROLLER_LISTEN/,
  );
  assert.throws(() => loadConfig({ AMBIT_CONTROLLER_LISTEN: '[10.0.0.1]:1' }), /brackets must hold an IPv6 address/);
});

test('parseNodeTokens: JSON and line formats; problems never print tokens', () => {
  const t1 = 'a'.repeat(32);
  const t2 = 'b'.repeat(32);
  assert.deepEqual([...parseNodeTokens(JSON.stringify({ [t1]: 'node-1', [t2]: 'node-2' }), 'f')], [[t1, 'node-1'], [t2, 'node-2']]);
  assert.deepEqual([...parseNodeTokens(`# comment\nnode-1 ${t1}\n\nnode-2   ${t2}\n`, 'f')], [[t1, 'node-1'], [t2, 'node-2']]);
  const secret = 'c'.repeat(32);
  let caught: unknown;
  try {
    parseNodeTokens(`node-1 short\nNode_2 ${secret}\nnode-3 ${secret} extra\nnode-4 ${t1}\nnode-5 ${t1}\n`, 'tokens.txt');
  } catch (e) {
    caught = e;
  }
  assert.ok(isAmbitError(caught, 'AMBIT_ERR_CONFIG_INVALID'));
  const msg = (caught as Error).message;
  assert.match(msg, /tokens\.txt line 1: token for node node-1 must be at least 16 characters/);
  assert.match(msg, /tokens\.txt line 2: node name must be a lowercase DNS name \(got "Node_2"\)/);
  assert.match(msg, /tokens\.txt line 3: must be "<node> <token>"/);
  assert.match(msg, /tokens\.txt line 5: token for node node-5 is already given to node node-4/);
  assert.ok(!msg.includes(secret) && !msg.includes(t1), 'no token in the message');
  assert.throws(() => parseNodeTokens('{ nope', 'j.json'), /j\.json: is not valid JSON/);
});

test('readNodeTokens: unset path gives no tokens; unreadable path is a config error', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cfg-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  assert.equal((await readNodeTokens(undefined)).size, 0);
  const file = join(dir, 'tokens');
  await writeFile(file, `node-1 ${'z'.repeat(20)}\n`);
  assert.deepEqual([...(await readNodeTokens(file))], [['z'.repeat(20), 'node-1']]);
  await assert.rejects(readNodeTokens(join(dir, 'missing')), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_CONFIG_INVALID') && /cannot read/.test((e as Error).message));
});

test('loadConfig: the config source is manifests by default, kubernetes in a pod or with a kubeconfig', () => {
  assert.deepEqual(loadConfig({}).source, { kind: 'manifests' });
  const inPod = loadConfig({ KUBERNETES_SERVICE_HOST: '10.96.0.1', POD_NAMESPACE: 'mesh', POD_NAME: 'ambit-controller-5c-x' }).source;
  assert.deepEqual(inPod, {
    kind: 'kubernetes',
    kubeconfig: undefined,
    namespace: 'mesh',
    podName: 'ambit-controller-5c-x',
    agentServiceAccount: { namespace: 'istio-system', serviceAccount: 'ambit-agent' },
    proxyImage: undefined,
    proxyControllerAddress: 'ambit-controller.mesh.svc:15012',
  });
  const local = loadConfig({
    AMBIT_KUBECONFIG: '/run/ambit/kubeconfig',
    AMBIT_CONTROLLER_LISTEN: '10.240.0.1:15012',
    AMBIT_AGENT_SERVICE_ACCOUNT: 'ambit/agent',
    AMBIT_PROXY_IMAGE: 'registry.example.com/ambit:1',
    AMBIT_PROXY_CONTROLLER_ADDR: '10.240.0.1:15012',
    AMBIT_CLUSTER_ID: 'local',
  });
  assert.equal(local.clusterId, 'local');
  assert.deepEqual(local.source, {
    kind: 'kubernetes',
    kubeconfig: '/run/ambit/kubeconfig',
    namespace: 'istio-system',
    podName: undefined,
    agentServiceAccount: { namespace: 'ambit', serviceAccount: 'agent' },
    proxyImage: 'registry.example.com/ambit:1',
    proxyControllerAddress: '10.240.0.1:15012',
  });
  assert.deepEqual(loadConfig({ KUBERNETES_SERVICE_HOST: '10.96.0.1', AMBIT_CONFIG_SOURCE: 'manifests' }).source, { kind: 'manifests' }, 'asked for explicitly');
  assert.throws(
    () => loadConfig({ AMBIT_CONFIG_SOURCE: 'kubernetes', AMBIT_MANIFESTS: '/m', AMBIT_AGENT_SERVICE_ACCOUNT: 'no-slash' }),
    (e: unknown) => {
      assert.ok(isAmbitError(e, 'AMBIT_ERR_CONFIG_INVALID'));
      assert.match(e.message, /AMBIT_CONFIG_SOURCE: kubernetes needs AMBIT_KUBECONFIG or in-cluster credentials/);
      assert.match(e.message, /AMBIT_MANIFESTS: must not be set with AMBIT_CONFIG_SOURCE=kubernetes/);
      assert.match(e.message, /AMBIT_AGENT_SERVICE_ACCOUNT: must be <namespace>\/<service account>.*no-slash/);
      return true;
    },
  );
  assert.throws(() => loadConfig({ AMBIT_KUBECONFIG: 'relative' }), /AMBIT_KUBECONFIG: must be an absolute path/);
});
