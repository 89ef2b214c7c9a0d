/**
 * A route's CORS policy (Istio corsPolicy) as Envoy's CORS filter applies it. A request without an
 * Origin header, or on a route without a policy, is not a CORS request. An allowed origin (one a
 * matcher of allowOrigins matches, or any origin when a matcher matches "*"):
 *  - a preflight (OPTIONS with Access-Control-Request-Method) is answered here, 200 with the
 *    origin echoed and the allowed methods, headers, max age and credentials;
 *  - any other request goes on, and its response gets the origin, credentials and exposed headers.
 * A preflight from an origin not allowed goes on to the backend (unmatchedPreflights FORWARD) or
 * is answered 200 with no CORS headers (IGNORE); other requests from it go on untouched.
 */
import type { CorsPolicy } from '../../shared/routes.js';
import { matchString, type RequestHeaders } from '../route/router.js';

export type CorsDecision =
  /** Not a CORS request (or an origin not allowed): nothing to add. */
  | { kind: 'none' }
  /** Answer the preflight here with these headers (none for an ignored preflight). */
  | { kind: 'preflight'; headers: Record<string, string> }
  /** Go on; add these headers to whatever response the request gets. */
  | { kind: 'actual'; headers: Record<string, string> };

const NONE: CorsDecision = { kind: 'none' };

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function isOriginAllowed(policy: CorsPolicy, origin: string): boolean {
  return policy.allowOrigins.some((m) => matchString(m, '*') || matchString(m, origin));
}

export function decideCors(policy: CorsPolicy | undefined, method: string, headers: RequestHeaders): CorsDecision {
  if (!policy) return NONE;
  const origin = single(headers['origin']);
  if (origin === undefined || origin === '') return NONE;
  const requestMethod = single(headers['access-control-request-method']);
  const preflight = method === 'OPTIONS' && requestMethod !== undefined && requestMethod !== '';
  if (!isOriginAllowed(policy, origin)) return preflight && policy.unmatchedPreflights === 'IGNORE' ? { kind: 'preflight', headers: {} } : NONE;
  const out: Record<string, string> = { 'access-control-allow-origin': origin };
  if (policy.allowCredentials === true) out['access-control-allow-credentials'] = 'true';
  if (preflight) {
    if (policy.allowMethods.length > 0) out['access-control-allow-methods'] = policy.allowMethods.join(',');
    if (policy.allowHeaders.length > 0) out['access-control-allow-headers'] = policy.allowHeaders.join(',');
    if (policy.maxAgeSeconds !== undefined) out['access-control-max-age'] = String(policy.maxAgeSeconds);
    return { kind: 'preflight', headers: out };
  }
  if (policy.exposeHeaders.length > 0) out['access-control-expose-headers'] = policy.exposeHeaders.join(',');
  return { kind: 'actual', headers: out };
}
