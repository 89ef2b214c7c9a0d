/**
 * Addresses as every binary writes and reads them: `ip:port` endpoints (v4, v6 in brackets,
 * v4-mapped v6 folded to v4) and `host:port` listen/dial settings from the environment.
 */
import { isIP } from 'node:net';
import type { Issues } from './validate.js';

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

/** `host:port` or `[v6]:port`; port 0 allowed (tests). Problems go to `issues` under `name`. */
export function parseHostPort(text: string, name: string, issues: Issues): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) {
    issues.add(name, 'must be host:port, e.g. 0.0.0.0:15020 or [::1]:15000', text);
    return undefined;
  }
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  if (m[1] !== undefined && isIP(host) !== 6) {
    issues.add(name, 'brackets must hold an IPv6 address', text);
    return undefined;
  }
  if (m[2] !== undefined && isIP(host) === 0 && !/^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$/.test(host)) {
    issues.add(name, 'host must be an IP address or a DNS name', text);
    return undefined;
  }
  if (port > 65535) {
    issues.add(name, 'port must be between 0 and 65535', text);
    return undefined;
  }
  return { host, port };
}
