/**
 * Istio's string values in AuthorizationPolicy (principals, namespaces, hosts, paths, `when`
 * values), read one way for the agents' L4 policy (authorization.ts) and the waypoints' L7 policy
 * (authorization-l7.ts).
 *
 * Istio documents four forms: `*` (presence: any non-empty value), `abc*` (prefix), `*abc`
 * (suffix) and `abc` (exact). A value with a `*` at both ends is not one of them; this reads it
 * as Istio's own translation does (pilot's authz matcher tests the leading `*` first): `*foo*` is
 * a suffix match on the literal `foo*`. An asterisk inside a value is literal.
 */
import type { StringMatch } from '../../shared/model.js';

/** One Istio string value as a match. */
export function toStringMatch(v: string): StringMatch {
  if (v === '*') return { presence: true };
  if (v.startsWith('*')) return { suffix: v.slice(1) };
  if (v.endsWith('*')) return { prefix: v.slice(0, -1) };
  return { exact: v };
}
