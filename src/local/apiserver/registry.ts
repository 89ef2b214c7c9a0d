/**
 * The generic object flow every resource goes through (the real server's generic registry):
 * decode (strict types, unknown fields per fieldValidation, CR pruning and defaults), create,
 * update (optimistic concurrency on resourceVersion, status subresource rules, generation),
 * patch (JSON, merge, strategic, apply), delete (preconditions, graceful deletion, finalizers,
 * propagation policy), get and list (selectors, pages). Kinds add their rules through their
 * strategy; nothing here is written for one kind by name.
 */
import { randomUUID, randomInt } from 'node:crypto';
import { decodeBuiltin } from './builtin-schema.js';
import type { UserInfo } from './authn.js';
import { validateObjectMeta, dns1123Label, dns1123Subdomain, dns1035Label, pathSegmentName, type NameRule } from './kinds/names.js';
import { applyFieldManagement, applyServerSideApply } from './managed-fields.js';
import { PatchError, applyJsonPatch, applyMergePatch, checkJsonPatch } from './patch-json.js';
import { applyStrategicPatch, builtinMergeSchema, type MergeSchema } from './patch-strategic.js';
import type { ResourceDef, ServedVersion } from './resources.js';
import { labelSelectorFromObject, formatLabelSelector, matchFields, matchLabels, parseFieldSelector, parseLabelSelector, type FieldSelector, type LabelSelector } from './selectors.js';
import {
  ApiError,
  CONFLICT_MODIFIED,
  alreadyExists,
  badRequest,
  conflict,
  expired,
  failure,
  fieldError,
  forbidden,
  invalid,
  notFound,
  timeout,
  unsupportedMediaType,
  type FieldError,
  type Status,
} from './status.js';
import { fieldsAt, getPath, type ClusterSettings, type StrategyContext } from './strategy.js';
import { applyDefaults, crdMergeSchema, pruneUnknown, validateValue } from './structural-schema.js';
import type { Store } from './store.js';
import { apiVersionOf, clone, isMap, jsonEqual, rfc3339, type JsonMap, type KubeObject } from './types.js';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

/** Who asks and how: the user, dry run, field validation, the field manager; warnings go back as headers. */
export interface RequestContext {
  user: UserInfo;
  dryRun: boolean;
  fieldValidation: FieldValidation;
  fieldManager?: string;
  /** Server-side apply: take over conflicting fields. */
  force?: boolean;
  /** Set by the registry while it carries out a server-side apply. */
  applyOperation?: boolean;
  warnings: string[];
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
  resourceVersion?: string;
  resourceVersionMatch?: string;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
  continue: string;
  remainingItemCount?: number;
}

export interface DeleteOptions {
  propagationPolicy?: string;
  gracePeriodSeconds?: number;
  orphanDependents?: boolean;
  preconditions?: { uid?: string; resourceVersion?: string };
}

export type DeleteResult = { object: KubeObject } | { status: Status };

export const PATCH_TYPES = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

/** Lists whose remaining pages are kept for `continue` (the real server's etcd keeps 5 min). */
const CONTINUE_TTL_MS = 5 * 60_000;
const CONTINUE_MAX = 64;

const NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/** Name rules by resource id; everything else is a DNS-1123 subdomain. */
const NAME_RULES: Record<string, NameRule> = {
  '/namespaces': dns1123Label,
  '/services': dns1035Label,
  'rbac.authorization.k8s.io/roles': pathSegmentName,
  'rbac.authorization.k8s.io/clusterroles': pathSegmentName,
  'rbac.authorization.k8s.io/rolebindings': pathSegmentName,
  'rbac.authorization.k8s.io/clusterrolebindings': pathSegmentName,
  '/nodes': dns1123Subdomain,
};

interface ContinueState {
  items: KubeObject[];
  rv: number;
  expires: number;
}

export class Registry {
  private readonly pages = new Map<string, ContinueState>();

  constructor(
    readonly store: Store,
    readonly settings: ClusterSettings,
    private readonly now: () => number,
  ) {}

  strategyContext(): StrategyContext {
    return {
      now: this.now(),
      store: this.store,
      settings: this.settings,
      randomSuffix: (n) => Array.from({ length: n }, () => NAME_ALPHABET[randomInt(NAME_ALPHABET.length)]).join(''),
    };
  }

  // ---- conversion between served versions ---------------------------------------------------

  /** The object as served at `version` (versions of one type differ only in apiVersion here). */
  toVersion(def: ResourceDef, obj: KubeObject, version: string): KubeObject {
    const apiVersion = apiVersionOf(def.group, version);
    if (obj.apiVersion === apiVersion && obj.kind === def.kind) return obj;
    return { ...obj, apiVersion, kind: def.kind };
  }

