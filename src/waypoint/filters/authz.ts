/**
 * L7 AuthorizationPolicy evaluation in the waypoint with Istio semantics: CUSTOM is not ours, any
 * matching DENY denies, then when ALLOW policies exist one must match; AUDIT only marks. Dry-run
 * policies are evaluated for the log but never change the verdict. Denials answer 403
 * `RBAC: access denied` like Envoy.
 */
import type { StringMatch } from '../../shared/model.js';
import type { ExtAuthzProvider, L7AuthorizationPolicy, L7Condition, L7Operation, L7Rule, L7Source } from '../../shared/routes.js';
import { cidrContains } from '../../shared/address.js';
import { hostOfAuthority, type RequestHeaders } from '../route/router.js';
import { claimValues } from './jwt.js';

export const RBAC_DENIED_BODY = 'RBAC: access denied';

export interface AuthzRequest {
  method: string;
  /** Path with or without query; the query is ignored. */
  path: string;
  authority: string;
  headers: RequestHeaders;
  /** Destination (service) port. */
  port?: number;
  /** Peer SPIFFE id (`spiffe://td/ns/x/sa/y`) or undefined for plaintext. */
  principal?: string;
  /** `<iss>/<sub>` of the request's verified JWT (jwt.ts), and its claims; undefined without one. */
  requestPrincipal?: string;
  claims?: Record<string, unknown>;
  /** Source address (`ipBlocks`): an ingress gateway's downstream peer; at a waypoint the client the HBONE peer forwarded. */
  sourceIp?: string;
  /** The original client's address (`remoteIpBlocks`) when trusted proxies name it (ingress gateways); else sourceIp. */
  remoteIp?: string;
}

export interface AuthzVerdict {
  allowed: boolean;
  reason: 'no-policy' | 'allow-matched' | 'deny-matched' | 'no-allow-match';
  /** The deciding policy (`namespace/name`). */
  policy?: string;
  /** AUDIT policies that matched. */
  audited: string[];
  /** Dry-run policies that would have denied. */
  dryRunDenied: string[];
}

export function matchAuthzString(m: StringMatch, value: string | undefined): boolean {
  if ('presence' in m) return value !== undefined && value !== '';
  if (value === undefined) return false;
  if ('exact' in m) return value === m.exact;
  if ('prefix' in m) return value.startsWith(m.prefix);
  return value.endsWith(m.suffix);
}

function anyMatch(list: readonly StringMatch[], value: string | undefined): boolean {
  return list.some((m) => matchAuthzString(m, value));
}

/** `spiffe://td/ns/x/sa/y` → principal `td/ns/x/sa/y` and namespace `x`. */
export function sourceOf(principal: string | undefined): { principal?: string; namespace?: string } {
  if (!principal) return {};
  const p = principal.startsWith('spiffe://') ? principal.slice('spiffe://'.length) : principal;
  const m = /\/ns\/([^/]+)\/sa\//.exec(p);
  return m ? { principal: p, namespace: m[1]! } : { principal: p };
}

function matchSource(s: L7Source, req: AuthzRequest): boolean {
  const src = sourceOf(req.principal);
  if (s.principals.length > 0 && !anyMatch(s.principals, src.principal)) return false;
  if (s.notPrincipals.length > 0 && anyMatch(s.notPrincipals, src.principal)) return false;
  if (s.namespaces.length > 0 && !anyMatch(s.namespaces, src.namespace)) return false;
  if (s.notNamespaces.length > 0 && anyMatch(s.notNamespaces, src.namespace)) return false;
  if (s.requestPrincipals && s.requestPrincipals.length > 0 && !anyMatch(s.requestPrincipals, req.requestPrincipal)) return false;
  if (s.notRequestPrincipals && s.notRequestPrincipals.length > 0 && anyMatch(s.notRequestPrincipals, req.requestPrincipal)) return false;
  if (s.ipBlocks && s.ipBlocks.length > 0 && !inBlocks(s.ipBlocks, req.sourceIp)) return false;
  if (s.notIpBlocks && s.notIpBlocks.length > 0 && inBlocks(s.notIpBlocks, req.sourceIp)) return false;
  const remote = req.remoteIp ?? req.sourceIp;
  if (s.remoteIpBlocks && s.remoteIpBlocks.length > 0 && !inBlocks(s.remoteIpBlocks, remote)) return false;
  if (s.notRemoteIpBlocks && s.notRemoteIpBlocks.length > 0 && inBlocks(s.notRemoteIpBlocks, remote)) return false;
  return true;
}

