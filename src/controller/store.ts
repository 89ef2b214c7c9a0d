/**
 * In-memory, Kubernetes-shaped object store: the controller's single view of the cluster (fed by
 * manifests in local mode or by informers on a cluster).
 *
 * Invariants:
 * - `apply` and `delete` are atomic batches: every object is validated first and either the whole
 *   batch lands or nothing changes; a batch that changes something emits exactly one 'change' event.
 * - Stored objects are deep-frozen; readers never get a mutable reference.
 * - `uid` and `creationTimestamp` come from the applied object when it has them (an API server's
 *   are authoritative: a recreated object has a new uid), else are set on create and kept on
 *   update; `resourceVersion` is a store-wide counter bumped for every stored change.
 * - `setStatus` emits 'status'; it emits 'change' too only for kinds whose status translation reads
 *   (Pods: IPs, phase, readiness), so writing conditions on policies cannot trigger a re-translate loop.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { Issues, deepFreeze } from '../shared/validate.js';
import { isNamespaced, kindsForQuery, kindRef, lookupKind, objectKey, type KubeObject } from './objects.js';
import { validateObject, type ValidateOptions } from './source/validate-objects.js';

/** What one batch changed. */
export interface StoreChange {
  /** Objects created or updated (as now stored). */
  applied: readonly KubeObject[];
  /** Objects removed (as they were last stored). */
  deleted: readonly KubeObject[];
  resourceVersion: string;
}

export interface StatusChange {
  object: KubeObject;
  resourceVersion: string;
}

export interface StoreSnapshot {
  resourceVersion: string;
  /** Every object, sorted by objectKey. */
  objects: readonly KubeObject[];
  /**
   * The same objects by kind (kindRef), each group sorted (by namespace/name) and the groups in
   * the order of `objects`. A group unchanged since an earlier snapshot is the very same array.
   */
  byKind: ReadonlyMap<string, readonly KubeObject[]>;
}

/** Identifies an object to delete. */
export type ObjectRef = Pick<KubeObject, 'apiVersion' | 'kind'> & { metadata: { name: string; namespace?: string } };

export interface ApplyOptions {
  /** Keep the stored status when an applied object carries none (default true, like a spec update). */
  preserveStatus?: boolean;
}

/** Kinds whose `status` is an input to translation; status writes on them are changes. */
export const STATUS_IS_INPUT: ReadonlySet<string> = new Set(['Pod']);

export interface ObjectStoreOptions {
  /** Validation of applied objects; default validateObject without requiring container commands. */
  validate?: (obj: unknown, where: string) => ReturnType<typeof validateObject>;
  /** Namespace for namespaced objects that name none. Default "default". */
  defaultNamespace?: string;
  now?: () => Date;
  newUid?: () => string;
}

interface StoreEvents {
  change: [StoreChange];
  status: [StatusChange];
}

export class ObjectStore extends EventEmitter<StoreEvents> {
  readonly #objects = new Map<string, KubeObject>();
  readonly #validate: (obj: unknown, where: string) => ReturnType<typeof validateObject>;
  readonly #defaultNamespace: string;
  readonly #now: () => Date;
  readonly #newUid: () => string;
  #version = 0;
  /** The keys in objectKey order; kept while the set of keys is the same (updates do not change it). */
  #sortedKeys: string[] | undefined;
  /** Per kind, its [start, end) in #sortedKeys (objectKeys of one kind are contiguous: `ref/...`). */
  #ranges = new Map<string, readonly [number, number]>();
  /** Per kind, its objects as last handed out; kinds changed since are in #dirty. */
  #groups = new Map<string, readonly KubeObject[]>();
  #dirty = new Set<string>();
  #lastSnapshot: StoreSnapshot | undefined;

  constructor(opts: ObjectStoreOptions = {}) {
    super();
    const validateOpts: ValidateOptions = { requireContainerCommand: false };
    this.#validate = opts.validate ?? ((obj, where) => validateObject(obj, where, validateOpts));
    this.#defaultNamespace = opts.defaultNamespace ?? 'default';
    this.#now = opts.now ?? (() => new Date());
    this.#newUid = opts.newUid ?? randomUUID;
  }

