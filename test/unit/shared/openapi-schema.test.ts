import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkStructuralSchema, pruneUnknownFields, validateValue, type JsonSchemaProps } from '../../../src/shared/openapi-schema.js';
import { checkCrd, validateCustomResource, type CustomResourceDefinition } from '../../../src/shared/crd.js';

const root = (properties: Record<string, JsonSchemaProps>, extra: Partial<JsonSchemaProps> = {}): JsonSchemaProps => ({ type: 'object', properties, ...extra });

test('a structural schema passes: types everywhere, int-or-string, preserve-unknown, list-map with required keys', () => {
  const schema = root({
    spec: {
      type: 'object',
      properties: {
        port: { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] },
        free: { 'x-kubernetes-preserve-unknown-fields': true },
        items: {
          type: 'array',
          'x-kubernetes-list-type': 'map',
          'x-kubernetes-list-map-keys': ['name'],
          items: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } },
        },
        mode: { type: 'string', enum: ['A', 'B'], default: 'A' },
        pick: { type: 'object', properties: { a: { type: 'string' }, b: { type: 'string' } }, oneOf: [{ required: ['a'] }, { required: ['b'] }] },
      },
    },
    metadata: { type: 'object', properties: { name: { type: 'string', maxLength: 63 } } },
  });
  assert.deepEqual(checkStructuralSchema(schema), []);
});

/** Each case breaks one structural rule; the issue must name the path of the offending node. */
const NOT_STRUCTURAL: Array<{ name: string; schema: JsonSchemaProps; path: string }> = [
  { name: 'root not an object', schema: { type: 'string' }, path: 'openAPIV3Schema.type' },
  { name: 'field without a type', schema: root({ spec: { properties: { a: { type: 'string' } } } }), path: 'openAPIV3Schema.properties.spec.type' },
  { name: 'array item without a type', schema: root({ l: { type: 'array', items: {} } }), path: 'openAPIV3Schema.properties.l.items.type' },
  { name: 'array without items', schema: root({ l: { type: 'array' } }), path: 'openAPIV3Schema.properties.l.items' },
  { name: 'unknown type name', schema: root({ a: { type: 'map' as never } }), path: 'openAPIV3Schema.properties.a.type' },
  { name: 'type inside anyOf', schema: root({ a: { type: 'string', anyOf: [{ type: 'string' }] } }), path: 'openAPIV3Schema.properties.a.anyOf[0].type' },
  { name: 'description inside allOf', schema: root({ a: { type: 'string', allOf: [{ description: 'x' }] } }), path: 'openAPIV3Schema.properties.a.allOf[0].description' },
  { name: 'default inside oneOf', schema: root({ a: { type: 'string', oneOf: [{ default: 'x' }] } }), path: 'openAPIV3Schema.properties.a.oneOf[0].default' },
  { name: 'nullable inside not', schema: root({ a: { type: 'string', not: { nullable: true } } }), path: 'openAPIV3Schema.properties.a.not.nullable' },
  { name: 'additionalProperties inside anyOf', schema: root({ a: { type: 'object', anyOf: [{ additionalProperties: true }] } }), path: 'openAPIV3Schema.properties.a.anyOf[0].additionalProperties' },
  {
    name: 'field only inside a junctor',
    schema: root({ a: { type: 'object', properties: { x: { type: 'string' } }, anyOf: [{ properties: { y: { minLength: 1 } } }] } }),
    path: 'openAPIV3Schema.properties.a.anyOf[0].properties.y',
  },
  { name: 'items only inside a junctor', schema: root({ a: { type: 'object', anyOf: [{ items: {} }] } }), path: 'openAPIV3Schema.properties.a.anyOf[0].items' },
  { name: 'metadata restricts labels', schema: root({ metadata: { type: 'object', properties: { labels: { type: 'object' } } } }), path: 'openAPIV3Schema.properties.metadata.properties.labels' },
  { name: 'metadata with a default', schema: root({ metadata: { type: 'object', default: {} } }), path: 'openAPIV3Schema.properties.metadata.default' },
  { name: 'metadata.name with a default', schema: root({ metadata: { type: 'object', properties: { name: { type: 'string', default: 'x' } } } }), path: 'openAPIV3Schema.properties.metadata.properties.name.default' },
  { name: 'int-or-string with a type', schema: root({ p: { type: 'string', 'x-kubernetes-int-or-string': true } }), path: 'openAPIV3Schema.properties.p.type' },
  { name: 'int-or-string with another anyOf', schema: root({ p: { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'boolean' }] } }), path: 'openAPIV3Schema.properties.p' },
  { name: 'preserve-unknown-fields false', schema: root({ p: { type: 'object', 'x-kubernetes-preserve-unknown-fields': false } }), path: 'openAPIV3Schema.properties.p.x-kubernetes-preserve-unknown-fields' },
  { name: 'properties and additionalProperties', schema: root({ p: { type: 'object', properties: {}, additionalProperties: { type: 'string' } } }), path: 'openAPIV3Schema.properties.p' },
  { name: '$ref', schema: root({ p: { type: 'object', $ref: '#/definitions/x' } }), path: 'openAPIV3Schema.properties.p.$ref' },
  { name: 'uniqueItems true', schema: root({ p: { type: 'array', items: { type: 'string' }, uniqueItems: true } }), path: 'openAPIV3Schema.properties.p.uniqueItems' },
  {
    name: 'list-map key not required',
    schema: root({ l: { type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], items: { type: 'object', properties: { name: { type: 'string' } } } } }),
    path: 'openAPIV3Schema.properties.l.x-kubernetes-list-map-keys',
  },
  { name: 'list-type on an object', schema: root({ o: { type: 'object', 'x-kubernetes-list-type': 'set' } }), path: 'openAPIV3Schema.properties.o.x-kubernetes-list-type' },
  { name: 'default of the wrong type', schema: root({ n: { type: 'integer', default: 'five' } }), path: 'openAPIV3Schema.properties.n.default' },
];

