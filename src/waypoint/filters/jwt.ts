/**
 * RequestAuthentication at the waypoint (RouteConfig.jwtRules), as Envoy's jwt_authn filter runs
 * it for Istio: the token is taken from the first location that has one (each rule's headers with
 * their prefixes, then its query parameters; Istio's default is `Authorization: Bearer` and
 * `access_token`); no token → the request goes on with no request principal; a token must verify
 * (signature against the rule's JWKS, issuer, audiences, exp/nbf) against the rule of its issuer,
 * or the request is answered 401. A valid token gives the request principal `<iss>/<sub>` and its
 * claims to authorization, and the upstream request loses the token header (unless
 * forwardOriginalToken) and may carry the payload (outputPayloadToHeader). JWS verification is
 * jose's; the JWKS comes inline or from jwksUri (fetched by jose, cached, refetched on an unknown kid).
 */
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { JwtRule } from '../../shared/routes.js';
import type { RequestHeaders } from '../route/router.js';

export type JwtOutcome =
  | { kind: 'none' }
  | { kind: 'invalid'; message: string }
  | { kind: 'valid'; principal: string; claims: JWTPayload; removeHeaders: string[]; setHeaders: Record<string, string> };

const NONE: JwtOutcome = { kind: 'none' };
const DEFAULT_HEADERS = [{ name: 'authorization', prefix: 'Bearer ' }];
const DEFAULT_PARAMS = ['access_token'];

/** Key sets by source, kept across requests and config updates while the source stays the same. */
export class JwksCache {
  private readonly sets = new Map<string, JWTVerifyGetKey>();

  of(rule: JwtRule): JWTVerifyGetKey {
    const key = rule.jwks !== undefined ? `jwks:${rule.jwks}` : `uri:${rule.jwksUri ?? ''}`;
    let set = this.sets.get(key);
    if (!set) {
      set = rule.jwks !== undefined ? createLocalJWKSet(JSON.parse(rule.jwks) as Parameters<typeof createLocalJWKSet>[0]) : createRemoteJWKSet(new URL(rule.jwksUri!), { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 600_000 });
      this.sets.set(key, set);
    }
    return set;
  }
}

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Where a rule looks for its token: its headers and parameters, or Istio's defaults when it names neither. */
function locations(rule: JwtRule): { headers: Array<{ name: string; prefix: string }>; params: string[] } {
  const defaulted = rule.fromHeaders.length === 0 && rule.fromParams.length === 0;
  return { headers: defaulted ? DEFAULT_HEADERS : rule.fromHeaders, params: defaulted ? DEFAULT_PARAMS : rule.fromParams };
}

/** The first token any rule's locations hold, and the header it came in (to strip upstream). */
export function findToken(rules: readonly JwtRule[], headers: RequestHeaders, path: string): { token: string; header?: string } | undefined {
  const q = path.indexOf('?');
  const query = q < 0 ? undefined : new URLSearchParams(path.slice(q + 1));
  for (const rule of rules) {
    const loc = locations(rule);
    for (const h of loc.headers) {
      const v = single(headers[h.name.toLowerCase()]);
      if (v === undefined) continue;
      if (v.toLowerCase().startsWith(h.prefix.toLowerCase()) && v.length > h.prefix.length) return { token: v.slice(h.prefix.length).trim(), header: h.name.toLowerCase() };
    }
    for (const p of loc.params) {
      const v = query?.get(p);
      if (v) return { token: v };
    }
  }
  return undefined;
}

export async function verifyJwt(cache: JwksCache, rules: readonly JwtRule[], headers: RequestHeaders, path: string): Promise<JwtOutcome> {
  if (rules.length === 0) return NONE;
  const found = findToken(rules, headers, path);
  if (!found) return NONE;
  let issuer: string | undefined;
  try {
    issuer = decodeJwt(found.token).iss;
  } catch {
    return { kind: 'invalid', message: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections' };
  }
  const rule = rules.find((r) => r.issuer === issuer);
  if (!rule) return { kind: 'invalid', message: 'Jwt issuer is not configured' };
  try {
    const { payload } = await jwtVerify(found.token, cache.of(rule), { issuer: rule.issuer, ...(rule.audiences.length > 0 ? { audience: rule.audiences } : {}) });
    const setHeaders: Record<string, string> = {};
    if (rule.outputPayloadToHeader) setHeaders[rule.outputPayloadToHeader.toLowerCase()] = Buffer.from(JSON.stringify(payload)).toString('base64url');
    return { kind: 'valid', principal: `${payload.iss ?? ''}/${payload.sub ?? ''}`, claims: payload, removeHeaders: !rule.forwardOriginalToken && found.header ? [found.header] : [], setHeaders };
  } catch (e) {
    if (e instanceof errors.JWTExpired) return { kind: 'invalid', message: 'Jwt is expired' };
    if (e instanceof errors.JWTClaimValidationFailed && e.claim === 'aud') return { kind: 'invalid', message: 'Audiences in Jwt are not allowed' };
    if (e instanceof errors.JWKSTimeout || (e instanceof Error && /fetch|ECONNREFUSED|ENOTFOUND/i.test(e.message))) return { kind: 'invalid', message: 'Jwks remote fetch is failed' };
    return { kind: 'invalid', message: 'Jwt verification fails' };
  }
}

/** A claim at `path` (`request.auth.claims[a][b]`), as the strings authorization compares: a list gives its elements. */
export function claimValues(claims: JWTPayload | undefined, path: readonly string[]): string[] {
  let v: unknown = claims;
  for (const k of path) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return [];
    v = (v as Record<string, unknown>)[k];
  }
  if (typeof v === 'string') return [v];
  if (typeof v === 'number' || typeof v === 'boolean') return [String(v)];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}
