/**
 * CRD structural schemas (apiextensions.k8s.io/v1 openAPIV3Schema): the structural rules a CRD must
 * meet, and for custom resources pruning of unknown fields, defaulting, and validation with the
 * messages the real server produces (kube-openapi validate, rendered as field errors). CEL rules
 * (`x-kubernetes-validations`) are not evaluated; that is said in the README.
 */
import { fieldError, type FieldError } from './status.js';
import type { PatchMeta } from './builtin-schema.js';
import type { MergeSchema } from './patch-strategic.js';
import { clone, isMap, jsonEqual, type JsonMap } from './types.js';

export type Schema = JsonMap;

const JUNCTORS = ['allOf', 'anyOf', 'oneOf'] as const;
const UNSUPPORTED = ['$ref', '$schema', 'definitions', 'dependencies', 'patternProperties', 'additionalItems', 'id'];
const TYPES = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean']);

function sub(path: string, key: string): string {
  return `${path}.${key}`;
}

function bool(s: Schema | undefined, k: string): boolean {
  return s !== undefined && s[k] === true;
}

function childSchemas(s: Schema): Array<[string, Schema]> {
  const out: Array<[string, Schema]> = [];
  const props = s['properties'];
  if (isMap(props)) for (const [k, v] of Object.entries(props)) if (isMap(v)) out.push([`properties[${k}]`, v]);
  if (isMap(s['items'])) out.push(['items', s['items']]);
  if (isMap(s['additionalProperties'])) out.push(['additionalProperties', s['additionalProperties']]);
  return out;
}

/**
 * Checks that `schema` is structural (DOC-CRD "Specifying a structural schema") and uses only what
 * this server supports; errors are reported under `path` (the schema's place in the CRD).
 */
export function checkStructural(schema: unknown, path: string): FieldError[] {
  const errs: FieldError[] = [];
  if (!isMap(schema)) return [fieldError('Required', path, undefined, 'must be an object')];
  if (schema['type'] !== 'object') {
    errs.push(fieldError('Invalid', sub(path, 'type'), schema['type'] ?? '', 'must be object at the root'));
  }
  checkNode(schema, path, errs, true, false);
  const meta = isMap(schema['properties']) ? schema['properties']['metadata'] : undefined;
  if (isMap(meta)) {
    const mp = `${path}.properties[metadata]`;
    if (meta['type'] !== undefined && meta['type'] !== 'object') errs.push(fieldError('Invalid', sub(mp, 'type'), meta['type'], 'must be object'));
    const props = meta['properties'];
    if (isMap(props)) {
      for (const k of Object.keys(props)) {
        if (k !== 'name' && k !== 'generateName') {
          errs.push(fieldError('Forbidden', `${mp}.properties[${k}]`, undefined, 'only name and generateName may be restricted in metadata'));
        }
      }
    }
  }
  return errs;
}

