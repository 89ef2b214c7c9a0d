/**
 * The request filters between routing and the backend: fault injection (delay, then abort), JWT
 * verification (jwt.ts: an invalid token is answered 401), CUSTOM authorization (ext-authz.ts: an
 * external authorizer), L7 authorization, the local rate limit, CORS (cors.ts: a preflight is answered here; other CORS
 * requests carry the headers their response gets), and a route's redirect or direct response.
 * Each either lets the request through or answers it locally; a caller that leaves during a fault
 * delay ends the chain (`gone`).
 */
import type { Logger } from '../../shared/log.js';
import type { HttpRoute, RouteConfig } from '../../shared/routes.js';
import { RESPONSE_FLAGS, type WaypointMetrics } from '../metrics.js';
import type { RandomSource } from '../route/weighted.js';
import { redirectLocation } from '../route/redirect.js';
import { authorizeRequest, matchPolicy, RBAC_DENIED_BODY, type AuthzRequest } from './authz.js';
import type { CheckedRequest, ExtAuthzClient } from './ext-authz.js';
import { decideCors } from './cors.js';
import { verifyJwt, type JwksCache } from './jwt.js';
import { decideFault } from './fault.js';
import { TokenBucket } from './rate-limit.js';

/** How the chain ended: on to the backend, a local reply, or the caller went away. */
export type FilterVerdict =
  /**
   * On to the backend; `responseHeaders` go on whatever response the request gets (CORS);
   * `requestHeaders` change the request upstream (a verified JWT's header removed, its payload set).
   */
  | { kind: 'continue'; responseHeaders?: Record<string, string>; requestHeaders?: { set: Record<string, string>; remove: string[] } }
  | { kind: 'reply'; status: number; body: string; flag: string; grpcStatus?: number; headers?: Record<string, string> }
  | { kind: 'gone' };

export interface FilterRequest extends CheckedRequest {
  /** Response flags of the request (a delay adds DI). */
  flags: string[];
  /** Aborts when the caller goes away. */
  downstream: AbortSignal;
  /** Ingress gateways: the downstream peer's address, and the original client's (trusted X-Forwarded-For). */
  sourceIp?: string;
  remoteIp?: string;
  /** Reads the request body's first bytes before it goes upstream (absent: the request has none). */
  readBody?: (maxBytes: number) => Promise<{ bytes: Buffer; complete: boolean }>;
}

export interface FilterDeps {
  metrics: WaypointMetrics;
  log: Logger;
  random: RandomSource;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  rateLimits: RateLimits;
  jwks: JwksCache;
  extAuthz: ExtAuthzClient;
}

const CONTINUE: FilterVerdict = { kind: 'continue' };

