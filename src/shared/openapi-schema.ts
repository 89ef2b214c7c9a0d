/**
 * OpenAPI v3 schemas as CustomResourceDefinitions (apiextensions.k8s.io/v1) carry them: the
 * structural-schema rules the API server enforces on a CRD, validation of an object against a
 * schema (types, enums, bounds, required, unknown fields), and pruning of unknown fields.
 *
 * Rules follow the Kubernetes documentation "Specifying a structural schema" and "Field pruning"
 * (DOC-CRD in /work/shared/reference/kubernetes-api-facts.md §5). CEL rules
 * (`x-kubernetes-validations`) are accepted in a schema but not evaluated here.
 */
import type { Issue } from './validate.js';

export type SchemaType = 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';

/** The JSONSchemaProps subset a CRD may use. */
export interface JsonSchemaProps {
  type?: SchemaType;
  description?: string;
  format?: string;
  properties?: Record<string, JsonSchemaProps>;
  additionalProperties?: JsonSchemaProps | boolean;
  items?: JsonSchemaProps;
  required?: string[];
  enum?: unknown[];
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  multipleOf?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  uniqueItems?: boolean;
  nullable?: boolean;
  default?: unknown;
  example?: unknown;
  allOf?: JsonSchemaProps[];
  anyOf?: JsonSchemaProps[];
  oneOf?: JsonSchemaProps[];
  not?: JsonSchemaProps;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: Array<{ rule: string; message?: string; messageExpression?: string; reason?: string; fieldPath?: string }>;
  [key: string]: unknown;
}

const TYPES: readonly string[] = ['object', 'array', 'string', 'integer', 'number', 'boolean'];

/** Keys a CRD schema may not use at all (the API server rejects them). */
const FORBIDDEN_KEYS = ['$ref', '$schema', 'id', 'definitions', 'dependencies', 'patternProperties', 'additionalItems'];

/** Keys allowed inside allOf/anyOf/oneOf/not: value validations only, nothing that shapes the tree. */
const JUNCTOR_KEYS = new Set([
  'properties', 'items', 'required', 'enum', 'pattern', 'format', 'minimum', 'maximum', 'exclusiveMinimum',
  'exclusiveMaximum', 'multipleOf', 'minLength', 'maxLength', 'minItems', 'maxItems', 'minProperties',
  'maxProperties', 'allOf', 'anyOf', 'oneOf', 'not',
]);

/** Restrictions a schema may put on metadata.name / metadata.generateName (nothing else in metadata). */
const METADATA_NAME_KEYS = new Set(['type', 'description', 'pattern', 'minLength', 'maxLength', 'enum', 'format', 'x-kubernetes-validations']);

const JUNCTORS = ['allOf', 'anyOf', 'oneOf'] as const;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The two forms Kubernetes allows for int-or-string inside junctors. */
function isIntOrStringJunctor(s: JsonSchemaProps): boolean {
  const pair = (list: unknown): boolean =>
    Array.isArray(list) &&
    list.length === 2 &&
    isRecord(list[0]) && isRecord(list[1]) &&
    Object.keys(list[0]).length === 1 && list[0]['type'] === 'integer' &&
    Object.keys(list[1]).length === 1 && list[1]['type'] === 'string';
  if (s.anyOf !== undefined && pair(s.anyOf)) return true;
  if (s.allOf !== undefined && Array.isArray(s.allOf) && s.allOf.length >= 1 && isRecord(s.allOf[0]) && pair(s.allOf[0]['anyOf'])) return true;
  return false;
}

/**
 * The structural-schema problems of a CRD version's `openAPIV3Schema`, each with its path; none
 * means the API server would accept the schema as structural.
 */
export function checkStructuralSchema(schema: unknown, path = 'openAPIV3Schema'): Issue[] {
  const issues: Issue[] = [];
  if (!isRecord(schema)) {
    issues.push({ path, problem: 'must be an object', value: schema });
    return issues;
  }
  if (schema['type'] !== 'object') issues.push({ path: `${path}.type`, problem: 'the root must be of type object', value: schema['type'] });
  checkNode(schema as JsonSchemaProps, path, issues);
  const meta = (schema as JsonSchemaProps).properties?.['metadata'];
  if (meta !== undefined) checkMetadata(meta, `${path}.properties.metadata`, issues);
  return issues;
}

