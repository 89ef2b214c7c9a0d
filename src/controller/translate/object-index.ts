/**
 * The translation input, indexed once per retranslate: every object grouped by kind (each group
 * sorted by namespace/name, so output is deterministic), the typed groups the model translation
 * reads, and the options. The same index feeds the model (translate.ts), the route configs
 * (routes.ts) and the gateway listeners (gateway-listeners.ts). It never changes once built; each
 * translation collects its conditions in its own sink.
 */
import { kindRef, objectKey, REF_GATEWAY_API_GATEWAY, type KubeObject } from '../objects.js';
import { compareStrings, nsOf } from './util.js';

export interface TranslateOptions {
  trustDomain: string;
  clusterId: string;
  clusterDomain: string;
  rootNamespace: string;
  /** Addresses of host names DNS ServiceEntries need, as the controller last resolved them. */
  dnsAnswers?: ReadonlyMap<string, readonly string[]>;
}

export const DEFAULT_TRANSLATE_OPTIONS: Readonly<TranslateOptions> = Object.freeze({
  trustDomain: 'cluster.local',
  clusterId: 'local',
  clusterDomain: 'cluster.local',
  rootNamespace: 'istio-system',
});

/** A status condition translation wants written on an object (by the status writer). */
export interface TranslateCondition {
  /** objectKey() of the object it belongs to. */
  objectKey: string;
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  /** The part of the object it is about (a Gateway API listener name). */
  section?: string;
}

export interface ObjectIndex {
  readonly opts: TranslateOptions;
  /** The objects of one kind (kindRef: `Pod`, `VirtualService.networking.istio.io`, ...), sorted by namespace/name. */
  of(ref: string): readonly KubeObject[];
  readonly namespaces: ReadonlyMap<string, KubeObject>;
  /** Nodes by name (their topology labels give a pod its locality). */
  readonly nodes: ReadonlyMap<string, KubeObject>;
  readonly pods: readonly KubeObject[];
  readonly services: readonly KubeObject[];
  /** Gateway API Gateways (waypoints among them). */
  readonly gateways: readonly KubeObject[];
  readonly gatewayClasses: ReadonlyMap<string, KubeObject>;
  readonly peerAuthentications: readonly KubeObject[];
  readonly authorizationPolicies: readonly KubeObject[];
  /** Every group by kind (kindRef), in input order of first appearance. */
  readonly groups: ReadonlyMap<string, readonly KubeObject[]>;
}

/** The model translation's view: the index plus its condition sink. */
export interface TranslateIndex extends ObjectIndex {
  conditions: TranslateCondition[];
}

/**
 * Groups `objects` by kind; `options` fill in DEFAULT_TRANSLATE_OPTIONS. `grouped`: the same
 * objects already grouped and sorted (a store snapshot's byKind), used as they are.
 */
export function buildIndex(objects: readonly KubeObject[], options: Partial<TranslateOptions> = {}, grouped?: ReadonlyMap<string, readonly KubeObject[]>): ObjectIndex {
  const byKind: ReadonlyMap<string, readonly KubeObject[]> = grouped ?? groupByKind(objects);
  const of = (ref: string): readonly KubeObject[] => byKind.get(ref) ?? [];
  const byName = (ref: string): Map<string, KubeObject> => new Map(of(ref).map((o) => [o.metadata.name, o]));
  return {
    opts: { ...DEFAULT_TRANSLATE_OPTIONS, ...options },
    of,
    namespaces: byName('Namespace'),
    nodes: byName('Node'),
    pods: of('Pod'),
    services: of('Service'),
    gateways: of(REF_GATEWAY_API_GATEWAY),
    gatewayClasses: byName('GatewayClass'),
    peerAuthentications: of('PeerAuthentication'),
    authorizationPolicies: of('AuthorizationPolicy'),
    groups: byKind,
  };
}

function groupByKind(objects: readonly KubeObject[]): Map<string, KubeObject[]> {
  const byKind = new Map<string, KubeObject[]>();
  for (const o of objects) {
    const ref = kindRef(o);
    const list = byKind.get(ref);
    if (list) list.push(o);
    else byKind.set(ref, [o]);
  }
  // A store snapshot comes sorted by objectKey, so each kind's group is already in order: sort
  // (stably, as a sort of the whole input would) only a group that is not.
  for (const [ref, list] of byKind) {
    const keys = list.map((o) => `${nsOf(o)}/${o.metadata.name}`);
    let sorted = true;
    for (let i = 1; i < keys.length && sorted; i++) if (compareStrings(keys[i - 1]!, keys[i]!) > 0) sorted = false;
    if (sorted) continue;
    const order = keys.map((k, i) => ({ k, i })).sort((a, b) => compareStrings(a.k, b.k) || a.i - b.i);
    byKind.set(ref, order.map((e) => list[e.i]!));
  }
  return byKind;
}

export function addCondition(idx: TranslateIndex, obj: KubeObject, c: Omit<TranslateCondition, 'objectKey'>): void {
  idx.conditions.push({ objectKey: objectKey(obj), ...c });
}