  get resourceVersion(): string {
    return String(this.#version);
  }

  /** Calls `fn` after every batch that changed something; returns the unsubscribe function. */
  subscribe(fn: (change: StoreChange) => void): () => void {
    this.on('change', fn);
    return () => this.off('change', fn);
  }

  /**
   * Creates or updates every object, or none: throws AMBIT_ERR_MANIFEST_INVALID listing every
   * problem. An object without `status` keeps its stored status. Unchanged objects are skipped.
   */
  apply(objects: readonly KubeObject[], opts: ApplyOptions = {}): StoreChange {
    const preserveStatus = opts.preserveStatus ?? true;
    const issues = new Issues();
    objects.forEach((o, i) => issues.merge(this.#validate(o, `apply[${i}]`)));
    const keys = new Map<string, number>();
    if (issues.ok) {
      objects.forEach((o, i) => {
        const key = objectKey(this.#withNamespace(o));
        const prev = keys.get(key);
        if (prev !== undefined) issues.add(`apply[${i}]: ${key}`, `appears twice in one batch (also apply[${prev}])`);
        keys.set(key, i);
      });
    }
    issues.throwIfAny('AMBIT_ERR_MANIFEST_INVALID', `rejected batch of ${objects.length} object(s)`);

    const staged: Array<[string, KubeObject]> = [];
    for (const o of objects) {
      const input = this.#withNamespace(o);
      const key = objectKey(input);
      const old = this.#objects.get(key);
      if (old && sameContent(old, input, preserveStatus)) continue;
      staged.push([key, input]);
    }
    if (staged.length === 0) return { applied: [], deleted: [], resourceVersion: this.resourceVersion };
    this.#version += 1;
    const rv = this.resourceVersion;
    const applied: KubeObject[] = [];
    for (const [key, input] of staged) {
      const old = this.#objects.get(key);
      if (!old) this.#sortedKeys = undefined;
      const stored = this.#stamp(input, preserveStatus ? old : undefined, rv, old);
      this.#objects.set(key, stored);
      this.#touched(key);
      applied.push(stored);
    }
    const change: StoreChange = { applied, deleted: [], resourceVersion: rv };
    this.emit('change', change);
    return change;
  }

  /**
   * Deletes every named object that exists (missing ones are skipped, as `kubectl delete
   * --ignore-not-found`). Deleting a Namespace deletes everything in it in the same batch.
   * Throws AMBIT_ERR_MANIFEST_INVALID, deleting nothing, when a reference is malformed.
   */
  delete(refs: readonly ObjectRef[]): StoreChange {
    const issues = new Issues();
    refs.forEach((r, i) => {
      if (!lookupKind(r?.apiVersion, r?.kind)) issues.add(`delete[${i}]: kind`, 'unknown apiVersion/kind', `${r?.apiVersion} ${r?.kind}`);
      if (typeof r?.metadata?.name !== 'string' || r.metadata.name === '') issues.add(`delete[${i}]: metadata.name`, 'must be a non-empty string', r?.metadata?.name);
    });
    issues.throwIfAny('AMBIT_ERR_MANIFEST_INVALID', `rejected delete of ${refs.length} object(s)`);
    const doomed = new Map<string, KubeObject>();
    for (const r of refs) {
      const key = objectKey(this.#withNamespace(r as KubeObject));
      const old = this.#objects.get(key);
      if (!old) continue;
      doomed.set(key, old);
      if (old.kind === 'Namespace' && old.apiVersion === 'v1') {
        for (const [k, o] of this.#objects) if (isNamespaced(o) && o.metadata.namespace === old.metadata.name) doomed.set(k, o);
      }
    }
    if (doomed.size === 0) return { applied: [], deleted: [], resourceVersion: this.resourceVersion };
    this.#version += 1;
    for (const k of doomed.keys()) {
      this.#objects.delete(k);
      this.#touched(k);
    }
    this.#sortedKeys = undefined;
    const change: StoreChange = { applied: [], deleted: [...doomed.values()], resourceVersion: this.resourceVersion };
    this.emit('change', change);
    return change;
  }

  /**
   * Replaces an object's status (e.g. conditions written after translation). Emits 'status', not
   * 'change'. Returns false when the object does not exist or the status is unchanged.
   */
  setStatus(kind: string, namespace: string | undefined, name: string, status: Record<string, unknown>): boolean {
    const obj = this.get(kind, namespace, name);
    if (!obj || isDeepStrictEqual(obj.status ?? {}, status)) return false;
    this.#version += 1;
    const stored = deepFreeze({
      ...obj,
      metadata: { ...obj.metadata, resourceVersion: this.resourceVersion },
      status: structuredClone(status),
    }) as KubeObject;
    this.#objects.set(objectKey(stored), stored);
    this.#touched(objectKey(stored));
    this.emit('status', { object: stored, resourceVersion: this.resourceVersion });
    if (STATUS_IS_INPUT.has(kindRef(stored))) this.emit('change', { applied: [stored], deleted: [], resourceVersion: this.resourceVersion });
    return true;
  }

  /** `delete` returning the objectKeys of what was removed. */
  remove(refs: readonly ObjectRef[]): string[] {
    return this.delete(refs).deleted.map((o) => objectKey(o));
  }

  /** Objects of a kind (a ref such as `Pod` or `Gateway.networking.istio.io`, or a bare kind), sorted. */
  list(kind: string, namespace?: string): KubeObject[] {
    const refs = new Set(kindsForQuery(kind).map((k) => k.ref));
    const out: KubeObject[] = [];
    for (const o of this.#objects.values()) {
      if (!refs.has(kindRef(o))) continue;
      if (namespace !== undefined && o.metadata.namespace !== namespace) continue;
      out.push(o);
    }
    return out.sort(byKey);
  }

  get(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    for (const info of kindsForQuery(kind)) {
      const key = `${info.ref}/${info.namespaced ? (namespace ?? this.#defaultNamespace) : ''}/${name}`;
      const o = this.#objects.get(key);
      if (o) return o;
    }
    return undefined;
  }

  snapshot(): StoreSnapshot {
    if (this.#lastSnapshot && this.#dirty.size === 0 && this.#lastSnapshot.resourceVersion === this.resourceVersion) return this.#lastSnapshot;
    // Sorted by the map's keys, which are the objectKeys (no key computed per comparison), and
    // sorted again only when an object was created or deleted.
    if (!this.#sortedKeys) {
      const keys = [...this.#objects.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      this.#sortedKeys = keys;
      this.#ranges = new Map();
      let start = 0;
      for (let i = 1; i <= keys.length; i++) {
        const ref = keys[start]!.slice(0, keys[start]!.indexOf('/'));
        if (i < keys.length && keys[i]!.startsWith(ref) && keys[i]![ref.length] === '/') continue;
        this.#ranges.set(ref, [start, i]);
        start = i;
      }
    }
    const keys = this.#sortedKeys;
    // Only the kinds that changed are gathered again; the others keep their arrays.
    for (const ref of this.#dirty) {
      const range = this.#ranges.get(ref);
      if (range) this.#groups.set(ref, keys.slice(range[0], range[1]).map((k) => this.#objects.get(k)!));
      else this.#groups.delete(ref);
    }
    this.#dirty.clear();
    const byKind = new Map<string, readonly KubeObject[]>();
    const objects: KubeObject[] = [];
    for (const ref of this.#ranges.keys()) {
      const group = this.#groups.get(ref)!;
      byKind.set(ref, group);
      for (const o of group) objects.push(o);
    }
    this.#lastSnapshot = { resourceVersion: this.resourceVersion, objects, byKind };
    return this.#lastSnapshot;
  }

  /** The kind of objectKey `key` changed: its group is gathered again at the next snapshot. */
  #touched(key: string): void {
    this.#dirty.add(key.slice(0, key.indexOf('/')));
  }

  #withNamespace<T extends Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>>(o: T): T {
    if (!isNamespaced(o) || o.metadata.namespace) return o;
    return { ...o, metadata: { ...o.metadata, namespace: this.#defaultNamespace } };
  }

  #stamp(input: KubeObject, statusFrom: KubeObject | undefined, rv: string, old: KubeObject | undefined): KubeObject {
    const copy = structuredClone(input);
    copy.metadata.uid = input.metadata.uid ?? old?.metadata.uid ?? this.#newUid();
    copy.metadata.creationTimestamp = input.metadata.creationTimestamp ?? old?.metadata.creationTimestamp ?? this.#now().toISOString();
    copy.metadata.resourceVersion = rv;
    if (copy.status === undefined && statusFrom?.status !== undefined) copy.status = structuredClone(statusFrom.status);
    return deepFreeze(copy) as KubeObject;
  }
}

const SERVER_FIELDS = ['uid', 'resourceVersion', 'creationTimestamp'];

/** True when applying `input` over `old` would change nothing (server fields count only when `input` carries them). */
function sameContent(old: KubeObject, input: KubeObject, preserveStatus: boolean): boolean {
  const given = SERVER_FIELDS.filter((f) => f !== 'resourceVersion' && input.metadata[f] !== undefined);
  const strip = (o: KubeObject, keepStatus: boolean): unknown => {
    const md: Record<string, unknown> = { ...o.metadata };
    for (const f of SERVER_FIELDS) if (!given.includes(f)) delete md[f];
    const out: Record<string, unknown> = { ...o, metadata: md };
    if (!keepStatus) delete out['status'];
    return out;
  };
  const statusGiven = input.status !== undefined || !preserveStatus;
  return isDeepStrictEqual(strip(old, statusGiven), strip(input, statusGiven));
}

function byKey(a: KubeObject, b: KubeObject): number {
  const ka = objectKey(a);
  const kb = objectKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