/** A node reached through properties/additionalProperties/items (outside any junctor). */
function checkNode(s: JsonSchemaProps, path: string, issues: Issue[]): void {
  if (!isRecord(s)) {
    issues.push({ path, problem: 'must be a schema object', value: s });
    return;
  }
  for (const k of FORBIDDEN_KEYS) if (k in s) issues.push({ path: `${path}.${k}`, problem: 'is not allowed in a CRD schema' });
  if (s.uniqueItems === true) issues.push({ path: `${path}.uniqueItems`, problem: 'cannot be true in a CRD schema; use x-kubernetes-list-type: set' });
  const intOrString = s['x-kubernetes-int-or-string'] === true;
  const preserve = s['x-kubernetes-preserve-unknown-fields'];
  if (preserve !== undefined && preserve !== true) issues.push({ path: `${path}.x-kubernetes-preserve-unknown-fields`, problem: 'must be true or absent', value: preserve });
  if (s.type === undefined) {
    if (!intOrString && preserve !== true) issues.push({ path: `${path}.type`, problem: 'must be set (structural schema): every field needs a type unless it is int-or-string or preserves unknown fields' });
  } else if (!TYPES.includes(s.type)) {
    issues.push({ path: `${path}.type`, problem: `must be one of ${TYPES.join(', ')}`, value: s.type });
  }
  if (intOrString) {
    if (s.type !== undefined) issues.push({ path: `${path}.type`, problem: 'must be empty when x-kubernetes-int-or-string is true', value: s.type });
    if ((s.anyOf !== undefined || s.allOf !== undefined) && !isIntOrStringJunctor(s)) {
      issues.push({ path, problem: 'int-or-string allows only anyOf: [{type: integer}, {type: string}] (optionally inside allOf[0])' });
    }
  }
  if (s['x-kubernetes-embedded-resource'] === true && s.type !== 'object') {
    issues.push({ path: `${path}.type`, problem: 'must be object when x-kubernetes-embedded-resource is true', value: s.type });
  }
  if (s.properties !== undefined && s.additionalProperties !== undefined) {
    issues.push({ path, problem: 'properties and additionalProperties are mutually exclusive' });
  }
  if (s.type === 'array' && s.items === undefined) issues.push({ path: `${path}.items`, problem: 'must be set for type array' });
  if (s.items !== undefined && s.type !== undefined && s.type !== 'array') issues.push({ path: `${path}.items`, problem: 'is only allowed for type array', value: s.type });
  if ((s.properties !== undefined || s.additionalProperties !== undefined) && s.type !== undefined && s.type !== 'object') {
    issues.push({ path, problem: 'properties/additionalProperties are only allowed for type object', value: s.type });
  }
  checkListAndMapTypes(s, path, issues);
  if (s.default !== undefined) {
    for (const i of validateValue(s.default, { ...s, default: undefined }, `${path}.default`)) issues.push(i);
  }
  if (s.properties !== undefined) {
    if (!isRecord(s.properties)) issues.push({ path: `${path}.properties`, problem: 'must be a map of schemas', value: s.properties });
    else for (const [k, v] of Object.entries(s.properties)) checkNode(v, `${path}.properties.${k}`, issues);
  }
  if (isRecord(s.additionalProperties)) checkNode(s.additionalProperties, `${path}.additionalProperties`, issues);
  if (s.items !== undefined) {
    if (!isRecord(s.items)) issues.push({ path: `${path}.items`, problem: 'must be one schema (tuples are not allowed)', value: s.items });
    else checkNode(s.items, `${path}.items`, issues);
  }
  for (const j of JUNCTORS) {
    const list = s[j];
    if (list === undefined) continue;
    if (!Array.isArray(list)) {
      issues.push({ path: `${path}.${j}`, problem: 'must be a list of schemas', value: list });
      continue;
    }
    list.forEach((sub, i) => checkJunctor(sub, s, `${path}.${j}[${i}]`, intOrString, issues));
  }
  if (s.not !== undefined) checkJunctor(s.not, s, `${path}.not`, intOrString, issues);
}

/**
 * A node inside allOf/anyOf/oneOf/not: only value validations, and every field or item it names
 * must also be specified by `outer` (the schema outside the junctor at the same place).
 */