export async function runFilters(deps: FilterDeps, config: RouteConfig, route: HttpRoute, req: FilterRequest): Promise<FilterVerdict> {
  const fault = decideFault(route.fault, deps.random);
  if (fault.delayMs > 0) {
    deps.metrics.faults.inc({ destination_service: config.hostname, route: route.name, kind: 'delay' });
    req.flags.push(RESPONSE_FLAGS.FAULT_DELAY);
    await deps.sleep(fault.delayMs, req.downstream);
    if (req.downstream.aborted) return { kind: 'gone' };
  }
  if (fault.abort) {
    deps.metrics.faults.inc({ destination_service: config.hostname, route: route.name, kind: 'abort' });
    return { kind: 'reply', status: fault.abort.httpStatus, body: 'fault filter abort', flag: RESPONSE_FLAGS.FAULT_ABORT, ...(fault.abort.grpcStatus !== undefined ? { grpcStatus: fault.abort.grpcStatus } : {}) };
  }

  const jwt = config.jwtRules && config.jwtRules.length > 0 ? await verifyJwt(deps.jwks, config.jwtRules, req.headers, req.path) : undefined;
  if (jwt?.kind === 'invalid') {
    deps.metrics.policyDenials.inc({ destination_service: config.hostname, reason: 'jwt' });
    return { kind: 'reply', status: 401, body: jwt.message, flag: RESPONSE_FLAGS.NONE, headers: { 'www-authenticate': 'Bearer realm="http://' + req.authority + req.path.split('?')[0] + '", error="invalid_token"' } };
  }
  const auth = jwt?.kind === 'valid' ? { requestPrincipal: jwt.principal, claims: jwt.claims as Record<string, unknown> } : {};
  const authzReq = { method: req.method, path: req.path, authority: req.authority, headers: req.headers, port: req.port, principal: req.principal, ...(req.sourceIp !== undefined ? { sourceIp: req.sourceIp } : {}), ...(req.remoteIp !== undefined ? { remoteIp: req.remoteIp } : {}), ...auth };

  // CUSTOM first, then DENY, then ALLOW (Istio's order).
  const custom = await checkCustom(deps, config, req, authzReq);
  if (custom.kind === 'reply') return custom;
  if (req.downstream.aborted) return { kind: 'gone' };

  if (config.authorization.length > 0) {
    const verdict = authorizeRequest(config.authorization, authzReq);
    if (verdict.audited.length > 0 || verdict.dryRunDenied.length > 0) deps.log.info({ reqId: req.reqId, audited: verdict.audited, dryRunDenied: verdict.dryRunDenied }, 'authorization audit');
    if (!verdict.allowed) {
      deps.metrics.policyDenials.inc({ destination_service: config.hostname, reason: 'rbac' });
      return { kind: 'reply', status: 403, body: RBAC_DENIED_BODY, flag: RESPONSE_FLAGS.RBAC_DENIED };
    }
  }

  const bucket = deps.rateLimits.of(config);
  if (bucket && !bucket.tryTake()) {
    deps.metrics.policyDenials.inc({ destination_service: config.hostname, reason: 'rate_limited' });
    return { kind: 'reply', status: 429, body: 'local_rate_limited', flag: RESPONSE_FLAGS.RATE_LIMITED };
  }

  const cors = decideCors(route.cors, req.method, req.headers);
  if (cors.kind === 'preflight') return { kind: 'reply', status: 200, body: '', flag: RESPONSE_FLAGS.NONE, headers: cors.headers };
  const corsHeaders = cors.kind === 'actual' ? cors.headers : {};
  if (route.redirect) {
    const location = redirectLocation(route.redirect, { scheme: req.scheme, authority: req.authority, path: req.path, port: req.port });
    return { kind: 'reply', status: route.redirect.code, body: '', flag: RESPONSE_FLAGS.NONE, headers: { ...corsHeaders, location } };
  }
  if (route.directResponse) return { kind: 'reply', status: route.directResponse.status, body: route.directResponse.body ?? '', flag: RESPONSE_FLAGS.NONE, headers: corsHeaders };
  const requestHeaders = mergeHeaderChanges(jwt?.kind === 'valid' ? { set: jwt.setHeaders, remove: jwt.removeHeaders } : undefined, custom.requestHeaders);
  const responseHeaders = { ...custom.responseHeaders, ...corsHeaders };
  if (Object.keys(responseHeaders).length === 0 && !requestHeaders) return CONTINUE;
  return { kind: 'continue', ...(Object.keys(responseHeaders).length > 0 ? { responseHeaders } : {}), ...(requestHeaders ? { requestHeaders } : {}) };
}

type HeaderChanges = { set: Record<string, string>; remove: string[] };

function mergeHeaderChanges(a: HeaderChanges | undefined, b: HeaderChanges | undefined): HeaderChanges | undefined {
  if (!a || !b) return a ?? b;
  return { set: { ...a.set, ...b.set }, remove: [...a.remove, ...b.remove] };
}

/**
 * The CUSTOM policies: when one matches, its provider decides. A matching policy without a usable
 * provider, or matching policies naming different providers, deny (Istio allows one provider per
 * workload and denies what a bad CUSTOM policy matches). Dry-run CUSTOM policies are not checked.
 */
