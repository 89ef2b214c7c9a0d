/**
 * CUSTOM authorization end to end in `ambit local`: the mesh config ConfigMap declares an HTTP
 * ext_authz provider, the authorizer (`ambit demo-app ext-authz`) runs as a mesh pod, and the
 * bookinfo waypoint asks it about the requests a CUSTOM policy matches, over HBONE to its pod. A
 * CUSTOM policy naming an undeclared provider denies what it matches and says so in its status.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { isRoot, repoRoot, waitFor } from '../helpers/local-mesh.js';
import { startWaypointMesh } from './waypoint-mesh.js';

const fx = (f: string): string => join(repoRoot, 'test/fixtures/waypoint-e2e', f);
const skip = isRoot() ? false : 'requires root (network namespaces, BPF, nftables)';

test('CUSTOM authorization at the waypoint with an ext_authz provider from the mesh config', { skip, timeout: 600_000 }, async (t) => {
  const m = await startWaypointMesh(t, 'xa', [fx('app.yaml'), fx('ext-authz.yaml')], 'bookinfo');
  const curl = async (path: string, header?: string) => {
    const r = await m.exec(['curl', '-s', '-m', '10', '-D', '-', ...(header ? ['-H', header] : []), `http://reviews:9080${path}`]);
    const status = Number(/^HTTP\/[\d.]+ (\d+)/m.exec(r.stdout)?.[1] ?? 0);
    return { status, text: r.stdout };
  };
  // The first requests may race the agents learning the waypoint and the authorizer's endpoints.
  await waitFor('the authorizer allows a marked request', async () => ((await curl('/reviews/ext1', 'x-ext-authz: allow')).status === 200 ? true : undefined));

  const allowed = await curl('/reviews/ext2', 'x-ext-authz: allow');
  assert.equal(allowed.status, 200, allowed.text);
  const denied = await curl('/reviews/ext3');
  assert.equal(denied.status, 403, denied.text);
  assert.match(denied.text, /x-ext-authz-check-result: denied/i, 'the authorizer\'s header reaches the client');
  assert.match(denied.text, /denied by ext_authz for not found header/, 'and its body');
  assert.equal((await curl('/reviews/1')).status, 200, 'paths the policy does not match are not checked');
  const unknown = await curl('/reviews/unknown', 'x-ext-authz: allow');
  assert.equal(unknown.status, 403, 'a CUSTOM policy with an undeclared provider denies what it matches');
  assert.match(unknown.text, /RBAC: access denied/);

  const st = await m.status();
  const problem = st.objectProblems.find((p) => p.object === 'AuthorizationPolicy/bookinfo/ext-authz-unknown');
  assert.match(problem?.message ?? '', /extension provider "not-declared" is not declared in ConfigMap istio-system\/istio key mesh/, JSON.stringify(st.objectProblems));
  assert.equal(st.objectProblems.find((p) => p.object === 'AuthorizationPolicy/bookinfo/ext-authz'), undefined, 'the policy with a declared provider has no problem');
});
