/**
 * The Kubernetes source against local mode's API server, with the real client-node informers and
 * the real kubectl: objects applied and deleted with kubectl reach the store and the translation;
 * a CRD installed after start is picked up; Secrets enter the store only when a Gateway references
 * them; of the ConfigMaps only Istio's mesh config is read; an invalid object keeps its last good version in force; the API server restarting while
 * the informers watch loses nothing, and changes made meanwhile arrive.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiServer } from '../../../src/local/apiserver/server.js';
import { translateAll } from '../../../src/controller/translate/translate.js';
import { captureLog, installCrds, podObject, put, setPodRunning, silentLog, startSource, startTestServer, waitUntil } from './helpers.js';

const NS = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo', labels: { 'istio.io/dataplane-mode': 'ambient' } } };

test('kubectl apply/delete of Istio and Gateway API objects reaches the store and the translation', async (t) => {
  const ts = await startTestServer(t);
  await installCrds(ts.server, 'all');
  await put(ts.server, [NS, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: 'demo' } }, podObject('web', 'demo', { node: 'node-1', sa: 'web' })]);
  await setPodRunning(ts.server, 'demo', 'web', '10.1.0.5');
  const { store, source } = await startSource(t, ts.server);
  assert.ok(source.ready);
  assert.ok(source.watchedKinds().includes('AuthorizationPolicy'));
  const workload = () => translateAll(store.snapshot().objects).model.workloads.find((w) => w.name === 'web');
  await waitUntil('the pod as an enrolled workload', () => (workload()?.tunnelProtocol === 'HBONE' ? true : undefined));
  assert.deepEqual(workload()!.addresses, ['10.1.0.5']);

  const manifest = `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: demo }
spec: { selector: { app: web }, ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-client, namespace: demo }
spec:
  selector: { matchLabels: { app: web } }
  action: ALLOW
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/demo/sa/client"] } }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-route, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: web }]
  rules: [{ backendRefs: [{ name: web, port: 80 }], timeouts: { request: 3s } }]
`;
  const applied = await ts.kubectl(['apply', '-f', '-'], { input: manifest });
  assert.equal(applied.code, 0, applied.stderr);
  await waitUntil('policy, service and route translated', () => {
    const out = translateAll(store.snapshot().objects);
    const authz = out.model.authorizations.find((a) => a.name === 'allow-client');
    const route = out.routes.routes.find((r) => r.hostname === 'web.demo.svc.cluster.local');
    return authz && route?.routes[0]?.timeoutMs === 3000 && out.model.services.some((s) => s.name === 'web') ? true : undefined;
  });
  const stored = store.get('AuthorizationPolicy', 'demo', 'allow-client')!;
  assert.equal(stored.status, undefined, 'status is not copied into the store');
  assert.equal(stored.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'], undefined, 'the last-applied copy is not kept');
  assert.ok(stored.metadata.uid && stored.metadata.uid.length > 10, 'the API server\'s uid is kept');

  const deleted = await ts.kubectl(['delete', '-n', 'demo', 'authorizationpolicy/allow-client', 'httproute/web-route']);
  assert.equal(deleted.code, 0, deleted.stderr);
  await waitUntil('policy and route withdrawn', () => {
    const out = translateAll(store.snapshot().objects);
    const route = out.routes.routes.find((r) => r.hostname === 'web.demo.svc.cluster.local');
    return out.model.authorizations.length === 0 && route?.routes.length === 0 ? true : undefined;
  });
});

test('a CRD installed after start is picked up; one deleted takes its objects out of the store', async (t) => {
  const ts = await startTestServer(t);
  await put(ts.server, [NS]);
  const lines: Array<Record<string, unknown>> = [];
  const { store, source } = await startSource(t, ts.server, { log: captureLog(lines) });
  assert.ok(!source.watchedKinds().includes('AuthorizationPolicy'), 'no CRD, no informer');
  assert.ok(source.ready);
  const skipped = lines.filter((l) => l['kind'] === 'AuthorizationPolicy' && String(l['msg']).startsWith('skipping'));
  assert.equal(skipped.length, 1, 'one log line per skipped kind');
  assert.equal(skipped[0]!['msg'], 'skipping AuthorizationPolicy.security.istio.io: its CRD authorizationpolicies.security.istio.io is not installed; it is picked up when the CRD appears');

  await installCrds(ts.server, 'istio');
  await waitUntil('the informer of the new kind', () => (source.watchedKinds().includes('AuthorizationPolicy') ? true : undefined));
  const policy = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-all', namespace: 'demo' }, spec: {} };
  await put(ts.server, [policy]);
  await waitUntil('the policy in the store', () => store.get('AuthorizationPolicy', 'demo', 'deny-all'));

  const del = await ts.kubectl(['delete', 'crd', 'authorizationpolicies.security.istio.io']);
  assert.equal(del.code, 0, del.stderr);
  await waitUntil('the kind no longer watched and its objects gone', () =>
    !source.watchedKinds().includes('AuthorizationPolicy') && !store.get('AuthorizationPolicy', 'demo', 'deny-all') ? true : undefined,
  );
});

test('only Secrets a Gateway references enter the store', async (t) => {
  const ts = await startTestServer(t);
  await installCrds(ts.server, 'gateway-api');
  const tls = (name: string, type = 'kubernetes.io/tls') => ({ apiVersion: 'v1', kind: 'Secret', type, metadata: { name, namespace: 'demo' }, data: { 'tls.crt': Buffer.from('c').toString('base64'), 'tls.key': Buffer.from('k').toString('base64') } });
  // Opaque Secrets count too (Istio reads certificates and `-cacert` CA bundles from them).
  await put(ts.server, [NS, tls('shop-cert'), tls('unrelated'), tls('shop-ca', 'Opaque')]);
  const { store } = await startSource(t, ts.server);
  assert.equal(store.list('Secret').length, 0, 'no Gateway references them yet');
  await put(ts.server, [{
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'public', namespace: 'demo' },
    spec: { gatewayClassName: 'ambit', listeners: [{ name: 'https', port: 443, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'shop-cert' }, { name: 'shop-ca' }] } }] },
  }]);
  await waitUntil('the referenced Secret in the store', () => store.get('Secret', 'demo', 'shop-cert'));
  await waitUntil('the referenced Opaque Secret in the store', () => store.get('Secret', 'demo', 'shop-ca'));
  assert.equal(store.get('Secret', 'demo', 'unrelated'), undefined);
  await ts.kubectl(['delete', '-n', 'demo', 'gateway.gateway.networking.k8s.io/public']);
  await waitUntil('the Secret leaves with the Gateway', () => (store.get('Secret', 'demo', 'shop-cert') === undefined ? true : undefined));
});

test("Istio's mesh config (ConfigMap istio, key mesh) is watched by name; its extension providers serve CUSTOM policies", async (t) => {
  const ts = await startTestServer(t);
  await installCrds(ts.server, 'istio');
  const ROOT = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } };
  const mesh = (port: number) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: `extensionProviders:\n- name: authz\n  envoyExtAuthzGrpc: { service: authz.demo.svc.cluster.local, port: ${port} }\n` } });
  const other = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'unrelated', namespace: 'demo' }, data: { a: 'b' } };
  const svc = (name: string) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'demo' }, spec: { ports: [{ name: 'grpc', port: 9000 }], clusterIP: name === 'web' ? '10.96.0.20' : '10.96.0.21' } });
  const custom = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'ext', namespace: 'demo' }, spec: { targetRefs: [{ kind: 'Service', group: '', name: 'web' }], action: 'CUSTOM', provider: { name: 'authz' }, rules: [{}] } };
  await put(ts.server, [NS, ROOT, mesh(9000), other, svc('web'), svc('authz'), custom]);
  const { store } = await startSource(t, ts.server);
  await waitUntil('the mesh config in the store', () => store.get('ConfigMap', 'istio-system', 'istio'));
  assert.equal(store.get('ConfigMap', 'demo', 'unrelated'), undefined, 'other ConfigMaps are not read');
  const provider = () => translateAll(store.snapshot().objects).routes.routes.find((r) => r.hostname === 'web.demo.svc.cluster.local')?.authorization[0]?.provider;
  assert.equal(provider()?.port, 9000);
  await put(ts.server, [mesh(9001)]);
  await waitUntil('a changed mesh config reaches the translation', () => (provider()?.port === 9001 ? true : undefined));
});

test('an invalid object does not hold up the others; its last good version stays in force', async (t) => {
  const ts = await startTestServer(t);
  await installCrds(ts.server, 'istio');
  const vs = (name: string, timeout: string) => ({
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name, namespace: 'demo' },
    spec: { hosts: ['web'], http: [{ timeout, route: [{ destination: { host: 'web' } }] }] },
  });
  await put(ts.server, [NS, vs('good', '2s')]);
  const { store, source } = await startSource(t, ts.server);
  await waitUntil('good in the store', () => store.get('VirtualService', 'demo', 'good'));
  // One batch: an invalid change to `good` and a valid new object.
  await put(ts.server, [vs('good', 'soon'), vs('other', '1s')]);
  await waitUntil('other applied and good recorded invalid', () => (store.get('VirtualService', 'demo', 'other') && source.invalid().has('VirtualService/demo/good') ? true : undefined));
  const kept = store.get('VirtualService', 'demo', 'good')!;
  assert.equal((kept.spec as { http: Array<{ timeout: string }> }).http[0]!.timeout, '2s', 'the last good version stays');
  const inv = source.invalid().get('VirtualService/demo/good')!;
  assert.match(inv.issues.map((i) => `${i.path}: ${i.problem}`).join('\n'), /spec\.http\[0\]\.timeout: must be a duration/);
  await put(ts.server, [vs('good', '5s')]);
  await waitUntil('the fixed version applied', () => ((store.get('VirtualService', 'demo', 'good')!.spec as { http: Array<{ timeout: string }> }).http[0]!.timeout === '5s' ? true : undefined));
  assert.equal(source.invalid().size, 0);
});

test('the API server restarts while the informers watch: nothing is lost, changes made meanwhile apply', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-k8s-restart-'));
  const stateDir = join(dir, 'state');
  const servers: ApiServer[] = [];
  t.after(async () => {
    for (const s of servers) await s.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  const first = await ApiServer.start({ stateDir, log: silentLog });
  servers.push(first);
  await installCrds(first, 'istio');
  const policy = (name: string, principal: string) => ({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: 'demo' },
    spec: { action: 'ALLOW', rules: [{ from: [{ source: { principals: [principal] } }] }] },
  });
  await put(first, [NS, policy('keep', 'cluster.local/ns/demo/sa/a'), policy('change', 'cluster.local/ns/demo/sa/b'), policy('remove', 'cluster.local/ns/demo/sa/c')]);
  const { store, source, registry } = await startSource(t, first);
  assert.equal(store.list('AuthorizationPolicy').length, 3);
  await first.stop();

  // While the API server is away nothing leaves the store.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(store.list('AuthorizationPolicy').length, 3);

  const second = await ApiServer.start({ stateDir, log: silentLog });
  servers.push(second);
  await put(second, [policy('change', 'cluster.local/ns/demo/sa/b2'), policy('added', 'cluster.local/ns/demo/sa/d')]);
  await second.requestOk({ method: 'DELETE', path: '/apis/security.istio.io/v1/namespaces/demo/authorizationpolicies/remove' });
  const principals = (name: string) => JSON.stringify(store.get('AuthorizationPolicy', 'demo', name)?.spec?.['rules']);
  await waitUntil('the changes made after the restart', () =>
    principals('change').includes('sa/b2') && store.get('AuthorizationPolicy', 'demo', 'added') && !store.get('AuthorizationPolicy', 'demo', 'remove') ? true : undefined,
  20_000);
  assert.ok(principals('keep').includes('sa/a'), 'untouched objects are still there');
  assert.ok(source.ready);
  const errors = (await registry.getSingleMetric('ambit_kube_watch_errors_total')!.get()).values.reduce((n, v) => n + v.value, 0);
  assert.ok(errors > 0, 'the informers saw the server go away and restarted');
});
