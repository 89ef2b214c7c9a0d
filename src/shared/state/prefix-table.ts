/**
 * Longest-prefix match of addresses against CIDR ranges (ServiceEntry `addresses` given as
 * ranges), with a value per (range, port). One map per family and prefix length: a lookup masks
 * the address once per prefix length in use (at most 33 for IPv4, 129 for IPv6), most specific
 * first, whatever the number of ranges.
 */
import { isIP } from 'node:net';
import { normalizeIp } from '../address.js';

/** The 4 (IPv4) or 16 (IPv6) bytes of an address, or undefined when it is none. */
export function addressBytes(ip: string): Uint8Array | undefined {
  const a = normalizeIp(ip);
  const family = isIP(a);
  if (family === 4) return Uint8Array.from(a.split('.').map(Number));
  if (family !== 6) return undefined;
  const zone = a.indexOf('%');
  let text = zone >= 0 ? a.slice(0, zone) : a;
  const out = new Uint8Array(16);
  // A trailing dotted quad is the last 32 bits.
  const dot = text.lastIndexOf('.');
  let tail: number[] = [];
  if (dot >= 0) {
    const colon = text.lastIndexOf(':');
    const q = text.slice(colon + 1).split('.').map(Number);
    tail = [(q[0]! << 8) | q[1]!, (q[2]! << 8) | q[3]!];
    text = text.slice(0, colon + 1) + '0:0';
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const hs = head === '' ? [] : head.split(':');
  const rs = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? hs : [...hs, ...Array<string>(8 - hs.length - rs.length).fill('0'), ...rs];
  const words = groups.map((g) => parseInt(g, 16));
  if (tail.length === 2) words.splice(6, 2, tail[0]!, tail[1]!);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = (words[i]! >> 8) & 0xff;
    out[2 * i + 1] = words[i]! & 0xff;
  }
  return out;
}

/** The first `len` bits of `bytes` as a map key. */
function maskedKey(bytes: Uint8Array, len: number): string {
  let key = '';
  for (let i = 0; i < bytes.length && i * 8 < len; i++) {
    const bits = Math.min(8, len - i * 8);
    const b = bits === 8 ? bytes[i]! : bytes[i]! & (0xff << (8 - bits));
    key += b.toString(16).padStart(2, '0');
  }
  return key;
}

export class PrefixTable<T> {
  /** Per family (4, 16 bytes): prefix length → `maskedKey|port` → value. */
  private readonly byFamily = new Map<number, Map<number, Map<string, T>>>();
  /** Per family: the prefix lengths in use, longest first. */
  private readonly lengths = new Map<number, number[]>();

  /**
   * Adds `cidr` (an address with or without `/len`) for `port`. The first value given for a
   * (range, port) stays; false when `cidr` is no range.
   */
  add(cidr: string, port: number, value: T): boolean {
    const [addr, rawLen, extra] = cidr.trim().split('/');
    const bytes = extra === undefined && addr !== undefined ? addressBytes(addr) : undefined;
    if (!bytes) return false;
    const max = bytes.length * 8;
    const len = rawLen === undefined ? max : /^\d+$/.test(rawLen) ? Number(rawLen) : NaN;
    if (!(len >= 0 && len <= max)) return false;
    let byLen = this.byFamily.get(bytes.length);
    if (!byLen) this.byFamily.set(bytes.length, (byLen = new Map()));
    let m = byLen.get(len);
    if (!m) {
      byLen.set(len, (m = new Map()));
      this.lengths.set(bytes.length, [...byLen.keys()].sort((a, b) => b - a));
    }
    const key = `${maskedKey(bytes, len)}|${port}`;
    if (!m.has(key)) m.set(key, value);
    return true;
  }

  /** The value of the most specific range holding `ip` for `port`, or undefined. */
  lookup(ip: string, port: number): T | undefined {
    if (this.byFamily.size === 0) return undefined;
    const bytes = addressBytes(ip);
    if (!bytes) return undefined;
    const byLen = this.byFamily.get(bytes.length);
    if (!byLen) return undefined;
    for (const len of this.lengths.get(bytes.length)!) {
      const v = byLen.get(len)!.get(`${maskedKey(bytes, len)}|${port}`);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  get size(): number {
    return this.byFamily.size;
  }
}
