/**
 * Field ownership (`metadata.managedFields`, FieldsV1) and server-side apply: every write records
 * which manager set which fields; an apply merges the applied configuration into the live object
 * (lists by their merge keys), removes fields the manager applied before and no longer does
 * (unless another manager owns them), and refuses to change fields another manager owns unless
 * forced, with the real server's conflict message.
 *
 * Simplification against upstream structured-merge-diff: ownership is tracked per leaf field;
 * a field's value counts as "set" when it differs from before; lists without merge keys are
 * atomic leaves.
 */
import type { MergeSchema } from './patch-strategic.js';
import { applyStrategicPatch, OPAQUE_SCHEMA } from './patch-strategic.js';
import { failure } from './status.js';
import { clone, isMap, jsonEqual, rfc3339, type JsonMap, type KubeObject } from './types.js';

/** What the registry passes: who writes, and whether this write is an apply. */
export interface ManagerContext {
  fieldManager?: string;
  force?: boolean;
  applyOperation?: boolean;
}

interface TrackedEntry extends ManagedEntry {
  set: Set<string>;
}

interface ManagedEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: JsonMap;
  subresource?: string;
}

/** Metadata fields the server owns; never tracked. */
const SYSTEM_META = new Set(['name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'selfLink', 'generateName']);

type Path = string[];
const SEP = '\u0000';

function leaves(obj: KubeObject, schema: MergeSchema): Set<string> {
  const out = new Set<string>();
  const top: JsonMap = { ...obj };
  delete top['apiVersion'];
  delete top['kind'];
  delete top['metadata'];
  if (isMap(obj.metadata)) {
    const m: JsonMap = {};
    for (const [k, v] of Object.entries(obj.metadata)) if (!SYSTEM_META.has(k) && v !== undefined) m[k] = v;
    if (Object.keys(m).length > 0) top['metadata'] = m;
  }
  walk(top, schema, [], out);
  return out;
}

function walk(v: JsonMap, schema: MergeSchema, prefix: Path, out: Set<string>): void {
  for (const [k, child] of Object.entries(v)) {
    if (child === undefined) continue;
    const seg = `f:${k}`;
    const meta = schema.listMeta(k);
    if (isMap(child) && Object.keys(child).length > 0) {
      walk(child, schema.child(k), [...prefix, seg], out);
    } else if (Array.isArray(child) && meta !== undefined && meta.strategy.includes('merge')) {
      if (meta.key !== undefined) {
        for (const el of child) {
          if (!isMap(el)) continue;
          const ks = `k:${JSON.stringify({ [meta.key]: el[meta.key] })}`;
          out.add([...prefix, seg, ks, '.'].join(SEP));
          walk(el, schema.child(k).elem(), [...prefix, seg, ks], out);
        }
      } else {
        for (const el of child) out.add([...prefix, seg, `v:${JSON.stringify(el)}`].join(SEP));
      }
    } else {
      out.add([...prefix, seg].join(SEP));
    }
  }
}

/**
 * The value at a leaf path, or undefined when absent. A list item's own entry (`.`) has no value
 * of its own: it is `true` while the item exists, so it never conflicts over the item's content.
 */
function valueAt(obj: unknown, path: Path): unknown {
  let cur: unknown = obj;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    if (seg === '.') return cur === undefined ? undefined : true;
    if (seg.startsWith('f:')) {
      if (!isMap(cur)) return undefined;
      cur = cur[seg.slice(2)];
    } else if (seg.startsWith('k:')) {
      if (!Array.isArray(cur)) return undefined;
      const key = JSON.parse(seg.slice(2)) as JsonMap;
      cur = cur.find((e) => isMap(e) && Object.entries(key).every(([kk, kv]) => jsonEqual(e[kk], kv)));
    } else if (seg.startsWith('v:')) {
      if (!Array.isArray(cur)) return undefined;
      const want = JSON.parse(seg.slice(2)) as unknown;
      return cur.some((e) => jsonEqual(e, want)) ? want : undefined;
    }
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** Removes the field at a leaf path from `obj` (in place); empty parents stay. */
function removeAt(obj: unknown, path: Path): void {
  let cur: unknown = obj;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const last = i === path.length - 1 || (i === path.length - 2 && path[i + 1] === '.');
    if (seg.startsWith('f:')) {
      if (!isMap(cur)) return;
      if (last) {
        delete cur[seg.slice(2)];
        return;
      }
      cur = cur[seg.slice(2)];
    } else if (seg.startsWith('k:') || seg.startsWith('v:')) {
      if (!Array.isArray(cur)) return;
      const key = JSON.parse(seg.slice(2)) as unknown;
      const idx = cur.findIndex((e) => (seg.startsWith('k:') ? isMap(e) && Object.entries(key as JsonMap).every(([kk, kv]) => jsonEqual(e[kk], kv)) : jsonEqual(e, key)));
      if (idx < 0) return;
      if (last) {
        cur.splice(idx, 1);
        return;
      }
      cur = cur[idx];
    }
  }
}

function toFieldsV1(set: Set<string>): JsonMap {
  const root: JsonMap = {};
  for (const p of [...set].sort()) {
    let cur = root;
    for (const seg of p.split(SEP)) {
      if (!isMap(cur[seg])) cur[seg] = {};
      cur = cur[seg] as JsonMap;
    }
  }
  return root;
}

function fromFieldsV1(f: unknown): Set<string> {
  const out = new Set<string>();
  const rec = (node: unknown, prefix: Path): void => {
    if (!isMap(node)) return;
    const keys = Object.keys(node);
    if (keys.length === 0 && prefix.length > 0) {
      out.add(prefix.join(SEP));
      return;
    }
    for (const k of keys) rec(node[k], [...prefix, k]);
  };
  rec(f, []);
  return out;
}

function entriesOf(obj: KubeObject | undefined): ManagedEntry[] {
  const mf = obj?.metadata.managedFields;
  return Array.isArray(mf) ? (mf.filter((e) => isMap(e) && typeof e['manager'] === 'string') as unknown as ManagedEntry[]) : [];
}

/** Path text as conflicts name it: `.spec.containers[name="web"].image`. */
function pathText(p: string): string {
  return p
    .split(SEP)
    .filter((s) => s !== '.')
    .map((s) => {
      if (s.startsWith('f:')) return `.${s.slice(2)}`;
      if (s.startsWith('k:')) {
        const k = JSON.parse(s.slice(2)) as JsonMap;
        return `[${Object.entries(k).map(([a, b]) => `${a}=${JSON.stringify(b)}`).join(',')}]`;
      }
      return `[=${s.slice(2)}]`;
    })
    .join('');
}

/**
 * Records an Update (or, for an apply, keeps what applyServerSideApply computed) in
 * `next.metadata.managedFields`. Entries change only when their fields do.
 */
export function applyFieldManagement(old: KubeObject | undefined, next: KubeObject, ctx: ManagerContext, apiVersion: string, now: number, schema: MergeSchema = OPAQUE_SCHEMA): void {
  if (ctx.applyOperation) {
    if (old === undefined) {
      const set = leaves(next, schema);
      next.metadata.managedFields = [{ manager: ctx.fieldManager!, operation: 'Apply', apiVersion, time: rfc3339(now), fieldsType: 'FieldsV1', fieldsV1: toFieldsV1(set) }];
    }
    return;
  }
  const entries = entriesOf(old).map((e) => ({ ...e, set: fromFieldsV1(e.fieldsV1) }));
  const manager = ctx.fieldManager ?? 'unknown';
  const nextLeaves = leaves(next, schema);
  const changed = new Set<string>();
  for (const l of nextLeaves) {
    const path = l.split(SEP);
    if (old === undefined || !jsonEqual(valueAt(next, path), valueAt(old, path))) changed.add(l);
  }
  let touched = false;
  for (const e of entries) {
    const before = e.set.size;
    for (const l of [...e.set]) if (!nextLeaves.has(l) || (changed.has(l) && !(e.manager === manager && e.operation === 'Update'))) e.set.delete(l);
    if (e.set.size !== before) touched = true;
  }
  if (changed.size > 0) {
    let mine = entries.find((e) => e.manager === manager && e.operation === 'Update');
    if (mine === undefined) {
      mine = { manager, operation: 'Update', apiVersion, time: rfc3339(now), fieldsType: 'FieldsV1', fieldsV1: {}, set: new Set() };
      entries.push(mine);
    }
    const before = mine.set.size;
    for (const l of changed) mine.set.add(l);
    if (mine.set.size !== before) {
      mine.time = rfc3339(now);
      mine.apiVersion = apiVersion;
      touched = true;
    }
  }
  if (!touched && old !== undefined) {
    if (old.metadata.managedFields !== undefined) next.metadata.managedFields = old.metadata.managedFields;
    else delete next.metadata.managedFields;
    return;
  }
  const out = entries.filter((e) => e.set.size > 0).map(({ set, ...e }) => ({ ...e, fieldsV1: toFieldsV1(set) }));
  if (out.length > 0) next.metadata.managedFields = out;
  else delete next.metadata.managedFields;
}

/**
 * Server-side apply of `applied` (already decoded) onto `live`: returns the object to store,
 * with managedFields updated; throws 409 Conflict listing fields other managers own.
 */
export function applyServerSideApply(
  live: KubeObject,
  applied: KubeObject,
  ctx: ManagerContext,
  schema: MergeSchema,
  apiVersion: string,
  now: number,
): KubeObject {
  const manager = ctx.fieldManager!;
  const entries: TrackedEntry[] = entriesOf(live).map((e) => ({ ...e, set: fromFieldsV1(e.fieldsV1) }));
  const appliedSet = leaves(applied, schema);
  const conflicts: Array<{ manager: string; entry: TrackedEntry; path: string }> = [];
  for (const l of appliedSet) {
    const path = l.split(SEP);
    if (jsonEqual(valueAt(applied, path), valueAt(live, path))) continue;
    for (const e of entries) {
      if (e.manager === manager && e.operation === 'Apply') continue;
      if (e.set.has(l)) conflicts.push({ manager: e.manager, entry: e, path: l });
    }
  }
  if (conflicts.length > 0 && !ctx.force) {
    const lines = conflicts.map((c) => `conflict with "${c.manager}"${c.entry.operation === 'Update' ? ` using ${c.entry.apiVersion}` : ''}: ${pathText(c.path)}`);
    const n = conflicts.length;
    throw failure(409, 'Conflict', `Apply failed with ${n} conflict${n === 1 ? '' : 's'}: ${lines.join('\n')}`, {
      causes: conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with "${c.manager}"${c.entry.operation === 'Update' ? ` using ${c.entry.apiVersion}` : ''}`, field: pathText(c.path) })),
    });
  }
  for (const c of conflicts) c.entry.set.delete(c.path);
  const body: JsonMap = clone(applied);
  delete body['apiVersion'];
  delete body['kind'];
  body['metadata'] = Object.fromEntries(Object.entries(applied.metadata).filter(([k]) => !SYSTEM_META.has(k)));
  const merged = applyStrategicPatch(live, body, schema) as KubeObject;
  const mine = entries.find((e) => e.manager === manager && e.operation === 'Apply');
  for (const l of mine?.set ?? []) {
    if (appliedSet.has(l)) continue;
    if (entries.some((e) => e !== mine && e.set.has(l))) continue;
    removeAt(merged, l.split(SEP));
  }
  const others = entries.filter((e) => e !== mine);
  const nextEntries: ManagedEntry[] = others.filter((e) => e.set.size > 0).map(({ set, ...e }) => ({ ...e, fieldsV1: toFieldsV1(set) }));
  nextEntries.push({ manager, operation: 'Apply', apiVersion, time: rfc3339(now), fieldsType: 'FieldsV1', fieldsV1: toFieldsV1(appliedSet) });
  merged.metadata = { ...merged.metadata, managedFields: nextEntries };
  return merged;
}
