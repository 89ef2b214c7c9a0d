/**
 * The Location of a route's redirect (Istio HTTPRedirect), as Envoy's redirect action builds it:
 * scheme, host, port and path of the request URL, each replaced when the redirect sets it.
 *  - `uri` replaces the whole path whatever the match was; the request's query string is kept
 *    unless `uri` carries its own.
 *  - `authority` replaces the host (and port, if it names one).
 *  - `port` (or `derivePort: FROM_REQUEST_PORT`: the port the request was addressed to) replaces
 *    the port; otherwise the request's port is kept, except that a scheme change drops the old
 *    scheme's default port (`http://a:80` → `https://a`).
 */
import type { RedirectPolicy } from '../../shared/routes.js';

export interface RedirectRequest {
  /** `http` or `https`: how the request reached this proxy. */
  scheme: string;
  /** The request's authority (Host), possibly with a port. */
  authority: string;
  /** Path with query string. */
  path: string;
  /** The service or listener port the request was addressed to. */
  port: number | undefined;
}

/** `host[:port]` split; IPv6 literals keep their brackets. */
function splitAuthority(authority: string): { host: string; port: string } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(authority);
  return m ? { host: m[1]!, port: m[2] ?? '' } : { host: authority, port: '' };
}

const DEFAULT_PORT: Record<string, string> = { http: '80', https: '443' };

export function redirectLocation(r: RedirectPolicy, req: RedirectRequest): string {
  const scheme = r.scheme ?? req.scheme;
  const newPort = r.port !== undefined ? String(r.port) : r.derivePort === 'FROM_REQUEST_PORT' && req.port !== undefined ? String(req.port) : '';
  let host: string;
  if (r.authority !== undefined) host = r.authority;
  else {
    const { host: h, port } = splitAuthority(req.authority);
    const dropPort = newPort !== '' || (scheme !== req.scheme && port === DEFAULT_PORT[req.scheme]);
    host = dropPort || port === '' ? h : `${h}:${port}`;
  }
  let path = req.path;
  if (r.uri !== undefined) {
    const q = req.path.indexOf('?');
    path = r.uri.includes('?') || q < 0 ? r.uri : r.uri + req.path.slice(q);
  }
  if (!path.startsWith('/')) path = `/${path}`;
  return `${scheme}://${host}${newPort !== '' ? `:${newPort}` : ''}${path}`;
}
