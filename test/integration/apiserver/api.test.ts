/**
 * The API over HTTPS as clients see it: discovery and OpenAPI, error Status shapes, bad input,
 * list paging, watch semantics (initial state, exact resume, bookmarks, Tables, selector
 * transitions, watch-list), object lifecycle (generateName, generation, finalizers, propagation
 * policies, graceful pods, status subresource) and field selectors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { httpsWatch, startTestServer, waitUntil, type TestServer } from './helpers.js';
import { isAmbitError } from '../../../src/shared/errors.js';

const CM = (name: string, ns = 'default', extra: Record<string, unknown> = {}): unknown => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns, ...extra }, data: { a: '1' } });

async function create(s: TestServer, path: string, body: unknown): Promise<any> {
  const r = await s.call('POST', path, body);
  assert.equal(r.status, 201, `POST ${path}: ${r.text}`);
  return r.json;
}

test('discovery, version and OpenAPI', async (t) => {
  const s = await startTestServer(t);
  const v = await s.call('GET', '/version');
  assert.equal(v.json.major, '1');
  assert.equal(v.json.minor, '32');
  const api = await s.call('GET', '/api');
  assert.equal(api.json.kind, 'APIVersions');
  assert.deepEqual(api.json.versions, ['v1']);
  const apis = await s.call('GET', '/apis');
  const apps = apis.json.groups.find((g: any) => g.name === 'apps');
  assert.deepEqual(apps.preferredVersion, { groupVersion: 'apps/v1', version: 'v1' });
  const core = await s.call('GET', '/api/v1');
  const names = core.json.resources.map((r: any) => r.name);
  for (const n of ['pods', 'pods/status', 'services', 'serviceaccounts/token', 'namespaces/finalize', 'nodes/status']) assert.ok(names.includes(n), n);
  const appsV1 = await s.call('GET', '/apis/apps/v1');
  const scale = appsV1.json.resources.find((r: any) => r.name === 'deployments/scale');
  assert.deepEqual([scale.group, scale.version, scale.kind], ['autoscaling', 'v1', 'Scale']);
  const agg = await s.call('GET', '/apis', undefined, { accept: 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json' });
  assert.equal(agg.headers['content-type'], 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList');
  assert.equal(agg.json.kind, 'APIGroupDiscoveryList');
  const deploy = agg.json.items.find((i: any) => i.metadata.name === 'apps').versions[0].resources.find((r: any) => r.resource === 'deployments');
  assert.equal(deploy.scope, 'Namespaced');
  assert.deepEqual(deploy.subresources.map((x: any) => x.subresource).sort(), ['scale', 'status']);
  const legacy = await s.call('GET', '/apis', undefined, { accept: 'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList' });
  assert.equal(legacy.json.apiVersion, 'apidiscovery.k8s.io/v2beta1');
  const root = await s.call('GET', '/openapi/v3');
  const url = root.json.paths['api/v1'].serverRelativeURL as string;
  assert.match(url, /^\/openapi\/v3\/api\/v1\?hash=[0-9A-F]+$/);
  const doc = await s.call('GET', url);
  const patch = doc.json.paths['/api/v1/namespaces/{namespace}/configmaps/{name}'].patch;
  assert.deepEqual(patch['x-kubernetes-group-version-kind'], { group: '', version: 'v1', kind: 'ConfigMap' });
  assert.ok(patch.parameters.some((p: any) => p.name === 'fieldValidation' && p.in === 'query'));
  assert.ok('application/strategic-merge-patch+json' in patch.requestBody.content);
  assert.equal((await s.call('GET', '/openapi/v2')).status, 404);
  assert.equal((await s.call('GET', '/healthz')).text, 'ok');
});

test('errors are Status objects with the real codes, reasons and details', async (t) => {
  const s = await startTestServer(t);
  const nf = await s.call('GET', '/apis/apps/v1/namespaces/default/deployments/nope');
  assert.equal(nf.status, 404);
  assert.deepEqual(nf.json, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'deployments.apps "nope" not found', reason: 'NotFound', details: { name: 'nope', group: 'apps', kind: 'deployments' }, code: 404 });
  const noPath = await s.call('GET', '/api/v1/widgets');
  assert.equal(noPath.status, 404);
  assert.equal(noPath.json.message, 'the server could not find the requested resource');
  await create(s, '/api/v1/namespaces/default/configmaps', CM('c1'));
  const dup = await s.call('POST', '/api/v1/namespaces/default/configmaps', CM('c1'));
  assert.equal(dup.status, 409);
  assert.equal(dup.json.reason, 'AlreadyExists');
  assert.equal(dup.json.message, 'configmaps "c1" already exists');
  const stale = await s.call('PUT', '/api/v1/namespaces/default/configmaps/c1', { ...(CM('c1') as object), metadata: { name: 'c1', namespace: 'default', resourceVersion: '1' } });
  assert.equal(stale.status, 409);
  assert.equal(stale.json.reason, 'Conflict');
  const inv = await s.call('POST', '/api/v1/namespaces/default/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'svc' }, spec: { ports: [{ port: 70000 }] } });
  assert.equal(inv.status, 422);
  assert.equal(inv.json.reason, 'Invalid');
  assert.equal(inv.json.details.kind, 'Service');
  const portError = { reason: 'FieldValueInvalid', message: 'Invalid value: 70000: must be between 1 and 65535, inclusive' };
  // targetPort defaults to port, so both are reported, as upstream does.
  assert.deepEqual(inv.json.details.causes, [{ ...portError, field: 'spec.ports[0].port' }, { ...portError, field: 'spec.ports[0].targetPort' }]);
  assert.equal(
    inv.json.message,
    'Service "svc" is invalid: [spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive, spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive]',
  );
  const smp = await s.call('PATCH', '/api/v1/namespaces/default/configmaps/c1', { data: { b: '2' } }, { contentType: 'application/xml' });
  assert.equal(smp.status, 415);
  assert.equal(smp.json.reason, 'UnsupportedMediaType');
  const noNs = await s.call('POST', '/api/v1/namespaces/ghost/configmaps', CM('x', 'ghost'));
  assert.equal(noNs.status, 404);
  assert.equal(noNs.json.message, 'namespaces "ghost" not found');
  const method = await s.call('PUT', '/api/v1/namespaces/default/configmaps', CM('x'));
  assert.equal(method.status, 405);
  const protoOnly = await s.call('GET', '/api/v1/namespaces', undefined, { accept: 'application/vnd.kubernetes.protobuf' });
  assert.equal(protoOnly.status, 406);
});

test('bad input never crashes the server and is answered with a 4xx Status', async (t) => {
  const s = await startTestServer(t);
  const post = (raw: string | Buffer, contentType = 'application/json'): Promise<any> => s.call('POST', '/api/v1/namespaces/default/configmaps', undefined, { rawBody: raw, contentType });
  const malformed = await post('{"apiVersion": "v1", "kind": ');
  assert.equal(malformed.status, 400);
  assert.match(malformed.json.message, /error decoding JSON body/);
  assert.equal((await post('[1,2,3]')).status, 400);
  assert.equal((await post('"just a string"')).status, 400);
  const wrongType = await post(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'w' }, data: { a: 1 } }));
  assert.equal(wrongType.status, 400);
  assert.match(wrongType.json.message, /ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data\[a\] of type string/);
  const wrongKind = await post(JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'w' } }));
  assert.equal(wrongKind.status, 400);
  const wrongVersion = await post(JSON.stringify({ apiVersion: 'apps/v1', kind: 'ConfigMap', metadata: { name: 'w' } }));
  assert.match(wrongVersion.json.message, /the API version in the data \(apps\/v1\) does not match the expected API version \(v1\)/);
  const yaml = await post('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-yaml}\ndata: {k: v}\n', 'application/yaml');
  assert.equal(yaml.status, 201, yaml.text);
  const badYaml = await post('apiVersion: v1\nkind: [unclosed\n', 'application/yaml');
  assert.equal(badYaml.status, 400);
  const huge = await post(Buffer.alloc(3 * 1024 * 1024 + 10, 0x20));
  assert.equal(huge.status, 413);
  assert.equal(huge.json.reason, 'RequestEntityTooLarge');
  const nest = (n: number): string => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
  const deep = await post(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"junk":${nest(20_000)}}`);
  assert.equal(deep.status, 400);
  assert.match(deep.json.message, /nested deeper than 1000 levels/);
  assert.equal((await post(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"nested"},"junk":${nest(500)}}`)).status, 201);
  const badProto = await post(Buffer.from([0x6b, 0x38, 0x73, 0x00, 0xff, 0xff, 0xff]), 'application/vnd.kubernetes.protobuf');
  assert.equal(badProto.status, 400);
  const strict = await s.call('POST', '/api/v1/namespaces/default/configmaps?fieldValidation=Strict', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'strict' }, extra: true, data: { k: 'v' } });
  assert.equal(strict.status, 400);
  assert.match(strict.json.message, /strict decoding error: unknown field "extra"/);
  const warn = await s.call('POST', '/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'warned' }, extra: true });
  assert.equal(warn.status, 201);
  assert.match(String(warn.headers['warning']), /299 - "unknown field \\"extra\\""/);
  assert.equal(warn.json.extra, undefined, 'unknown fields of built-in kinds are dropped');
  assert.equal((await s.call('GET', '/api/v1/pods?labelSelector=a%20in%20(b')).status, 400);
  const fs = await s.call('GET', '/api/v1/pods?fieldSelector=spec.bogus%3Dx');
  assert.equal(fs.status, 400);
  assert.equal(fs.json.message, 'field label not supported: spec.bogus');
  assert.equal((await s.call('GET', '/api/v1/pods?limit=-3')).status, 400);
  assert.equal((await s.call('GET', '/version')).status, 200, 'still serving');
});

test('lists page with limit/continue; a lost continue token is 410', async (t) => {
  const s = await startTestServer(t);
  for (let i = 0; i < 5; i++) await create(s, '/api/v1/namespaces/default/configmaps', CM(`p${i}`));
  const first = await s.call('GET', '/api/v1/namespaces/default/configmaps?limit=2');
  assert.equal(first.json.items.length, 2);
  assert.equal(first.json.metadata.remainingItemCount, 4);
  const rv = first.json.metadata.resourceVersion;
  await create(s, '/api/v1/namespaces/default/configmaps', CM('p9'));
  const names: string[] = first.json.items.map((o: any) => o.metadata.name);
  let token = first.json.metadata.continue as string;
  while (token) {
    const next = await s.call('GET', `/api/v1/namespaces/default/configmaps?limit=2&continue=${encodeURIComponent(token)}`);
    assert.equal(next.json.metadata.resourceVersion, rv, 'every page is the list at the first page\'s resourceVersion');
    names.push(...next.json.items.map((o: any) => o.metadata.name));
    token = next.json.metadata.continue ?? '';
  }
  assert.deepEqual(names, ['kube-root-ca.crt', 'p0', 'p1', 'p2', 'p3', 'p4']);
  const gone = await s.call('GET', `/api/v1/namespaces/default/configmaps?limit=2&continue=${Buffer.from(JSON.stringify({ rv: 1, id: 'lost' })).toString('base64url')}`);
  assert.equal(gone.status, 410);
  assert.equal(gone.json.reason, 'Expired');
  const fut = await s.call('GET', '/api/v1/namespaces/default/configmaps?resourceVersion=999999&resourceVersionMatch=NotOlderThan');
  assert.equal(fut.status, 504);
});

test('watches: initial state, exact resume, selector transitions, bookmarks, Tables, watch-list', async (t) => {
  const s = await startTestServer(t);
  await create(s, '/api/v1/namespaces/default/configmaps', CM('w0', 'default', { labels: { team: 'a' } }));
  const all = await httpsWatch(s.server, '/api/v1/namespaces/default/configmaps?watch=true&labelSelector=team%3Da');
  t.after(() => all.close());
  const [initial] = await all.waitFor(1);
  assert.equal(initial.type, 'ADDED');
  assert.equal(initial.object.metadata.name, 'w0');
  const rv = String(s.server.resourceVersion);
  const c1 = await create(s, '/api/v1/namespaces/default/configmaps', CM('w1', 'default', { labels: { team: 'a' } }));
  await s.call('PATCH', '/api/v1/namespaces/default/configmaps/w1', { metadata: { labels: { team: 'b' } } }, { contentType: 'application/merge-patch+json' });
  await s.call('PATCH', '/api/v1/namespaces/default/configmaps/w1', { metadata: { labels: { team: 'a' } } }, { contentType: 'application/merge-patch+json' });
  await s.call('DELETE', '/api/v1/namespaces/default/configmaps/w1');
  const evs = await all.waitFor(5);
  assert.deepEqual(evs.slice(1).map((e) => e.type), ['ADDED', 'DELETED', 'ADDED', 'DELETED'], 'leaving the selector is DELETED, coming back ADDED');
  assert.equal(evs[1].object.metadata.uid, c1.metadata.uid);

  const resumed = await httpsWatch(s.server, `/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=${rv}`);
  t.after(() => resumed.close());
  const r = await resumed.waitFor(4);
  assert.deepEqual(r.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED w1', 'MODIFIED w1', 'MODIFIED w1', 'DELETED w1']);

  const bm = await httpsWatch(s.server, `/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=${s.server.resourceVersion}&allowWatchBookmarks=true&timeoutSeconds=1`);
  await bm.ended;
  assert.deepEqual(bm.lines.map((e) => e.type), ['BOOKMARK']);
  assert.deepEqual(Object.keys(bm.lines[0].object.metadata), ['resourceVersion']);

  const table = await httpsWatch(s.server, '/api/v1/namespaces/default/configmaps?watch=true', { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
  t.after(() => table.close());
  await table.waitFor(2);
  await create(s, '/api/v1/namespaces/default/configmaps', CM('w2'));
  const tev = await table.waitFor(3);
  assert.equal(tev[0].object.kind, 'Table');
  assert.deepEqual(tev[0].object.columnDefinitions.map((c: any) => c.name), ['Name', 'Data', 'Age']);
  assert.equal(tev[2].object.columnDefinitions, null, 'only the first event carries columns');
  assert.equal(tev[2].object.rows[0].cells[0], 'w2');
  assert.equal(tev[2].object.rows[0].object.kind, 'PartialObjectMetadata');

  const noMatch = await s.call('GET', '/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true');
  assert.equal(noMatch.status, 422);
  assert.match(noMatch.json.message, /sendInitialEvents requires setting resourceVersionMatch to NotOlderThan/);
  const wl = await httpsWatch(s.server, '/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true');
  t.after(() => wl.close());
  const list = await wl.waitFor(4);
  assert.deepEqual(list.map((e) => e.type), ['ADDED', 'ADDED', 'ADDED', 'BOOKMARK']);
  assert.equal(list[3].object.metadata.annotations['k8s.io/initial-events-end'], 'true');
});

test('object lifecycle: generateName, generation, status, finalizers, propagation, graceful pods', async (t) => {
  const s = await startTestServer(t);
  const gen = await create(s, '/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { generateName: 'cfg-' } });
  assert.match(gen.metadata.name, /^cfg-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
  assert.match(gen.metadata.uid, /^[0-9a-f-]{36}$/);
  assert.match(gen.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  const deploy = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'd' },
    spec: { selector: { matchLabels: { app: 'd' } }, template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c', image: 'x' }] } } },
    status: { replicas: 99 },
  };
  const d = await create(s, '/apis/apps/v1/namespaces/default/deployments', deploy);
  assert.equal(d.metadata.generation, 1);
  assert.deepEqual(d.status, {}, 'status is not taken on create');
  const merge = (path: string, body: unknown): Promise<any> => s.call('PATCH', path, body, { contentType: 'application/merge-patch+json' });
  const labelled = await merge('/apis/apps/v1/namespaces/default/deployments/d', { metadata: { labels: { x: 'y' } }, status: { replicas: 5 } });
  assert.equal(labelled.json.metadata.generation, 1, 'metadata changes do not bump generation');
  assert.deepEqual(labelled.json.status, {}, 'the main resource does not write status');
  const specChange = await merge('/apis/apps/v1/namespaces/default/deployments/d', { spec: { replicas: 3 } });
  assert.equal(specChange.json.metadata.generation, 2);
  const status = await merge('/apis/apps/v1/namespaces/default/deployments/d/status', { status: { replicas: 3 }, spec: { replicas: 7 } });
  assert.equal(status.json.status.replicas, 3);
  assert.equal(status.json.spec.replicas, 3, 'the status subresource does not write spec');
  const noop = await merge('/apis/apps/v1/namespaces/default/deployments/d', { spec: { replicas: 3 } });
  assert.equal(noop.json.metadata.resourceVersion, status.json.metadata.resourceVersion, 'a write that changes nothing keeps the resourceVersion');

  const rs = await create(s, '/apis/apps/v1/namespaces/default/replicasets', {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: { name: 'd-1', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'd', uid: d.metadata.uid, controller: true, blockOwnerDeletion: true }], finalizers: ['example.com/hold'] },
    spec: { selector: { matchLabels: { app: 'd' } }, template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c', image: 'x' }] } } },
  });
  const fg = await s.call('DELETE', '/apis/apps/v1/namespaces/default/deployments/d', { propagationPolicy: 'Foreground' });
  assert.equal(fg.status, 200);
  assert.ok(fg.json.metadata.deletionTimestamp);
  assert.deepEqual(fg.json.metadata.finalizers, ['foregroundDeletion']);
  await waitUntil('the dependent marked for deletion', async () => ((await s.call('GET', '/apis/apps/v1/namespaces/default/replicasets/d-1')).json.metadata.deletionTimestamp ? true : undefined));
  assert.equal((await s.call('GET', '/apis/apps/v1/namespaces/default/deployments/d')).status, 200, 'the owner waits for its blocking dependent');
  const addFin = await merge('/apis/apps/v1/namespaces/default/replicasets/d-1', { metadata: { finalizers: ['example.com/hold', 'example.com/more'] } });
  assert.equal(addFin.status, 422, 'no new finalizers on an object being deleted');
  await s.call('PATCH', '/apis/apps/v1/namespaces/default/replicasets/d-1', [{ op: 'remove', path: '/metadata/finalizers' }], { contentType: 'application/json-patch+json' });
  await waitUntil('owner and dependent gone', async () => {
    const a = await s.call('GET', '/apis/apps/v1/namespaces/default/deployments/d');
    const b = await s.call('GET', '/apis/apps/v1/namespaces/default/replicasets/d-1');
    return a.status === 404 && b.status === 404 ? true : undefined;
  });
  assert.ok(rs.metadata.uid);

  const owner = await create(s, '/api/v1/namespaces/default/configmaps', CM('owner'));
  await create(s, '/api/v1/namespaces/default/configmaps', CM('child', 'default', { ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid }] }));
  const orphan = await s.call('DELETE', '/api/v1/namespaces/default/configmaps/owner', { propagationPolicy: 'Orphan' });
  assert.equal(orphan.status, 200);
  await waitUntil('the owner gone, its child orphaned', async () => {
    const o = await s.call('GET', '/api/v1/namespaces/default/configmaps/owner');
    const c = await s.call('GET', '/api/v1/namespaces/default/configmaps/child');
    return o.status === 404 && c.status === 200 && c.json.metadata.ownerReferences === undefined ? true : undefined;
  });

  const dry = await s.call('DELETE', '/api/v1/namespaces/default/configmaps/child?dryRun=All');
  assert.equal(dry.status, 200);
  assert.equal((await s.call('GET', '/api/v1/namespaces/default/configmaps/child')).status, 200, 'dry-run delete keeps the object');
  const precond = await s.call('DELETE', '/api/v1/namespaces/default/configmaps/child', { preconditions: { uid: 'other' } });
  assert.equal(precond.status, 409);
  const del = await s.call('DELETE', '/api/v1/namespaces/default/configmaps/child');
  assert.deepEqual([del.json.kind, del.json.status, del.json.details.name, del.json.details.kind], ['Status', 'Success', 'child', 'configmaps']);

  await create(s, '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'x' }] } };
  const p = await create(s, '/api/v1/namespaces/default/pods', pod);
  assert.equal(p.status.phase, 'Pending');
  assert.equal(p.spec.serviceAccountName, 'default');
  const ps = await merge('/api/v1/namespaces/default/pods/p/status', { metadata: { annotations: { 'ambient.istio.io/redirection': 'enabled' } }, status: { phase: 'Running', podIP: '10.1.0.5' }, spec: { nodeName: 'elsewhere' } });
  assert.equal(ps.json.metadata.annotations['ambient.istio.io/redirection'], 'enabled', 'pods/status keeps annotation changes');
  assert.equal(ps.json.spec.nodeName, 'n1');
  const byField = await s.call('GET', '/api/v1/pods?fieldSelector=spec.nodeName%3Dn1,status.phase%3DRunning,status.podIP%3D10.1.0.5');
  assert.deepEqual(byField.json.items.map((x: any) => x.metadata.name), ['p']);
  const specEdit = await merge('/api/v1/namespaces/default/pods/p', { spec: { nodeName: 'n2' } });
  assert.equal(specEdit.status, 422);
  assert.match(specEdit.json.message, /pod updates may not change fields other than/);
  const graceful = await s.call('DELETE', '/api/v1/namespaces/default/pods/p');
  assert.equal(graceful.json.metadata.deletionGracePeriodSeconds, 30, 'a pod on a node is deleted gracefully');
  assert.equal((await s.call('GET', '/api/v1/namespaces/default/pods/p')).status, 200);
  const now = await s.call('DELETE', '/api/v1/namespaces/default/pods/p', { gracePeriodSeconds: 0 });
  assert.equal(now.status, 200);
  assert.equal((await s.call('GET', '/api/v1/namespaces/default/pods/p')).status, 404);

  const svc = await create(s, '/api/v1/namespaces/default/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'np' }, spec: { type: 'NodePort', ports: [{ port: 80 }] } });
  assert.match(svc.spec.clusterIP, /^10\.96\.\d+\.\d+$/);
  assert.equal(svc.spec.ports[0].nodePort, 30000);
  assert.equal(svc.spec.ports[0].targetPort, 80);
  const put = await s.call('PUT', '/api/v1/namespaces/default/services/np', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'np', resourceVersion: svc.metadata.resourceVersion }, spec: { type: 'NodePort', ports: [{ port: 80 }] } });
  assert.equal(put.json.spec.clusterIP, svc.spec.clusterIP, 'an update leaving the ClusterIP out keeps it');
  assert.equal(put.json.spec.ports[0].nodePort, 30000);
  const kube = await s.call('GET', '/api/v1/namespaces/default/services/kubernetes');
  assert.equal(kube.json.spec.clusterIP, '10.96.0.1');
  const eps = await s.call('GET', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes');
  assert.deepEqual(eps.json.ports[0].port, s.server.port);
});

test('the in-process client runs the same pipeline as HTTPS and throws coded errors', async (t) => {
  const s = await startTestServer(t);
  const cm = await s.server.requestOk<any>({ method: 'POST', path: '/api/v1/namespaces/default/configmaps', body: CM('inproc') });
  assert.equal(cm.metadata.name, 'inproc');
  const table = await s.server.request({ method: 'GET', path: '/api/v1/namespaces/default/configmaps', headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' } });
  assert.equal((table.body as any).kind, 'Table');
  const patched = await s.server.requestOk<any>({ method: 'PATCH', path: '/api/v1/namespaces/default/configmaps/inproc', body: { data: { b: '2' } }, contentType: 'application/merge-patch+json' });
  assert.deepEqual(patched.data, { a: '1', b: '2' });
  await assert.rejects(
    s.server.requestOk({ method: 'GET', path: '/api/v1/namespaces/default/configmaps/missing' }),
    (e: unknown) => isAmbitError(e, 'AMBIT_ERR_APISERVER_REQUEST') && e.message === 'GET /api/v1/namespaces/default/configmaps/missing: 404 NotFound: configmaps "missing" not found',
  );
  const asSa = await s.server.request({ method: 'GET', path: '/api/v1/namespaces/default/secrets', user: { username: 'system:serviceaccount:default:default', groups: ['system:serviceaccounts', 'system:authenticated'] } });
  assert.equal(asSa.status, 403);
  const yaml = s.server.kubeconfig('default');
  assert.match(yaml, /certificate-authority-data: /);
  assert.match(yaml, new RegExp(`server: ${s.server.url.replace(/[.]/g, '\\.')}`));
  assert.match(yaml, /namespace: default/);
});

test('pods/binding sets the node of an unbound pod once, as the scheduler binds', async (t) => {
  const s = await startTestServer(t);
  const pod = await create(s, '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'b' }, spec: { containers: [{ name: 'c', image: 'x' }] } });
  const disco = await s.call('GET', '/api/v1');
  assert.ok(disco.json.resources.some((r: any) => r.name === 'pods/binding' && r.verbs.includes('create')), 'discovery lists pods/binding');
  const bind = (body: unknown): Promise<any> => s.call('POST', '/api/v1/namespaces/default/pods/b/binding', body);
  const noTarget = await bind({ apiVersion: 'v1', kind: 'Binding', metadata: { name: 'b' }, target: {} });
  assert.equal(noTarget.status, 422);
  assert.match(noTarget.json.message, /target\.name: Required value/);
  assert.equal((await bind({ apiVersion: 'v1', kind: 'Binding', metadata: { name: 'other' }, target: { kind: 'Node', name: 'n1' } })).status, 400, 'the name must match the URL');
  assert.equal((await bind({ apiVersion: 'v1', kind: 'Binding', metadata: { name: 'b', uid: 'wrong' }, target: { kind: 'Node', name: 'n1' } })).status, 409, 'a uid precondition is checked');
  const ok = await bind({ apiVersion: 'v1', kind: 'Binding', metadata: { name: 'b', uid: pod.metadata.uid }, target: { kind: 'Node', name: 'n1' } });
  assert.equal(ok.status, 201, ok.text);
  const bound = (await s.call('GET', '/api/v1/namespaces/default/pods/b')).json;
  assert.equal(bound.spec.nodeName, 'n1');
  assert.equal(bound.status.conditions.find((c: any) => c.type === 'PodScheduled')?.status, 'True');
  const again = await bind({ apiVersion: 'v1', kind: 'Binding', metadata: { name: 'b' }, target: { kind: 'Node', name: 'n2' } });
  assert.equal(again.status, 409);
  assert.match(again.json.message, /already assigned to node "n1"/);
  assert.equal((await s.call('POST', '/api/v1/namespaces/default/pods/missing/binding', { target: { name: 'n1' } })).status, 404);
});