function checkNode(s: Schema, path: string, errs: FieldError[], specified: boolean, inJunctor: boolean): void {
  for (const k of UNSUPPORTED) if (k in s) errs.push(fieldError('Forbidden', sub(path, k), undefined, `${k} is not supported`));
  if (s['uniqueItems'] === true) {
    errs.push(fieldError('Forbidden', sub(path, 'uniqueItems'), undefined, 'uniqueItems cannot be set to true since the runtime complexity becomes quadratic'));
  }
  const t = s['type'];
  if (inJunctor) {
    for (const k of ['type', 'default', 'description', 'additionalProperties', 'nullable']) {
      if (k in s) errs.push(fieldError('Forbidden', sub(path, k), undefined, `must be empty to be structural`));
    }
  } else if (specified) {
    if (t === undefined || t === '') {
      if (!bool(s, 'x-kubernetes-int-or-string') && !bool(s, 'x-kubernetes-preserve-unknown-fields')) {
        errs.push(fieldError('Required', sub(path, 'type'), undefined, 'must not be empty for specified object fields'));
      }
    } else if (typeof t !== 'string' || !TYPES.has(t)) {
      errs.push(fieldError('NotSupported', sub(path, 'type'), t, `supported values: "array", "boolean", "integer", "number", "object", "string"`));
    }
  }
  if (bool(s, 'x-kubernetes-int-or-string') && t !== undefined && !inJunctor) {
    errs.push(fieldError('Invalid', sub(path, 'type'), t, 'must be empty if x-kubernetes-int-or-string is true'));
  }
  if (t === 'array' && !isMap(s['items'])) errs.push(fieldError('Required', sub(path, 'items'), undefined, 'must be specified'));
  if (isMap(s['properties']) && s['additionalProperties'] !== undefined && s['additionalProperties'] !== false) {
    errs.push(fieldError('Forbidden', sub(path, 'additionalProperties'), undefined, 'additionalProperties and properties are mutual exclusive'));
  }
  if (s['additionalProperties'] === false) {
    errs.push(fieldError('Forbidden', sub(path, 'additionalProperties'), undefined, 'must not be false; omit it or use x-kubernetes-preserve-unknown-fields'));
  }
  const listType = s['x-kubernetes-list-type'];
  if (listType !== undefined) {
    if (!['atomic', 'set', 'map'].includes(String(listType))) {
      errs.push(fieldError('NotSupported', sub(path, 'x-kubernetes-list-type'), listType, `supported values: "atomic", "map", "set"`));
    }
    if (t !== 'array') errs.push(fieldError('Invalid', sub(path, 'type'), t ?? '', 'must be array if x-kubernetes-list-type is specified'));
    if (listType === 'map') {
      const keys = s['x-kubernetes-list-map-keys'];
      if (!Array.isArray(keys) || keys.length === 0) {
        errs.push(fieldError('Required', sub(path, 'x-kubernetes-list-map-keys'), undefined, 'must not be empty if x-kubernetes-list-type is map'));
      }
      const items = s['items'];
      if (isMap(items) && items['type'] !== 'object') {
        errs.push(fieldError('Invalid', `${path}.items.type`, items['type'] ?? '', 'must be object if parent array\'s x-kubernetes-list-type is map'));
      }
    }
  }
  for (const [k, c] of childSchemas(s)) checkNode(c, sub(path, k), errs, !inJunctor, inJunctor);
  for (const j of JUNCTORS) {
    const list = s[j];
    if (list === undefined) continue;
    // Upstream allows exactly this typed anyOf under x-kubernetes-int-or-string (what
    // `intstr.IntOrString` fields generate): `anyOf: [{type: integer}, {type: string}]`.
    if (j === 'anyOf' && bool(s, 'x-kubernetes-int-or-string') && isIntOrStringAnyOf(list)) continue;
    if (!Array.isArray(list)) {
      errs.push(fieldError('Invalid', sub(path, j), list, 'must be a list of schemas'));
      continue;
    }
    list.forEach((x, i) => {
      if (isMap(x)) checkNode(x, `${path}.${j}[${i}]`, errs, false, true);
    });
  }
  if (isMap(s['not'])) checkNode(s['not'], sub(path, 'not'), errs, false, true);
}

function isIntOrStringAnyOf(list: unknown): boolean {
  if (!Array.isArray(list) || list.length !== 2) return false;
  const only = (x: unknown, type: string): boolean => isMap(x) && Object.keys(x).length === 1 && x['type'] === type;
  return only(list[0], 'integer') && only(list[1], 'string');
}

/** Keys of the root (and of embedded resources) that are never pruned. */
const RESOURCE_KEYS = ['apiVersion', 'kind', 'metadata'];

/**
 * Removes, in place, every field the schema does not declare (unless preserved with
 * `x-kubernetes-preserve-unknown-fields`), and returns their paths (for fieldValidation).
 */
export function pruneUnknown(obj: JsonMap, schema: Schema): string[] {
  const pruned: string[] = [];
  pruneMap(obj, schema, '', pruned, true);
  return pruned;
}

function pruneValue(v: unknown, s: Schema | undefined, path: string, out: string[]): void {
  if (s === undefined) return;
  if (isMap(v)) pruneMap(v, s, path, out, bool(s, 'x-kubernetes-embedded-resource'));
  else if (Array.isArray(v) && isMap(s['items'])) v.forEach((x, i) => pruneValue(x, s['items'] as Schema, `${path}[${i}]`, out));
}