function checkJunctor(s: unknown, outer: JsonSchemaProps | undefined, path: string, intOrString: boolean, issues: Issue[]): void {
  if (!isRecord(s)) {
    issues.push({ path, problem: 'must be a schema object', value: s });
    return;
  }
  for (const k of Object.keys(s)) {
    if (JUNCTOR_KEYS.has(k)) continue;
    if (k === 'type' && intOrString) continue;
    issues.push({ path: `${path}.${k}`, problem: 'is not allowed inside allOf/anyOf/oneOf/not (only value validations are)' });
  }
  const j = s as JsonSchemaProps;
  if (isRecord(j.properties)) {
    for (const [k, v] of Object.entries(j.properties)) {
      const o = outer?.properties?.[k];
      if (o === undefined) issues.push({ path: `${path}.properties.${k}`, problem: 'is not specified outside the junctor (structural schema)' });
      checkJunctor(v, o, `${path}.properties.${k}`, false, issues);
    }
  }
  if (j.items !== undefined) {
    if (outer?.items === undefined) issues.push({ path: `${path}.items`, problem: 'is not specified outside the junctor (structural schema)' });
    checkJunctor(j.items, outer?.items, `${path}.items`, false, issues);
  }
  for (const name of JUNCTORS) {
    const list = j[name];
    if (Array.isArray(list)) list.forEach((sub, i) => checkJunctor(sub, outer, `${path}.${name}[${i}]`, intOrString, issues));
  }
  if (j.not !== undefined) checkJunctor(j.not, outer, `${path}.not`, intOrString, issues);
}

function checkListAndMapTypes(s: JsonSchemaProps, path: string, issues: Issue[]): void {
  const listType = s['x-kubernetes-list-type'];
  const keys = s['x-kubernetes-list-map-keys'];
  if (listType !== undefined) {
    if (s.type !== 'array') issues.push({ path: `${path}.x-kubernetes-list-type`, problem: 'is only allowed for type array', value: s.type });
    if (!['atomic', 'set', 'map'].includes(listType)) issues.push({ path: `${path}.x-kubernetes-list-type`, problem: 'must be atomic, set or map', value: listType });
  }
  if (listType === 'map') {
    if (!Array.isArray(keys) || keys.length === 0) issues.push({ path: `${path}.x-kubernetes-list-map-keys`, problem: 'must name at least one key when x-kubernetes-list-type is map' });
    else if (s.items?.type !== 'object') issues.push({ path: `${path}.items.type`, problem: 'must be object when x-kubernetes-list-type is map', value: s.items?.type });
    else {
      for (const key of keys) {
        const prop = s.items.properties?.[key];
        if (prop === undefined) issues.push({ path: `${path}.x-kubernetes-list-map-keys`, problem: `key ${JSON.stringify(key)} is not a property of the items` });
        else if (!(s.items.required ?? []).includes(key) && prop.default === undefined) {
          issues.push({ path: `${path}.x-kubernetes-list-map-keys`, problem: `key ${JSON.stringify(key)} must be required or have a default` });
        }
      }
    }
  } else if (keys !== undefined) {
    issues.push({ path: `${path}.x-kubernetes-list-map-keys`, problem: 'is only allowed with x-kubernetes-list-type: map' });
  }
  if (listType === 'set' && s.items !== undefined && s.items.type !== undefined && !['string', 'integer', 'number', 'boolean'].includes(s.items.type)) {
    issues.push({ path: `${path}.items.type`, problem: 'a set holds scalars only', value: s.items.type });
  }
  const mapType = s['x-kubernetes-map-type'];
  if (mapType !== undefined) {
    if (s.type !== 'object') issues.push({ path: `${path}.x-kubernetes-map-type`, problem: 'is only allowed for type object', value: s.type });
    if (mapType !== 'atomic' && mapType !== 'granular') issues.push({ path: `${path}.x-kubernetes-map-type`, problem: 'must be atomic or granular', value: mapType });
  }
}

/** `metadata` at the root may only restrict `name` and `generateName`. */
function checkMetadata(meta: JsonSchemaProps, path: string, issues: Issue[]): void {
  for (const k of Object.keys(meta)) {
    if (k !== 'type' && k !== 'properties') issues.push({ path: `${path}.${k}`, problem: 'metadata may only restrict name and generateName' });
  }
  if (meta.type !== undefined && meta.type !== 'object') issues.push({ path: `${path}.type`, problem: 'must be object', value: meta.type });
  for (const [k, v] of Object.entries(meta.properties ?? {})) {
    if (k !== 'name' && k !== 'generateName') {
      issues.push({ path: `${path}.properties.${k}`, problem: 'metadata may only restrict name and generateName' });
      continue;
    }
    if (v.type !== 'string') issues.push({ path: `${path}.properties.${k}.type`, problem: 'must be string', value: v.type });
    for (const key of Object.keys(v)) {
      if (!METADATA_NAME_KEYS.has(key)) issues.push({ path: `${path}.properties.${k}.${key}`, problem: 'only value restrictions are allowed on metadata.name/generateName' });
    }
  }
}

/** Root fields every object carries whatever its schema says. */
const IMPLICIT_ROOT_FIELDS = new Set(['apiVersion', 'kind', 'metadata']);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function matchesType(v: unknown, type: SchemaType): boolean {
  switch (type) {
    case 'object':
      return isRecord(v);
    case 'array':
      return Array.isArray(v);
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'boolean':
      return typeof v === 'boolean';
  }
}

