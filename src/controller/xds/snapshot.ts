/**
 * Snapshots: the resources one subscriber should hold, per type (scope.ts decides which by role),
 * and their encoding for the wire. Every resource is validated once before it is sent
 * (validateResource, shared with the config client's check on receipt); one failing it is not
 * sent, and the subscriber keeps the last good version of it.
 * Invariants: resource versions are content hashes of the canonical JSON body (equal content,
 * equal version); a resource object shared by many snapshots is validated and encoded once per
 * push, and once for as long as snapshots hold that same object (resources are never modified
 * once handed over).
 */
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Authorization, Service, Workload } from '../../shared/model.js';
import { TYPE_AUTHORIZATION, TYPE_GATEWAY_LISTENER, TYPE_ROUTE_CONFIG, TYPE_SERVICE, TYPE_WORKLOAD, authorizationResourceName, gatewayListenerResourceName, routeConfigResourceName, serviceResourceName, workloadResourceName, type Resource, type ResourceType } from '../../shared/resources.js';
import type { GatewayListener, RouteConfig } from '../../shared/routes.js';
import { formatIssue, type Issue } from '../../shared/validate.js';
import { contentHash, encodeBody, SetVersion, typeLabel, type EncodedResource } from '../../shared/xds/resource-codec.js';
import type { NodeInfo } from '../../shared/xds/node.js';
import { PersistentMap } from '../../shared/state/persistent-map.js';
import type { Delta } from './delta.js';

/** Resources per type; a missing type means none. Treat as immutable once handed over. */
export interface Snapshot {
  readonly resources: { readonly [T in ResourceType]?: ReadonlyMap<string, Resource> };
}

/** Computes what one subscriber should hold (the controller scopes by node and role: scope.ts). */
export type SnapshotProvider = (node: NodeInfo) => Snapshot;

/** Builds a Snapshot keyed by each kind's resource-name rule (resources.ts). */
export function buildSnapshot(input: {
  workloads?: Iterable<Workload>;
  services?: Iterable<Service>;
  authorizations?: Iterable<Authorization>;
  /** Route configs: only snapshots for waypoints and gateways carry them. */
  routes?: Iterable<RouteConfig>;
  /** Ingress listeners: only snapshots for gateways carry them. */
  listeners?: Iterable<GatewayListener>;
}): Snapshot {
  const byName = <T extends Resource>(items: Iterable<T> | undefined, name: (r: T) => string): Map<string, Resource> => {
    const m = new Map<string, Resource>();
    for (const r of items ?? []) m.set(name(r), r);
    return m;
  };
  return {
    resources: {
      [TYPE_WORKLOAD]: byName(input.workloads, workloadResourceName),
      [TYPE_SERVICE]: byName(input.services, serviceResourceName),
      [TYPE_AUTHORIZATION]: byName(input.authorizations, authorizationResourceName),
      ...(input.routes ? { [TYPE_ROUTE_CONFIG]: byName(input.routes, routeConfigResourceName) } : {}),
      ...(input.listeners ? { [TYPE_GATEWAY_LISTENER]: byName(input.listeners, gatewayListenerResourceName) } : {}),
    },
  };
}

/**
 * How deriveByName derived a map: the id (mapId) of the map it started from and the entries it
 * set (no name was added or removed), so an encoder holding a view of that map looks at those
 * alone. An id, not the map: each map holding its predecessor would keep every earlier one alive.
 */
const derivations = new WeakMap<ReadonlyMap<string, Resource>, { from: number; updated: ReadonlyArray<readonly [string, Resource]> }>();
const mapIds = new WeakMap<ReadonlyMap<string, Resource>, number>();
let nextMapId = 1;

/** A number naming `map` for as long as it lives. */
function mapId(map: ReadonlyMap<string, Resource>): number {
  let id = mapIds.get(map);
  if (id === undefined) mapIds.set(map, (id = nextMapId++));
  return id;
}