function pruneMap(m: JsonMap, s: Schema, path: string, out: string[], isResource: boolean): void {
  const props = isMap(s['properties']) ? s['properties'] : undefined;
  const addl = s['additionalProperties'];
  const preserve = bool(s, 'x-kubernetes-preserve-unknown-fields');
  for (const k of Object.keys(m)) {
    const p = path === '' ? k : `${path}.${k}`;
    if (isResource && RESOURCE_KEYS.includes(k)) {
      if (props && isMap(props[k]) && k !== 'metadata') pruneValue(m[k], props[k] as Schema, p, out);
      continue;
    }
    if (props && isMap(props[k])) {
      pruneValue(m[k], props[k] as Schema, p, out);
    } else if (isMap(addl)) {
      pruneValue(m[k], addl, p, out);
    } else if (addl === true || preserve) {
      continue;
    } else {
      out.push(p);
      delete m[k];
    }
  }
}

/** Sets schema defaults in place (absent fields, and nulls of non-nullable fields). */
export function applyDefaults(v: unknown, s: Schema): void {
  if (isMap(v)) {
    const props = s['properties'];
    if (isMap(props)) {
      for (const [k, ps] of Object.entries(props)) {
        if (!isMap(ps)) continue;
        const cur = v[k];
        if (ps['default'] !== undefined && (cur === undefined || (cur === null && ps['nullable'] !== true))) {
          v[k] = clone(ps['default']);
        } else if (cur === null && ps['nullable'] !== true) {
          delete v[k];
        }
        if (v[k] !== undefined) applyDefaults(v[k], ps);
      }
    }
    const addl = s['additionalProperties'];
    if (isMap(addl)) for (const k of Object.keys(v)) applyDefaults(v[k], addl);
  } else if (Array.isArray(v) && isMap(s['items'])) {
    for (const x of v) applyDefaults(x, s['items'] as Schema);
  }
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(v: unknown, t: string): boolean {
  const jt = jsonType(v);
  if (t === 'number') return jt === 'number' || jt === 'integer';
  return jt === t;
}

const FORMATS: Record<string, (s: string) => boolean> = {
  'date-time': (s) => /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s)),
  date: (s) => /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(Date.parse(s)),
  ipv4: (s) => /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(s),
  ipv6: (s) => s.includes(':') && /^[0-9A-Fa-f:.]+$/.test(s),
  cidr: (s) => /^[0-9A-Fa-f:.]+\/\d{1,3}$/.test(s),
  uuid: (s) => /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/.test(s),
  hostname: (s) => /^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$/.test(s) && s.length <= 253,
  email: (s) => /^[^@\s]+@[^@\s]+$/.test(s),
  byte: (s) => /^[A-Za-z0-9+/]*={0,2}$/.test(s),
  duration: (s) => /^(-?\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(s) || s === '0',
};

/** Validates a custom resource against its schema; paths are rendered as the real server does. */
export function validateValue(v: unknown, s: Schema, path: string): FieldError[] {
  const errs: FieldError[] = [];
  validateNode(v, s, path, errs);
  return errs;
}

function validateNode(v: unknown, s: Schema, path: string, errs: FieldError[]): void {
  if (v === null) {
    if (s['nullable'] === true || (bool(s, 'x-kubernetes-preserve-unknown-fields') && s['type'] === undefined)) return;
    if (typeof s['type'] === 'string') {
      errs.push(fieldError('Invalid', path, null, `${path} in body must be of type ${s['type']}: "null"`));
    }
    return;
  }
  if (bool(s, 'x-kubernetes-int-or-string')) {
    if (!(typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v)))) {
      errs.push(fieldError('Invalid', path, v, `${path} in body must be of type integer,string: "${jsonType(v)}"`));
      return;
    }
  }
  const t = s['type'];
  if (typeof t === 'string' && t !== '' && !typeMatches(v, t)) {
    errs.push(fieldError('Invalid', path, v, `${path} in body must be of type ${t}: "${jsonType(v)}"`));
    return;
  }
  const en = s['enum'];
  if (Array.isArray(en) && !en.some((e) => jsonEqual(e, v))) {
    errs.push(fieldError('NotSupported', path, v, `supported values: ${en.map((e) => JSON.stringify(e)).join(', ')}`));
  }
  if (typeof v === 'string') validateString(v, s, path, errs);
  if (typeof v === 'number') validateNumber(v, s, path, errs);
  if (Array.isArray(v)) validateArray(v, s, path, errs);
  if (isMap(v)) validateObject(v, s, path, errs);
  validateJunctors(v, s, path, errs);
}

