/**
 * Size limits of the waypoint's and the ingress gateway's HTTP front, named in the README
 * ("Data-path hardening"). Requests over them are refused before routing: 431 for HTTP/1.1
 * headers, a refused stream for HTTP/2.
 */

/** Request line plus headers (HTTP/1.1) or the decoded header list (HTTP/2): Envoy's default max_request_headers_kb. */
export const MAX_REQUEST_HEADER_BYTES = 60 * 1024;

/** Header fields in one HTTP/2 header list (Node's maxHeaderListPairs, counting pseudo-headers). */
export const MAX_REQUEST_HEADER_PAIRS = 128;

/** Options of every node:http server in front of requests: strict parser, bounded headers. */
export const HTTP1_LIMITS = { maxHeaderSize: MAX_REQUEST_HEADER_BYTES, insecureHTTPParser: false } as const;

/** Options of every node:http2 server in front of requests. */
export const HTTP2_LIMITS = { maxHeaderListPairs: MAX_REQUEST_HEADER_PAIRS, settings: { maxHeaderListSize: MAX_REQUEST_HEADER_BYTES } } as const;

/**
 * Refuses an HTTP/1.1 request whose transfer-encoding does not end in `chunked` (RFC 9112 6.3: its
 * body length cannot be determined, so the server must answer 400 and close). node:http's parser
 * accepts such a request and reads its body until the connection closes, which a backend may frame
 * differently: a smuggling gap. Returns true when it answered.
 */
export function refuseAmbiguousFraming(req: { httpVersionMajor: number; headers: Record<string, string | string[] | undefined> }, res: { headersSent: boolean; writeHead(status: number, headers: Record<string, string>): unknown; end(body?: string): unknown }): boolean {
  if (req.httpVersionMajor !== 1) return false;
  const te = req.headers['transfer-encoding'];
  if (te === undefined) return false;
  const codings = (Array.isArray(te) ? te.join(',') : te).split(',').map((c) => c.trim().toLowerCase());
  if (codings[codings.length - 1] === 'chunked' && codings.filter((c) => c === 'chunked').length === 1) return false;
  if (!res.headersSent) {
    res.writeHead(400, { connection: 'close', 'content-type': 'text/plain' });
    res.end('transfer-encoding must end in chunked\n');
  }
  return true;
}
