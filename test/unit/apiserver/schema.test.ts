/** Built-in decoding against client-node's models, and CRD structural schemas: rules, pruning, defaults, validation. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeBuiltin } from '../../../src/local/apiserver/builtin-schema.js';
import { ApiError, fieldErrorText } from '../../../src/local/apiserver/status.js';
import { applyDefaults, checkStructural, pruneUnknown, validateValue, type Schema } from '../../../src/local/apiserver/structural-schema.js';

test('built-in decoding reports unknown fields (and drops them) and rejects wrong types as the Go decoder does', () => {
  const pod: any = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', bogus: 1 }, spec: { containers: [{ name: 'c', image: 'i', imagePullPolcy: 'Always', resources: { limits: { cpu: 1, memory: '1Gi' } } }] } };
  const r = decodeBuiltin(pod, 'V1Pod', 'Pod', 'v1');
  assert.deepEqual(r.unknownFields, ['metadata.bogus', 'spec.containers[0].imagePullPolcy']);
  assert.equal(pod.metadata.bogus, undefined);
  assert.equal(pod.spec.containers[0].resources.limits.cpu, 1, 'quantities accept numbers');
  const cases: Array<[unknown, RegExp]> = [
    [{ spec: { replicas: 'two' } }, /Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32/],
    [{ spec: { replicas: 1.5 } }, /cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32/],
    [{ metadata: { labels: ['a'] } }, /cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map\[string\]string/],
    [{ spec: { template: { spec: { containers: {} } } } }, /cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers of type \[\]v1.Container/],
    [{ spec: { paused: 'yes' } }, /cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool/],
  ];
  for (const [body, re] of cases) {
    assert.throws(() => decodeBuiltin(body, 'V1Deployment', 'Deployment', 'v1'), (e: unknown) => e instanceof ApiError && e.code === 400 && re.test(e.message), JSON.stringify(body));
  }
  assert.throws(() => decodeBuiltin({ data: { k: 'not base64!' } }, 'V1Secret', 'Secret', 'v1'), /illegal base64 data/);
  assert.deepEqual(decodeBuiltin({ spec: { ports: [{ port: 80, targetPort: 'http' }] } }, 'V1Service', 'Service', 'v1').unknownFields, []);
});

const widget: Schema = {
  type: 'object',
  properties: {
    spec: {
      type: 'object',
      required: ['color'],
      properties: {
        color: { type: 'string', enum: ['red', 'blue'] },
        size: { type: 'integer', minimum: 1, maximum: 10, default: 3 },
        name: { type: 'string', maxLength: 5, pattern: '^[a-z]+$' },
        tags: { type: 'array', maxItems: 2, items: { type: 'string' }, 'x-kubernetes-list-type': 'set' },
        ports: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, port: { type: 'integer' } } }, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] },
        port: { 'x-kubernetes-int-or-string': true },
        free: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
        labels: { type: 'object', additionalProperties: { type: 'string' } },
        nested: { type: 'object', properties: { on: { type: 'boolean', default: true } } },
      },
    },
  },
};

test('CRD schemas must be structural', () => {
  assert.deepEqual(checkStructural(widget, 's'), []);
  const bad = checkStructural({ type: 'object', properties: { a: {}, b: { type: 'array' }, c: { type: 'object', properties: { x: { type: 'string' } }, additionalProperties: { type: 'string' } }, d: { $ref: '#/x', type: 'string' }, e: { type: 'string', anyOf: [{ type: 'string' }] }, metadata: { type: 'object', properties: { labels: { type: 'object' } } } } }, 's');
  const texts = bad.map(fieldErrorText);
  assert.ok(texts.includes('s.properties[a].type: Required value: must not be empty for specified object fields'), texts.join('\n'));
  assert.ok(texts.includes('s.properties[b].items: Required value: must be specified'));
  assert.ok(texts.includes('s.properties[c].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive'));
  assert.ok(texts.includes('s.properties[d].$ref: Forbidden: $ref is not supported'));
  assert.ok(texts.includes('s.properties[e].anyOf[0].type: Forbidden: must be empty to be structural'));
  assert.ok(texts.includes('s.properties[metadata].properties[labels]: Forbidden: only name and generateName may be restricted in metadata'));
  assert.deepEqual(checkStructural({ type: 'string' }, 's').map(fieldErrorText), ['s.type: Invalid value: "string": must be object at the root']);
  // The one typed junctor upstream allows: what intstr.IntOrString fields generate.
  const intOrString = { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] };
  assert.deepEqual(checkStructural({ type: 'object', properties: { gen: intOrString } }, 's'), []);
  assert.ok(checkStructural({ type: 'object', properties: { gen: { ...intOrString, anyOf: [{ type: 'string' }, { type: 'integer' }] } } }, 's').length > 0, 'only in that order and shape');
  assert.ok(checkStructural({ type: 'object', properties: { gen: { anyOf: [{ type: 'integer' }, { type: 'string' }] } } }, 's').length > 0, 'only under x-kubernetes-int-or-string');
});

test('pruning drops undeclared fields except under preserve-unknown-fields; defaults fill absent fields', () => {
  const obj: any = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' }, spec: { color: 'red', extra: 1, free: { anything: { goes: true } }, labels: { a: 'b' }, nested: {} }, junk: 2 };
  assert.deepEqual(pruneUnknown(obj, widget).sort(), ['junk', 'spec.extra']);
  assert.deepEqual(obj.spec.free, { anything: { goes: true } });
  assert.deepEqual(obj.metadata, { name: 'w' }, 'metadata is never pruned by the schema');
  applyDefaults(obj, widget);
  assert.equal(obj.spec.size, 3);
  assert.equal(obj.spec.nested.on, true);
  const withNull: any = { spec: { color: 'red', size: null } };
  applyDefaults(withNull, widget);
  assert.equal(withNull.spec.size, 3, 'a null non-nullable field takes its default');
});

test('validation messages match the real server', () => {
  const errs = validateValue({ spec: { size: 11, name: 'ABCDEFG', tags: ['a', 'a', 'b'], ports: [{ name: 'x', port: 1 }, { name: 'x', port: 2 }], port: 1.5, labels: { k: 1 } } }, widget, '').map(fieldErrorText);
  assert.deepEqual(errs.sort(), [
    'spec.color: Required value',
    'spec.labels.k: Invalid value: 1: spec.labels.k in body must be of type string: "integer"',
    'spec.name: Invalid value: "ABCDEFG": spec.name in body should match \'^[a-z]+$\'',
    'spec.name: Too long: may not be longer than 5',
    'spec.port: Invalid value: 1.5: spec.port in body must be of type integer,string: "number"',
    'spec.ports[1]: Duplicate value: {"name":"x"}',
    'spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10',
    'spec.tags: Too many: 3: must have at most 2 items',
    'spec.tags[1]: Duplicate value: "a"',
  ].sort());
  assert.deepEqual(validateValue({ spec: { color: 'green' } }, widget, '').map(fieldErrorText), ['spec.color: Unsupported value: "green": supported values: "red", "blue"']);
  assert.deepEqual(validateValue({ spec: 'x' }, widget, '').map(fieldErrorText), ['spec: Invalid value: "x": spec in body must be of type object: "string"']);
});
