/**
 * Strategic merge patch (kubernetes/community strategic-merge-patch.md): maps merge, `null`
 * deletes, lists merge by their patchMergeKey (or as sets of primitives) when the type says
 * `patchStrategy: merge`, otherwise they are replaced; the directives `$patch`
 * (replace|delete|merge), `$retainKeys`, `$setElementOrder/<list>` and
 * `$deleteFromPrimitiveList/<list>` are honoured. Pure: inputs are never modified.
 */
import { elementType, fieldType, patchMeta, type PatchMeta, type TypeRef } from './builtin-schema.js';
import { PatchError } from './patch-json.js';
import { clone, isMap, jsonEqual, type JsonMap } from './types.js';

/** Where a merge is in the schema: what a child or element is, and how a list field merges. */
export interface MergeSchema {
  child(key: string): MergeSchema;
  elem(): MergeSchema;
  listMeta(key: string): PatchMeta | undefined;
}

class BuiltinSchema implements MergeSchema {
  constructor(private readonly t: TypeRef | undefined) {}
  child(key: string): MergeSchema {
    return new BuiltinSchema(fieldType(this.t, key));
  }
  elem(): MergeSchema {
    return new BuiltinSchema(elementType(this.t));
  }
  listMeta(key: string): PatchMeta | undefined {
    return patchMeta(this.t, key);
  }
}

/** The merge schema of a built-in model (`V1Deployment`), from its generated type map. */
export function builtinMergeSchema(model: string): MergeSchema {
  return new BuiltinSchema(model);
}

/** A schema that knows nothing: every list is replaced (a JSON merge patch with SMP directives). */
export const OPAQUE_SCHEMA: MergeSchema = new BuiltinSchema(undefined);

const SET_ORDER = '$setElementOrder/';
const DELETE_FROM = '$deleteFromPrimitiveList/';
const RETAIN = '$retainKeys';
const PATCH = '$patch';

function isDirectiveKey(k: string): boolean {
  return k === PATCH || k === RETAIN || k.startsWith(SET_ORDER) || k.startsWith(DELETE_FROM);
}

/** Applies a strategic merge patch (a map) to `original` with `schema` at the root. */
export function applyStrategicPatch(original: unknown, patch: unknown, schema: MergeSchema): JsonMap {
  if (!isMap(patch)) throw new PatchError('strategic merge patch must be a JSON object');
  return mergeMap(isMap(original) ? original : {}, patch, schema);
}

function mergeMap(original: JsonMap, patch: JsonMap, schema: MergeSchema): JsonMap {
  const directive = patch[PATCH];
  if (directive !== undefined) {
    if (directive === 'replace') return stripMap(patch, schema);
    if (directive === 'delete') return {};
    if (directive !== 'merge') throw new PatchError(`Unknown patch type: ${JSON.stringify(directive)} in map: ${JSON.stringify(patch)}`);
  }
  let base: JsonMap = clone(original);
  const retain = patch[RETAIN];
  if (retain !== undefined) {
    if (!Array.isArray(retain) || !retain.every((k) => typeof k === 'string')) {
      throw new PatchError(`$retainKeys must be a list of strings, got ${JSON.stringify(retain)}`);
    }
    for (const k of Object.keys(patch)) {
      if (!isDirectiveKey(k) && patch[k] !== null && !retain.includes(k)) {
        throw new PatchError(`The patch has a key "${k}" that is not in the $retainKeys list`);
      }
    }
    const kept: JsonMap = {};
    for (const k of retain as string[]) if (Object.hasOwn(base, k)) kept[k] = base[k];
    base = kept;
  }
  for (const [k, v] of Object.entries(patch)) {
    if (!k.startsWith(DELETE_FROM)) continue;
    const field = k.slice(DELETE_FROM.length);
    if (!Array.isArray(v)) throw new PatchError(`${k} must be a list, got ${JSON.stringify(v)}`);
    const cur = base[field];
    if (Array.isArray(cur)) base[field] = cur.filter((x) => !v.some((d) => jsonEqual(d, x)));
  }
  for (const [k, pv] of Object.entries(patch)) {
    if (isDirectiveKey(k)) continue;
    if (pv === null) {
      delete base[k];
      continue;
    }
    base[k] = mergeValue(base[k], pv, schema.child(k), schema.listMeta(k), k);
  }
  for (const [k, order] of Object.entries(patch)) {
    if (!k.startsWith(SET_ORDER)) continue;
    const field = k.slice(SET_ORDER.length);
    if (!Array.isArray(order)) throw new PatchError(`${k} must be a list, got ${JSON.stringify(order)}`);
    const cur = base[field];
    if (Array.isArray(cur)) base[field] = reorder(cur, order, schema.listMeta(field)?.key);
  }
  return base;
}

