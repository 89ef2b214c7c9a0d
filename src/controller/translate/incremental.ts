/**
 * Incremental translation: the same output as translateAll, re-deriving per store change only
 * what the changed objects feed.
 *
 * - The mesh model is built per namespace. Pods, Services and EndpointSlices of a namespace, and
 *   its AuthorizationPolicies and PeerAuthentications (outside the root namespace), are that
 *   namespace's "local" objects; everything else is "global" (Namespaces, Nodes, root-namespace
 *   policies, every other kind). A namespace's part is buildModel over the global objects plus its
 *   own local ones, and holds its pods' Workloads, its Services, its Authorizations and the
 *   conditions of its local objects; the global part (buildModel over the global objects alone)
 *   holds the root-namespace Authorizations and the conditions of global objects. A part is rebuilt
 *   when its objects are not the very objects (the store's frozen ones) it was built from; all of
 *   them when a global object or an option changes.
 *   This is exact while no translation step reads one namespace's local objects for another
 *   namespace's output. Today's model steps hold to that, except ServiceEntries (hostnames against
 *   every Service, workloads of selected pods) and waypoints (Gateways whose pods live elsewhere):
 *   while any ServiceEntry or Gateway API Gateway exists, the model is built whole, as before.
 * - Route configs and gateway listeners are each rebuilt when a kind they read changed: the kinds
 *   they read are recorded on each build (so a translator that starts reading a kind is tracked
 *   without a list kept here); a Pod change, which route translation does not read, reuses them.
 * test/unit/translate/incremental.test.ts checks the output equals translateAll's over sequences
 * of adds, updates and deletes of each kind.
 */
import { meshProxyDefaults } from './mesh-config.js';
import { authorizationResourceName, routeConfigResourceName, serviceResourceName, workloadResourceName } from '../../shared/resources.js';
import { kindRef, objectKey, REF_GATEWAY_API_GATEWAY, type KubeObject } from '../objects.js';
import { STATUS_IS_INPUT } from '../store.js';
import { gatewayListeners, type GatewayListenersResult } from './gateway-listeners.js';
import { buildIndex, type ObjectIndex, type TranslateOptions } from './object-index.js';
import { finishRoutes, routeBase, type TranslateRoutesResult } from './routes.js';
import type { RouteContext } from './route-context.js';
import { jsonEqual, keepItems } from './stable.js';
import { buildModel, withFieldWarnings, type MeshTranslation, type TranslateResult } from './translate.js';
import type { TranslateCondition } from './object-index.js';
import type { Authorization, Service, Workload } from '../../shared/model.js';
import { compareStrings, nsOf } from './util.js';

/** Kinds whose objects belong to their namespace's part (policy kinds only outside the root namespace). */
const LOCAL_KINDS = new Set(['Pod', 'Service', 'EndpointSlice']);
const LOCAL_POLICY_KINDS = new Set(['AuthorizationPolicy', 'PeerAuthentication']);
/** Kinds that make the model read across namespaces: while one exists the model is built whole. */
const WHOLE_MODEL_KINDS = new Set(['ServiceEntry', REF_GATEWAY_API_GATEWAY]);

interface Part {
  objects: readonly KubeObject[];
  result: TranslateResult;
}

/** A derived result with the object lists of each kind it read. */
interface Tracked<T> {
  reads: Map<string, readonly KubeObject[]>;
  value: T;
}

function sameObjects(a: readonly KubeObject[] | undefined, b: readonly KubeObject[]): boolean {
  if (a === undefined || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !sameButStatus(a[i]!, b[i]!)) return false;
  return true;
}

/**
 * The store replaced `a` by `b` writing only its status (setStatus keeps every other part, the
 * same objects, and bumps resourceVersion), on a kind whose status translation does not read
 * (store.ts STATUS_IS_INPUT). Conditions written after a translation thus rebuild nothing.
 */
function sameButStatus(a: KubeObject, b: KubeObject): boolean {
  if (STATUS_IS_INPUT.has(kindRef(a))) return false;
  const ka = Object.keys(a).filter((k) => k !== 'status');
  if (ka.length !== Object.keys(b).filter((k) => k !== 'status').length) return false;
  for (const k of ka) if (k !== 'metadata' && (a as Record<string, unknown>)[k] !== (b as Record<string, unknown>)[k]) return false;
  const ma = a.metadata as Record<string, unknown>;
  const mb = b.metadata as Record<string, unknown>;
  const km = Object.keys(ma);
  if (km.length !== Object.keys(mb).length) return false;
  for (const k of km) if (k !== 'resourceVersion' && ma[k] !== mb[k]) return false;
  return true;
}

