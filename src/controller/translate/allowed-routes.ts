/**
 * Gateway API listener `allowedRoutes` (pure): which routes may attach to an ingress Gateway's
 * listener, by the route's namespace (`namespaces.from`: Same, the default; All; Selector, a label
 * selector on the route's Namespace) and kind (`kinds`, else the kinds the listener's protocol
 * takes). Route translation attaches a route only through listeners that allow it, and the status
 * builder counts `attachedRoutes` and writes NotAllowedByListeners from the same answer.
 */
import { GROUP_GATEWAY_API, type KubeObject } from '../objects.js';
import { asArray, asRecord, asString, asStrings, nsOf } from './util.js';

export interface RouteKind {
  group: string;
  kind: string;
}

const HTTP_KINDS: readonly RouteKind[] = [
  { group: GROUP_GATEWAY_API, kind: 'HTTPRoute' },
  { group: GROUP_GATEWAY_API, kind: 'GRPCRoute' },
];

/** The route kinds a listener's protocol can take (TLS: in Passthrough or Terminate mode, the default). */
export function protocolRouteKinds(listener: Record<string, unknown>): readonly RouteKind[] {
  const protocol = (asString(listener['protocol']) ?? '').toUpperCase();
  if (protocol === 'HTTP' || protocol === 'HTTPS') return HTTP_KINDS;
  if (protocol === 'TCP') return [{ group: GROUP_GATEWAY_API, kind: 'TCPRoute' }];
  if (protocol === 'TLS' && servedTlsMode(listener)) return [{ group: GROUP_GATEWAY_API, kind: 'TLSRoute' }];
  return [];
}

/** A TLS listener's mode Ambit serves: Passthrough, or Terminate (the Gateway API default). */
export function servedTlsMode(listener: Record<string, unknown>): boolean {
  const mode = asString(asRecord(listener['tls'])['mode']) ?? 'Terminate';
  return mode === 'Passthrough' || mode === 'Terminate';
}

/**
 * The kinds a listener takes: `allowedRoutes.kinds` limited to what its protocol can take, or
 * those when it lists none; `invalid` names the listed kinds it cannot take (the listener's
 * ResolvedRefs is then False with reason InvalidRouteKinds, as the Gateway API requires).
 */
export function listenerKinds(listener: Record<string, unknown>): { kinds: RouteKind[]; invalid: string[] } {
  const possible = protocolRouteKinds(listener);
  const listed = asArray(asRecord(listener['allowedRoutes'])['kinds']).map(asRecord);
  if (listed.length === 0) return { kinds: [...possible], invalid: [] };
  const kinds: RouteKind[] = [];
  const invalid: string[] = [];
  for (const k of listed) {
    const kind = { group: asString(k['group']) ?? GROUP_GATEWAY_API, kind: asString(k['kind']) ?? '' };
    if (possible.some((p) => p.group === kind.group && p.kind === kind.kind)) {
      if (!kinds.some((x) => x.kind === kind.kind && x.group === kind.group)) kinds.push(kind);
    } else invalid.push(`${kind.group}/${kind.kind}`);
  }
  return { kinds, invalid };
}

/** Why `listener` of `gw` refuses a route of `kind` in namespace `routeNs` (Istio's wording), or undefined when it allows it. */
export function listenerRefusal(gw: KubeObject, listener: Record<string, unknown>, kind: string, routeNs: string, namespaces: ReadonlyMap<string, KubeObject>): string | undefined {
  if (!listenerKinds(listener).kinds.some((k) => k.kind === kind && k.group === GROUP_GATEWAY_API)) return `kind ${GROUP_GATEWAY_API}/${kind} is not allowed`;
  const ns = asRecord(asRecord(listener['allowedRoutes'])['namespaces']);
  const from = asString(ns['from']) ?? 'Same';
  const notAllowed = `namespace "${routeNs}" is not allowed by the parent (listener ${asString(listener['name']) ?? ''}: allowedRoutes.namespaces.from ${from})`;
  if (from === 'All') return undefined;
  if (from === 'Same') return routeNs === nsOf(gw) ? undefined : notAllowed;
  if (from === 'Selector') return selectorMatches(ns['selector'], asRecord(namespaces.get(routeNs)?.metadata.labels)) ? undefined : notAllowed;
  return notAllowed; // an unknown value (None, or a typo the schema let through) allows nothing
}

/** The listeners of `gw` a parentRef picks (its sectionName and port). */
export function pickedListeners(gw: KubeObject, parentRef: Record<string, unknown>): Array<Record<string, unknown>> {
  const section = asString(parentRef['sectionName']);
  const port = typeof parentRef['port'] === 'number' ? parentRef['port'] : undefined;
  return asArray(gw.spec?.['listeners'])
    .map(asRecord)
    .filter((l) => (section === undefined || asString(l['name']) === section) && (port === undefined || l['port'] === port));
}

/**
 * A metav1.LabelSelector against labels: matchLabels and matchExpressions (In, NotIn, Exists,
 * DoesNotExist) all hold. No selector selects nothing; an empty one selects everything.
 */
export function selectorMatches(selector: unknown, labels: Record<string, unknown>): boolean {
  if (selector === undefined || selector === null) return false;
  const sel = asRecord(selector);
  for (const [k, v] of Object.entries(asRecord(sel['matchLabels']))) if (labels[k] !== v) return false;
  for (const e of asArray(sel['matchExpressions']).map(asRecord)) {
    const key = asString(e['key']) ?? '';
    const values = asStrings(e['values']);
    const has = typeof labels[key] === 'string';
    const value = labels[key] as string | undefined;
    switch (asString(e['operator'])) {
      case 'In':
        if (!has || !values.includes(value!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(value!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}
