/**
 * Service-account tokens end to end over HTTPS: TokenRequest (as a node runtime mints projected
 * tokens, audience istio-ca, bound to a pod on a node) and TokenReview (as the controller checks
 * an agent): user, groups, extras, audiences; wrong audience, expiry, a deleted pod and a
 * recreated service account refuse; an SA token authenticates to the API and RBAC limits it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './helpers.js';

async function created(s: TestServer, path: string, body: unknown): Promise<any> {
  const r = await s.call('POST', path, body);
  assert.equal(r.status, 201, `POST ${path}: ${r.text}`);
  return r.json;
}

async function review(s: TestServer, token: string, audiences?: string[]): Promise<any> {
  const r = await s.call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token, ...(audiences ? { audiences } : {}) },
  });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.kind, 'TokenReview');
  return r.json.status;
}

test('TokenRequest and TokenReview: bound tokens, audiences, expiry, bound objects', async (t) => {
  let clock = Date.parse('2026-06-01T00:00:00Z');
  const s = await startTestServer(t, { now: () => clock });
  await created(s, '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' } });
  await created(s, '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'mesh' } });
  const sa = await created(s, '/api/v1/namespaces/mesh/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'agent' } });
  const node = (await s.call('GET', '/api/v1/nodes/node-a')).json;
  const pod = await created(s, '/api/v1/namespaces/mesh/pods', {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'agent-x' },
    spec: { serviceAccountName: 'agent', nodeName: 'node-a', containers: [{ name: 'a', image: 'ambit' }] },
  });
  const projected = pod.spec.volumes.find((v: any) => v.name.startsWith('kube-api-access-'));
  assert.ok(projected, 'ServiceAccount admission adds the projected token volume');
  assert.equal(projected.projected.sources[0].serviceAccountToken.expirationSeconds, 3607);

  const tr = await created(s, '/api/v1/namespaces/mesh/serviceaccounts/agent/token', {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { audiences: ['istio-ca'], expirationSeconds: 3600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'agent-x', uid: pod.metadata.uid } },
  });
  assert.equal(tr.kind, 'TokenRequest');
  assert.equal(tr.status.expirationTimestamp, new Date(clock + 3600_000).toISOString().replace('.000Z', 'Z'));
  const token: string = tr.status.token;
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
  assert.deepEqual(claims.aud, ['istio-ca']);
  assert.equal(claims['kubernetes.io'].namespace, 'mesh');
  assert.deepEqual(claims['kubernetes.io'].serviceaccount, { name: 'agent', uid: sa.metadata.uid });
  assert.deepEqual(claims['kubernetes.io'].pod, { name: 'agent-x', uid: pod.metadata.uid });
  assert.deepEqual(claims['kubernetes.io'].node, { name: 'node-a', uid: node.metadata.uid });
  assert.equal(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).alg, 'RS256');

  await t.test('a valid token reviews with the user, groups and extras of the real server', async () => {
    const st = await review(s, token, ['istio-ca']);
    assert.equal(st.authenticated, true);
    assert.equal(st.user.username, 'system:serviceaccount:mesh:agent');
    assert.equal(st.user.uid, sa.metadata.uid);
    assert.deepEqual(st.user.groups, ['system:serviceaccounts', 'system:serviceaccounts:mesh', 'system:authenticated']);
    assert.deepEqual(st.user.extra['authentication.kubernetes.io/pod-name'], ['agent-x']);
    assert.deepEqual(st.user.extra['authentication.kubernetes.io/pod-uid'], [pod.metadata.uid]);
    assert.deepEqual(st.user.extra['authentication.kubernetes.io/node-name'], ['node-a']);
    assert.deepEqual(st.user.extra['authentication.kubernetes.io/node-uid'], [node.metadata.uid]);
    assert.deepEqual(st.user.extra['authentication.kubernetes.io/credential-id'], [`JTI=${claims.jti}`]);
    assert.deepEqual(st.audiences, ['istio-ca']);
  });

  await t.test('the wrong audience, a forged signature and garbage are refused', async () => {
    const wrong = await review(s, token, ['someone-else']);
    assert.equal(wrong.authenticated, undefined);
    assert.match(wrong.error, /token audiences \["istio-ca"\] is invalid for the target audiences \["someone-else"\]/);
    const apiAud = await review(s, token);
    assert.equal(apiAud.authenticated, undefined, 'an istio-ca token is not an API token');
    const parts = token.split('.');
    const forged = `${parts[0]}.${Buffer.from(JSON.stringify({ ...claims, sub: 'system:serviceaccount:mesh:root' })).toString('base64url')}.${parts[2]}`;
    assert.match((await review(s, forged, ['istio-ca'])).error, /invalid bearer token/);
    assert.match((await review(s, 'not-a-jwt', ['istio-ca'])).error, /invalid bearer token/);
    const empty = await s.call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: {} });
    assert.equal(empty.status, 400);
  });

  await t.test('a token expires', async () => {
    clock += 3600_000 + 61_000;
    const st = await review(s, token, ['istio-ca']);
    assert.equal(st.authenticated, undefined);
    assert.match(st.error, /service account token has expired/);
    clock -= 3600_000 + 61_000;
  });

  await t.test('too short a lifetime and a foreign pod are rejected', async () => {
    const short = await s.call('POST', '/api/v1/namespaces/mesh/serviceaccounts/agent/token', { spec: { expirationSeconds: 60 } });
    assert.equal(short.status, 422);
    assert.match(short.json.message, /spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes/);
    await created(s, '/api/v1/namespaces/mesh/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'other' } });
    const foreign = await s.call('POST', '/api/v1/namespaces/mesh/serviceaccounts/other/token', { spec: { boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'agent-x' } } });
    assert.equal(foreign.status, 409);
    assert.match(foreign.json.message, /different serviceaccount name/);
  });

  await t.test('an SA token authenticates to the API and RBAC decides', async () => {
    const apiToken = s.server.issueServiceAccountToken({ namespace: 'mesh', serviceAccount: 'agent' });
    const denied = await s.call('GET', '/api/v1/namespaces/mesh/pods', undefined, { token: apiToken.token });
    assert.equal(denied.status, 403);
    assert.deepEqual(denied.json.details, { kind: 'pods' });
    assert.equal(denied.json.message, 'pods is forbidden: User "system:serviceaccount:mesh:agent" cannot list resource "pods" in API group "" in the namespace "mesh"');
    await created(s, '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'agent-view' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
      subjects: [{ kind: 'ServiceAccount', name: 'agent', namespace: 'mesh' }],
    });
    const allowed = await s.call('GET', '/api/v1/namespaces/mesh/pods', undefined, { token: apiToken.token });
    assert.equal(allowed.status, 200, allowed.text);
    assert.equal(allowed.json.items.length, 1);
    const write = await s.call('DELETE', '/api/v1/namespaces/mesh/pods/agent-x', undefined, { token: apiToken.token });
    assert.equal(write.status, 403);
    const reviewDenied = await s.call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', { spec: { token } }, { token: apiToken.token });
    assert.equal(reviewDenied.status, 403, 'TokenReview needs system:auth-delegator');
    const bad = await s.call('GET', '/api/v1/namespaces', undefined, { token: 'bogus' });
    assert.equal(bad.status, 401);
    assert.deepEqual(bad.json, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
    const anon = await s.call('GET', '/version', undefined, { token: null });
    assert.equal(anon.status, 200, 'anonymous users may read /version');
    const anonList = await s.call('GET', '/api/v1/namespaces', undefined, { token: null });
    assert.equal(anonList.status, 403);
  });

  await t.test('deleting the bound pod or recreating the service account invalidates tokens', async () => {
    const del = await s.call('DELETE', '/api/v1/namespaces/mesh/pods/agent-x?gracePeriodSeconds=0');
    assert.equal(del.status, 200, del.text);
    const gone = await review(s, token, ['istio-ca']);
    assert.equal(gone.authenticated, undefined);
    assert.match(gone.error, /pods "agent-x" not found/);
    const plain = (await created(s, '/api/v1/namespaces/mesh/serviceaccounts/other/token', { spec: { audiences: ['istio-ca'] } })).status.token as string;
    assert.equal((await review(s, plain, ['istio-ca'])).authenticated, true);
    assert.equal((await s.call('DELETE', '/api/v1/namespaces/mesh/serviceaccounts/other')).status, 200);
    await created(s, '/api/v1/namespaces/mesh/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'other' } });
    const stale = await review(s, plain, ['istio-ca']);
    assert.match(stale.error, /service account UID \(.+\) does not match claim/);
  });
});
