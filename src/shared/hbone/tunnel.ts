/**
 * HBONE framing: the CONNECT request that names the target when a tunnel stream opens, the
 * headers that travel with it, the status codes, and reading the peer's SPIFFE identity.
 */
import * as crypto from 'node:crypto';
import type * as http2 from 'node:http2';
import type { TLSSocket, PeerCertificate } from 'node:tls';
import { AmbitError } from '../errors.js';
import { tryParseSpiffeId } from '../identity.js';
import type { Service, Workload } from '../model.js';
import { formatAddress, normalizeIp, type Address } from '../address.js';
import { clusterOf } from '../state/workloads.js';

/** The port HBONE listens on: the agent's inbound side and every waypoint. */
export const HBONE_PORT = 15008;

export const HBONE_STATUS = { OK: 200, BAD_REQUEST: 400, DENIED: 401, UPSTREAM_FAILED: 503 } as const;

/** Response header carrying the bounded reason of a non-200 reply (e.g. `policy_denied`, `ip_mismatch`). */
export const REASON_HEADER = 'x-ambit-reason';

/**
 * HTTP/2 windows larger than the 64 KiB defaults. ztunnel uses 4 MiB per stream and 16 MiB per
 * connection. Here 16 MiB windows gave no more single-stream throughput than 4 MiB (218 vs 206
 * MiB/s in one benchmark run: the path is CPU-bound), and before the send buffers below they made
 * the mutual stall likelier; 4 MiB keeps each tunnel's kernel send buffer at 10 MiB.
 */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
export const CONNECTION_WINDOW_BYTES = 4 * 1024 * 1024;
export const MAX_FRAME_BYTES = 1024 * 1024;

/**
 * Kernel send buffer of every HBONE connection an agent opens or accepts. node:http2 stops reading
 * its socket while one of its writes is still in progress (nodejs/node#29399). When both ends of
 * a tunnel carry bulk data, each end's write can wait for the other to read, and neither reads: a
 * mutual stall, seen here as 20 parallel 64 MiB echo transfers hanging with both sockets' queues
 * full and 128 KiB receive buffers (autotuning had not grown them yet). Whatever one end has
 * written and the peer has not read is bounded by the peer's connection window plus a few control
 * frames, so a send buffer that holds a whole window (twice that once the kernel doubles it) lets
 * every write complete: the agent always goes back to reading, and the peer's writes drain.
 */
export const TUNNEL_SEND_BUFFER_BYTES = CONNECTION_WINDOW_BYTES + 1024 * 1024;

/** Certificate material a tunnel end presents (CertManager's WorkloadCertificate fits). */
export interface TunnelCertificate {
  identity?: string;
  certChainPem: string[];
  keyPem: string;
  rootsPem: string[];
}

export interface ConnectRequestInput {
  target: Address;
  srcIp: string;
  /**
   * The client's own source port, written as ztunnel does (`for="<ip>:<port>"`): the destination
   * agent dials the app from the same address and port, so the app sees the tuple the client made.
   */
  srcPort?: number;
  src?: Workload;
  service?: Service;
  random?: () => number;
}

/** The HBONE CONNECT request headers: `:authority` = target, forwarded, baggage, traceparent. */
export function buildConnectHeaders(i: ConnectRequestInput): http2.OutgoingHttpHeaders {
  const forIp = i.srcIp.includes(':') ? `[${i.srcIp}]` : i.srcIp;
  const forNode = i.srcPort ? `${forIp}:${i.srcPort}` : forIp;
  const forwarded = `for="${forNode}"` + (i.service ? `;host=${i.service.hostname}` : '');
  const headers: http2.OutgoingHttpHeaders = {
    ':method': 'CONNECT',
    ':authority': formatAddress(i.target),
    forwarded,
    traceparent: newTraceparent(i.random),
  };
  const baggage = i.src ? buildBaggage(i.src) : '';
  if (baggage) headers['baggage'] = baggage;
  return headers;
}

/** Baggage per workload object: config objects are replaced on change, never edited, so one string serves every connection of a source. */
const baggageOf = new WeakMap<Workload, string>();

/** W3C baggage with ztunnel's keys. */
export function buildBaggage(w: Workload): string {
  let baggage = baggageOf.get(w);
  if (baggage === undefined) baggageOf.set(w, (baggage = composeBaggage(w)));
  return baggage;
}

function composeBaggage(w: Workload): string {
  const parts: string[] = [];
  const cluster = clusterOf(w);
  if (cluster !== 'unknown') parts.push(`k8s.cluster.name=${cluster}`);
  parts.push(`k8s.namespace.name=${w.namespace}`);
  if (w.workloadName) parts.push(`k8s.${w.workloadType}.name=${w.workloadName}`);
  if (w.canonicalName) parts.push(`service.name=${w.canonicalName}`);
  if (w.canonicalRevision) parts.push(`service.version=${w.canonicalRevision}`);
  if (w.locality?.region) parts.push(`cloud.region=${w.locality.region}`);
  if (w.locality?.zone) parts.push(`cloud.availability_zone=${w.locality.zone}`);
  return parts.map((p) => p.replace(/[,;\s]/g, '_')).join(',');
}

