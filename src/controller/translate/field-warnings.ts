/**
 * Nothing silently ignored: walks each object of a kind in the served-fields table
 * (served-fields.ts) and reports every field, and every value, Ambit does not serve, in Istio's
 * words (`Warning: spec.http[0].mirrors is not supported`), as a `Warning` condition on the
 * object. Objects of kinds that have no effect at all are reported as ignored, naming what they set.
 */
import { describeObject, kindRef, objectKey, type KubeObject } from '../objects.js';
import type { ObjectIndex, TranslateCondition } from './object-index.js';
import { SERVED_FIELDS, type ServedKind } from './served-fields.js';

/** Condition type of field warnings. */
export const CONDITION_WARNING = 'Warning';

/** Most fields one condition lists (an object with more says how many were left out). */
const MAX_LISTED = 40;

/** A kind's table compiled for lookups. */
export interface FieldTable {
  /** Served field patterns, with the values served when restricted. */
  readonly served: ReadonlyMap<string, ReadonlySet<string> | undefined>;
  /** Every proper prefix of a served pattern (the containers on the way to served fields). */
  readonly inner: ReadonlySet<string>;
  readonly ignoredBecause: string | undefined;
}

const compiled = new Map<string, FieldTable>();

function compile(k: ServedKind): FieldTable {
  const served = new Map<string, ReadonlySet<string> | undefined>();
  const inner = new Set<string>();
  for (const entry of k.fields) {
    const eq = entry.indexOf('=');
    const pattern = eq < 0 ? entry : entry.slice(0, eq);
    served.set(pattern, eq < 0 ? undefined : new Set(entry.slice(eq + 1).split('|')));
    for (let i = 1; i < pattern.length; i++) if (pattern[i] === '.' || pattern[i] === '[' || pattern[i] === '{') inner.add(pattern.slice(0, i));
  }
  return { served, inner, ignoredBecause: k.ignoredBecause };
}

/** The compiled table of a kind ref, or undefined for kinds not checked field by field. */
export function fieldTable(ref: string): FieldTable | undefined {
  const cached = compiled.get(ref);
  if (cached) return cached;
  const k = SERVED_FIELDS.get(ref);
  if (!k) return undefined;
  const t = compile(k);
  compiled.set(ref, t);
  return t;
}

/** The pattern of `key` under the container at `parent`: `{}` for entries of a user-keyed map, else `.key`. */
export function childPattern(t: FieldTable, parent: string, key: string): string {
  const map = `${parent}{}`;
  return t.inner.has(map) || t.served.has(map) ? map : `${parent}.${key}`;
}

/** Whether a pattern is served itself or lies under a served pattern. */
export function isCovered(t: FieldTable, pattern: string): boolean {
  for (let i = pattern.length; i > 0; i--) {
    if (i < pattern.length && pattern[i] !== '.' && pattern[i] !== '[' && pattern[i] !== '{') continue;
    if (t.served.has(pattern.slice(0, i))) return true;
  }
  return false;
}

export interface UnservedField {
  /** The field as written: `spec.http[0].corsPolicy`. */
  path: string;
  /** Set when the field is served but this value of it is not. */
  value?: unknown;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Every field of `obj` under `spec` that its kind's table does not serve (the outermost one of each subtree). */
export function unservedFields(t: FieldTable, obj: KubeObject): UnservedField[] {
  const out: UnservedField[] = [];
  const walk = (v: unknown, pattern: string, path: string): void => {
    if (v === undefined || v === null) return;
    if (t.served.has(pattern)) {
      const values = t.served.get(pattern);
      if (values && !values.has(String(v))) out.push({ path, value: v });
      return;
    }
    if (!t.inner.has(pattern)) {
      out.push({ path });
      return;
    }
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${pattern}[]`, `${path}[${i}]`));
    else if (isRecord(v)) for (const [k, x] of Object.entries(v)) walk(x, childPattern(t, pattern, k), `${path}.${k}`);
    else out.push({ path });
  };
  walk(obj.spec, 'spec', 'spec');
  return out;
}

function describeField(f: UnservedField): string {
  return f.value === undefined ? `${f.path} is not supported` : `${f.path}: value ${JSON.stringify(f.value)} is not supported`;
}

function listFields(fields: readonly UnservedField[], render: (f: UnservedField) => string): string {
  const shown = fields.slice(0, MAX_LISTED).map(render);
  if (fields.length > MAX_LISTED) shown.push(`and ${fields.length - MAX_LISTED} more`);
  return shown.join('; ');
}

/** The Warning condition of one object, or undefined when Ambit serves all of it. */
/** Warnings by object: stored objects are frozen, and a retranslate sees mostly the same ones. */
const warnings = new WeakMap<KubeObject, TranslateCondition | null>();

export function fieldWarning(obj: KubeObject): TranslateCondition | undefined {
  const cached = warnings.get(obj);
  if (cached !== undefined) return cached ?? undefined;
  const c = computeFieldWarning(obj);
  if (Object.isFrozen(obj)) warnings.set(obj, c ?? null);
  return c;
}

function computeFieldWarning(obj: KubeObject): TranslateCondition | undefined {
  const t = fieldTable(kindRef(obj));
  if (!t) return undefined;
  if (t.ignoredBecause !== undefined) {
    const fields = Object.keys(isRecord(obj.spec) ? obj.spec : {}).map((k) => ({ path: `spec.${k}` }));
    const what = fields.length > 0 ? `; ignored: ${listFields(fields, (f) => f.path)}` : '';
    return { objectKey: objectKey(obj), type: CONDITION_WARNING, status: 'True', reason: 'Ignored', message: `Warning: ${describeObject(obj)} is accepted but has no effect: ${t.ignoredBecause}${what}` };
  }
  const fields = unservedFields(t, obj);
  if (fields.length === 0) return undefined;
  return { objectKey: objectKey(obj), type: CONDITION_WARNING, status: 'True', reason: 'UnsupportedFields', message: listFields(fields, (f) => `Warning: ${describeField(f)}`) };
}

/** Field warnings of every object in the index that has any. */
export function fieldWarnings(idx: Pick<ObjectIndex, 'of'>): TranslateCondition[] {
  const out: TranslateCondition[] = [];
  for (const ref of SERVED_FIELDS.keys()) {
    for (const obj of idx.of(ref)) {
      const c = fieldWarning(obj);
      if (c) out.push(c);
    }
  }
  return out;
}
