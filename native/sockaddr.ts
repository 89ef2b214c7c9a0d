/**
 * Pure conversions between address text and the binary layouts the kernel and the BPF maps use:
 * struct sockaddr_in / sockaddr_in6, and the 16-byte v4-mapped form of bpf/include/types.h.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { AmbitError } from '../src/shared/errors.js';

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCKADDR_IN_SIZE = 16;
export const SOCKADDR_IN6_SIZE = 28;
/** Large enough for any sockaddr the code reads back (sockaddr_storage). */
export const SOCKADDR_STORAGE_SIZE = 128;

export type IpFamily = 'IPv4' | 'IPv6';

export interface SocketAddressInfo {
  address: string;
  port: number;
  family: IpFamily;
}

function invalid(address: string): AmbitError {
  return new AmbitError('AMBIT_ERR_NATIVE_CALL', `address "${address}" is not a valid IPv4 or IPv6 literal`, {
    details: { address },
  });
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map((p) => Number(p)));
}

/** IPv6 text (with "::" and an optional dotted IPv4 tail) to 16 bytes. */
function ipv6Bytes(address: string): Buffer {
  const zone = address.indexOf('%');
  const text = zone >= 0 ? address.slice(0, zone) : address;
  const out = Buffer.alloc(16);
  const halves = text.split('::');
  const groups = (s: string): number[] => {
    if (s === '') return [];
    const parts = s.split(':');
    const words: number[] = [];
    for (const p of parts) {
      if (p.includes('.')) {
        const b = ipv4Bytes(p);
        words.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
      } else {
        words.push(parseInt(p, 16));
      }
    }
    return words;
  };
  const head = groups(halves[0]!);
  const tail = halves.length > 1 ? groups(halves[1]!) : [];
  const words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/**
 * 16-byte network-order form used as BPF map address: IPv6 as is, IPv4 as ::ffff:a.b.c.d.
 */
export function ipToBytes16(address: string): Buffer {
  if (isIPv4(address)) {
    const out = Buffer.alloc(16);
    out.writeUInt16BE(0xffff, 10);
    ipv4Bytes(address).copy(out, 12);
    return out;
  }
  if (isIPv6(address)) return ipv6Bytes(address);
  throw invalid(address);
}

/** True when 16 bytes are a v4-mapped IPv6 address (::ffff:a.b.c.d). */
export function isV4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** RFC 5952 text of 16 bytes (longest zero run compressed, lowercase, v4-mapped dotted). */
export function formatIPv6(bytes: Uint8Array): string {
  if (isV4Mapped(bytes)) return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((bytes[i * 2]! << 8) | bytes[i * 2 + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/** The address in 16-byte form as text: IPv4 for v4-mapped bytes, IPv6 otherwise. */
export function bytes16ToIp(bytes: Uint8Array): { address: string; family: IpFamily } {
  if (isV4Mapped(bytes)) return { address: `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`, family: 'IPv4' };
  return { address: formatIPv6(bytes), family: 'IPv6' };
}

/** struct sockaddr_in or sockaddr_in6 for `address:port`. */
export function encodeSockaddr(address: string, port: number): Buffer {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AmbitError('AMBIT_ERR_NATIVE_CALL', `port ${port} is out of range 0-65535`, { details: { port } });
  }
  if (isIPv4(address)) {
    const sa = Buffer.alloc(SOCKADDR_IN_SIZE);
    sa.writeUInt16LE(AF_INET, 0); // sa_family is host order (x86-64, little endian)
    sa.writeUInt16BE(port, 2);
    ipv4Bytes(address).copy(sa, 4);
    return sa;
  }
  if (isIPv6(address)) {
    const sa = Buffer.alloc(SOCKADDR_IN6_SIZE);
    sa.writeUInt16LE(AF_INET6, 0);
    sa.writeUInt16BE(port, 2);
    ipv6Bytes(address).copy(sa, 8);
    return sa;
  }
  throw invalid(address);
}

/** Reads a sockaddr_in / sockaddr_in6; IPv4-mapped IPv6 stays IPv6 text (as Node reports it). */
export function decodeSockaddr(sa: Buffer): SocketAddressInfo {
  const family = sa.readUInt16LE(0);
  if (family === AF_INET && sa.length >= SOCKADDR_IN_SIZE) {
    return { address: `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}`, port: sa.readUInt16BE(2), family: 'IPv4' };
  }
  if (family === AF_INET6 && sa.length >= SOCKADDR_IN6_SIZE) {
    return { address: formatIPv6(sa.subarray(8, 24)), port: sa.readUInt16BE(2), family: 'IPv6' };
  }
  throw new AmbitError('AMBIT_ERR_NATIVE_CALL', `sockaddr family ${family} is neither AF_INET nor AF_INET6`, {
    details: { family, length: sa.length },
  });
}