function validateString(v: string, s: Schema, path: string, errs: FieldError[]): void {
  const maxLength = s['maxLength'];
  if (typeof maxLength === 'number' && [...v].length > maxLength) errs.push(fieldError('TooLong', path, v, `may not be longer than ${maxLength}`));
  const minLength = s['minLength'];
  if (typeof minLength === 'number' && [...v].length < minLength) {
    errs.push(fieldError('Invalid', path, v, `${path} in body should be at least ${minLength} chars long`));
  }
  const pattern = s['pattern'];
  if (typeof pattern === 'string') {
    let re: RegExp | undefined;
    try {
      re = new RegExp(pattern, 'u');
    } catch {
      re = undefined;
    }
    if (re !== undefined && !re.test(v)) errs.push(fieldError('Invalid', path, v, `${path} in body should match '${pattern}'`));
  }
  const format = s['format'];
  if (typeof format === 'string' && FORMATS[format] !== undefined && !FORMATS[format](v)) {
    errs.push(fieldError('Invalid', path, v, `${path} in body must be of type ${format}: ${JSON.stringify(v)}`));
  }
}

function validateNumber(v: number, s: Schema, path: string, errs: FieldError[]): void {
  const max = s['maximum'];
  if (typeof max === 'number') {
    if (s['exclusiveMaximum'] === true ? v >= max : v > max) {
      errs.push(fieldError('Invalid', path, v, `${path} in body should be less than ${s['exclusiveMaximum'] === true ? '' : 'or equal to '}${max}`));
    }
  }
  const min = s['minimum'];
  if (typeof min === 'number') {
    if (s['exclusiveMinimum'] === true ? v <= min : v < min) {
      errs.push(fieldError('Invalid', path, v, `${path} in body should be greater than ${s['exclusiveMinimum'] === true ? '' : 'or equal to '}${min}`));
    }
  }
  const mult = s['multipleOf'];
  if (typeof mult === 'number' && mult > 0 && Math.abs(v / mult - Math.round(v / mult)) > 1e-9) {
    errs.push(fieldError('Invalid', path, v, `${path} in body should be a multiple of ${mult}`));
  }
  if (s['format'] === 'int32' && (v > 2147483647 || v < -2147483648)) {
    errs.push(fieldError('Invalid', path, v, `${path} in body must be of type int32: "${v}"`));
  }
}

function validateArray(v: unknown[], s: Schema, path: string, errs: FieldError[]): void {
  const maxItems = s['maxItems'];
  if (typeof maxItems === 'number' && v.length > maxItems) errs.push(fieldError('TooMany', path, v.length, `must have at most ${maxItems} items`));
  const minItems = s['minItems'];
  if (typeof minItems === 'number' && v.length < minItems) {
    errs.push(fieldError('Invalid', path, v.length, `${path} in body should have at least ${minItems} items`));
  }
  const items = s['items'];
  if (isMap(items)) v.forEach((x, i) => validateNode(x, items, `${path}[${i}]`, errs));
  const lt = s['x-kubernetes-list-type'];
  if (lt === 'set') {
    v.forEach((x, i) => {
      if (v.slice(0, i).some((y) => jsonEqual(x, y))) errs.push(fieldError('Duplicate', `${path}[${i}]`, x));
    });
  } else if (lt === 'map') {
    const keys = Array.isArray(s['x-kubernetes-list-map-keys']) ? (s['x-kubernetes-list-map-keys'] as string[]) : [];
    const keyOf = (x: unknown): unknown => (isMap(x) ? keys.map((k) => x[k]) : x);
    v.forEach((x, i) => {
      if (v.slice(0, i).some((y) => jsonEqual(keyOf(x), keyOf(y)))) {
        const shown: JsonMap = {};
        if (isMap(x)) for (const k of keys) shown[k] = x[k];
        errs.push(fieldError('Duplicate', `${path}[${i}]`, shown));
      }
    });
  }
}