/** The kind each typed group of an ObjectIndex is made of. */
const GROUP_KINDS: ReadonlyMap<PropertyKey, string> = new Map<keyof ObjectIndex, string>([
  ['namespaces', 'Namespace'],
  ['nodes', 'Node'],
  ['gatewayClasses', 'GatewayClass'],
  ['pods', 'Pod'],
  ['services', 'Service'],
  ['gateways', REF_GATEWAY_API_GATEWAY],
  ['peerAuthentications', 'PeerAuthentication'],
  ['authorizationPolicies', 'AuthorizationPolicy'],
]);

/** Recorded when a build read an index field this file does not know: such a result is never reused. */
const UNTRACKED = '#untracked';

/** `idx` recording the kinds read through it (by `of` and by the typed groups). */
function recording(idx: ObjectIndex, reads: Map<string, readonly KubeObject[]>): ObjectIndex {
  const of = (ref: string): readonly KubeObject[] => {
    const list = idx.of(ref);
    reads.set(ref, list);
    return list;
  };
  return new Proxy(idx, {
    get(target, prop, receiver): unknown {
      if (prop === 'of') return of;
      if (prop === 'opts') return target.opts;
      const kind = GROUP_KINDS.get(prop);
      if (kind !== undefined) of(kind);
      else reads.set(UNTRACKED, []);
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
}

/** Whether what `t` read is the same objects in `idx` (its reads then become idx's lists: see model()). */
function stillValid<T>(t: Tracked<T> | undefined, idx: ObjectIndex): t is Tracked<T> {
  if (!t || t.reads.has(UNTRACKED)) return false;
  for (const [ref, list] of t.reads) if (!sameObjects(list, idx.of(ref))) return false;
  for (const ref of t.reads.keys()) t.reads.set(ref, idx.of(ref));
  return true;
}

/** Options as a comparable string (DNS answers included: they are read as content). */
function optionsKey(o: TranslateOptions): string {
  const dns = [...(o.dnsAnswers ?? new Map<string, readonly string[]>())].sort((a, b) => compareStrings(a[0], b[0]));
  return JSON.stringify([o.trustDomain, o.clusterId, o.clusterDomain, o.rootNamespace, dns]);
}

export class IncrementalTranslator {
  private options = '';
  private global: readonly KubeObject[] | undefined;
  /** The global objects of the kinds in modelKinds (all of them while those are not known). */
  private globalRead: readonly KubeObject[] | undefined;
  /**
   * Kinds the model builds read (recorded through the index), over every build since the options
   * changed: `complete` once every part was built so; `untracked` when a build read the index in
   * a way that names no kind (then every global object counts).
   */
  private modelKinds = { kinds: new Set<string>(), complete: false, untracked: false };
  private globalPart: TranslateResult | undefined;
  private parts = new Map<string, Part>();
  /** The parts merged, while no part changed. */
  private merged: TranslateResult | undefined;
  /** Route translation up to the steps that only add to its configs (routes.ts routeBase). */
  private routeBase: Tracked<RouteContext> | undefined;
  /** The routes finished from that base (routes.ts finishRoutes). */
  private routes: (Tracked<TranslateRoutesResult> & { base: RouteContext }) | undefined;
  /** Listeners, with the Gateway servers they were built from. */
  private listeners: (Tracked<GatewayListenersResult> & { servers: TranslateRoutesResult['gateways'] }) | undefined;
  /** Parts rebuilt by the last translate (tests read it). */
  rebuilt = 0;

  /** Everything translateAll(objects, options) returns, reusing what the changes did not touch. */
  translate(objects: readonly KubeObject[], options: Partial<TranslateOptions> = {}, grouped?: ReadonlyMap<string, readonly KubeObject[]>): MeshTranslation {
    const idx = buildIndex(objects, options, grouped);
    const key = optionsKey(idx.opts);
    if (key !== this.options) {
      this.options = key;
      this.global = undefined;
      this.modelKinds = { kinds: new Set(), complete: false, untracked: false };
      this.routeBase = undefined;
      this.routes = undefined;
      this.listeners = undefined;
    }
    this.rebuilt = 0;
    if (!stillValid(this.routeBase, idx)) {
      const reads = new Map<string, readonly KubeObject[]>();
      // Kept without its gatewayPods reader, which holds this index (every object of this
      // snapshot, long after the store replaced them); finishRoutes gives the copy its own.
      const value: RouteContext = {
        ...routeBase(recording(idx, reads)),
        gatewayPods: () => {
          throw new Error('a kept route base has no index to read gateway pods from; finish it with copy');
        },
      };
      this.routeBase = { reads, value };
    }
    const base = this.routeBase.value;
    if (!stillValid(this.routes, idx) || this.routes.base !== base) {
      const reads = new Map<string, readonly KubeObject[]>();
      const value = finishRoutes(base, recording(idx, reads), true);
      // Configs whose base and additions are the previous ones stay the previous objects (a
      // jsonEqual that stops at the base's shared parts), and so do unchanged lists.
      const prev = this.routes?.value;
      if (prev) {
        value.routes = keepItems(prev.routes, value.routes, routeConfigResourceName);
        if (jsonEqual(prev.gateways, value.gateways)) value.gateways = prev.gateways;
        if (jsonEqual(prev.conditions, value.conditions)) value.conditions = prev.conditions;
      }
      this.routes = { reads, value: prev && value.routes === prev.routes && value.gateways === prev.gateways && value.conditions === prev.conditions ? prev : value, base };
    }
    const routes = this.routes.value;
    if (!stillValid(this.listeners, idx) || this.listeners.servers !== routes.gateways) {
      const reads = new Map<string, readonly KubeObject[]>();
      const r = recording(idx, reads);
      // No server: no listeners and no conditions (skips a pass over every pod).
      const value = routes.gateways.length === 0 ? { byPod: new Map(), conditions: [] } : gatewayListeners(routes.gateways, r.of('Pod'), r.of('Secret'), meshProxyDefaults(r.of('ConfigMap'), r.opts.rootNamespace));
      this.listeners = { reads, value, servers: routes.gateways };
    }
    return { model: withFieldWarnings(this.model(idx), idx), routes, listeners: this.listeners.value };
  }

  private model(idx: ObjectIndex): TranslateResult {
    const root = idx.opts.rootNamespace;
    const global: KubeObject[] = [];
    // Only global objects of kinds the model reads count (a VirtualService or ServiceAccount
    // change rebuilds no part), once every part was built recording its reads.
    const kinds = this.modelKinds;
    const counts = (ref: string): boolean => !kinds.complete || kinds.untracked || kinds.kinds.has(ref);
    const globalRead: KubeObject[] = [];
    const local = new Map<string, KubeObject[]>();
    let whole = false;
    // By kind (the index's groups, in input order), so no object's kind is looked up again.
    for (const [ref, group] of idx.groups) {
      if (group.length === 0) continue;
      if (WHOLE_MODEL_KINDS.has(ref)) whole = true;
      const byNs = LOCAL_KINDS.has(ref) ? 'all' : LOCAL_POLICY_KINDS.has(ref) ? 'outside-root' : undefined;
      if (byNs === undefined) {
        for (const o of group) global.push(o);
        if (counts(ref)) for (const o of group) globalRead.push(o);
        continue;
      }
      // A group is sorted by namespace/name, so each namespace is one run of it.
      for (let start = 0; start < group.length; ) {
        const ns = nsOf(group[start]!);
        const end = runEnd(group, start, ns);
        const into = byNs === 'outside-root' && ns === root ? global : (local.get(ns) ?? local.set(ns, []).get(ns)!);
        for (let i = start; i < end; i++) into.push(group[i]!);
        if (into === global && counts(ref)) for (let i = start; i < end; i++) globalRead.push(group[i]!);
        start = end;
      }
    }
    if (whole) {
      this.global = undefined;
      this.globalRead = undefined;
      this.globalPart = undefined;
      this.merged = undefined;
      this.parts.clear();
      this.rebuilt = 1;
      return buildModel(idx);
    }
    const globalChanged = this.global === undefined || !sameObjects(this.globalRead, globalRead);
    const kindsBefore = kinds.complete ? kinds.kinds.size : -1;
    // Kept as the current objects even when unchanged: one whose status was written since (a
    // policy's conditions) is then compared by identity next time, not field by field again.
    this.global = global;
    if (globalChanged) {
      this.globalPart = keepParts(this.globalPart, this.buildRecorded(global, idx.opts));
      this.rebuilt++;
    }
    const parts = new Map<string, Part>();
    let partsChanged = globalChanged || local.size !== this.parts.size;
    for (const [ns, list] of local) {
      let part = this.parts.get(ns);
      if (!part || globalChanged || !sameObjects(part.objects, list)) {
        // Unchanged objects of a rebuilt part stay the previous ones (translate/stable.ts).
        part = { objects: list, result: keepParts(part?.result, ownPart(ns, list, this.buildRecorded([...global, ...list], idx.opts), root)) };
        this.rebuilt++;
        partsChanged = true;
      } else if (part.objects !== list) part = { objects: list, result: part.result };
      parts.set(ns, part);
    }
    this.parts = parts;
    // Every part was built since the kinds were reset: the kinds read so far are all there are.
    if (globalChanged) kinds.complete = true;
    // Kept as the next call gathers it: again when the kinds changed during this call (rare).
    this.globalRead = kindsBefore === kinds.kinds.size && !kinds.untracked ? globalRead : global.filter((o) => counts(kindRef(o)));
    if (partsChanged || !this.merged) this.merged = merge(this.globalPart!, [...parts.values()].map((p) => p.result));
    return this.merged;
  }

  /** buildModel over `objects`, adding the kinds it read to modelKinds. */
  private buildRecorded(objects: readonly KubeObject[], opts: TranslateOptions): TranslateResult {
    const reads = new Map<string, readonly KubeObject[]>();
    const result = buildModel(recording(buildIndex(objects, opts), reads));
    for (const ref of reads.keys()) {
      if (ref === UNTRACKED) this.modelKinds.untracked = true;
      else this.modelKinds.kinds.add(ref);
    }
    return result;
  }
}

/**
 * The end of the run of namespace `ns` that starts at `start` in `group` (sorted by
 * namespace/name): galloping, then a binary search, so a namespace of n objects costs log n.
 */
export function runEnd(group: readonly KubeObject[], start: number, ns: string): number {
  let lo = start + 1;
  let step = 1;
  while (lo < group.length && nsOf(group[lo]!) === ns) {
    lo += step;
    step *= 2;
  }
  // The run ends in (last index known inside, lo]: lo is past the end or outside the run.
  let inside = lo - Math.max(1, step / 2);
  let hi = Math.min(lo, group.length);
  while (inside + 1 < hi) {
    const mid = (inside + hi) >>> 1;
    if (nsOf(group[mid]!) === ns) inside = mid;
    else hi = mid;
  }
  return hi;
}

/** What of a namespace's buildModel result that namespace owns (see the file comment). */
function ownPart(ns: string, local: readonly KubeObject[], r: TranslateResult, root: string): TranslateResult {
  const keys = new Set(local.map((o) => objectKey(o)));
  return {
    workloads: r.workloads,
    services: r.services,
    authorizations: ns === root ? [] : r.authorizations.filter((a) => a.namespace === ns),
    conditions: r.conditions.filter((c) => keys.has(c.objectKey)),
  };
}

/** `next` with the objects of `prev` it equals (keepItems). */
function keepParts(prev: TranslateResult | undefined, next: TranslateResult): TranslateResult {
  if (!prev) return next;
  return {
    workloads: keepItems(prev.workloads, next.workloads, workloadResourceName),
    services: keepItems(prev.services, next.services, serviceResourceName),
    authorizations: keepItems(prev.authorizations, next.authorizations, authorizationResourceName),
    conditions: next.conditions,
  };
}

/** The parts as one model, sorted as buildModel sorts. */
function merge(global: TranslateResult, parts: readonly TranslateResult[]): TranslateResult {
  const all = [global, ...parts];
  const byUid = (a: Workload, b: Workload): number => compareStrings(a.uid, b.uid);
  const byService = (a: Service, b: Service): number => compareStrings(serviceResourceName(a), serviceResourceName(b));
  const byAuthorization = (a: Authorization, b: Authorization): number => compareStrings(authorizationResourceName(a), authorizationResourceName(b));
  const byCondition = (a: TranslateCondition, b: TranslateCondition): number => compareStrings(a.objectKey, b.objectKey) || compareStrings(a.type, b.type);
  return {
    workloads: mergeRuns(all.map((p) => p.workloads), byUid),
    services: mergeRuns(all.map((p) => p.services), byService),
    authorizations: mergeRuns(all.map((p) => p.authorizations), byAuthorization),
    conditions: mergeRuns(all.map((p) => p.conditions), byCondition),
  };
}

/**
 * The runs as one list sorted by `cmp`, each run sorted by `cmp` already (buildModel's order,
 * which a part keeps). Runs that do not overlap (a namespace's workloads, services and
 * authorizations) are put end to end in the order of their first items, which costs the number
 * of runs, not of items; otherwise the runs are concatenated in the order given and sorted (a
 * stable sort: what sorting every part's items together gives).
 */
export function mergeRuns<T>(runs: ReadonlyArray<readonly T[]>, cmp: (a: T, b: T) => number): T[] {
  const nonEmpty = runs.filter((r) => r.length > 0).sort((a, b) => cmp(a[0]!, b[0]!));
  let ordered = true;
  for (let i = 1; i < nonEmpty.length && ordered; i++) if (cmp(nonEmpty[i - 1]!.at(-1)!, nonEmpty[i]![0]!) >= 0) ordered = false;
  const out: T[] = [];
  for (const r of ordered ? nonEmpty : runs) for (const x of r) out.push(x);
  return ordered ? out : out.sort(cmp);
}
