/**
 * JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7386) over plain JSON values. Both return new
 * values and never modify their inputs; a JSON Patch that cannot be applied throws PatchError.
 */
import { clone, isMap, jsonEqual } from './types.js';

export class PatchError extends Error {}

function parsePointer(ptr: string): string[] {
  if (ptr === '') return [];
  if (!ptr.startsWith('/')) throw new PatchError(`invalid JSON pointer ${JSON.stringify(ptr)}: must start with "/"`);
  return ptr
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function arrayIndex(seg: string, len: number, allowEnd: boolean, ptr: string): number {
  if (allowEnd && seg === '-') return len;
  if (!/^(0|[1-9]\d*)$/.test(seg)) throw new PatchError(`invalid array index ${JSON.stringify(seg)} in ${JSON.stringify(ptr)}`);
  const i = Number(seg);
  if (i > len || (!allowEnd && i >= len)) throw new PatchError(`array index ${i} out of bounds in ${JSON.stringify(ptr)}`);
  return i;
}

/** The container holding the last segment of `ptr`, and that segment. */
function parentOf(doc: unknown, ptr: string): { parent: unknown; key: string } {
  const segs = parsePointer(ptr);
  if (segs.length === 0) throw new PatchError('the root cannot be the target of this operation');
  let cur: unknown = doc;
  for (const seg of segs.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(seg, cur.length, false, ptr)];
    else if (isMap(cur) && Object.hasOwn(cur, seg)) cur = cur[seg];
    else throw new PatchError(`doc is missing path: ${JSON.stringify(ptr)}: missing value`);
  }
  if (!Array.isArray(cur) && !isMap(cur)) throw new PatchError(`doc is missing path: ${JSON.stringify(ptr)}: missing value`);
  return { parent: cur, key: segs[segs.length - 1]! };
}

function getAt(doc: unknown, ptr: string): unknown {
  let cur: unknown = doc;
  for (const seg of parsePointer(ptr)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(seg, cur.length, false, ptr)];
    else if (isMap(cur) && Object.hasOwn(cur, seg)) cur = cur[seg];
    else throw new PatchError(`doc is missing path: ${JSON.stringify(ptr)}: missing value`);
  }
  return cur;
}

function addAt(doc: unknown, ptr: string, value: unknown): unknown {
  if (ptr === '') return value;
  const { parent, key } = parentOf(doc, ptr);
  if (Array.isArray(parent)) parent.splice(arrayIndex(key, parent.length, true, ptr), 0, value);
  else (parent as Record<string, unknown>)[key] = value;
  return doc;
}

function removeAt(doc: unknown, ptr: string): unknown {
  const { parent, key } = parentOf(doc, ptr);
  if (Array.isArray(parent)) {
    const i = arrayIndex(key, parent.length, false, ptr);
    const [old] = parent.splice(i, 1);
    return old;
  }
  const m = parent as Record<string, unknown>;
  if (!Object.hasOwn(m, key)) throw new PatchError(`unable to remove nonexistent key: ${key}: missing value`);
  const old = m[key];
  delete m[key];
  return old;
}

/** Validates a decoded JSON Patch document (400 material when it fails). */
export function checkJsonPatch(ops: unknown): asserts ops is Array<Record<string, unknown>> {
  if (!Array.isArray(ops)) throw new PatchError('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  for (const op of ops) {
    if (!isMap(op)) throw new PatchError('json: cannot unmarshal a non-object operation into jsonpatch.Operation');
    if (typeof op['op'] !== 'string') throw new PatchError('operation missing "op" field');
    if (typeof op['path'] !== 'string') throw new PatchError(`operation ${op['op']} missing "path" field`);
  }
}

/** Applies RFC 6902 operations to a copy of `doc`. */
export function applyJsonPatch(doc: unknown, ops: Array<Record<string, unknown>>): unknown {
  let out = clone(doc);
  for (const op of ops) {
    const path = op['path'] as string;
    switch (op['op']) {
      case 'add':
        if (!('value' in op)) throw new PatchError('add operation does not apply: missing value');
        out = addAt(out, path, clone(op['value']));
        break;
      case 'remove':
        removeAt(out, path);
        break;
      case 'replace': {
        if (!('value' in op)) throw new PatchError('replace operation does not apply: missing value');
        if (path === '') {
          out = clone(op['value']);
          break;
        }
        getAt(out, path);
        const { parent, key } = parentOf(out, path);
        if (Array.isArray(parent)) parent[arrayIndex(key, parent.length, false, path)] = clone(op['value']);
        else (parent as Record<string, unknown>)[key] = clone(op['value']);
        break;
      }
      case 'move': {
        const from = op['from'];
        if (typeof from !== 'string') throw new PatchError('move operation missing "from" field');
        if (path.startsWith(from + '/')) throw new PatchError(`move operation cannot move ${from} into its own child ${path}`);
        const v = removeAt(out, from);
        out = addAt(out, path, v);
        break;
      }
      case 'copy': {
        const from = op['from'];
        if (typeof from !== 'string') throw new PatchError('copy operation missing "from" field');
        out = addAt(out, path, clone(getAt(out, from)));
        break;
      }
      case 'test': {
        const actual = getAt(out, path);
        if (!jsonEqual(actual, op['value'])) throw new PatchError(`testing value ${path} failed: test failed`);
        break;
      }
      default:
        throw new PatchError(`Unexpected kind: ${String(op['op'])}`);
    }
  }
  return out;
}

/** RFC 7386: maps merge recursively, `null` deletes, everything else (lists too) replaces. */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isMap(patch)) return clone(patch);
  const out: Record<string, unknown> = isMap(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}
