/** A route's rewrite of the request path (Istio `rewrite.uri`, Gateway API URLRewrite). */
import type { HttpRoute } from '../../shared/routes.js';
import { matchRequest, splitPath, type RouteRequest } from './router.js';

/** Applies a route's rewrite to the path: the matched URI prefix (or exact path) is replaced. */
export function rewritePath(route: HttpRoute, req: RouteRequest): string {
  const rw = route.rewrite;
  if (rw?.uriPrefix === undefined && rw?.fullPath === undefined) return req.path;
  const { pathname, query } = splitPath(req.path);
  let out: string;
  if (rw.fullPath !== undefined) out = rw.fullPath;
  else {
    const prefix = rw.uriPrefix!;
    const m = route.match.find((x) => matchRequest(x, req))?.uri;
    let rest: string;
    if (rw.matchPrefix !== undefined) {
      const mp = rw.matchPrefix.replace(/\/+$/, '');
      rest = pathname.startsWith(mp) ? pathname.slice(mp.length) : pathname;
      // Gateway API: replacing "/api" in "/api/x" with "/" gives "/x", never "//x".
      if (prefix.endsWith('/') && rest.startsWith('/')) rest = rest.slice(1);
    } else if (m && 'prefix' in m) rest = pathname.slice(m.prefix.length);
    else if (m && 'exact' in m) rest = '';
    else rest = m ? '' : pathname.slice(1);
    out = prefix + rest;
  }
  if (out === '') out = '/';
  return query ? `${out}?${query}` : out;
}
