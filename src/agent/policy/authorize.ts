/**
 * L4 authorization with Istio's semantics, evaluated at the destination: any matching DENY denies;
 * with no ALLOW policy the connection is allowed; a matching ALLOW allows; otherwise deny.
 * PeerAuthentication STRICT denies connections without a peer identity first. Pure.
 */
import type { Authorization, AuthzMatch, StringMatch } from '../../shared/model.js';
import { cidrContains } from '../../shared/address.js';

export { cidrContains };

/** What the destination knows about a connection. */
export interface ConnAttributes {
  /** Peer principal without `spiffe://` (`cluster.local/ns/a/sa/b`); absent for plaintext. */
  srcPrincipal?: string;
  /** Peer namespace from its identity; absent for plaintext. */
  srcNamespace?: string;
  srcIp: string;
  dstIp: string;
  dstPort: number;
}

/** Bounded set of reasons, used as the `reason` metric label. */
export type AuthzReason = 'no_policy' | 'allow_match' | 'deny_match' | 'no_allow_match' | 'strict_mtls';

export interface AuthzDecision {
  allowed: boolean;
  reason: AuthzReason;
  /** `namespace/name` of the policy that decided, when one did. */
  policy?: string;
  /** `namespace/name` of AUDIT policies that matched and dry-run policies that would have acted. */
  audit: string[];
}

export interface AuthorizeOptions {
  /** PeerAuthentication mode for the destination port. */
  peerAuthentication?: 'STRICT' | 'PERMISSIVE';
}

export function authorize(policies: readonly Authorization[], conn: ConnAttributes, opts: AuthorizeOptions = {}): AuthzDecision {
  const audit: string[] = [];
  if (opts.peerAuthentication === 'STRICT' && !conn.srcPrincipal) {
    return { allowed: false, reason: 'strict_mtls', audit };
  }
  let allowPolicies = 0;
  let allowMatch: string | undefined;
  for (const p of policies) {
    const name = `${p.namespace}/${p.name}`;
    const hit = policyMatches(p, conn);
    if (p.action === 'AUDIT') {
      if (hit) audit.push(name);
      continue;
    }
    if (p.dryRun) {
      if (hit) audit.push(`dry-run:${name}`);
      continue;
    }
    if (p.action === 'DENY') {
      if (hit) return { allowed: false, reason: 'deny_match', policy: name, audit };
      continue;
    }
    allowPolicies++;
    if (hit && allowMatch === undefined) allowMatch = name;
  }
  if (allowPolicies === 0) return { allowed: true, reason: 'no_policy', audit };
  if (allowMatch !== undefined) return { allowed: true, reason: 'allow_match', policy: allowMatch, audit };
  return { allowed: false, reason: 'no_allow_match', audit };
}

/** Rules are ORed; a rule's clauses ANDed; a clause's matches ORed. No rules: matches nothing. */
export function policyMatches(p: Authorization, conn: ConnAttributes): boolean {
  return p.rules.some((rule) => rule.clauses.every((clause) => clause.matches.length === 0 || clause.matches.some((m) => matchMatches(m, conn))));
}

/** Across attribute types ANDed; within one type values ORed; `not*` lists must not match. */
export function matchMatches(m: AuthzMatch, conn: ConnAttributes): boolean {
  return (
    both(m.namespaces, m.notNamespaces, (s) => stringMatches(s, conn.srcNamespace)) &&
    both(m.principals, m.notPrincipals, (s) => stringMatches(s, conn.srcPrincipal)) &&
    both(m.sourceIps, m.notSourceIps, (c) => cidrContains(c, conn.srcIp)) &&
    both(m.destinationIps, m.notDestinationIps, (c) => cidrContains(c, conn.dstIp)) &&
    both(m.destinationPorts, m.notDestinationPorts, (p) => p === conn.dstPort)
  );
}

function both<T>(positive: readonly T[], negative: readonly T[], test: (v: T) => boolean): boolean {
  if (positive.length > 0 && !positive.some(test)) return false;
  if (negative.length > 0 && negative.some(test)) return false;
  return true;
}

/** An absent value matches nothing, not even `presence`. */
export function stringMatches(m: StringMatch, value: string | undefined): boolean {
  if (value === undefined || value === '') return false;
  if ('exact' in m) return value === m.exact;
  if ('prefix' in m) return value.startsWith(m.prefix);
  if ('suffix' in m) return value.endsWith(m.suffix);
  return m.presence === true;
}

