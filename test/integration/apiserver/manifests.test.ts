/**
 * daemonset/ and the example policy applied by the real kubectl to local mode's API server, as a
 * user installs Ambit: the CRDs with server-side apply until each is Established, the namespace,
 * then a server-side dry run of the install and of every overlay (one "(server dry run)" line per
 * object, nothing refused); every custom resource of the examples and fixtures applied and read
 * back with its spec unchanged (nothing pruned by the CRD schemas); an unknown field refused under
 * `--validate=strict` and a wrongly typed field refused by the server.
 * (test/unit/manifests-k8s/ checks the same files offline, object by object.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { runKubectl, startTestServer, type TestServer } from './helpers.js';

const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
const DAEMONSET = join(REPO, 'daemonset');
const kubectlMissing = runKubectl('/dev/null', '/tmp', ['version', '--client']).then((r) => (r.code === 0 ? false : 'kubectl is not installed'));

type Obj = Record<string, any>;

async function ok(s: TestServer, args: string[], input?: string): Promise<string> {
  const r = await s.kubectl(args, input === undefined ? { timeoutMs: 120_000 } : { input, timeoutMs: 120_000 });
  assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function docs(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null && typeof o === 'object' && typeof o['kind'] === 'string');
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : /\.(ya?ml|json)$/.test(n) ? [p] : [];
  });
}

/** The install as kubectl renders it: CRDs, the namespace, then the rest. */
async function install(s: TestServer): Promise<{ crds: Obj[]; others: Obj[] }> {
  const rendered = docs(await ok(s, ['kustomize', DAEMONSET]));
  const crds = rendered.filter((o) => o['kind'] === 'CustomResourceDefinition');
  assert.ok(crds.length >= 10, `the install carries the CRDs (${crds.length})`);
  // One document each: kubectl validates a `List` as a kind of its own, which needs OpenAPI v2.
  const crdFile = join(s.dir, 'crds.yaml');
  writeFileSync(crdFile, crds.map((c) => stringify(c)).join('---\n'));
  await ok(s, ['apply', '--server-side', '-f', crdFile]);
  await ok(s, ['wait', '--for=condition=Established', '--timeout=60s', ...crds.map((c) => `crd/${c['metadata']['name']}`)]);
  for (const c of crds) {
    const live = JSON.parse(await ok(s, ['get', `crd/${c['metadata']['name']}`, '-o', 'json'])) as Obj;
    const conditions = (live['status']?.['conditions'] ?? []) as Obj[];
    assert.equal(conditions.find((x) => x['type'] === 'NonStructuralSchema'), undefined, `${c['metadata']['name']} has a structural schema`);
  }
  await ok(s, ['apply', '--server-side', '-k', join(DAEMONSET, 'namespace')]);
  return { crds, others: rendered.filter((o) => o['kind'] !== 'CustomResourceDefinition') };
}

test('kubectl: the install and every overlay pass a server-side dry run against the API server', { skip: await kubectlMissing, timeout: 300_000 }, async (t) => {
  const s = await startTestServer(t);
  await install(s);
  const targets = [DAEMONSET, join(DAEMONSET, 'core'), ...readdirSync(join(DAEMONSET, 'overlays')).map((n) => join(DAEMONSET, 'overlays', n))];
  for (const dir of targets) {
    const objects = docs(await ok(s, ['kustomize', dir]));
    const out = await ok(s, ['apply', '--dry-run=server', '-k', dir]);
    const lines = out.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, objects.length, `${dir}: one line per object:\n${out}`);
    for (const l of lines) assert.match(l, /\(server dry run\)$/, `${dir}: ${l}`);
    for (const o of objects) {
      const ns = o['metadata']['namespace'] as string | undefined;
      if (ns !== undefined) assert.equal(ns, 'istio-system', `${o['kind']}/${o['metadata']['name']} installs into istio-system`);
    }
  }
  // A dry run stores nothing: the controller's Deployment is not there.
  const r = await s.kubectl(['get', 'deployment', '-n', 'istio-system', '-o', 'name']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), '', 'nothing was created by the dry runs');
});

test('kubectl: every custom resource of the examples reads back unchanged; bad fields are refused', { skip: await kubectlMissing, timeout: 300_000 }, async (t) => {
  const s = await startTestServer(t);
  const { crds } = await install(s);
  const served = new Map<string, string>(); // "group/Kind" -> plural.group
  for (const c of crds) served.set(`${c['spec']['group']}/${c['spec']['names']['kind']}`, `${c['spec']['names']['plural']}.${c['spec']['group']}`);

  const files = [...filesUnder(join(REPO, 'examples')), ...filesUnder(join(REPO, 'test/fixtures/manifests/valid'))];
  const custom: Array<{ file: string; obj: Obj; resource: string }> = [];
  for (const file of files) {
    const objects = file.endsWith('.json') ? [JSON.parse(readFileSync(file, 'utf8')) as Obj].flatMap((o) => (o['kind'] === 'List' ? (o['items'] as Obj[]) : [o])) : docs(readFileSync(file, 'utf8'));
    for (const o of objects) {
      const group = String(o['apiVersion']).includes('/') ? String(o['apiVersion']).split('/')[0]! : '';
      const resource = served.get(`${group}/${o['kind']}`);
      if (resource !== undefined) custom.push({ file, obj: o, resource });
    }
  }
  const kinds = new Set(custom.map((c) => c.obj['kind']));
  for (const k of ['VirtualService', 'DestinationRule', 'AuthorizationPolicy', 'PeerAuthentication', 'Gateway', 'HTTPRoute']) assert.ok(kinds.has(k), `the examples hold a ${k}`);

  const namespaces = new Set(custom.map((c) => (c.obj['metadata']['namespace'] as string | undefined) ?? 'default'));
  for (const ns of namespaces) {
    if (ns !== 'default') await s.kubectl(['create', 'namespace', ns]);
  }
  for (const { file, obj, resource } of custom) {
    const ns = (obj['metadata']['namespace'] as string | undefined) ?? 'default';
    const what = `${file.slice(REPO.length)}: ${obj['kind']} ${ns}/${obj['metadata']['name']}`;
    await ok(s, ['apply', '--server-side', '--validate=strict', '-n', ns, '-f', '-'], JSON.stringify(obj));
    const live = JSON.parse(await ok(s, ['get', resource, obj['metadata']['name'], '-n', ns, '-o', 'json'])) as Obj;
    assert.deepEqual(live['spec'], obj['spec'], `${what} reads back with its spec unchanged`);
  }

  const vs = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'bad', namespace: 'default' },
    spec: { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' } }] }] },
  };
  const unknown = await s.kubectl(['apply', '--validate=strict', '-f', '-'], { input: JSON.stringify({ ...vs, spec: { ...vs.spec, hostz: ['x'] } }) });
  assert.notEqual(unknown.code, 0, 'an unknown field is refused under --validate=strict');
  assert.match(unknown.stderr, /unknown field "spec\.hostz"/);
  const typed = await s.kubectl(['apply', '--validate=false', '-f', '-'], { input: JSON.stringify({ ...vs, spec: { ...vs.spec, hosts: 'reviews' } }) });
  assert.notEqual(typed.code, 0, 'a wrongly typed field is refused by the server');
  assert.match(typed.stderr, /spec\.hosts/);
  assert.match(typed.stderr, /array/);
  const none = await s.kubectl(['get', 'virtualservices.networking.istio.io', 'bad', '-n', 'default']);
  assert.notEqual(none.code, 0, 'neither bad object was stored');
});