/**
 * The map `byName` would build from `next`, derived from `prev` (built from `prevItems`) when the
 * two arrays hold the same names at the same positions — what translation gives for updates
 * (translate/stable.ts keeps unchanged items, and the array itself when nothing changed): only
 * the positions whose item is not the previous object are set, so a one-object change does not
 * rebuild a 10,000-entry map (decision 65). Otherwise, or without a previous map, built whole.
 * A name that occurs twice keeps its last item, as a Map built in order does.
 */
export function deriveByName<T extends Resource>(
  prev: { items: readonly T[]; map: ReadonlyMap<string, Resource> } | undefined,
  next: readonly T[],
  name: (r: T) => string,
): ReadonlyMap<string, Resource> {
  if (prev && prev.items === next) return prev.map;
  if (prev && prev.items.length === next.length) {
    const changes: Array<[string, Resource]> = [];
    let aligned = true;
    for (let i = 0; i < next.length; i++) {
      const before = prev.items[i]!;
      const item = next[i]!;
      if (before === item) continue;
      const n = name(item);
      if (name(before) !== n) {
        aligned = false;
        break;
      }
      // Only the last occurrence of a name is in the map (its position is the same in both).
      if (prev.map.get(n) === before) changes.push([n, item]);
    }
    if (aligned) {
      const map = (prev.map instanceof PersistentMap ? (prev.map as PersistentMap<string, Resource>) : PersistentMap.of(prev.map)).withChanges([], changes);
      if (map !== prev.map) derivations.set(map, { from: mapId(prev.map), updated: changes });
      return map;
    }
  }
  const m = new Map<string, Resource>();
  for (const r of next) m.set(name(r), r);
  return PersistentMap.of(m);
}

interface CachedEncoding {
  encoded?: EncodedResource;
  issues: Issue[];
}

/** Which resources of a type a subscription covers. */
export interface Visibility {
  typeUrl: ResourceType;
  wildcard: boolean;
  names: ReadonlySet<string>;
}

/**
 * A wildcard view with what the push round needs beside it, computed once per view: its name →
 * version map and set version, and, when it was derived from the previous view, the delta from
 * that view's versions (subscription.ts reads these instead of recomputing them per view).
 */
export interface ViewFacts {
  versions: ReadonlyMap<string, string>;
  setVersion: string;
  from?: { versions: ReadonlyMap<string, string>; delta: Delta };
}

const viewFacts = new WeakMap<ReadonlyMap<string, EncodedResource>, ViewFacts>();

/** What the encoder knows about `view` (undefined for views it did not derive). */
export function factsOf(view: ReadonlyMap<string, EncodedResource>): ViewFacts | undefined {
  return viewFacts.get(view);
}

/** The last wildcard view of a type, and what it was built from, to derive the next one from. */
interface LastView {
  resources: ReadonlyMap<string, Resource>;
  view: PersistentMap<string, EncodedResource>;
  versions: PersistentMap<string, string>;
  setVersion: SetVersion;
}

/**
 * Validates and encodes snapshot resources for the wire, keeping the last good encoding of each
 * (type, name) to send in place of a resource that fails validation.
 *
 * Wildcard views are derived from the previous one (decision 65): the resources that are not the
 * very objects the previous view was built from are encoded, and the view, its versions and its
 * set version are updated for those alone (persistent maps), so a push round after a
 * one-resource change does not rebuild 10,000-entry maps or sort and hash every name.
 */
export class SnapshotEncoder {
  /** Encodings by object identity, so a resource shared by many subscribers is hashed once. */
  private encodings = new WeakMap<object, CachedEncoding>();
  /**
   * Valid encodings by object identity, across rounds: a resource object a later snapshot still
   * holds (translate/stable.ts keeps unchanged ones) is not encoded or validated again.
   */
  private readonly valid = new WeakMap<object, EncodedResource>();
  private readonly lastGood = new Map<ResourceType, Map<string, EncodedResource>>();
  /** Names encoded during the current push round, so lastGood can forget resources that are gone. */
  private seen: Map<ResourceType, Set<string>> | undefined;
  /** Within a round: what wildcard subscribers of one snapshot see, computed once per type. */
  private wildcardViews = new Map<ResourceType, { snapshot: Snapshot; view: ReadonlyMap<string, EncodedResource> }>();
  private readonly lastViews = new Map<ResourceType, LastView>();
  /** Within a round: the wildcard views served, per type (their names count as seen). */
  private usedViews = new Map<ResourceType, Set<ReadonlyMap<string, EncodedResource>>>();
  /** Types whose whole last-good map must be checked at the end of the round (a full encode ran). */
  private fullTypes = new Set<ResourceType>();
  /** Names that left a derived view since the last complete round: the only ones to check otherwise. */
  private readonly leftViews = new Map<ResourceType, Set<string>>();