async function checkCustom(
  deps: FilterDeps,
  config: RouteConfig,
  req: FilterRequest,
  authzReq: AuthzRequest,
): Promise<{ kind: 'reply'; status: number; body: string; flag: string; headers?: Record<string, string> } | { kind: 'continue'; requestHeaders?: HeaderChanges; responseHeaders?: Record<string, string> }> {
  const matched = config.authorization.filter((p) => p.action === 'CUSTOM' && !p.dryRun && matchPolicy(p, authzReq));
  if (matched.length === 0) return { kind: 'continue' };
  const deny = (reason: string, policy: string) => {
    deps.metrics.policyDenials.inc({ destination_service: config.hostname, reason: 'ext_authz' });
    deps.log.info({ reqId: req.reqId, policy, reason }, 'CUSTOM authorization denied');
    return { kind: 'reply' as const, status: 403, body: RBAC_DENIED_BODY, flag: RESPONSE_FLAGS.RBAC_DENIED };
  };
  const bad = matched.find((p) => !p.provider);
  if (bad) return deny(`extension provider ${JSON.stringify(bad.providerName)} is not usable`, bad.name);
  const provider = matched[0]!.provider!;
  if (matched.some((p) => p.provider!.name !== provider.name)) return deny(`the matching CUSTOM policies name different providers (${[...new Set(matched.map((p) => p.providerName))].join(', ')})`, matched[0]!.name);
  let body: { bytes: Buffer; partial: boolean } | undefined;
  const wanted = provider.includeRequestBodyInCheck;
  if (wanted) {
    const held = req.readBody ? await req.readBody(wanted.maxRequestBytes) : { bytes: Buffer.alloc(0), complete: true };
    if (req.downstream.aborted) return { kind: 'continue' }; // the caller sees the abort next
    // Envoy's ext_authz: a body past maxRequestBytes is refused unless partial messages are allowed (even with failOpen).
    if (!held.complete && !wanted.allowPartialMessage) return { kind: 'reply', status: 413, body: 'Payload Too Large', flag: RESPONSE_FLAGS.NONE };
    body = { bytes: held.bytes, partial: !held.complete };
  }
  const v = await deps.extAuthz.check(provider, { reqId: req.reqId, method: req.method, path: req.path, authority: req.authority, scheme: req.scheme, headers: req.headers, protocol: req.protocol, principal: req.principal, port: req.port, signal: req.downstream, ...(body ? { body } : {}) });
  if (v.kind === 'deny') {
    deps.metrics.policyDenials.inc({ destination_service: config.hostname, reason: 'ext_authz' });
    if (v.error) deps.log.warn({ reqId: req.reqId, provider: provider.name, error: v.error }, 'external authorization failed; request denied');
    return { kind: 'reply', status: v.status, body: v.body, flag: RESPONSE_FLAGS.EXT_AUTHZ_DENIED, headers: v.headers };
  }
  if (v.failedOpen) deps.log.warn({ reqId: req.reqId, provider: provider.name, error: v.failedOpen }, 'external authorization failed; request allowed (failOpen)');
  const set = { ...v.setHeaders };
  for (const [k, value] of Object.entries(v.appendHeaders)) {
    const cur = req.headers[k];
    const prior = Array.isArray(cur) ? cur.join(',') : cur;
    set[k] = prior ? `${prior},${value}` : value;
  }
  const changed = Object.keys(set).length > 0 || v.removeHeaders.length > 0;
  return { kind: 'continue', ...(changed ? { requestHeaders: { set, remove: v.removeHeaders } } : {}), ...(Object.keys(v.responseHeaders).length > 0 ? { responseHeaders: v.responseHeaders } : {}) };
}

/** One token bucket per route config with a local rate limit, kept while its settings stay the same. */
export class RateLimits {
  private readonly buckets = new Map<string, { key: string; bucket: TokenBucket }>();

  constructor(private readonly now: () => number) {}

  of(config: RouteConfig): TokenBucket | undefined {
    if (!config.rateLimit) return undefined;
    const key = JSON.stringify(config.rateLimit);
    let rl = this.buckets.get(config.name);
    if (!rl || rl.key !== key) {
      rl = { key, bucket: new TokenBucket(config.rateLimit, this.now) };
      this.buckets.set(config.name, rl);
    }
    return rl.bucket;
  }
}