const regexCache = new Map<string, RegExp | null>();

function compiled(pattern: string): RegExp | null {
  let r = regexCache.get(pattern);
  if (r === undefined) {
    try {
      r = new RegExp(pattern, 'u');
    } catch {
      r = null;
    }
    regexCache.set(pattern, r);
  }
  return r;
}

export interface ValidateOptions {
  /** Report fields the schema does not know (kubectl's strict field validation); default true. */
  reportUnknown?: boolean;
}

/**
 * Problems of `value` against `schema`, each with the field path (`spec.http[0].timeout`). The
 * root's apiVersion/kind/metadata are implicit; `x-kubernetes-validations` are not evaluated.
 */
export function validateValue(value: unknown, schema: JsonSchemaProps, path = '', opts: ValidateOptions = {}): Issue[] {
  const issues: Issue[] = [];
  walk(value, schema, path, opts.reportUnknown ?? true, issues, true);
  return issues;
}

const join = (path: string, key: string): string => (path === '' ? key : `${path}.${key}`);

function walk(v: unknown, s: JsonSchemaProps, path: string, reportUnknown: boolean, issues: Issue[], root: boolean): void {
  const at = path === '' ? '(root)' : path;
  if (v === null) {
    if (s.nullable !== true) issues.push({ path: at, problem: 'must not be null' });
    return;
  }
  if (s['x-kubernetes-int-or-string'] === true) {
    if (!(typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v)))) {
      issues.push({ path: at, problem: 'must be an integer or a string', value: v });
      return;
    }
  } else if (s.type !== undefined && !matchesType(v, s.type)) {
    issues.push({ path: at, problem: `must be of type ${s.type} (got ${typeOf(v)})`, value: v });
    return;
  }
  if (s.enum !== undefined && !s.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) {
    issues.push({ path: at, problem: `must be one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`, value: v });
  }
  if (typeof v === 'string') checkString(v, s, at, issues);
  if (typeof v === 'number') checkNumber(v, s, at, issues);
  if (Array.isArray(v)) checkArray(v, s, path, reportUnknown, issues);
  if (isRecord(v)) checkObject(v, s, path, reportUnknown, issues, root);
  for (const sub of s.allOf ?? []) walk(v, sub, path, false, issues, root);
  if (s.anyOf !== undefined && s['x-kubernetes-int-or-string'] !== true) {
    if (!s.anyOf.some((sub) => validateValue(v, sub, path, { reportUnknown: false }).length === 0)) {
      issues.push({ path: at, problem: 'must match at least one of the anyOf schemas', value: v });
    }
  }
  if (s.oneOf !== undefined) {
    const n = s.oneOf.filter((sub) => validateValue(v, sub, path, { reportUnknown: false }).length === 0).length;
    if (n !== 1) issues.push({ path: at, problem: `must match exactly one of the oneOf schemas (matches ${n})`, value: v });
  }
  if (s.not !== undefined && validateValue(v, s.not, path, { reportUnknown: false }).length === 0) {
    issues.push({ path: at, problem: 'must not match the "not" schema', value: v });
  }
}

function checkString(v: string, s: JsonSchemaProps, at: string, issues: Issue[]): void {
  const length = [...v].length;
  if (s.minLength !== undefined && length < s.minLength) issues.push({ path: at, problem: `must be at least ${s.minLength} characters long`, value: v });
  if (s.maxLength !== undefined && length > s.maxLength) issues.push({ path: at, problem: `must be at most ${s.maxLength} characters long`, value: v });
  if (s.pattern !== undefined) {
    const r = compiled(s.pattern);
    if (r === null) issues.push({ path: at, problem: `the schema's pattern ${JSON.stringify(s.pattern)} is not a valid regular expression` });
    else if (!r.test(v)) issues.push({ path: at, problem: `must match ${s.pattern}`, value: v });
  }
  if (s.format === 'date-time' && Number.isNaN(Date.parse(v))) issues.push({ path: at, problem: 'must be an RFC 3339 date-time', value: v });
  if (s.format === 'byte' && !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) issues.push({ path: at, problem: 'must be base64', value: v });
}