function mergeValue(ov: unknown, pv: unknown, schema: MergeSchema, meta: PatchMeta | undefined, key: string): unknown {
  if (isMap(pv)) {
    if (isMap(ov)) return mergeMap(ov, pv, schema);
    return mergeMap({}, pv, schema);
  }
  if (Array.isArray(pv)) return mergeList(Array.isArray(ov) ? ov : [], pv, schema, meta, key);
  return clone(pv);
}

function mergeList(original: unknown[], patch: unknown[], schema: MergeSchema, meta: PatchMeta | undefined, key: string): unknown[] {
  const elemSchema = schema.elem();
  const replaceAll = patch.some((e) => isMap(e) && e[PATCH] === 'replace' && Object.keys(e).length === 1);
  if (replaceAll) return patch.filter((e) => !(isMap(e) && e[PATCH] === 'replace' && Object.keys(e).length === 1)).map((e) => strip(e, elemSchema));
  if (meta === undefined || !meta.strategy.includes('merge')) return patch.map((e) => strip(e, elemSchema));
  const mergeKey = meta.key;
  if (mergeKey === undefined) {
    // A set of primitives: union in order, original first.
    const out = clone(original);
    for (const e of patch) if (!out.some((x) => jsonEqual(x, e))) out.push(clone(e));
    return out;
  }
  const out = clone(original);
  for (const pe of patch) {
    if (!isMap(pe)) throw new PatchError(`unable to merge list ${key}: element ${JSON.stringify(pe)} is not a map but the list merges by key "${mergeKey}"`);
    if (!Object.hasOwn(pe, mergeKey)) {
      throw new PatchError(`map: ${JSON.stringify(pe)} does not contain declared merge key: ${mergeKey}`);
    }
    const kv = pe[mergeKey];
    const idx = out.findIndex((x) => isMap(x) && jsonEqual(x[mergeKey], kv));
    const d = pe[PATCH];
    if (d === 'delete') {
      for (let i = out.length - 1; i >= 0; i--) {
        const x = out[i];
        if (isMap(x) && jsonEqual(x[mergeKey], kv)) out.splice(i, 1);
      }
      continue;
    }
    if (d === 'replace') {
      const replaced = stripMap(pe, elemSchema);
      if (idx >= 0) out[idx] = replaced;
      else out.push(replaced);
      continue;
    }
    if (idx >= 0) out[idx] = mergeMap(out[idx] as JsonMap, pe, elemSchema);
    else out.push(mergeMap({}, pe, elemSchema));
  }
  return out;
}

/**
 * Orders `list` by `order` (maps matched on `mergeKey`, primitives by value): the items named in
 * `order` fill, in that order, the slots such items held; items only on the server keep their
 * slots; named items that are new go last.
 */
function reorder(list: unknown[], order: unknown[], mergeKey: string | undefined): unknown[] {
  const keyOf = (x: unknown): unknown => (mergeKey !== undefined && isMap(x) ? x[mergeKey] : x);
  const orderKeys = order.map(keyOf);
  const pos = (x: unknown): number => orderKeys.findIndex((k) => jsonEqual(k, keyOf(x)));
  const named = list.filter((x) => pos(x) >= 0).sort((a, b) => pos(a) - pos(b));
  const out: unknown[] = [];
  let next = 0;
  for (const x of list) {
    if (pos(x) >= 0) out.push(named[next++]);
    else out.push(x);
  }
  return out;
}

/** A patch value with every directive removed (a value new to the original). */
function strip(v: unknown, schema: MergeSchema): unknown {
  if (isMap(v)) return stripMap(v, schema);
  if (Array.isArray(v)) return v.filter((e) => !(isMap(e) && e[PATCH] === 'delete')).map((e) => strip(e, schema.elem()));
  return v;
}

function stripMap(m: JsonMap, schema: MergeSchema): JsonMap {
  const out: JsonMap = {};
  for (const [k, v] of Object.entries(m)) {
    if (isDirectiveKey(k) || v === null) continue;
    out[k] = strip(v, schema.child(k));
  }
  return out;
}