  constructor(
    private readonly validate: (typeUrl: ResourceType, name: string, body: unknown) => Issue[],
    private readonly onInvalid: (typeUrl: ResourceType) => void,
  ) {}

  /** Starts a push round to every subscriber: encodings are recomputed, names seen are tracked. */
  beginRound(): void {
    this.encodings = new WeakMap();
    this.seen = new Map();
    this.wildcardViews = new Map();
    this.usedViews = new Map();
    this.fullTypes = new Set();
  }

  /** Ends the round; when every subscriber was served, last good versions of resources gone are forgotten. */
  endRound(complete: boolean): void {
    if (complete && this.seen) {
      for (const [type, good] of this.lastGood) {
        const names = this.seen.get(type);
        const views = [...(this.usedViews.get(type) ?? [])];
        const check = this.fullTypes.has(type) ? [...good.keys()] : [...(this.leftViews.get(type) ?? [])];
        for (const name of check) if (!names?.has(name) && !views.some((v) => v.has(name))) good.delete(name);
        this.leftViews.delete(type);
      }
    }
    this.seen = undefined;
    this.wildcardViews = new Map();
    this.usedViews = new Map();
  }

  /**
   * Encodes the resources of a type a subscription covers; invalid ones fall back to the last
   * good. The map returned is shared (wildcard subscribers of one snapshot in a round): read only.
   */
  visible(sub: Visibility, snapshot: Snapshot, log: Logger): ReadonlyMap<string, EncodedResource> {
    const shared = sub.wildcard && this.seen ? this.wildcardViews.get(sub.typeUrl) : undefined;
    if (shared && shared.snapshot === snapshot) return shared.view;
    const out = sub.wildcard ? this.wildcardView(sub.typeUrl, snapshot, log) : this.encodeVisible(sub, snapshot, log);
    if (sub.wildcard && this.seen) {
      this.wildcardViews.set(sub.typeUrl, { snapshot, view: out });
      let used = this.usedViews.get(sub.typeUrl);
      if (!used) this.usedViews.set(sub.typeUrl, (used = new Set()));
      used.add(out);
    }
    return out;
  }