  private served(def: ResourceDef, version: string): ServedVersion {
    return def.versions.find((v) => v.name === version) ?? def.versions[0]!;
  }

  /** How lists of this type merge (SMP metadata for built-ins, list-map-keys for CRs). */
  mergeSchema(def: ResourceDef, version: string): MergeSchema {
    if (def.model !== undefined) return builtinMergeSchema(def.model);
    return crdMergeSchema(this.served(def, version).schema);
  }

  private gr(def: ResourceDef): { group: string; resource: string } {
    return { group: def.group, resource: def.plural };
  }

  // ---- decoding -------------------------------------------------------------------------------

  /**
   * Turns a request body into an object of `def` at `version`: checks apiVersion/kind, decodes
   * with the built-in schema (type errors are 400s) or prunes and defaults with the CRD schema,
   * and applies fieldValidation to the unknown fields found.
   */
  decode(def: ResourceDef, version: string, body: unknown, ctx: RequestContext): KubeObject {
    const expected = apiVersionOf(def.group, version);
    if (!isMap(body)) throw badRequest(`the body of the request must be a JSON object of kind ${def.kind}, got ${Array.isArray(body) ? 'an array' : typeof body}`);
    const obj = body as KubeObject;
    if (obj.apiVersion !== undefined && obj.apiVersion !== expected) {
      throw badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${expected})`);
    }
    if (obj.kind !== undefined && obj.kind !== def.kind) {
      throw badRequest(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${def.kind})`);
    }
    obj.apiVersion = expected;
    obj.kind = def.kind;
    if (obj.metadata === undefined || obj.metadata === null) obj.metadata = {};
    let unknown: string[];
    if (def.model !== undefined) {
      unknown = decodeBuiltin(obj, def.model, def.kind, version).unknownFields;
    } else {
      unknown = decodeBuiltin({ metadata: obj.metadata }, 'V1Pod', def.kind, version).unknownFields;
      const schema = this.served(def, version).schema;
      if (schema !== undefined) {
        unknown.push(...pruneUnknown(obj, schema));
        applyDefaults(obj, schema);
      }
    }
    if (unknown.length > 0) {
      if (ctx.fieldValidation === 'Strict') {
        throw badRequest(`${def.kind} in version "${version}" cannot be handled as a ${def.kind}: strict decoding error: ${unknown.map((u) => `unknown field "${u}"`).join(', ')}`);
      }
      if (ctx.fieldValidation === 'Warn') for (const u of unknown) ctx.warnings.push(`unknown field "${u}"`);
    }
    return obj;
  }

  // ---- reads ----------------------------------------------------------------------------------

  get(def: ResourceDef, version: string, namespace: string, name: string): KubeObject {
    const o = this.store.get(def.id, def.namespaced ? namespace : undefined, name);
    if (o === undefined) throw notFound(this.gr(def), name);
    return this.toVersion(def, o, version);
  }

  /** Field selector fields a type accepts. */
  selectableFields(def: ResourceDef, version: string): Set<string> {
    const s = new Set(['metadata.name', 'metadata.namespace', ...(def.strategy.selectableFields ?? [])]);
    for (const f of this.served(def, version).selectableFields ?? []) s.add(f);
    return s;
  }

  /** The predicate a list or watch filters with. */
  matcher(def: ResourceDef, version: string, labelSelector: string | undefined, fieldSelector: string | undefined): (o: KubeObject) => boolean {
    const ls: LabelSelector | undefined = labelSelector ? parseLabelSelector(labelSelector) : undefined;
    const fs: FieldSelector | undefined = fieldSelector ? parseFieldSelector(fieldSelector, this.selectableFields(def, version)) : undefined;
    const fields = [...this.selectableFields(def, version)];
    return (o) => {
      if (ls && !matchLabels(ls, o.metadata.labels)) return false;
      if (fs) {
        const values = { ...fieldsAt(o, fields), ...(def.strategy.fieldValues?.(o) ?? {}) };
        if (!matchFields(fs, values)) return false;
      }
      return true;
    };
  }

  list(def: ResourceDef, version: string, namespace: string, opts: ListOptions): ListResult {
    this.checkListResourceVersion(opts);
    if (opts.continue) return this.continueList(def, version, opts);
    const match = this.matcher(def, version, opts.labelSelector, opts.fieldSelector);
    const items = this.store.list(def.id, def.namespaced ? namespace : undefined).filter(match);
    const rv = this.store.rv;
    const limit = opts.limit ?? 0;
    if (limit > 0 && items.length > limit) {
      const token = this.savePages(items.slice(limit), rv);
      return { items: items.slice(0, limit).map((o) => this.toVersion(def, o, version)), resourceVersion: String(rv), continue: token, remainingItemCount: items.length - limit };
    }
    return { items: items.map((o) => this.toVersion(def, o, version)), resourceVersion: String(rv), continue: '' };
  }

  private checkListResourceVersion(opts: ListOptions): void {
    const rvText = opts.resourceVersion ?? '';
    const match = opts.resourceVersionMatch ?? '';
    if (match !== '' && !['Exact', 'NotOlderThan'].includes(match)) {
      throw invalid({ group: 'meta.k8s.io', kind: 'ListOptions' }, '', [fieldError('NotSupported', 'resourceVersionMatch', match, 'supported values: "Exact", "NotOlderThan", ""')]);
    }
    if (match !== '' && rvText === '') {
      throw invalid({ group: 'meta.k8s.io', kind: 'ListOptions' }, '', [fieldError('Forbidden', 'resourceVersionMatch', undefined, 'resourceVersionMatch is forbidden unless resourceVersion is provided')]);
    }
    if (rvText === '' || rvText === '0') return;
    if (!/^\d+$/.test(rvText)) throw badRequest(`invalid resource version "${rvText}": strconv.ParseUint: parsing "${rvText}": invalid syntax`);
    const rv = Number(rvText);
    if (rv > this.store.rv) {
      throw timeout(`Too large resource version: ${rv}, current: ${this.store.rv}`, 1);
    }
    if (match === 'Exact' && rv !== this.store.rv) {
      throw expired(`too old resource version: ${rv} (${this.store.rv})`);
    }
  }

  private savePages(rest: KubeObject[], rv: number): string {
    const now = this.now();
    for (const [k, v] of this.pages) if (v.expires < now) this.pages.delete(k);
    while (this.pages.size >= CONTINUE_MAX) this.pages.delete(this.pages.keys().next().value!);
    const id = randomUUID();
    this.pages.set(id, { items: rest, rv, expires: now + CONTINUE_TTL_MS });
    return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv, id })).toString('base64url');
  }

  private continueList(def: ResourceDef, version: string, opts: ListOptions): ListResult {
    let parsed: { rv?: unknown; id?: unknown };
    try {
      parsed = JSON.parse(Buffer.from(opts.continue!, 'base64url').toString('utf8')) as { rv?: unknown; id?: unknown };
    } catch {
      throw badRequest('continue key is not valid: illegal base64 data or JSON');
    }
    const state = typeof parsed.id === 'string' ? this.pages.get(parsed.id) : undefined;
    if (state === undefined || state.expires < this.now()) {
      throw expired(
        'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.',
      );
    }
    this.pages.delete(parsed.id as string);
    const limit = opts.limit ?? 0;
    let items = state.items;
    let token = '';
    let remaining: number | undefined;
    if (limit > 0 && items.length > limit) {
      token = this.savePages(items.slice(limit), state.rv);
      remaining = items.length - limit;
      items = items.slice(0, limit);
    }
    const r: ListResult = { items: items.map((o) => this.toVersion(def, o, version)), resourceVersion: String(state.rv), continue: token };
    if (remaining !== undefined) r.remainingItemCount = remaining;
    return r;
  }

  // ---- writes ---------------------------------------------------------------------------------

  private nameRule(def: ResourceDef): NameRule {
    return NAME_RULES[def.id] ?? dns1123Subdomain;
  }

  private validateAll(def: ResourceDef, version: string, obj: KubeObject, old: KubeObject | undefined, sub: string | undefined): FieldError[] {
    const s = def.strategy;
    const sctx = this.strategyContext();
    const errs = validateObjectMeta(obj, def.namespaced, this.nameRule(def));
    if (sub === 'status') {
      errs.push(...(s.validateStatusUpdate?.(obj, old!) ?? []));
    } else {
      errs.push(...(s.validate?.(obj, sctx) ?? []));
      if (old !== undefined) errs.push(...(s.validateUpdate?.(obj, old, sctx) ?? []));
    }
    const schema = this.served(def, version).schema;
    if (schema !== undefined) errs.push(...validateValue(obj, schema, ''));
    return errs;
  }

  private throwIfInvalid(def: ResourceDef, obj: KubeObject, errs: FieldError[]): void {
    if (errs.length > 0) throw invalid({ group: def.group, kind: def.kind }, obj.metadata.name ?? '', errs);
  }

  private checkNamespace(def: ResourceDef, namespace: string, obj: KubeObject): void {
    if (!def.namespaced) {
      delete obj.metadata.namespace;
      return;
    }
    if (obj.metadata.namespace !== undefined && obj.metadata.namespace !== '' && obj.metadata.namespace !== namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    obj.metadata.namespace = namespace;
  }

  private checkNamespaceActive(def: ResourceDef, namespace: string, name: string): void {
    if (!def.namespaced) return;
    const ns = this.store.get('/namespaces', undefined, namespace);
    if (ns === undefined) throw notFound({ group: '', resource: 'namespaces' }, namespace);
    if (ns.metadata.deletionTimestamp !== undefined) {
      throw forbidden(this.gr(def), name, `unable to create new content in namespace ${namespace} because it is being terminated`);
    }
  }

  /** Stores to the storage version. */
  private toStorage(def: ResourceDef, obj: KubeObject): KubeObject {
    return this.toVersion(def, obj, def.storageVersion);
  }

  create(def: ResourceDef, version: string, namespace: string, body: unknown, ctx: RequestContext): KubeObject {
    const obj = this.decode(def, version, body, ctx);
    return this.createDecoded(def, version, namespace, obj, ctx);
  }

  private createDecoded(def: ResourceDef, version: string, namespace: string, obj: KubeObject, ctx: RequestContext): KubeObject {
    const s = def.strategy;
    if (def.terminating) throw failure(405, 'MethodNotAllowed', `create not allowed while custom resource definition is terminating`);
    this.checkNamespace(def, namespace, obj);
    const m = obj.metadata;
    if ((m.name === undefined || m.name === '') && typeof m.generateName === 'string' && m.generateName !== '') {
      m.name = m.generateName.slice(0, 58) + this.strategyContext().randomSuffix(5);
    }
    this.checkNamespaceActive(def, namespace, m.name ?? '');
    const now = this.now();
    m.uid = randomUUID();
    m.creationTimestamp = rfc3339(now);
    delete m.resourceVersion;
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
    if (s.generation) m.generation = 1;
    else delete m.generation;
    if (this.served(def, version).status && !s.keepStatusOnCreate) delete obj['status'];
    s.defaults?.(obj);
    s.prepareForCreate?.(obj, this.strategyContext());
    this.throwIfInvalid(def, obj, this.validateAll(def, version, obj, undefined, undefined));
    if (this.store.get(def.id, m.namespace, m.name!) !== undefined) throw alreadyExists(this.gr(def), m.name!);
    applyFieldManagement(undefined, obj, ctx, apiVersionOf(def.group, version), now, this.mergeSchema(def, version));
    if (ctx.dryRun) return obj;
    return this.toVersion(def, this.store.put(def.id, this.toStorage(def, obj)), version);
  }

  /** PUT: replaces the object (or its status); `created` when a missing object was created. */
  update(def: ResourceDef, version: string, namespace: string, name: string, body: unknown, ctx: RequestContext, sub?: string): { object: KubeObject; created: boolean } {
    const obj = this.decode(def, version, body, ctx);
    return this.updateDecoded(def, version, namespace, name, obj, ctx, sub);
  }

  private updateDecoded(def: ResourceDef, version: string, namespace: string, name: string, obj: KubeObject, ctx: RequestContext, sub?: string): { object: KubeObject; created: boolean } {
    const s = def.strategy;
    if ((obj.metadata.name ?? '') !== name) {
      throw badRequest(`the name of the object (${obj.metadata.name ?? ''}) does not match the name on the URL (${name})`);
    }
    this.checkNamespace(def, namespace, obj);
    const stored = this.store.get(def.id, def.namespaced ? namespace : undefined, name);
    if (stored === undefined) {
      if (s.allowCreateOnUpdate && sub === undefined) return { object: this.createDecoded(def, version, namespace, obj, ctx), created: true };
      throw notFound(this.gr(def), name);
    }
    const old = this.toVersion(def, stored, version);
    const rv = obj.metadata.resourceVersion;
    if (rv === undefined || rv === '') {
      if (s.requireResourceVersionOnUpdate && sub === undefined) {
        throw invalid({ group: def.group, kind: def.kind }, name, [fieldError('Invalid', 'metadata.resourceVersion', '0x0', 'must be specified for an update')]);
      }
    } else if (rv !== old.metadata.resourceVersion) {
      throw conflict(this.gr(def), name, CONFLICT_MODIFIED);
    }
    if (obj.metadata.uid !== undefined && obj.metadata.uid !== '' && obj.metadata.uid !== old.metadata.uid) {
      throw conflict(this.gr(def), name, `Precondition failed: UID in precondition: ${obj.metadata.uid}, UID in object meta: ${old.metadata.uid ?? ''}`);
    }
    let next: KubeObject;
    if (sub === 'status') {
      next = s.statusUpdate ? s.statusUpdate(obj, old) : ({ ...clone(old), status: clone(obj['status']) } as KubeObject);
    } else {
      next = obj;
      const m = next.metadata;
      const om = old.metadata;
      m.uid = om.uid;
      m.creationTimestamp = om.creationTimestamp;
      if (om.deletionTimestamp !== undefined) m.deletionTimestamp = om.deletionTimestamp;
      else delete m.deletionTimestamp;
      if (om.deletionGracePeriodSeconds !== undefined) m.deletionGracePeriodSeconds = om.deletionGracePeriodSeconds;
      else delete m.deletionGracePeriodSeconds;
      if (om.generation !== undefined) m.generation = om.generation;
      else delete m.generation;
      if (this.served(def, version).status) {
        if (old['status'] !== undefined) next['status'] = clone(old['status']);
        else delete next['status'];
      }
      s.defaults?.(next);
      const schema = this.served(def, version).schema;
      if (schema !== undefined) applyDefaults(next, schema);
      s.prepareForUpdate?.(next, old, this.strategyContext());
    }
    next.metadata.resourceVersion = old.metadata.resourceVersion;
    if (old.metadata.deletionTimestamp !== undefined) {
      const added = (next.metadata.finalizers ?? []).filter((f) => !(old.metadata.finalizers ?? []).includes(f));
      if (added.length > 0) {
        throw invalid({ group: def.group, kind: def.kind }, name, [
          fieldError('Forbidden', 'metadata.finalizers', undefined, `no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`),
        ]);
      }
    }
    this.throwIfInvalid(def, next, this.validateAll(def, version, next, old, sub));
    if (s.generation && sub !== 'status' && specChanged(next, old, this.served(def, version).status)) {
      next.metadata.generation = (old.metadata.generation ?? 0) + 1;
    }
    applyFieldManagement(old, next, ctx, apiVersionOf(def.group, version), this.now(), this.mergeSchema(def, version));
    if (sameObject(next, old)) return { object: old, created: false };
    if (ctx.dryRun) return { object: next, created: false };
    if (next.metadata.deletionTimestamp !== undefined && (next.metadata.finalizers ?? []).length === 0 && !s.blocksDeletion?.(next)) {
      const last = this.store.remove(def.id, next.metadata.namespace, name);
      return { object: this.toVersion(def, last ?? next, version), created: false };
    }
    return { object: this.toVersion(def, this.store.put(def.id, this.toStorage(def, next)), version), created: false };
  }

  /** The patch types a type accepts (CRs take no strategic merge patch). */
  patchTypes(def: ResourceDef): string[] {
    const all = [PATCH_TYPES.json, PATCH_TYPES.merge, PATCH_TYPES.apply];
    return def.model !== undefined ? [PATCH_TYPES.json, PATCH_TYPES.merge, PATCH_TYPES.strategic, PATCH_TYPES.apply] : all;
  }

  /** PATCH of the object (or its status) with a patch of `patchType`. */
  patch(def: ResourceDef, version: string, namespace: string, name: string, patchType: string, patchBody: unknown, ctx: RequestContext, sub?: string): { object: KubeObject; created: boolean } {
    if (!this.patchTypes(def).includes(patchType)) throw unsupportedMediaType(this.patchTypes(def));
    const stored = this.store.get(def.id, def.namespaced ? namespace : undefined, name);
    if (patchType === PATCH_TYPES.apply) {
      if (!ctx.fieldManager) {
        throw invalid({ group: 'meta.k8s.io', kind: 'PatchOptions' }, '', [fieldError('Required', 'fieldManager', undefined, 'is required for apply patch')]);
      }
      const applied = this.decode(def, version, clone(patchBody), { ...ctx, warnings: ctx.warnings });
      if (stored === undefined) {
        if (sub !== undefined) throw notFound(this.gr(def), name);
        if ((applied.metadata.name ?? '') !== name) {
          throw badRequest(`the name of the object (${applied.metadata.name ?? ''}) does not match the name on the URL (${name})`);
        }
        return { object: this.createDecoded(def, version, namespace, applied, { ...ctx, applyOperation: true }), created: true };
      }
      const current = this.toVersion(def, stored, version);
      const merged = applyServerSideApply(current, applied, ctx, this.mergeSchema(def, version), apiVersionOf(def.group, version), this.now());
      return this.updateDecoded(def, version, namespace, name, this.decode(def, version, merged, { ...ctx, fieldValidation: 'Ignore' }), { ...ctx, applyOperation: true }, sub);
    }
    if (stored === undefined) throw notFound(this.gr(def), name);
    const current = this.toVersion(def, stored, version);
    let patched: unknown;
    try {
      if (patchType === PATCH_TYPES.json) {
        checkJsonPatch(patchBody);
        patched = applyJsonPatch(current, patchBody);
      } else if (patchType === PATCH_TYPES.merge) {
        if (!isMap(patchBody)) throw new PatchError('merge patch must be a JSON object');
        patched = applyMergePatch(current, patchBody);
      } else {
        patched = applyStrategicPatch(current, patchBody, builtinMergeSchema(def.model!));
      }
    } catch (e) {
      if (e instanceof PatchError) {
        if (patchType === PATCH_TYPES.json && !/missing|test|out of bounds|nonexistent|does not apply/.test(e.message)) throw badRequest(e.message);
        if (patchType === PATCH_TYPES.json) {
          throw failure(422, 'Invalid', 'the server rejected our request due to an error in our request', { causes: [{ reason: 'UnexpectedServerResponse', message: e.message }] });
        }
        throw badRequest(e.message);
      }
      throw e;
    }
    return this.updateDecoded(def, version, namespace, name, this.decode(def, version, patched, ctx), ctx, sub);
  }

  delete(def: ResourceDef, version: string, namespace: string, name: string, opts: DeleteOptions, ctx: RequestContext): DeleteResult {
    const s = def.strategy;
    const stored = this.store.get(def.id, def.namespaced ? namespace : undefined, name);
    if (stored === undefined) throw notFound(this.gr(def), name);
    const old = this.toVersion(def, stored, version);
    const pre = opts.preconditions ?? {};
    if (pre.uid && pre.uid !== old.metadata.uid) {
      throw conflict(this.gr(def), name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid ?? ''}`);
    }
    if (pre.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(this.gr(def), name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion ?? ''}`);
    }
    let policy = opts.propagationPolicy;
    if (policy !== undefined && !['Foreground', 'Background', 'Orphan'].includes(policy)) {
      throw invalid({ group: 'meta.k8s.io', kind: 'DeleteOptions' }, '', [
        fieldError('NotSupported', 'propagationPolicy', policy, 'supported values: "Foreground", "Background", "Orphan", "nil"'),
      ]);
    }
    if (policy === undefined && opts.orphanDependents !== undefined) policy = opts.orphanDependents ? 'Orphan' : 'Background';
    if (opts.gracePeriodSeconds !== undefined && opts.gracePeriodSeconds < 0) opts.gracePeriodSeconds = 1;
    const next = clone(old);
    const m = next.metadata;
    const finalizers = [...(m.finalizers ?? [])].filter((f) => (policy === 'Orphan' ? f !== 'foregroundDeletion' : policy === 'Foreground' ? f !== 'orphan' : true));
    if (policy === 'Orphan' && !finalizers.includes('orphan')) finalizers.push('orphan');
    if (policy === 'Foreground' && !finalizers.includes('foregroundDeletion')) finalizers.push('foregroundDeletion');
    const grace = s.gracePeriodSeconds?.(old, opts.gracePeriodSeconds) ?? 0;
    const now = this.now();
    const respond = (o: KubeObject): DeleteResult => ({ object: this.toVersion(def, o, version) });
    if (m.deletionTimestamp !== undefined) {
      // Deletion already started: a shorter grace period moves it closer, a zero one ends it.
      if (grace === 0 && finalizers.length === 0 && !s.blocksDeletion?.(old)) return this.removeNow(def, version, old, ctx);
      const pending = Date.parse(m.deletionTimestamp);
      const wanted = now + grace * 1000;
      if (grace > 0 && wanted < pending) {
        m.deletionTimestamp = rfc3339(wanted);
        m.deletionGracePeriodSeconds = grace;
      } else if (grace === 0) {
        m.deletionGracePeriodSeconds = 0;
      }
      m.finalizers = finalizers.length > 0 ? finalizers : undefined;
      if (m.finalizers === undefined) delete m.finalizers;
      if (sameObject(next, old) || ctx.dryRun) return respond(next);
      return respond(this.store.put(def.id, this.toStorage(def, next)));
    }
    if (grace > 0 || finalizers.length > 0 || s.blocksDeletion?.(old)) {
      m.deletionTimestamp = rfc3339(now + grace * 1000);
      m.deletionGracePeriodSeconds = grace;
      if (finalizers.length > 0) m.finalizers = finalizers;
      if (m.generation !== undefined && grace > 0) m.generation += 1;
      s.onDeletionStarted?.(next);
      if (ctx.dryRun) return respond(next);
      return respond(this.store.put(def.id, this.toStorage(def, next)));
    }
    return this.removeNow(def, version, old, ctx);
  }

  private removeNow(def: ResourceDef, version: string, old: KubeObject, ctx: RequestContext): DeleteResult {
    const last = ctx.dryRun ? old : (this.store.remove(def.id, old.metadata.namespace, old.metadata.name!) ?? old);
    if (def.strategy.returnDeletedObject) return { object: this.toVersion(def, last, version) };
    const details: NonNullable<Status['details']> = { name: old.metadata.name! };
    if (def.group !== '') details.group = def.group;
    details.kind = def.plural;
    if (old.metadata.uid) details.uid = old.metadata.uid;
    return { status: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details, code: 200 } };
  }

  /** DELETE of a collection: every matching object is deleted as one DELETE would. */
  deleteCollection(def: ResourceDef, version: string, namespace: string, listOpts: ListOptions, opts: DeleteOptions, ctx: RequestContext): ListResult {
    const list = this.list(def, version, namespace, { ...listOpts, limit: 0 });
    const out: KubeObject[] = [];
    for (const o of list.items) {
      try {
        const r = this.delete(def, version, o.metadata.namespace ?? '', o.metadata.name!, { ...opts, preconditions: {} }, ctx);
        out.push('object' in r ? r.object : o);
      } catch (e) {
        if (!(e instanceof ApiError && e.code === 404)) throw e;
      }
    }
    return { items: out, resourceVersion: String(this.store.rv), continue: '' };
  }

  /**
   * The finalize subresource (namespaces): replaces spec.finalizers only; an object being deleted
   * whose finalizers are all gone is removed.
   */
  finalize(def: ResourceDef, name: string, finalizers: string[], ctx: RequestContext): KubeObject {
    const stored = this.store.get(def.id, undefined, name);
    if (stored === undefined) throw notFound(this.gr(def), name);
    const next = clone(stored);
    next['spec'] = { ...(isMap(next['spec']) ? next['spec'] : {}), finalizers };
    if (sameObject(next, stored) || ctx.dryRun) return next;
    if (next.metadata.deletionTimestamp !== undefined && finalizers.length === 0 && (next.metadata.finalizers ?? []).length === 0) {
      return this.store.remove(def.id, undefined, name) ?? next;
    }
    return this.store.put(def.id, next);
  }

  /**
   * pods/binding (a Binding `{metadata: {name}, target: {kind: Node, name}}`): sets spec.nodeName
   * of an unbound pod, the one spec change a pod allows, as the scheduler does it. A bound pod
   * or one being deleted is a 409, as upstream's BindingREST answers.
   */
  bind(def: ResourceDef, namespace: string, name: string, body: unknown, ctx: RequestContext): void {
    const binding = isMap(body) ? body : {};
    const meta = isMap(binding['metadata']) ? binding['metadata'] : {};
    const target = isMap(binding['target']) ? binding['target'] : {};
    if (meta['name'] !== undefined && meta['name'] !== name) {
      throw badRequest(`the name of the object (${String(meta['name'])}) does not match the name on the URL (${name})`);
    }
    const node = target['name'];
    if (typeof node !== 'string' || node === '') throw invalid({ group: '', kind: 'Binding' }, name, [fieldError('Required', 'target.name', undefined)]);
    if (target['kind'] !== undefined && target['kind'] !== 'Node' && target['kind'] !== '') {
      throw invalid({ group: '', kind: 'Binding' }, name, [fieldError('NotSupported', 'target.kind', target['kind'], 'supported values: "Node"')]);
    }
    const stored = this.store.get(def.id, namespace, name);
    if (stored === undefined) throw notFound(this.gr(def), name);
    if (typeof meta['uid'] === 'string' && meta['uid'] !== '' && meta['uid'] !== stored.metadata.uid) {
      throw conflict(this.gr(def), name, `Precondition failed: UID in precondition: ${meta['uid']}, UID in object meta: ${stored.metadata.uid ?? ''}`);
    }
    if (stored.metadata.deletionTimestamp !== undefined) throw conflict(this.gr(def), name, `pod ${name} is being deleted, cannot be assigned to a host`);
    const spec = isMap(stored['spec']) ? stored['spec'] : {};
    if (typeof spec['nodeName'] === 'string' && spec['nodeName'] !== '') {
      throw conflict(this.gr(def), name, `pod ${name} is already assigned to node "${spec['nodeName']}"`);
    }
    if (ctx.dryRun) return;
    const next = clone(stored);
    (next['spec'] as JsonMap)['nodeName'] = node;
    const status = isMap(next['status']) ? next['status'] : (next['status'] = {});
    const conds = Array.isArray(status['conditions']) ? (status['conditions'] as JsonMap[]).filter((c) => c['type'] !== 'PodScheduled') : [];
    status['conditions'] = [...conds, { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: rfc3339(this.now()) }];
    this.store.put(def.id, next);
  }

  // ---- scale subresource ----------------------------------------------------------------------

  /** The autoscaling/v1 Scale of an object. */
  scaleOf(def: ResourceDef, version: string, obj: KubeObject): KubeObject {
    const scale = this.served(def, version).scale!;
    const replicas = getPath(obj, scale.specReplicasPath);
    const statusReplicas = getPath(obj, scale.statusReplicasPath);
    let selector = '';
    if (scale.labelSelectorPath !== undefined) {
      const sv = getPath(obj, scale.labelSelectorPath);
      selector = typeof sv === 'string' ? sv : '';
    } else {
      try {
        selector = formatLabelSelector(labelSelectorFromObject(getPath(obj, 'spec.selector')));
      } catch {
        selector = '';
      }
    }
    const m = obj.metadata;
    const meta: JsonMap = { name: m.name, uid: m.uid, resourceVersion: m.resourceVersion, creationTimestamp: m.creationTimestamp };
    if (m.namespace) meta['namespace'] = m.namespace;
    const status: JsonMap = { replicas: typeof statusReplicas === 'number' ? statusReplicas : 0 };
    if (selector !== '') status['selector'] = selector;
    return { kind: 'Scale', apiVersion: 'autoscaling/v1', metadata: meta, spec: { replicas: typeof replicas === 'number' ? replicas : 0 }, status };
  }

  getScale(def: ResourceDef, version: string, namespace: string, name: string): KubeObject {
    return this.scaleOf(def, version, this.get(def, version, namespace, name));
  }

  /** Writes a Scale (PUT body or patched Scale) back into the object's replicas. */
  updateScale(def: ResourceDef, version: string, namespace: string, name: string, scaleBody: unknown, ctx: RequestContext): KubeObject {
    if (!isMap(scaleBody)) throw badRequest('the body of the request must be a Scale object');
    const decoded = clone(scaleBody) as KubeObject;
    decodeBuiltin(decoded, 'V1Scale', 'Scale', 'v1');
    const obj = clone(this.get(def, version, namespace, name));
    const sm = isMap(decoded['metadata']) ? decoded['metadata'] : {};
    if (sm['name'] !== undefined && sm['name'] !== name) {
      throw badRequest(`the name of the object (${String(sm['name'])}) does not match the name on the URL (${name})`);
    }
    const rv = sm['resourceVersion'];
    if (typeof rv === 'string' && rv !== '' && rv !== obj.metadata.resourceVersion) throw conflict(this.gr(def), name, CONFLICT_MODIFIED);
    const replicas = isMap(decoded['spec']) ? decoded['spec']['replicas'] : undefined;
    if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
      throw invalid({ group: 'autoscaling', kind: 'Scale' }, name, [fieldError('Invalid', 'spec.replicas', replicas ?? null, 'must be greater than or equal to 0')]);
    }
    setPath(obj, this.served(def, version).scale!.specReplicasPath, replicas);
    const r = this.updateDecoded(def, version, namespace, name, obj, ctx);
    return this.scaleOf(def, version, r.object);
  }

  patchScale(def: ResourceDef, version: string, namespace: string, name: string, patchType: string, patchBody: unknown, ctx: RequestContext): KubeObject {
    const current = this.getScale(def, version, namespace, name);
    let patched: unknown;
    try {
      if (patchType === PATCH_TYPES.json) {
        checkJsonPatch(patchBody);
        patched = applyJsonPatch(current, patchBody);
      } else if (patchType === PATCH_TYPES.merge || patchType === PATCH_TYPES.strategic) {
        patched = patchType === PATCH_TYPES.merge ? applyMergePatch(current, patchBody) : applyStrategicPatch(current, patchBody, builtinMergeSchema('V1Scale'));
      } else throw unsupportedMediaType([PATCH_TYPES.json, PATCH_TYPES.merge, PATCH_TYPES.strategic]);
    } catch (e) {
      if (e instanceof PatchError) throw badRequest(e.message);
      throw e;
    }
    return this.updateScale(def, version, namespace, name, patched, ctx);
  }
}

/** Whether anything but metadata (and status, when it is a subresource) differs. */
function specChanged(a: KubeObject, b: KubeObject, statusIsSubresource: boolean): boolean {
  const strip = (o: KubeObject): JsonMap => {
    const c: JsonMap = { ...o };
    delete c['metadata'];
    delete c['apiVersion'];
    delete c['kind'];
    if (statusIsSubresource) delete c['status'];
    return c;
  };
  return !jsonEqual(strip(a), strip(b));
}

/** Equal but for resourceVersion (a write that changes nothing is not stored, as upstream). */
function sameObject(a: KubeObject, b: KubeObject): boolean {
  const norm = (o: KubeObject): JsonMap => ({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });
  return jsonEqual(norm(a), norm(b));
}

function setPath(obj: JsonMap, path: string, value: unknown): void {
  const segs = path.split('.').filter((s) => s !== '');
  let cur: JsonMap = obj;
  for (const seg of segs.slice(0, -1)) {
    if (!isMap(cur[seg])) cur[seg] = {};
    cur = cur[seg] as JsonMap;
  }
  cur[segs[segs.length - 1]!] = value;
}

