/**
 * The request filters between routing and the backend: fault injection (delay, then abort), JWT
 * verification (jwt.ts: an invalid token is answered 401), L7 authorization, the local rate limit, CORS (cors.ts: a preflight is answered here; other CORS
 * requests carry the headers their response gets), and a route's redirect or direct response.
 * Each either lets the request through or answers it locally; a caller that leaves during a fault
 * delay ends the chain (`gone`).
 */
import type { Logger } from '../../shared/log.js';
import type { HttpRoute, RouteConfig } from '../../shared/routes.js';
import { RESPONSE_FLAGS, type WaypointMetrics } from '../metrics.js';
import type { RandomSource } from '../route/weighted.js';
import type { RequestHeaders } from '../route/router.js';
import { redirectLocation } from '../route/redirect.js';
import { authorizeRequest, RBAC_DENIED_BODY } from './authz.js';
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

export interface FilterRequest {
  reqId: string;
  method: string;
  path: string;
  authority: string;
  /** `http` or `https`: how the request reached this proxy (redirects keep it unless they set one). */
  scheme: string;
  headers: RequestHeaders;
  /** The service port the request was addressed to. */
  port: number | undefined;
  /** The caller's SPIFFE id, when it came over mTLS. */
  principal: string | undefined;
  /** Response flags of the request (a delay adds DI). */
  flags: string[];
  /** Aborts when the caller goes away. */
  downstream: AbortSignal;
}

export interface FilterDeps {
  metrics: WaypointMetrics;
  log: Logger;
  random: RandomSource;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  rateLimits: RateLimits;
  jwks: JwksCache;
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

  if (config.authorization.length > 0) {
    const verdict = authorizeRequest(config.authorization, { method: req.method, path: req.path, authority: req.authority, headers: req.headers, port: req.port, principal: req.principal, ...auth });
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
  const requestHeaders = jwt?.kind === 'valid' ? { set: jwt.setHeaders, remove: jwt.removeHeaders } : undefined;
  if (cors.kind !== 'actual' && !requestHeaders) return CONTINUE;
  return { kind: 'continue', ...(cors.kind === 'actual' ? { responseHeaders: corsHeaders } : {}), ...(requestHeaders ? { requestHeaders } : {}) };
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