/** A fresh random W3C traceparent: `00-<32 hex>-<16 hex>-00`. */
export function newTraceparent(random?: () => number): string {
  const hex = (bytes: number): string =>
    random ? Array.from({ length: bytes }, () => Math.floor(random() * 256).toString(16).padStart(2, '0')).join('') : '';
  if (random) return `00-${hex(16)}-${hex(8)}-00`;
  if (randomOffset + 24 > randomPool.length) {
    randomPool = crypto.randomBytes(24 * 256);
    randomOffset = 0;
  }
  const id = randomPool.toString('hex', randomOffset, (randomOffset += 24));
  return `00-${id.slice(0, 32)}-${id.slice(32)}-00`;
}

/** Random bytes for trace ids, drawn 6 KiB at a time: one randomBytes call per connection cost ~2.5% of the agent's CPU. */
let randomPool = Buffer.alloc(0);
let randomOffset = 0;

/** The `for=` address of a `forwarded` header (brackets and port stripped), or undefined. */
export function parseForwardedFor(header: string | string[] | undefined): string | undefined {
  return parseForwardedSource(header)?.address;
}

/** The `for=` node of a `forwarded` header: its address, and its port when one in 1..65535 is given. */
export function parseForwardedSource(header: string | string[] | undefined): { address: string; port?: number } | undefined {
  const h = Array.isArray(header) ? header[0] : header;
  if (!h) return undefined;
  const m = /(?:^|[;,\s])for="?([^";,]+)"?/i.exec(h);
  if (!m) return undefined;
  const v = m[1]!;
  const node = v.startsWith('[') ? /^\[([^\]]*)\]?(?::(\d+))?/.exec(v) : /^([0-9.]+):(\d+)$/.exec(v);
  const address = node ? node[1]! : v;
  const port = node?.[2] === undefined ? 0 : Number(node[2]);
  return port >= 1 && port <= 65535 ? { address, port } : { address };
}

/**
 * The client's port a tunnel peer forwarded (a parseForwardedSource result), used only when the
 * `for=` address is the peer's own (`peerIp`): a waypoint forwards its client's address, whose
 * port is not the waypoint's.
 */
export function forwardedClientPort(f: { address: string; port?: number } | undefined, peerIp: string): number | undefined {
  return f?.port !== undefined && normalizeIp(f.address) === normalizeIp(peerIp) ? f.port : undefined;
}

/** URI SANs of a certificate (`URI:spiffe://...` entries of subjectaltname). */
export function uriSans(cert: Pick<PeerCertificate, 'subjectaltname'> | undefined): string[] {
  const san = cert?.subjectaltname;
  if (!san) return [];
  return san
    .split(/,\s*/)
    .filter((e) => e.startsWith('URI:'))
    .map((e) => e.slice(4));
}

const peerIdentities = new WeakMap<TLSSocket, string>();

/**
 * The peer's SPIFFE identity on a verified TLS socket, or undefined. Read once per socket (a TLS
 * 1.3 peer certificate never changes; getPeerCertificate builds a fresh object each call, and
 * every tunnel stream asks).
 */
export function peerIdentity(socket: TLSSocket): string | undefined {
  const known = peerIdentities.get(socket);
  if (known !== undefined) return known;
  const id = uriSans(socket.getPeerCertificate()).find((u) => tryParseSpiffeId(u) !== undefined);
  if (id !== undefined) peerIdentities.set(socket, id);
  return id;
}

/** Maps a non-200 CONNECT reply to the error the outbound side branches on. */
export function tunnelStatusError(status: number, target: Address, tunnelAddress: Address, reason?: string): AmbitError {
  const t = formatAddress(target);
  const via = formatAddress(tunnelAddress);
  const details = { status, ...(reason ? { reason } : {}) };
  if (status === HBONE_STATUS.DENIED) {
    return new AmbitError('AMBIT_ERR_TUNNEL_REFUSED', `tunnel to ${t} via ${via} refused by the destination's authorization policy (401)`, { details });
  }
  if (status === HBONE_STATUS.UPSTREAM_FAILED) {
    return new AmbitError('AMBIT_ERR_UPSTREAM_CONNECT', `destination agent at ${via} could not connect to ${t} (503); is the app listening on that port?`, { details });
  }
  return new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', `tunnel to ${t} via ${via} failed with status ${status}${reason ? ` (${reason})` : ''}`, { details });
}