  /** Every resource of the type: derived from the last wildcard view, or built whole the first time. */
  private wildcardView(type: ResourceType, snapshot: Snapshot, log: Logger): ReadonlyMap<string, EncodedResource> {
    const resources = snapshot.resources[type];
    const last = this.lastViews.get(type);
    if (!resources || !last) {
      const built = this.encodeVisible({ typeUrl: type, wildcard: true, names: new Set() }, snapshot, log);
      if (!resources) return built;
      const view = PersistentMap.of(built);
      const versions = PersistentMap.of([...built].map(([name, e]) => [name, e.version] as const));
      const setVersion = new SetVersion();
      for (const [name, version] of versions) setVersion.add(name, version);
      viewFacts.set(view, { versions, setVersion: setVersion.value() });
      this.lastViews.set(type, { resources, view, versions, setVersion });
      return view;
    }
    if (last.resources === resources) return last.view;
    let good = this.lastGood.get(type);
    if (!good) this.lastGood.set(type, (good = new Map()));
    const updated: Array<[string, EncodedResource]> = [];
    const removed: string[] = [];
    let added = 0;
    // Derived from the map the last view was built from: only the entries set since can differ.
    const derived = derivations.get(resources);
    for (const [name, resource] of derived !== undefined && derived.from === mapId(last.resources) ? derived.updated : resources) {
      const before = last.resources.get(name);
      if (before === resource) continue;
      if (before === undefined) added++;
      const enc = this.encode(type, name, resource, log);
      const now = enc.encoded ?? good.get(name);
      if (enc.encoded) good.set(name, enc.encoded);
      if (now) {
        if (last.view.get(name) !== now) updated.push([name, now]);
      } else if (last.view.has(name)) {
        removed.push(name);
      }
    }
    // Names gone from the resources: only looked for when the counts say some are.
    if (last.resources.size + added > resources.size) {
      for (const name of last.resources.keys()) if (!resources.has(name) && last.view.has(name)) removed.push(name);
    }
    if (updated.length === 0 && removed.length === 0) {
      this.lastViews.set(type, { ...last, resources });
      return last.view;
    }
    const setVersion = last.setVersion.clone();
    const changedVersions: Array<[string, string]> = [];
    for (const name of removed) setVersion.remove(name, last.versions.get(name)!);
    for (const [name, e] of updated) {
      const before = last.versions.get(name);
      if (before === e.version) continue;
      if (before !== undefined) setVersion.remove(name, before);
      setVersion.add(name, e.version);
      changedVersions.push([name, e.version]);
    }
    const view = last.view.withChanges(removed, updated);
    const versions = last.versions.withChanges(removed, changedVersions);
    const delta: Delta = { updated: changedVersions.map(([name]) => name).sort(), removed: removed.sort() };
    viewFacts.set(view, { versions, setVersion: setVersion.value(), from: { versions: last.versions, delta } });
    this.lastViews.set(type, { resources, view, versions, setVersion });
    if (removed.length > 0) {
      let left = this.leftViews.get(type);
      if (!left) this.leftViews.set(type, (left = new Set()));
      for (const name of removed) left.add(name);
    }
    return view;
  }

  private encodeVisible(sub: Visibility, snapshot: Snapshot, log: Logger): Map<string, EncodedResource> {
    this.fullTypes.add(sub.typeUrl);
    const out = new Map<string, EncodedResource>();
    const resources = snapshot.resources[sub.typeUrl];
    if (!resources) return out;
    let good = this.lastGood.get(sub.typeUrl);
    if (!good) this.lastGood.set(sub.typeUrl, (good = new Map()));
    for (const [name, resource] of resources) {
      if (!sub.wildcard && !sub.names.has(name)) continue;
      this.seen?.get(sub.typeUrl)?.add(name) ?? this.seen?.set(sub.typeUrl, new Set([name]));
      const enc = this.encode(sub.typeUrl, name, resource, log);
      if (enc.encoded) {
        good.set(name, enc.encoded);
        out.set(name, enc.encoded);
      } else {
        const previous = good.get(name);
        if (previous) out.set(name, previous);
      }
    }
    return out;
  }

  private encode(type: ResourceType, name: string, resource: Resource, log: Logger): CachedEncoding {
    const key = typeof resource === 'object' && resource !== null ? resource : undefined;
    const cached = key ? this.encodings.get(key) : undefined;
    if (cached) return cached;
    const known = key ? this.valid.get(key) : undefined;
    if (known) return { encoded: known, issues: [] };
    let result: CachedEncoding;
    try {
      // A resource whose body is the last good one's byte for byte was validated then: reuse it
      // (a retranslate rebuilds every object, but most are unchanged).
      const body = encodeBody(resource);
      const previous = this.lastGood.get(type)?.get(name);
      if (previous?.body.equals(body)) result = { encoded: previous, issues: [] };
      else {
        const issues = this.validate(type, name, resource);
        result = issues.length === 0 ? { encoded: { body, version: contentHash(body) }, issues } : { issues };
      }
    } catch (e) {
      result = { issues: [{ path: `${typeLabel(type)}[${name}]`, problem: `cannot encode: ${errorMessage(e)}` }] };
    }
    if (result.issues.length > 0) {
      this.onInvalid(type);
      log.error({ type: typeLabel(type), name, issues: result.issues.slice(0, 10).map(formatIssue) }, 'invalid resource not sent; the last good version stays in force');
    }
    if (key) this.encodings.set(key, result);
    if (key && result.encoded) this.valid.set(key, result.encoded);
    return result;
  }
}
