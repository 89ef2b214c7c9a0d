import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadManifests } from '../../../src/controller/source/manifests.js';
import { isAmbitError } from '../../../src/shared/errors.js';
import type { Issue } from '../../../src/shared/validate.js';
import { objectKey } from '../../../src/controller/objects.js';

const FIXTURES = fileURLToPath(new URL('../../../../test/fixtures/manifests/', import.meta.url));

async function expectInvalid(p: Promise<unknown>): Promise<Issue[]> {
  try {
    await p;
  } catch (e) {
    assert.ok(isAmbitError(e, 'AMBIT_ERR_MANIFEST_INVALID'), `expected AMBIT_ERR_MANIFEST_INVALID, got ${String(e)}`);
    return (e.details?.['issues'] ?? []) as Issue[];
  }
  assert.fail('loadManifests resolved but the manifests are invalid');
}

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `ambit-manifests-${process.pid}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a directory loads recursively in sorted order, with List items, JSON and the default namespace', async () => {
  const { objects } = await loadManifests([join(FIXTURES, 'valid')]);
  const keys = objects.map(objectKey);
  // 00-namespace, 10-bookinfo (4), 20-waypoint (2), 30-policy.json (List of 2), then istio-docs/ (6).
  assert.equal(objects.length, 15);
  assert.equal(keys[0], 'Namespace//bookinfo');
  assert.equal(keys[1], 'ServiceAccount/bookinfo/bookinfo-reviews');
  assert.ok(keys.indexOf('PeerAuthentication/istio-system/default') < keys.indexOf('DestinationRule/bookinfo/httpbin'), 'files before subdirectory files by name');
  assert.ok(keys.includes('Gateway.gateway.networking.k8s.io/bookinfo/waypoint'));
  assert.ok(keys.includes('Gateway.networking.istio.io/bookinfo/my-gateway'));
  assert.ok(keys.includes('AuthorizationPolicy/bookinfo/reviews-viewer'), 'List items are expanded');
});

test('Istio docs examples load without errors (reviews 90/10 with subsets, Gateway + VirtualService for example.com)', async () => {
  const { objects } = await loadManifests([join(FIXTURES, 'valid/istio-docs/reviews-90-10.yaml'), join(FIXTURES, 'valid/istio-docs/ingress-example-com.yaml')]);
  assert.deepEqual(objects.map(objectKey), [
    'VirtualService/bookinfo/reviews',
    'DestinationRule/bookinfo/reviews',
    'Gateway.networking.istio.io/bookinfo/my-gateway',
    'VirtualService/bookinfo/example-com',
  ]);
  const vs = objects[0]!;
  const route = (vs.spec!['http'] as Array<{ route: Array<{ weight: number }> }>)[0]!.route;
  assert.deepEqual(route.map((r) => r.weight), [90, 10]);
});

test('objects without a namespace get the default namespace (configurable); cluster-scoped ones do not', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.yaml'), 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n');
  const def = await loadManifests([dir]);
  assert.equal(def.objects[0]!.metadata.namespace, 'default');
  assert.equal(def.objects[1]!.metadata.namespace, undefined);
  const custom = await loadManifests([dir], { defaultNamespace: 'demo' });
  assert.equal(custom.objects[0]!.metadata.namespace, 'demo');
});

test('every problem in a multi-document file is reported with file, document, object, field and value', async () => {
  const file = join(FIXTURES, 'invalid/multi-issue.yaml');
  const issues = await expectInvalid(loadManifests([file]));
  const cases: Array<{ doc: number; object: string; field: string; value?: unknown }> = [
    { doc: 1, object: 'Pod web', field: 'metadata.labels.version', value: 1 },
    { doc: 1, object: 'Pod web', field: 'spec.containers[0].command' },
    { doc: 1, object: 'Pod web', field: 'spec.containers[0].ports[0].containerPort', value: 70000 },
    { doc: 2, object: 'Deployment api', field: 'spec.replicas', value: 1.5 },
    { doc: 3, object: 'VirtualService reviews', field: 'spec.http[0].timeout', value: '5x' },
    { doc: 3, object: 'VirtualService reviews', field: 'spec.http[0].route', value: [80, 10] },
    { doc: 4, object: 'PeerAuthentication default', field: 'spec.mtls.mode', value: 'STRICTEST' },
    { doc: 5, object: 'AuthorizationPolicy deny-all', field: 'spec.action', value: 'REJECT' },
    { doc: 6, object: 'VirtualService x', field: 'kind', value: 'networking.istio.io/v1alpha1 VirtualService' },
    { doc: 7, object: 'Service <no name>', field: 'metadata.name' },
    { doc: 7, object: 'Service <no name>', field: 'metadata.labels.app', value: 'bad value!' },
  ];
  for (const c of cases) {
    const path = `${file}#${c.doc}: ${c.object}: ${c.field}`;
    const hit = issues.find((i) => i.path === path);
    assert.ok(hit, `expected an issue at ${path}; got:\n${issues.map((i) => i.path).join('\n')}`);
    if ('value' in c) assert.deepEqual(hit.value, c.value, `value reported for ${path}`);
  }
  assert.equal(issues.length, cases.length, `no unexpected issues:\n${issues.map((i) => `${i.path}: ${i.problem}`).join('\n')}`);
});

