/**
 * The agent's own Kubernetes client (src/agent/kube/client.ts) against local mode's real API
 * server: kubeconfig loading, the node-scoped pod watch (list, then changes in order, other
 * nodes' pods never seen), and the uid-guarded pods/status merge patch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, waitUntil } from './apiserver/helpers.js';
import { kubeconfigEndpoint, loadKubeConfig, NodePodsClient, nodePodOf } from '../../src/agent/kube/client.js';
import { isAmbitError } from '../../src/shared/errors.js';
import { createLogger } from '../../src/shared/log.js';

const pod = (name: string, nodeName: string): unknown => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { nodeName, containers: [{ name: 'c', image: 'x' }] } });

test('agent kube client: watches only its node\'s pods and patches pods/status with a uid precondition', async (t) => {
  const s = await startTestServer(t);
  for (const [name, node] of [['a1', 'node-a'], ['b1', 'node-b']] as const) {
    assert.equal((await s.call('POST', '/api/v1/namespaces/default/pods', pod(name, node))).status, 201);
  }
  const client = new NodePodsClient(loadKubeConfig({ kubeconfig: s.kubeconfig }), 'node-a');
  let changes = 0;
  const errors: unknown[] = [];
  const watch = client.watch({ log: createLogger({ level: 'silent' }), onChange: () => void changes++, onError: (_what, e) => void errors.push(e) });
  t.after(() => watch.stop());
  await watch.start();
  assert.deepEqual(watch.list().map((p) => p.metadata?.name), ['a1'], 'the list holds this node\'s pod only');

  assert.equal((await s.call('POST', '/api/v1/namespaces/default/pods', pod('b2', 'node-b'))).status, 201);
  assert.equal((await s.call('POST', '/api/v1/namespaces/default/pods', pod('a2', 'node-a'))).status, 201);
  await waitUntil('a2 in the watch', () => (watch.list().some((p) => p.metadata?.name === 'a2') ? true : undefined));
  assert.deepEqual(watch.list().map((p) => p.metadata?.name).sort(), ['a1', 'a2'], 'b2 (another node) never appears');

  const a1 = nodePodOf(watch.list().find((p) => p.metadata?.name === 'a1')!)!;
  await client.patchAnnotations(a1, { 'ambient.istio.io/redirection': 'enabled' });
  await waitUntil('the annotation in the watch', () => (watch.list().find((p) => p.metadata?.name === 'a1')?.metadata?.annotations?.['ambient.istio.io/redirection'] === 'enabled' ? true : undefined));
  const stale = { ...a1, uid: '00000000-0000-0000-0000-000000000000' };
  await assert.rejects(client.patchAnnotations(stale, { 'ambient.istio.io/redirection': null }), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_KUBE_API') && e.details?.['status'] === 409, 'another uid: 409, not applied');
  await client.patchAnnotations(a1, { 'ambient.istio.io/redirection': null });
  const after = await s.call('GET', '/api/v1/namespaces/default/pods/a1');
  assert.equal(after.json.metadata.annotations?.['ambient.istio.io/redirection'], undefined, 'null removes the annotation');
  await assert.rejects(client.patchAnnotations({ namespace: 'default', name: 'gone', uid: a1.uid }, { x: 'y' }), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_KUBE_API') && e.details?.['status'] === 404);

  assert.equal((await s.call('DELETE', '/api/v1/namespaces/default/pods/a2?gracePeriodSeconds=0')).status, 200);
  await waitUntil('a2 gone from the watch', () => (watch.list().some((p) => p.metadata?.name === 'a2') ? undefined : true));
  assert.ok(changes >= 4, `list, add, annotation and delete each reported (got ${changes})`);
  assert.deepEqual(errors, []);
});

test('agent kube client: a failed list is reported as AMBIT_ERR_KUBE_API naming the server, and retried', async (t) => {
  const client = new NodePodsClient({ server: 'https://127.0.0.1:1', token: () => 't' }, 'node-a');
  const failures: { what: string; err: unknown; retryInMs: number }[] = [];
  const watch = client.watch({ log: createLogger({ level: 'silent' }), onChange: () => undefined, onError: (what, err, retryInMs) => void failures.push({ what, err, retryInMs }), backoff: { initialMs: 20, maxMs: 40 } });
  t.after(() => watch.stop());
  void watch.start();
  await waitUntil('three failed lists', () => (failures.length >= 3 ? true : undefined));
  for (const f of failures) {
    assert.equal(f.what, 'list');
    assert.ok(isAmbitError(f.err, 'AMBIT_ERR_KUBE_API') && /127\.0\.0\.1:1/.test(f.err.message) && f.err.details?.['status'] === 0, String(f.err));
  }
  assert.deepEqual(failures.slice(0, 3).map((f) => f.retryInMs), [20, 40, 40], 'the backoff doubles up to its cap');
  assert.equal(watch.ready, false, 'never synced');
});

test('agent kube client: kubeconfig fields, and clear errors for what it cannot use', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-agent-kubeconfig-'));
  try {
    writeFileSync(join(dir, 'token'), 'secret-token\n');
    writeFileSync(join(dir, 'ca.pem'), 'CA PEM');
    const base = (user: Record<string, unknown>, cluster: Record<string, unknown> = { server: 'https://10.0.0.1:6443', 'certificate-authority': 'ca.pem' }): unknown => ({
      'current-context': 'c',
      contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
      clusters: [{ name: 'k', cluster }],
      users: [{ name: 'u', user }],
    });
    const ep = kubeconfigEndpoint(base({ tokenFile: 'token' }), 'kubeconfig x', dir);
    assert.equal(ep.server, 'https://10.0.0.1:6443');
    assert.equal(ep.caPem, 'CA PEM', 'a relative CA file is read beside the kubeconfig');
    assert.equal(ep.token?.(), 'secret-token', 'the token file is read and trimmed');
    const inline = kubeconfigEndpoint(base({ token: 'abc' }, { server: 'https://h', 'certificate-authority-data': Buffer.from('DATA').toString('base64'), 'insecure-skip-tls-verify': true }), 'k', dir);
    assert.deepEqual([inline.caPem, inline.token?.(), inline.insecure], ['DATA', 'abc', true]);
    const certs = kubeconfigEndpoint(base({ 'client-certificate-data': Buffer.from('CERT').toString('base64'), 'client-key-data': Buffer.from('KEY').toString('base64') }), 'k', dir);
    assert.deepEqual([certs.certPem, certs.keyPem, certs.token], ['CERT', 'KEY', undefined]);
    const bad: [unknown, RegExp][] = [
      ['text', /not a kubeconfig/],
      [{ contexts: [] }, /current-context is not set/],
      [{ 'current-context': 'x', contexts: [] }, /contexts: no entry named "x"/],
      [base({ exec: { command: 'aws' } }), /users\["u"\]\.exec is not supported/],
      [base({ token: 't' }, { server: 'ftp://h' }), /clusters\["k"\]\.server must be an http\(s\) URL/],
      [base({ 'client-certificate-data': 'Q0VSVA==' }), /needs both a client certificate and its key/],
      [base({ tokenFile: 'missing' }), /cannot read .*missing/],
    ];
    for (const [doc, message] of bad) {
      assert.throws(() => kubeconfigEndpoint(doc, 'kubeconfig /etc/k', dir), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_KUBE_CONFIG') && message.test(e.message) && e.message.includes('kubeconfig /etc/k'), String(message));
    }
    writeFileSync(join(dir, 'k.json'), JSON.stringify(base({ token: 'j' })));
    assert.equal(loadKubeConfig({ kubeconfig: join(dir, 'k.json') }).token?.(), 'j', 'a JSON kubeconfig');
    assert.throws(() => loadKubeConfig({ kubeconfig: join(dir, 'nope') }), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_KUBE_CONFIG') && /nope/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
