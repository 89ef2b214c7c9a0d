/**
 * Pure conversions between IP address text and its network-order bytes: the 16-byte form (IPv6,
 * or IPv4 as v4-mapped ::ffff:a.b.c.d) the BPF maps and DNS AAAA records use, and RFC 5952 text
 * back. Shared by the agent's capture and the DNS codec (src/shared/dns/).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { AmbitError } from './errors.js';

function invalid(address: string): AmbitError {
  return new AmbitError('AMBIT_ERR_NATIVE_CALL', `address "${address}" is not a valid IPv4 or IPv6 literal`, {
    details: { address },
  });
}

/** Dotted IPv4 text to its 4 bytes (the text is assumed valid). */
export function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map((p) => Number(p)));
}

/** IPv6 text (with "::" and an optional dotted IPv4 tail) to 16 bytes (the text is assumed valid). */
export function ipv6Bytes(address: string): Buffer {
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
