/**
 * Addresses as every binary writes and reads them: `ip:port` endpoints (v4, v6 in brackets,
 * v4-mapped v6 folded to v4) and `host:port` settings (parsed from the environment by env.ts).
 */
import { BlockList, isIP } from 'node:net';

/** An IP endpoint. */
export interface Address {
  address: string;
  port: number;
}

/** A `host:port` setting; the host may be a DNS name. */
export interface HostPort {
  host: string;
  port: number;
}

/** `ip:port`, with brackets for IPv6 (HTTP authority form). */
export function formatAddress(a: Address): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** `host:port`, with brackets for an IPv6 host. */
export function formatHostPort(a: HostPort): string {
  return formatAddress({ address: a.host, port: a.port });
}

/** Parses `ip:port` or `[v6]:port`; undefined when malformed. */
export function parseAddress(text: string): Address | undefined {
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text);
  const m = v6 ?? /^([0-9.]+):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  // Brackets hold IPv6 only (RFC 3986 IP-literal); a bare address must be a real IPv4 one.
  if (isIP(m[1]!) !== (v6 ? 6 : 4)) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { address: m[1]!, port };
}

/** Strips the IPv4-mapped prefix Node reports on dual-stack sockets (`::ffff:10.0.0.1`). */
export function normalizeIp(ip: string | undefined): string {
  if (!ip) return '';
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

const cidrCache = new Map<string, BlockList | null>();

/** `10.0.0.0/8`, `fd00::/8` or a bare address; v4-mapped v6 addresses compare as v4. */
export function cidrContains(cidr: string, ip: string): boolean {
  const addr = normalizeIp(ip);
  const family = isIP(addr);
  if (family === 0) return false;
  let list = cidrCache.get(cidr);
  if (list === undefined) {
    list = parseCidr(cidr);
    if (cidrCache.size > 10_000) cidrCache.clear();
    cidrCache.set(cidr, list);
  }
  return list !== null && list.check(addr, family === 4 ? 'ipv4' : 'ipv6');
}

function parseCidr(cidr: string): BlockList | null {
  const [rawAddr, rawLen, extra] = cidr.trim().split('/');
  if (extra !== undefined || rawAddr === undefined) return null;
  const addr = normalizeIp(rawAddr);
  const family = isIP(addr);
  if (family === 0) return null;
  const max = family === 4 ? 32 : 128;
  const len = rawLen === undefined ? max : Number(rawLen);
  if (!Number.isInteger(len) || len < 0 || len > max || (rawLen !== undefined && !/^\d+$/.test(rawLen))) return null;
  const list = new BlockList();
  list.addSubnet(addr, len, family === 4 ? 'ipv4' : 'ipv6');
  return list;
}