function inBlocks(blocks: readonly string[], ip: string | undefined): boolean {
  return ip !== undefined && blocks.some((b) => cidrContains(b, ip));
}

function matchHost(list: readonly StringMatch[], authority: string): boolean {
  const host = hostOfAuthority(authority);
  const lower = list.map((m): StringMatch => ('exact' in m ? { exact: m.exact.toLowerCase() } : 'prefix' in m ? { prefix: m.prefix.toLowerCase() } : 'suffix' in m ? { suffix: m.suffix.toLowerCase() } : m));
  return anyMatch(lower, host) || anyMatch(lower, authority.toLowerCase());
}

function matchOperation(o: L7Operation, req: AuthzRequest): boolean {
  const q = req.path.indexOf('?');
  const path = q < 0 ? req.path : req.path.slice(0, q);
  const method = req.method.toUpperCase();
  if (o.hosts.length > 0 && !matchHost(o.hosts, req.authority)) return false;
  if (o.notHosts.length > 0 && matchHost(o.notHosts, req.authority)) return false;
  if (o.paths.length > 0 && !anyMatch(o.paths, path)) return false;
  if (o.notPaths.length > 0 && anyMatch(o.notPaths, path)) return false;
  if (o.methods.length > 0 && !o.methods.includes(method)) return false;
  if (o.notMethods.length > 0 && o.notMethods.includes(method)) return false;
  if (o.ports.length > 0 && (req.port === undefined || !o.ports.includes(req.port))) return false;
  if (o.notPorts.length > 0 && req.port !== undefined && o.notPorts.includes(req.port)) return false;
  return true;
}

function matchCondition(c: L7Condition, req: AuthzRequest): boolean {
  if (c.claim) {
    // A list claim matches when any element does; no token, or no such claim, matches no value.
    const values = claimValues(req.claims, c.claim);
    if (c.values.length > 0 && !values.some((v) => anyMatch(c.values, v))) return false;
    if (c.notValues.length > 0 && values.some((v) => anyMatch(c.notValues, v))) return false;
    return true;
  }
  const raw = req.headers[c.header.toLowerCase()];
  const value = Array.isArray(raw) ? raw.join(',') : raw;
  if (c.values.length > 0 && !anyMatch(c.values, value)) return false;
  if (c.notValues.length > 0 && anyMatch(c.notValues, value)) return false;
  return true;
}

export function matchRule(r: L7Rule, req: AuthzRequest): boolean {
  if (r.from.length > 0 && !r.from.some((s) => matchSource(s, req))) return false;
  if (r.fromAll && !r.fromAll.every((s) => matchSource(s, req))) return false;
  if (r.to.length > 0 && !r.to.some((o) => matchOperation(o, req))) return false;
  return r.when.every((c) => matchCondition(c, req));
}

export function matchPolicy(p: L7AuthorizationPolicy, req: AuthzRequest): boolean {
  return p.rules.some((r) => matchRule(r, req));
}

/** True when a rule looks at anything only an HTTP request has. */
function usesHttp(r: L7Rule): boolean {
  const httpSource = (s: L7Source): boolean => (s.requestPrincipals?.length ?? 0) > 0 || (s.notRequestPrincipals?.length ?? 0) > 0;
  return (
    r.when.length > 0 ||
    r.from.some(httpSource) ||
    (r.fromAll ?? []).some(httpSource) ||
    r.to.some((o) => o.hosts.length + o.notHosts.length + o.paths.length + o.notPaths.length + o.methods.length + o.notMethods.length > 0)
  );
}

/** A rule without its HTTP attributes (a DENY rule on a TCP connection matches more). */
function withoutHttp(r: L7Rule): L7Rule {
  const src = (s: L7Source): L7Source => ({ ...s, requestPrincipals: [], notRequestPrincipals: [] });
  return {
    from: r.from.map(src),
    to: r.to.map((o) => ({ ...o, hosts: [], notHosts: [], paths: [], notPaths: [], methods: [], notMethods: [] })),
    when: [],
    ...(r.fromAll ? { fromAll: r.fromAll.map(src) } : {}),
  };
}

/** A TCP connection's attributes for policy matching (no HTTP request). */
export interface ConnectionAttributes {
  port: number;
  sourceIp?: string;
  principal?: string;
}

