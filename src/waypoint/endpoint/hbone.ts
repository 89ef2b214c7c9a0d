/**
 * The waypoint's HBONE leg out: a ConnectFn that opens an HBONE CONNECT stream (through the
 * shared TunnelPool, with the waypoint's own identity) to an endpoint's node, so HttpUpstream
 * speaks HTTP/1.1 or HTTP/2 inside the tunnel exactly as it does over plain TCP.
 */
import type * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { OpenTunnel, TunnelOpenRequest } from '../../shared/hbone/pool.js';
import type { Address } from '../../shared/address.js';
import { HBONE_PORT, buildConnectHeaders } from '../../shared/hbone/tunnel.js';
import type { ConnectFn, Endpoint } from './upstream.js';

/** What the waypoint needs from a tunnel pool (TunnelPool fits). */
export interface TunnelOpener {
  open(req: TunnelOpenRequest): Promise<OpenTunnel>;
}

export interface HboneConnectOptions {
  pool: TunnelOpener;
  /** The waypoint's SPIFFE id (its certificate). */
  srcIdentity: string;
  /** The waypoint pod's IP, sent as `forwarded: for=`. */
  srcIp: string;
  /** Where the endpoint's tunnel terminates; default the endpoint's own address on 15008. */
  tunnelAddressOf?: (endpoint: Endpoint) => Address;
  /** Identities the endpoint may present; default its `principal`. */
  expectedIdentitiesOf?: (endpoint: Endpoint) => string[];
  /** Extra CONNECT headers (e.g. baggage of the original caller). */
  extraHeaders?: http2.OutgoingHttpHeaders;
}

/** A ConnectFn for HttpUpstream that tunnels to `endpoint.address:endpoint.port` over HBONE. */
export function hboneConnect(o: HboneConnectOptions): ConnectFn {
  return async (endpoint: Endpoint): Promise<Duplex> => {
    const target = { address: endpoint.address, port: endpoint.port };
    const expected = o.expectedIdentitiesOf?.(endpoint) ?? (endpoint.principal ? [endpoint.principal] : []);
    const headers = { ...buildConnectHeaders({ target, srcIp: o.srcIp }), ...o.extraHeaders };
    const open = await o.pool.open({
      srcIdentity: o.srcIdentity,
      expectedIdentities: expected,
      tunnelAddress: o.tunnelAddressOf?.(endpoint) ?? { address: endpoint.address, port: HBONE_PORT },
      target,
      headers,
    });
    return open.stream;
  };
}