function checkNumber(v: number, s: JsonSchemaProps, at: string, issues: Issue[]): void {
  if (s.minimum !== undefined && (s.exclusiveMinimum ? v <= s.minimum : v < s.minimum)) {
    issues.push({ path: at, problem: `must be ${s.exclusiveMinimum ? 'greater than' : 'at least'} ${s.minimum}`, value: v });
  }
  if (s.maximum !== undefined && (s.exclusiveMaximum ? v >= s.maximum : v > s.maximum)) {
    issues.push({ path: at, problem: `must be ${s.exclusiveMaximum ? 'less than' : 'at most'} ${s.maximum}`, value: v });
  }
  if (s.multipleOf !== undefined && v % s.multipleOf !== 0) issues.push({ path: at, problem: `must be a multiple of ${s.multipleOf}`, value: v });
  if (s.format === 'int32' && (v < -(2 ** 31) || v > 2 ** 31 - 1)) issues.push({ path: at, problem: 'must fit in 32 bits', value: v });
}

function checkArray(v: unknown[], s: JsonSchemaProps, path: string, reportUnknown: boolean, issues: Issue[]): void {
  const at = path === '' ? '(root)' : path;
  if (s.minItems !== undefined && v.length < s.minItems) issues.push({ path: at, problem: `must have at least ${s.minItems} item(s)`, value: v.length });
  if (s.maxItems !== undefined && v.length > s.maxItems) issues.push({ path: at, problem: `must have at most ${s.maxItems} items`, value: v.length });
  if (s.items !== undefined) v.forEach((item, i) => walk(item, s.items!, `${path}[${i}]`, reportUnknown, issues, false));
  const listType = s['x-kubernetes-list-type'];
  if (listType === 'set') {
    const seen = new Set<string>();
    v.forEach((item, i) => {
      const key = JSON.stringify(item);
      if (seen.has(key)) issues.push({ path: `${path}[${i}]`, problem: 'duplicates an earlier item of a set', value: item });
      seen.add(key);
    });
  } else if (listType === 'map') {
    const keys = s['x-kubernetes-list-map-keys'] ?? [];
    const seen = new Set<string>();
    v.forEach((item, i) => {
      if (!isRecord(item)) return;
      const key = JSON.stringify(keys.map((k) => item[k] ?? s.items?.properties?.[k]?.default ?? null));
      if (seen.has(key)) issues.push({ path: `${path}[${i}]`, problem: `duplicates an earlier item with the same ${keys.join('/')}`, value: keys.map((k) => item[k]) });
      seen.add(key);
    });
  }
}

function checkObject(v: Record<string, unknown>, s: JsonSchemaProps, path: string, reportUnknown: boolean, issues: Issue[], root: boolean): void {
  const at = path === '' ? '(root)' : path;
  const n = Object.keys(v).length;
  if (s.minProperties !== undefined && n < s.minProperties) issues.push({ path: at, problem: `must have at least ${s.minProperties} field(s)`, value: n });
  if (s.maxProperties !== undefined && n > s.maxProperties) issues.push({ path: at, problem: `must have at most ${s.maxProperties} fields`, value: n });
  for (const r of s.required ?? []) {
    if (!(r in v)) issues.push({ path: join(path, r), problem: 'is required' });
  }
  const preserve = s['x-kubernetes-preserve-unknown-fields'] === true;
  const embedded = s['x-kubernetes-embedded-resource'] === true;
  for (const [k, val] of Object.entries(v)) {
    const prop = s.properties?.[k];
    if (prop !== undefined) {
      walk(val, prop, join(path, k), reportUnknown, issues, false);
    } else if (isRecord(s.additionalProperties)) {
      walk(val, s.additionalProperties, join(path, k), reportUnknown, issues, false);
    } else if (s.additionalProperties === true || preserve) {
      continue;
    } else if ((root || embedded) && IMPLICIT_ROOT_FIELDS.has(k)) {
      continue;
    } else if (reportUnknown && s.type === 'object') {
      issues.push({ path: join(path, k), problem: 'unknown field' });
    }
  }
}

/**
 * A copy of `value` without the fields `schema` does not specify, as the API server prunes them
 * before storing a custom resource (root apiVersion/kind/metadata are kept).
 */
export function pruneUnknownFields(value: unknown, schema: JsonSchemaProps, root = true): unknown {
  if (Array.isArray(value)) return schema.items ? value.map((item) => pruneUnknownFields(item, schema.items!, false)) : value;
  if (!isRecord(value)) return value;
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true;
  const embedded = schema['x-kubernetes-embedded-resource'] === true;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const prop = schema.properties?.[k];
    if (prop !== undefined) out[k] = pruneUnknownFields(v, prop, false);
    else if (isRecord(schema.additionalProperties)) out[k] = pruneUnknownFields(v, schema.additionalProperties, false);
    else if (preserve || schema.additionalProperties === true || ((root || embedded) && IMPLICIT_ROOT_FIELDS.has(k))) out[k] = v;
  }
  return out;
}
