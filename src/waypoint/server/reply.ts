/**
 * Answers to the caller: the upstream response streamed back (end-to-end headers, the route's
 * response header operations, HTTP/2 trailers and gRPC trailers-only answers passed through), a
 * local reply (text, or trailers-only gRPC for gRPC callers), and the local reply each dispatch
 * failure gets, with Envoy's bodies and response flags.
 */
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import type { Logger } from '../../shared/log.js';
import type { HttpRoute } from '../../shared/routes.js';
import type { DispatchFailure } from '../dispatch/dispatch.js';
import type { UpstreamResponse } from '../endpoint/upstream.js';
import { RESPONSE_FLAGS } from '../metrics.js';
import { applyHeaderOps, connectionTokens, headerString, HOP_BY_HOP, out, type ServerResponse } from './headers.js';
import type { RequestState } from './telemetry.js';

const GRPC_FOR_HTTP: Record<number, number> = { 400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 4 };

/** Streams `resp` to the caller; resolves once the body ended (trailers sent) or either side closed. */
export function sendResponse(log: Logger, st: RequestState, res: ServerResponse, resp: UpstreamResponse, route: HttpRoute, addHeaders?: Record<string, string>): Promise<void> {
  const headers: Record<string, string | string[] | number | undefined> = {};
  const connTokens = connectionTokens(resp.headers.connection);
  const respHeaders = resp.headers;
  for (const k in respHeaders) {
    const v = respHeaders[k];
    if (v === undefined || HOP_BY_HOP.has(k) || connTokens.has(k)) continue;
    headers[k] = v;
  }
  applyHeaderOps(headers, route.headers.response);
  if (addHeaders) Object.assign(headers, addHeaders);
  st.status = resp.status;
  const gs = headerString(resp.headers['grpc-status']);
  if (gs !== undefined) st.grpcStatus = gs;
  return new Promise<void>((resolve) => {
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      resolve();
    };
    if (gs !== undefined && st.http2) {
      // A gRPC trailers-only answer (the status in the headers) stays one frame that ends the stream.
      resp.body.resume();
      try {
        (res as http2.Http2ServerResponse).stream.respond({ ...headers, ':status': resp.status } as http2.OutgoingHttpHeaders, { endStream: true });
      } catch (e) {
        log.warn({ reqId: st.reqId, err: e }, 'upstream response headers rejected');
        res.destroy();
      }
      return done();
    }
    // Kept for a Telemetry log format's %RESP(...)% when the config asked for request details.
    if (st.requestHeaders) st.responseHeaders = headers as Record<string, string | string[] | number | undefined>;
    try {
      out(res).writeHead(resp.status, headers as http.OutgoingHttpHeaders);
    } catch (e) {
      log.warn({ reqId: st.reqId, err: e }, 'upstream response headers rejected');
      resp.body.destroy();
      res.destroy();
      return done();
    }
    resp.body.on('data', (c: Buffer) => {
      st.bytesOut += c.length;
      if (!out(res).write(c)) {
        resp.body.pause();
        res.once('drain', () => resp.body.resume());
      }
    });
    resp.body.once('end', () => {
      resp.trailers.then((t) => {
        const trailers: Record<string, string> = {};
        for (const [k, v] of Object.entries(t)) if (!k.startsWith(':') && v !== undefined) trailers[k] = Array.isArray(v) ? v.join(',') : v;
        if (trailers['grpc-status'] !== undefined) st.grpcStatus = trailers['grpc-status'];
        if (Object.keys(trailers).length > 0 && st.http2) (res as http2.Http2ServerResponse).addTrailers(trailers);
        res.end();
        done();
      }, done);
    });
    resp.body.once('error', () => {
      st.flags.push(RESPONSE_FLAGS.UPSTREAM_RESET);
      res.destroy();
      done();
    });
    // Cut short: the request deadline passed (withDeadline destroys the body) or the upstream went away.
    resp.body.once('close', () => {
      if (!resp.body.readableEnded) {
        res.destroy();
        done();
      }
    });
    res.once('close', () => {
      if (!resp.body.readableEnded) resp.body.destroy();
      done();
    });
  });
}

/**
 * A local reply; to a gRPC caller, the trailers-only gRPC status for `status`. `headers` are added
 * (a redirect's Location, CORS headers); an empty body goes without a content type.
 */
export function localReply(st: RequestState, res: ServerResponse, status: number, body: string, flag: string, extraFlags: string[] = [], headers: Record<string, string> = {}): void {
  if (flag !== RESPONSE_FLAGS.NONE) st.flags.push(flag);
  st.flags.push(...extraFlags);
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  if (st.protocol === 'grpc' && status !== 200) return grpcReply(st, res, GRPC_FOR_HTTP[status] ?? 2, body, RESPONSE_FLAGS.NONE);
  st.status = status;
  const buf = Buffer.from(body);
  st.bytesOut += buf.length;
  out(res).writeHead(status, { ...(buf.length > 0 ? { 'content-type': 'text/plain' } : {}), 'content-length': String(buf.length), ...headers });
  res.end(buf);
}

/** A trailers-only gRPC reply: HTTP 200 with grpc-status in the headers. */
export function grpcReply(st: RequestState, res: ServerResponse, code: number, message: string, flag: string): void {
  if (flag !== RESPONSE_FLAGS.NONE) st.flags.push(flag);
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  st.status = 200;
  st.grpcStatus = String(code);
  const headers = { 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) };
  // Trailers-only: one HEADERS frame that ends the stream (gRPC clients take the status only from
  // a frame that ends the stream; headers followed by an empty DATA frame read as "no status").
  if (st.http2) (res as http2.Http2ServerResponse).stream.respond({ ':status': 200, ...headers }, { endStream: true });
  else {
    out(res).writeHead(200, headers);
    res.end();
  }
}

/** The local reply for a request the dispatch stack could not get a response for (none when the caller left). */
export function failureReply(st: RequestState, res: ServerResponse, f: DispatchFailure, headers: Record<string, string> = {}): void {
  const retried = f.detail.retryLimit ? [RESPONSE_FLAGS.UPSTREAM_RETRY_LIMIT] : [];
  switch (f.kind) {
    case 'cancelled':
      st.flags.push(RESPONSE_FLAGS.DOWNSTREAM_RESET);
      return;
    case 'overflow':
      return localReply(st, res, 503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow', RESPONSE_FLAGS.UPSTREAM_OVERFLOW, [], headers);
    case 'no-healthy-upstream':
      return localReply(st, res, 503, 'no healthy upstream', RESPONSE_FLAGS.NO_HEALTHY_UPSTREAM, [], headers);
    case 'timeout':
      return localReply(st, res, 504, 'upstream request timeout', RESPONSE_FLAGS.UPSTREAM_TIMEOUT, retried, headers);
    case 'connect-failure':
      return localReply(st, res, 503, 'upstream connect error or disconnect/reset before headers. reset reason: connection failure', RESPONSE_FLAGS.UPSTREAM_CONNECT_FAILURE, retried, headers);
    case 'reset':
    case 'refused-stream':
      return localReply(st, res, 503, 'upstream connect error or disconnect/reset before headers. reset reason: connection termination', RESPONSE_FLAGS.UPSTREAM_RESET, retried, headers);
  }
}