for (const c of NOT_STRUCTURAL) {
  test(`not structural: ${c.name}`, () => {
    const issues = checkStructuralSchema(c.schema);
    assert.ok(issues.some((i) => i.path === c.path), `expected an issue at ${c.path}, got ${JSON.stringify(issues)}`);
  });
}

const schema: JsonSchemaProps = root(
  {
    spec: {
      type: 'object',
      required: ['host'],
      properties: {
        host: { type: 'string', minLength: 1, pattern: '^[a-z.]+$' },
        weight: { type: 'integer', minimum: 0, maximum: 100 },
        ratio: { type: 'number' },
        mode: { type: 'string', enum: ['STRICT', 'PERMISSIVE'] },
        port: { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] },
        labels: { type: 'object', additionalProperties: { type: 'string' } },
        tags: { type: 'array', items: { type: 'string' }, maxItems: 2, 'x-kubernetes-list-type': 'set' },
        opaque: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
        maybe: { type: 'string', nullable: true },
        when: { type: 'string', format: 'date-time' },
      },
    },
  },
  { required: ['spec'] },
);

test('validateValue accepts a valid object; the root apiVersion/kind/metadata are implicit', () => {
  const obj = {
    apiVersion: 'x/v1',
    kind: 'X',
    metadata: { name: 'a', labels: { b: 'c' } },
    spec: { host: 'a.b', weight: 10, ratio: 0.5, mode: 'STRICT', port: 'http', labels: { a: 'b' }, tags: ['x'], opaque: { any: [1, { thing: true }] }, maybe: null, when: '2026-01-01T00:00:00Z' },
  };
  assert.deepEqual(validateValue(obj, schema), []);
  assert.deepEqual(validateValue({ ...obj, spec: { ...obj.spec, port: 8080 } }, schema), []);
});

/** Each invalid value: the path and a word of the problem that must be reported. */
const INVALID_VALUES: Array<{ spec: Record<string, unknown>; path: string; problem: RegExp }> = [
  { spec: {}, path: 'spec.host', problem: /required/ },
  { spec: { host: 5 }, path: 'spec.host', problem: /type string/ },
  { spec: { host: '' }, path: 'spec.host', problem: /at least 1/ },
  { spec: { host: 'A' }, path: 'spec.host', problem: /must match/ },
  { spec: { host: 'a', weight: 1.5 }, path: 'spec.weight', problem: /type integer/ },
  { spec: { host: 'a', weight: 101 }, path: 'spec.weight', problem: /at most 100/ },
  { spec: { host: 'a', mode: 'LOOSE' }, path: 'spec.mode', problem: /one of "STRICT", "PERMISSIVE"/ },
  { spec: { host: 'a', port: true }, path: 'spec.port', problem: /integer or a string/ },
  { spec: { host: 'a', labels: { a: 1 } }, path: 'spec.labels.a', problem: /type string/ },
  { spec: { host: 'a', tags: ['x', 'x'] }, path: 'spec.tags[1]', problem: /duplicates/ },
  { spec: { host: 'a', tags: ['x', 'y', 'z'] }, path: 'spec.tags', problem: /at most 2/ },
  { spec: { host: 'a', typo: 1 }, path: 'spec.typo', problem: /unknown field/ },
  { spec: { host: 'a', mode: null }, path: 'spec.mode', problem: /null/ },
  { spec: { host: 'a', when: 'yesterday' }, path: 'spec.when', problem: /date-time/ },
];