function connectionRequest(conn: ConnectionAttributes): AuthzRequest {
  return { method: '', path: '', authority: '', headers: {}, port: conn.port, ...(conn.sourceIp !== undefined ? { sourceIp: conn.sourceIp } : {}), ...(conn.principal !== undefined ? { principal: conn.principal } : {}) };
}

/** Policies as Envoy's network RBAC takes them: ALLOW/AUDIT rules using HTTP attributes left out, DENY/CUSTOM rules without them. */
function forConnections(policies: readonly L7AuthorizationPolicy[]): L7AuthorizationPolicy[] {
  return policies.map((p): L7AuthorizationPolicy => ({ ...p, rules: p.action === 'DENY' || p.action === 'CUSTOM' ? p.rules.map(withoutHttp) : p.rules.filter((r) => !usesHttp(r)) }));
}

/**
 * A TCP connection (a waypoint's TCP and TLS routes, an ingress gateway's TCP and TLS passthrough
 * listeners) under the DENY and ALLOW policies, as Envoy's network RBAC filter takes them: an
 * ALLOW or AUDIT rule using HTTP attributes is left out (allows less), a DENY rule loses them
 * (denies more). CUSTOM policies are connectionCustom's, checked first.
 */
export function authorizeConnection(policies: readonly L7AuthorizationPolicy[], conn: ConnectionAttributes): AuthzVerdict {
  return authorizeRequest(forConnections(policies), connectionRequest(conn));
}

/** What the CUSTOM policies say of a TCP connection: nothing matched, deny without asking, or ask this gRPC provider. */
export type ConnectionCustom = { kind: 'none' } | { kind: 'deny'; policy: string; reason: string } | { kind: 'check'; provider: ExtAuthzProvider; policy: string };

/**
 * The CUSTOM policies matching a TCP connection (their rules without HTTP attributes, as Istio's
 * network filter chain builds them), as Istio's network ext_authz does it: a matching policy
 * whose provider is unusable denies (`deny-due-to-bad-CUSTOM-action`); a policy with an
 * `envoyExtAuthzHttp` provider is ignored (Istio builds no TCP filter for it: an HTTP authorizer
 * cannot check a byte stream); the gRPC providers left are asked, one per proxy (different ones deny).
 */
export function connectionCustom(policies: readonly L7AuthorizationPolicy[], conn: ConnectionAttributes): ConnectionCustom {
  const req = connectionRequest(conn);
  const matched = forConnections(policies.filter((p) => p.action === 'CUSTOM' && !p.dryRun)).filter((p) => matchPolicy(p, req));
  const bad = matched.find((p) => !p.provider);
  if (bad) return { kind: 'deny', policy: bad.name, reason: `extension provider ${JSON.stringify(bad.providerName)} is not usable` };
  const grpc = matched.filter((p) => p.provider!.protocol === 'grpc');
  if (grpc.length === 0) return { kind: 'none' };
  const provider = grpc[0]!.provider!;
  if (grpc.some((p) => p.provider!.name !== provider.name)) return { kind: 'deny', policy: grpc[0]!.name, reason: `the matching CUSTOM policies name different providers (${[...new Set(grpc.map((p) => p.providerName))].join(', ')})` };
  return { kind: 'check', provider, policy: grpc[0]!.name };
}

export function authorizeRequest(policies: readonly L7AuthorizationPolicy[], req: AuthzRequest): AuthzVerdict {
  const audited: string[] = [];
  const dryRunDenied: string[] = [];
  const enforced = policies.filter((p) => !p.dryRun);
  for (const p of policies) {
    if (p.action === 'AUDIT' && matchPolicy(p, req)) audited.push(p.name);
  }
  for (const p of policies.filter((x) => x.dryRun)) {
    const m = matchPolicy(p, req);
    if ((p.action === 'DENY' && m) || (p.action === 'ALLOW' && !m)) dryRunDenied.push(p.name);
  }
  const deny = enforced.find((p) => p.action === 'DENY' && matchPolicy(p, req));
  if (deny) return { allowed: false, reason: 'deny-matched', policy: deny.name, audited, dryRunDenied };
  const allows = enforced.filter((p) => p.action === 'ALLOW');
  if (allows.length === 0) return { allowed: true, reason: 'no-policy', audited, dryRunDenied };
  const allow = allows.find((p) => matchPolicy(p, req));
  if (allow) return { allowed: true, reason: 'allow-matched', policy: allow.name, audited, dryRunDenied };
  return { allowed: false, reason: 'no-allow-match', audited, dryRunDenied };
}