test('the error message lists every issue as path: problem (got value)', async () => {
  const file = join(FIXTURES, 'invalid/multi-issue.yaml');
  try {
    await loadManifests([file]);
    assert.fail('expected rejection');
  } catch (e) {
    assert.ok(isAmbitError(e, 'AMBIT_ERR_MANIFEST_INVALID'));
    assert.match(e.message, /11 problem\(s\)/);
    assert.match(e.message, /VirtualService reviews: spec\.http\[0\]\.timeout: must be a duration .* \(got "5x"\)/);
    assert.match(e.message, /destination weights must sum to 100 \(sum is 90\)/);
  }
});

test('nothing is returned when one file of several is invalid', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'good.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: good}\n');
  await writeFile(join(dir, 'bad.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad_Name}\n');
  const issues = await expectInvalid(loadManifests([dir]));
  assert.equal(issues.length, 1);
  assert.equal(issues[0]!.path, `${join(dir, 'bad.yaml')}#1: Namespace Bad_Name: metadata.name`);
  assert.equal(issues[0]!.value, 'Bad_Name');
});

test('YAML syntax errors name the file, document and line; other documents are still checked', async () => {
  const file = join(FIXTURES, 'invalid/syntax-error.yaml');
  const issues = await expectInvalid(loadManifests([file]));
  assert.ok(issues.length >= 1);
  assert.ok(issues.every((i) => i.path.startsWith(`${file}#2 line `)), issues.map((i) => i.path).join('\n'));
  assert.match(issues[0]!.problem, /^YAML syntax error/);
});

test('the same object twice across files is reported at the second place', async (t) => {
  const dir = await tempDir(t);
  const ns = 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app, namespace: demo}\n';
  await writeFile(join(dir, 'a.yaml'), ns);
  await mkdir(join(dir, 'sub'));
  await writeFile(join(dir, 'sub', 'b.yml'), ns);
  const issues = await expectInvalid(loadManifests([dir]));
  assert.equal(issues.length, 1);
  assert.equal(issues[0]!.path, `${join(dir, 'sub', 'b.yml')}#1: ServiceAccount demo/app: metadata.name`);
  assert.match(issues[0]!.problem, new RegExp(`duplicates the object defined at ${join(dir, 'a.yaml').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}#1`));
});

test('List items are located as "#doc item n"; non-manifest files in directories are ignored', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'notes.txt'), 'not yaml: [');
  await writeFile(
    join(dir, 'list.yaml'),
    'apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata: {name: ok}\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata: {}\n',
  );
  const issues = await expectInvalid(loadManifests([dir]));
  assert.deepEqual(
    issues.map((i) => i.path),
    [`${join(dir, 'list.yaml')}#1 item 2: ServiceAccount <no name>: metadata.name`],
  );
});

test('an unreadable path fails with AMBIT_ERR_MANIFEST_READ naming it', async () => {
  const missing = join(tmpdir(), `ambit-missing-${process.pid}`, 'nope.yaml');
  await assert.rejects(loadManifests([missing]), (e: unknown) => {
    assert.ok(isAmbitError(e, 'AMBIT_ERR_MANIFEST_READ'));
    assert.ok(e.message.includes(missing), e.message);
    return true;
  });
});

test('empty documents and comment-only files are skipped', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.yaml'), '# nothing\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n');
  await writeFile(join(dir, 'b.yaml'), '# only a comment\n');
  const { objects } = await loadManifests([dir]);
  assert.deepEqual(objects.map(objectKey), ['Namespace//x']);
});