for (const c of INVALID_VALUES) {
  test(`validateValue reports ${c.path} for ${JSON.stringify(c.spec)}`, () => {
    const issues = validateValue({ spec: c.spec }, schema);
    const hit = issues.find((i) => i.path === c.path);
    assert.ok(hit, `expected an issue at ${c.path}, got ${JSON.stringify(issues)}`);
    assert.match(hit.problem, c.problem);
  });
}

test('validateValue evaluates oneOf/anyOf/not as value validations', () => {
  const s = root({ pick: { type: 'object', properties: { a: { type: 'string' }, b: { type: 'string' } }, oneOf: [{ required: ['a'] }, { required: ['b'] }] } });
  assert.deepEqual(validateValue({ pick: { a: 'x' } }, s), []);
  assert.match(validateValue({ pick: { a: 'x', b: 'y' } }, s)[0]!.problem, /exactly one/);
  assert.match(validateValue({ pick: {} }, s)[0]!.problem, /exactly one of the oneOf schemas \(matches 0\)/);
});

test('pruneUnknownFields drops what the schema does not specify and keeps preserved subtrees', () => {
  const pruned = pruneUnknownFields(
    { apiVersion: 'x/v1', kind: 'X', metadata: { name: 'a' }, extra: 1, spec: { host: 'a', typo: 2, opaque: { keep: { deep: 1 } }, labels: { a: 'b' }, tags: ['t'] } },
    schema,
  );
  assert.deepEqual(pruned, { apiVersion: 'x/v1', kind: 'X', metadata: { name: 'a' }, spec: { host: 'a', opaque: { keep: { deep: 1 } }, labels: { a: 'b' }, tags: ['t'] } });
  // Pruned output validates (nothing unknown is left).
  assert.deepEqual(validateValue(pruned, schema), []);
});

function crd(over: Partial<CustomResourceDefinition['spec']> = {}, name = 'widgets.example.com'): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name },
    spec: {
      group: 'example.com',
      names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
      scope: 'Namespaced',
      versions: [
        { name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: schema }, additionalPrinterColumns: [{ name: 'Host', type: 'string', jsonPath: '.spec.host' }] },
        { name: 'v1beta1', served: true, storage: false, schema: { openAPIV3Schema: schema } },
      ],
      ...over,
    },
  };
}

test('checkCrd accepts a well-formed CRD and reports each broken rule with its path', () => {
  assert.deepEqual(checkCrd(crd()), []);
  const twoStorage = crd({ versions: crd().spec.versions.map((v) => ({ ...v, storage: true })) });
  assert.ok(checkCrd(twoStorage).some((i) => /exactly one version must be the storage version \(found 2\)/.test(i.problem)));
  const noStorage = crd({ versions: crd().spec.versions.map((v) => ({ ...v, storage: false })) });
  assert.ok(checkCrd(noStorage).some((i) => /found 0/.test(i.problem)));
  assert.ok(checkCrd(crd({}, 'gadgets.example.com')).some((i) => i.path.endsWith('metadata.name')));
  const badColumn = crd({ versions: [{ ...crd().spec.versions[0]!, additionalPrinterColumns: [{ name: 'X', type: 'map' as never, jsonPath: 'spec' }] }] });
  const issues = checkCrd(badColumn);
  assert.ok(issues.some((i) => i.path.endsWith('additionalPrinterColumns[0].type')));
  assert.ok(issues.some((i) => i.path.endsWith('additionalPrinterColumns[0].jsonPath')));
  const statusless = crd({ versions: [{ ...crd().spec.versions[0]!, subresources: { status: {} } }] });
  assert.ok(checkCrd(statusless).some((i) => /no status field/.test(i.problem)));
  const notStructural = crd({ versions: [{ ...crd().spec.versions[0]!, schema: { openAPIV3Schema: root({ a: {} }) } }] });
  assert.ok(checkCrd(notStructural).some((i) => i.path.endsWith('openAPIV3Schema.properties.a.type')));
});

test('validateCustomResource checks the served version and the schema', () => {
  const c = crd();
  assert.deepEqual(validateCustomResource({ apiVersion: 'example.com/v1beta1', kind: 'Widget', metadata: { name: 'a' }, spec: { host: 'a' } }, c), []);
  assert.match(validateCustomResource({ apiVersion: 'example.com/v2', kind: 'Widget', metadata: { name: 'a' }, spec: { host: 'a' } }, c)[0]!.problem, /not served/);
  assert.match(validateCustomResource({ apiVersion: 'other.com/v1', kind: 'Widget', metadata: { name: 'a' } }, c)[0]!.problem, /serves example.com Widget/);
  assert.equal(validateCustomResource({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'a' }, spec: {} }, c)[0]!.path, 'spec.host');
});
