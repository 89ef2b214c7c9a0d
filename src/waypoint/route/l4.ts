/**
 * Routing of connections the waypoint carries as bytes (RouteConfig tcpRoutes/tlsRoutes): the
 * first route whose match holds takes the connection. A TLS route matches by the SNI of the
 * ClientHello: a name as written (any case), `*.example.com` for any name under example.com, or
 * `*` for any (also none).
 */
import { callerMatches, type L4Route, type RouteCaller } from '../../shared/routes.js';
import { cidrContains } from '../../shared/address.js';

export function sniMatches(patterns: readonly string[], sni: string | undefined): boolean {
  const name = (sni ?? '').toLowerCase();
  return patterns.some((p) => {
    const pat = p.toLowerCase();
    if (pat === '*') return true;
    if (name === '') return false;
    if (pat.startsWith('*.')) return name.endsWith(pat.slice(1)) && name.length > pat.length - 1;
    return pat === name;
  });
}

/** The route of a connection to `port` (with `sni` for TLS routes), or undefined when none matches. */
export function selectL4Route(routes: readonly L4Route[] | undefined, port: number, sni?: string, caller?: RouteCaller, destination?: string): L4Route | undefined {
  return routes?.find(
    (r) =>
      r.match.length === 0 ||
      r.match.some(
        (m) =>
          (m.port === undefined || m.port === port) &&
          (m.sniHosts === undefined || sniMatches(m.sniHosts, sni)) &&
          callerMatches(m, caller) &&
          (m.destinationSubnets === undefined || (destination !== undefined && m.destinationSubnets.some((c) => cidrContains(c, destination)))),
      ),
  );
}
