/** JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and strategic merge patch with the built-in list keys. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PatchError, applyJsonPatch, applyMergePatch, checkJsonPatch } from '../../../src/local/apiserver/patch-json.js';
import { applyStrategicPatch, builtinMergeSchema } from '../../../src/local/apiserver/patch-strategic.js';

test('JSON patch: add/remove/replace/move/copy/test, pointers with escapes, failures', () => {
  const doc = { a: { 'b/c': 1, 'd~e': 2 }, list: [1, 2, 3] };
  const out = applyJsonPatch(doc, [
    { op: 'add', path: '/list/1', value: 9 },
    { op: 'add', path: '/list/-', value: 4 },
    { op: 'remove', path: '/list/0' },
    { op: 'replace', path: '/a/b~1c', value: 'x' },
    { op: 'copy', from: '/a/d~0e', path: '/copied' },
    { op: 'move', from: '/copied', path: '/moved' },
    { op: 'test', path: '/moved', value: 2 },
  ]);
  assert.deepEqual(out, { a: { 'b/c': 'x', 'd~e': 2 }, list: [9, 2, 3, 4], moved: 2 });
  assert.deepEqual(doc.list, [1, 2, 3], 'the input is not modified');
  assert.throws(() => applyJsonPatch(doc, [{ op: 'remove', path: '/nope' }]), PatchError);
  assert.throws(() => applyJsonPatch(doc, [{ op: 'replace', path: '/list/7', value: 1 }]), PatchError);
  assert.throws(() => applyJsonPatch(doc, [{ op: 'test', path: '/a/d~0e', value: 3 }]), /test failed/);
  assert.throws(() => applyJsonPatch(doc, [{ op: 'frobnicate', path: '/a' }]), PatchError);
  assert.throws(() => checkJsonPatch({ op: 'add' }), PatchError);
});

test('JSON merge patch: the RFC 7386 examples', () => {
  const cases: Array<[unknown, unknown, unknown]> = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, want] of cases) assert.deepEqual(applyMergePatch(target, patch), want, JSON.stringify([target, patch]));
});

const deployment = {
  metadata: { name: 'web', labels: { app: 'web' }, finalizers: ['a.example.com/x'] },
  spec: {
    template: {
      spec: {
        containers: [
          { name: 'web', image: 'nginx:1', ports: [{ containerPort: 80, protocol: 'TCP' }], env: [{ name: 'A', value: '1' }], args: ['x', 'y'] },
          { name: 'side', image: 'busybox' },
        ],
        volumes: [{ name: 'data', emptyDir: {} }],
        tolerations: [{ key: 't1' }],
      },
    },
  },
};
const schema = builtinMergeSchema('V1Deployment');

test('SMP merges containers by name, ports by containerPort, env by name; untagged lists replace', () => {
  const out = applyStrategicPatch(deployment, {
    spec: {
      template: {
        spec: {
          containers: [{ name: 'web', image: 'nginx:2', ports: [{ containerPort: 443 }], env: [{ name: 'B', value: '2' }], args: ['z'] }],
          tolerations: [{ key: 't2' }],
        },
      },
    },
  }, schema) as any;
  const [web, side] = out.spec.template.spec.containers;
  assert.equal(web.image, 'nginx:2');
  assert.deepEqual(web.ports, [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 443 }]);
  assert.deepEqual(web.env, [{ name: 'A', value: '1' }, { name: 'B', value: '2' }]);
  assert.deepEqual(web.args, ['z'], 'args has no patch strategy: replaced');
  assert.equal(side.name, 'side');
  assert.deepEqual(out.spec.template.spec.tolerations, [{ key: 't2' }]);
  assert.equal(deployment.spec.template.spec.containers[0]!.image, 'nginx:1', 'the input is not modified');
});

test('SMP directives: $patch delete/replace, null, $setElementOrder, $deleteFromPrimitiveList, $retainKeys', () => {
  const del = applyStrategicPatch(deployment, { spec: { template: { spec: { containers: [{ name: 'side', $patch: 'delete' }] } } } }, schema) as any;
  assert.deepEqual(del.spec.template.spec.containers.map((c: any) => c.name), ['web']);
  const rep = applyStrategicPatch(deployment, { spec: { template: { spec: { containers: [{ name: 'only', image: 'x' }, { $patch: 'replace' }] } } } }, schema) as any;
  assert.deepEqual(rep.spec.template.spec.containers, [{ name: 'only', image: 'x' }]);
  const nul = applyStrategicPatch(deployment, { metadata: { labels: { app: null, new: 'y' } } }, schema) as any;
  assert.deepEqual(nul.metadata.labels, { new: 'y' });
  const order = applyStrategicPatch(deployment, {
    spec: { template: { spec: { '$setElementOrder/containers': [{ name: 'side' }, { name: 'web' }], containers: [{ name: 'web', image: 'nginx:3' }] } } },
  }, schema) as any;
  assert.deepEqual(order.spec.template.spec.containers.map((c: any) => `${c.name}:${c.image}`), ['side:busybox', 'web:nginx:3']);
  const fin = applyStrategicPatch(deployment, { metadata: { finalizers: ['b.example.com/y'], '$deleteFromPrimitiveList/finalizers': ['a.example.com/x'] } }, schema) as any;
  assert.deepEqual(fin.metadata.finalizers, ['b.example.com/y']);
  const union = applyStrategicPatch(deployment, { metadata: { finalizers: ['b.example.com/y', 'a.example.com/x'] } }, schema) as any;
  assert.deepEqual(union.metadata.finalizers, ['a.example.com/x', 'b.example.com/y'], 'finalizers merge as a set');
  const retain = applyStrategicPatch(deployment, { spec: { template: { spec: { volumes: [{ name: 'data', hostPath: { path: '/x' }, $retainKeys: ['name', 'hostPath'] }] } } } }, schema) as any;
  assert.deepEqual(retain.spec.template.spec.volumes, [{ name: 'data', hostPath: { path: '/x' } }]);
  assert.throws(() => applyStrategicPatch(deployment, { spec: { template: { spec: { containers: [{ image: 'no-name' }] } } } }, schema), /does not contain declared merge key: name/);
  assert.throws(() => applyStrategicPatch(deployment, { $patch: 'explode' }, schema), PatchError);
});
