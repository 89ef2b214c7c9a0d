/**
 * Header handling at the waypoint's edges: what is hop-by-hop (never forwarded), a route's header
 * operations, and the headers a request carries upstream (trace context, x-forwarded-proto,
 * x-request-id).
 */
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import type { HeaderOps, HttpRoute } from '../../shared/routes.js';

export type ServerRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type ServerResponse = http.ServerResponse | http2.Http2ServerResponse;

/** The methods both response kinds share, callable on the union. */
export function out(res: ServerResponse): http.ServerResponse {
  return res as unknown as http.ServerResponse;
}

export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings', 'te', 'trailer']);

export function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

const NO_TOKENS: ReadonlySet<string> = new Set();

/** Header names a `Connection` header lists (hop-by-hop for this message); usually none. */
export function connectionTokens(v: string | string[] | undefined): ReadonlySet<string> {
  if (v === undefined) return NO_TOKENS;
  return new Set((headerString(v) ?? '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
}

export function applyHeaderOps(headers: Record<string, string | string[] | number | undefined>, ops: HeaderOps): void {
  for (const name of ops.remove) delete headers[name.toLowerCase()];
  for (const [k, v] of Object.entries(ops.set)) headers[k.toLowerCase()] = v;
  for (const [k, v] of Object.entries(ops.add)) {
    const key = k.toLowerCase();
    const cur = headers[key];
    if (cur === undefined) headers[key] = v;
    else headers[key] = [...(Array.isArray(cur) ? cur : [String(cur)]), v];
  }
}

/** The request's headers as sent upstream: end-to-end ones only, trace context, the route's operations. */
export function upstreamHeaders(req: ServerRequest, route: HttpRoute, traceSet: Record<string, string>, traceRemove: string[]): http.OutgoingHttpHeaders {
  const headers: Record<string, string | string[] | number | undefined> = {};
  const connTokens = connectionTokens(req.headers.connection);
  const inHeaders = req.headers;
  for (const k in inHeaders) {
    const v = inHeaders[k];
    if (v === undefined || k.charCodeAt(0) === 58 /* ':' */ || HOP_BY_HOP.has(k) || connTokens.has(k)) continue;
    headers[k] = v;
  }
  if (headerString(req.headers.te)?.toLowerCase().includes('trailers')) headers['te'] = 'trailers';
  for (const k of traceRemove) delete headers[k];
  Object.assign(headers, traceSet);
  headers['x-forwarded-proto'] ??= 'http';
  if (headers['x-request-id'] === undefined) headers['x-request-id'] = crypto.randomUUID();
  applyHeaderOps(headers, route.headers.request);
  return headers as http.OutgoingHttpHeaders;
}