function validateObject(v: JsonMap, s: Schema, path: string, errs: FieldError[]): void {
  const req = s['required'];
  if (Array.isArray(req)) {
    for (const k of req) if (typeof k === 'string' && v[k] === undefined) errs.push(fieldError('Required', path === '' ? k : `${path}.${k}`, undefined));
  }
  const n = Object.keys(v).length;
  const maxP = s['maxProperties'];
  if (typeof maxP === 'number' && n > maxP) errs.push(fieldError('TooMany', path, n, `must have at most ${maxP} items`));
  const minP = s['minProperties'];
  if (typeof minP === 'number' && n < minP) errs.push(fieldError('Invalid', path, n, `${path} in body should have at least ${minP} properties`));
  const props = s['properties'];
  const addl = s['additionalProperties'];
  for (const [k, x] of Object.entries(v)) {
    const p = path === '' ? k : `${path}.${k}`;
    if (isMap(props) && isMap(props[k])) {
      if (path === '' && k === 'metadata') continue;
      validateNode(x, props[k] as Schema, p, errs);
    } else if (isMap(addl)) validateNode(x, addl, p, errs);
  }
}

function validateJunctors(v: unknown, s: Schema, path: string, errs: FieldError[]): void {
  const passes = (x: unknown): boolean => isMap(x) && validateValue(v, x, path).length === 0;
  const allOf = s['allOf'];
  if (Array.isArray(allOf)) for (const x of allOf) if (isMap(x)) validateNode(v, x, path, errs);
  const anyOf = s['anyOf'];
  if (Array.isArray(anyOf) && anyOf.length > 0 && !anyOf.some(passes)) {
    errs.push(fieldError('Invalid', path, v, `${path === '' ? '<root>' : path} in body must validate at least one schema (anyOf)`));
  }
  const oneOf = s['oneOf'];
  if (Array.isArray(oneOf) && oneOf.length > 0 && oneOf.filter(passes).length !== 1) {
    errs.push(fieldError('Invalid', path, v, `${path === '' ? '<root>' : path} in body must validate one and only one schema (oneOf)`));
  }
  if (isMap(s['not']) && passes(s['not'])) {
    errs.push(fieldError('Invalid', path, v, `${path === '' ? '<root>' : path} in body must not validate the schema (not)`));
  }
}

class CrdMergeSchema implements MergeSchema {
  constructor(private readonly s: Schema | undefined) {}
  child(key: string): MergeSchema {
    const s = this.s;
    if (s === undefined) return new CrdMergeSchema(undefined);
    const props = s['properties'];
    if (isMap(props) && isMap(props[key])) return new CrdMergeSchema(props[key] as Schema);
    if (isMap(s['additionalProperties'])) return new CrdMergeSchema(s['additionalProperties'] as Schema);
    return new CrdMergeSchema(undefined);
  }
  elem(): MergeSchema {
    const items = this.s?.['items'];
    return new CrdMergeSchema(isMap(items) ? items : undefined);
  }
  listMeta(key: string): PatchMeta | undefined {
    const c = (this.child(key) as CrdMergeSchema).s;
    if (c === undefined) return undefined;
    const lt = c['x-kubernetes-list-type'];
    const keys = c['x-kubernetes-list-map-keys'];
    if (lt === 'map' && Array.isArray(keys) && keys.length === 1) return { strategy: 'merge', key: String(keys[0]) };
    if (lt === 'set') return { strategy: 'merge' };
    return undefined;
  }
}

/** How server-side apply merges a custom resource's lists (x-kubernetes-list-type map/set). */
export function crdMergeSchema(schema: Schema | undefined): MergeSchema {
  return new CrdMergeSchema(schema);
}
