/**
 * The real kubectl (1.32 on these machines) against the local API server: apply, get (wide,
 * -A, labels), label/annotate, the three patch types, replace with a stale resourceVersion,
 * delete (which waits until gone), a CRD then its CR, get -w, server-side dry run, scale,
 * server-side apply, typed-client commands (protobuf bodies), auth can-i, and error messages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startTestServer, waitUntil, type TestServer } from './helpers.js';

const APP = `apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
        env: [{name: MODE, value: one}]
      - name: sidecar
        image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: demo
data:
  a: "1"
`;

const CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1, default: 3}
              color: {type: string, enum: [red, blue]}
`;

function lines(s: string): string[] {
  return s.trim().split('\n');
}

test('kubectl against the local API server', async (t) => {
  const s: TestServer = await startTestServer(t);
  const ok = async (args: string[], input?: string): Promise<string> => {
    const r = await s.kubectl(args, input === undefined ? {} : { input });
    assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };

  await t.test('apply creates, a second apply changes nothing, a changed manifest is configured', async () => {
    const first = await ok(['apply', '-f', '-'], APP);
    assert.match(first, /namespace\/demo created/);
    assert.match(first, /deployment.apps\/web created/);
    assert.match(first, /service\/web created/);
    const again = await ok(['apply', '-f', '-'], APP);
    assert.match(again, /deployment.apps\/web unchanged/);
    const changed = await ok(['apply', '-f', '-'], APP.replace('value: one', 'value: two'));
    assert.match(changed, /deployment.apps\/web configured/);
    const env = await ok(['get', 'deploy', 'web', '-n', 'demo', '-o', 'jsonpath={.metadata.generation} {.spec.template.spec.containers[0].env[0].value} {.spec.template.spec.containers[1].name}']);
    assert.equal(env, '2 two sidecar');
  });

  await t.test('get prints the server Table: -o wide columns, -A namespaces, --show-labels', async () => {
    const wide = lines(await ok(['get', 'svc', 'web', '-n', 'demo', '-o', 'wide']));
    assert.match(wide[0]!, /^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE\s+SELECTOR$/);
    assert.match(wide[1]!, /^web\s+ClusterIP\s+10\.96\.0\.\d+\s+<none>\s+80\/TCP\s+\S+\s+app=web$/);
    const all = lines(await ok(['get', 'deploy', '-A', '--show-labels']));
    assert.match(all[0]!, /^NAMESPACE\s+NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\s+LABELS$/);
    assert.match(all[1]!, /^demo\s+web\s+0\/2\s+0\s+0\s+\S+\s+app=web,tier=front$/);
    const deployWide = lines(await ok(['get', 'deploy', 'web', '-n', 'demo', '-o', 'wide']));
    assert.match(deployWide[1]!, /web,sidecar\s+nginx:1\.27,busybox:1\.36\s+app=web$/);
    const ns = await ok(['get', 'ns', 'demo', '-o', 'name']);
    assert.equal(ns.trim(), 'namespace/demo');
  });

  await t.test('label and annotate add and remove', async () => {
    await ok(['label', 'cm', 'cfg', '-n', 'demo', 'team=blue']);
    await ok(['annotate', 'cm', 'cfg', '-n', 'demo', 'note=hello']);
    assert.equal(await ok(['get', 'cm', 'cfg', '-n', 'demo', '-o', 'jsonpath={.metadata.labels.team}/{.metadata.annotations.note}']), 'blue/hello');
    await ok(['label', 'cm', 'cfg', '-n', 'demo', 'team-']);
    assert.equal(await ok(['get', 'cm', 'cfg', '-n', 'demo', '-o', 'jsonpath={.metadata.labels}']), '');
    const sel = await ok(['get', 'deploy', '-n', 'demo', '-l', 'tier in (front,back)', '-o', 'name']);
    assert.equal(sel.trim(), 'deployment.apps/web');
    const none = await s.kubectl(['get', 'deploy', '-n', 'demo', '-l', 'tier=back', '-o', 'name']);
    assert.equal(none.stdout.trim(), '');
  });

  await t.test('patch: strategic merges containers by name, merge and json patches', async () => {
    await ok(['patch', 'deploy', 'web', '-n', 'demo', '-p', '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}']);
    const images = await ok(['get', 'deploy', 'web', '-n', 'demo', '-o', 'jsonpath={.spec.template.spec.containers[*].image}']);
    assert.equal(images, 'nginx:1.28 busybox:1.36', 'the strategic patch must keep the sidecar');
    await ok(['patch', 'cm', 'cfg', '-n', 'demo', '--type', 'merge', '-p', '{"data":{"b":"2"}}']);
    await ok(['patch', 'cm', 'cfg', '-n', 'demo', '--type', 'json', '-p', '[{"op":"add","path":"/data/c","value":"3"},{"op":"remove","path":"/data/a"}]']);
    assert.equal(await ok(['get', 'cm', 'cfg', '-n', 'demo', '-o', 'jsonpath={.data}']), '{"b":"2","c":"3"}');
    const bad = await s.kubectl(['patch', 'cm', 'cfg', '-n', 'demo', '--type', 'json', '-p', '[{"op":"remove","path":"/data/zzz"}]']);
    assert.notEqual(bad.code, 0);
  });

  await t.test('replace with a stale resourceVersion is a Conflict', async () => {
    const yaml = await ok(['get', 'cm', 'cfg', '-n', 'demo', '-o', 'yaml']);
    await ok(['patch', 'cm', 'cfg', '-n', 'demo', '--type', 'merge', '-p', '{"data":{"d":"4"}}']);
    const r = await s.kubectl(['replace', '-f', '-'], { input: yaml });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Error from server \(Conflict\): error when replacing "STDIN": Operation cannot be fulfilled on configmaps "cfg": the object has been modified; please apply your changes to the latest version and try again/);
  });

  await t.test('server-side dry run stores nothing', async () => {
    const out = await ok(['create', 'cm', 'dry', '-n', 'demo', '--from-literal=k=v', '--dry-run=server', '-o', 'jsonpath={.data.k}']);
    assert.equal(out, 'v');
    const r = await s.kubectl(['get', 'cm', 'dry', '-n', 'demo']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Error from server \(NotFound\): configmaps "dry" not found/);
    const applied = await ok(['apply', '--dry-run=server', '-f', '-'], APP.replace('replicas: 2', 'replicas: 9'));
    assert.match(applied, /deployment.apps\/web configured \(server dry run\)/);
    assert.equal(await ok(['get', 'deploy', 'web', '-n', 'demo', '-o', 'jsonpath={.spec.replicas}']), '2');
  });

  await t.test('scale writes replicas through the scale subresource', async () => {
    assert.match(await ok(['scale', 'deploy', 'web', '-n', 'demo', '--replicas=5']), /deployment.apps\/web scaled/);
    assert.equal(await ok(['get', 'deploy', 'web', '-n', 'demo', '-o', 'jsonpath={.spec.replicas}']), '5');
  });

  await t.test('a CRD applied in one invocation serves its CR in the next; schema rules hold', async () => {
    assert.match(await ok(['apply', '-f', '-'], CRD), /customresourcedefinition.apiextensions.k8s.io\/widgets.example.com created/);
    const cr = 'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: demo}\nspec: {color: red}\n';
    assert.match(await ok(['apply', '-f', '-'], cr), /widget.example.com\/w1 created/);
    const table = lines(await ok(['get', 'wd', '-n', 'demo']));
    assert.match(table[0]!, /^NAME\s+SIZE$/);
    assert.match(table[1]!, /^w1\s+3$/, 'the schema default (3) must be applied');
    const unknown = await s.kubectl(['apply', '-f', '-'], { input: cr.replace('color: red', 'color: red, extra: 1') });
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /strict decoding error: unknown field "spec.extra"/);
    const invalid = await s.kubectl(['apply', '--validate=false', '-f', '-'], { input: cr.replace('w1', 'w2').replace('color: red', 'color: pink, size: 0') });
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /The Widget "w2" is invalid/);
    assert.match(invalid.stderr, /spec.color: Unsupported value: "pink": supported values: "red", "blue"/);
    assert.match(invalid.stderr, /spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1/);
    const merge = await ok(['patch', 'wd', 'w1', '-n', 'demo', '--type', 'merge', '-p', '{"spec":{"size":7}}', '-o', 'jsonpath={.spec.size} {.metadata.generation}']);
    assert.equal(merge, '7 2');
    const smp = await s.kubectl(['patch', 'wd', 'w1', '-n', 'demo', '-p', '{"spec":{"size":8}}']);
    assert.notEqual(smp.code, 0, 'strategic merge patch is not allowed on custom resources');
    assert.match(smp.stderr, /UnsupportedMediaType|unknown format|strategic merge patch/i);
  });

  await t.test('get -w prints the change made while it watches', async () => {
    const child = spawn('kubectl', ['--cache-dir', join(s.dir, 'kube-cache'), 'get', 'cm', 'cfg', '-n', 'demo', '-w', '-o', 'custom-columns=NAME:.metadata.name,E:.data.e'], {
      env: { ...process.env, KUBECONFIG: s.kubeconfig },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    try {
      await waitUntil('the initial row', () => (/cfg\s+<none>/.test(out) ? true : undefined), 30_000);
      await ok(['patch', 'cm', 'cfg', '-n', 'demo', '--type', 'merge', '-p', '{"data":{"e":"watched"}}']);
      await waitUntil('the watched change', () => (/cfg\s+watched/.test(out) ? true : undefined), 30_000);
    } finally {
      child.kill('SIGTERM');
    }
  });

  await t.test('server-side apply creates, co-owns, and reports conflicts with other managers', async () => {
    const cm = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: demo}\ndata: {x: "1", y: "2"}\n';
    assert.match(await ok(['apply', '--server-side', '-f', '-'], cm), /configmap\/ssa serverside-applied/);
    await ok(['patch', 'cm', 'ssa', '-n', 'demo', '--type', 'merge', '-p', '{"data":{"x":"changed"}}']);
    const conflict = await s.kubectl(['apply', '--server-side', '-f', '-'], { input: cm });
    assert.equal(conflict.code, 1);
    assert.match(conflict.stderr, /Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: \.data\.x/);
    await ok(['apply', '--server-side', '--force-conflicts', '-f', '-'], cm.replace(', y: "2"', ''));
    assert.equal(await ok(['get', 'cm', 'ssa', '-n', 'demo', '-o', 'jsonpath={.data}']), '{"x":"1"}', 'y was applied before and is no longer: removed');
  });

  await t.test('typed-client commands (protobuf bodies) and auth can-i with RBAC', async () => {
    await ok(['create', 'namespace', 'team']);
    await ok(['create', 'serviceaccount', 'bot', '-n', 'team']);
    await ok(['create', 'secret', 'generic', 'creds', '-n', 'team', '--from-literal=user=admin']);
    assert.equal(await ok(['get', 'secret', 'creds', '-n', 'team', '-o', 'jsonpath={.data.user}']), Buffer.from('admin').toString('base64'));
    await ok(['create', 'deployment', 'api', '-n', 'team', '--image=nginx', '--replicas=0']);
    assert.equal(await ok(['get', 'deploy', 'api', '-n', 'team', '-o', 'jsonpath={.spec.replicas}']), '0', 'an explicit 0 survives protobuf decoding');
    await ok(['create', 'role', 'reader', '-n', 'team', '--verb=get,list,watch', '--resource=pods,configmaps']);
    await ok(['create', 'rolebinding', 'bot-reader', '-n', 'team', '--role=reader', '--serviceaccount=team:bot']);
    assert.equal((await ok(['auth', 'can-i', 'delete', 'pods', '-n', 'team'])).trim(), 'yes');
    const as = ['--as=system:serviceaccount:team:bot'];
    assert.equal((await ok(['auth', 'can-i', 'list', 'pods', '-n', 'team', ...as])).trim(), 'yes');
    const no = await s.kubectl(['auth', 'can-i', 'delete', 'pods', '-n', 'team', ...as]);
    assert.equal(no.code, 1);
    assert.equal(no.stdout.trim(), 'no');
    const other = await s.kubectl(['auth', 'can-i', 'list', 'pods', '-n', 'demo', ...as]);
    assert.equal(other.stdout.trim(), 'no');
    const forbidden = await s.kubectl(['get', 'secrets', '-n', 'team', ...as]);
    assert.equal(forbidden.code, 1);
    assert.match(forbidden.stderr, /Error from server \(Forbidden\): secrets is forbidden: User "system:serviceaccount:team:bot" cannot list resource "secrets" in API group "" in the namespace "team"/);
    const token = (await ok(['create', 'token', 'bot', '-n', 'team', '--audience=istio-ca', '--duration=10m'])).trim();
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { aud: string[]; sub: string; exp: number; iat: number };
    assert.deepEqual(claims.aud, ['istio-ca']);
    assert.equal(claims.sub, 'system:serviceaccount:team:bot');
    assert.equal(claims.exp - claims.iat, 600);
    const who = await ok(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']);
    assert.equal(who, 'ambit-admin');
  });

  await t.test('delete waits until the object is gone; deleting a namespace removes its objects', async () => {
    assert.match(await ok(['delete', 'deploy', 'web', '-n', 'demo']), /deployment.apps "web" deleted/);
    const gone = await s.kubectl(['get', 'deploy', 'web', '-n', 'demo']);
    assert.equal(gone.code, 1);
    assert.match(await ok(['delete', 'ns', 'demo']), /namespace "demo" deleted/);
    const r = await s.kubectl(['get', 'ns', 'demo']);
    assert.match(r.stderr, /namespaces "demo" not found/);
    assert.equal((await ok(['get', 'cm,svc,wd', '-n', 'demo', '-o', 'name'])).trim(), '');
  });

  await t.test('error messages are the real server\'s', async () => {
    const nf = await s.kubectl(['get', 'cm', 'nope']);
    assert.match(nf.stderr, /Error from server \(NotFound\): configmaps "nope" not found/);
    const dup = await s.kubectl(['create', 'namespace', 'team']);
    assert.match(dup.stderr, /Error from server \(AlreadyExists\): namespaces "team" already exists/);
    const invalid = await s.kubectl(['apply', '-f', '-'], { input: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n' });
    assert.match(invalid.stderr, /The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain/);
    const typed = await s.kubectl(['apply', '-f', '-'], { input: 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: many}\n' });
    assert.match(typed.stderr, /json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32/);
  });
});
