/**
 * Istio's address auto-allocation for ServiceEntries (pure): every host of an entry that names no
 * `spec.addresses`, is not a wildcard and has a resolution that makes a Service (STATIC, DNS,
 * DNS_ROUND_ROBIN) gets an IPv4 address of Istio's class E range 240.240.0.0/16 and an IPv6
 * address of Istio's 2001:2::/48 (the benchmarking range, never a real destination), one of each
 * as istiod's allocator gives, so the node agents can capture connections to either as to any
 * Service VIP. An address depends only on the
 * entry's namespace and host (a hash picks a start, the first free address from there is taken,
 * keys in sorted order), so it stays the same while the entry exists and other entries come and
 * go, unless two keys collide; addresses written in any entry's `spec.addresses` are never
 * handed out.
 */
import { isIP } from 'node:net';
import type { KubeObject } from '../objects.js';
import { asRecord, asString, asStrings, compareStrings, nsOf } from './util.js';

/** Istio's auto-allocation range (its ztunnel/DNS proxy default): 240.240.0.0/16. */
export const AUTO_ALLOCATE_PREFIX = '240.240.';
const SLOTS = 65_534; // .0.1 .. .255.254

/** Resolutions whose entries, naming no addresses, still become Services (NONE and DYNAMIC_DNS then keep the client's address, unnamed). */
export function entryMakesService(se: KubeObject): boolean {
  const r = asString(asRecord(se.spec)['resolution']) ?? 'NONE';
  return r === 'STATIC' || r === 'DNS' || r === 'DNS_ROUND_ROBIN';
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function slotAddress(slot: number): string {
  const n = slot + 1;
  return `${AUTO_ALLOCATE_PREFIX}${n >> 8}.${n & 0xff}`;
}

const byList = new WeakMap<readonly KubeObject[], ReadonlyMap<string, string>>();

/** The allocated address of each `ns/host` (lowercase) that needs one; computed once per entry list (an index's). */
export function allocateEntryAddresses(entries: readonly KubeObject[]): ReadonlyMap<string, string> {
  let out = byList.get(entries);
  if (!out) byList.set(entries, (out = allocate(entries)));
  return out;
}

/** Istio's IPv6 auto-allocation range: 2001:2::/48; Ambit uses its last 32 bits (2001:2::0:0 .. 2001:2::ffff:ffff). */
export const AUTO_ALLOCATE_PREFIX6 = '2001:2::';
const SLOTS6 = 0xffff_fffe; // ::1 .. ::ffff:fffe

function slotAddress6(slot: number): string {
  const n = slot + 1;
  return canonical6(`${AUTO_ALLOCATE_PREFIX6}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`);
}

/** The keys (`ns/host`) that need an address, in sorted order, and the addresses entries write (never handed out). */
function wantedKeys(entries: readonly KubeObject[]): { keys: string[]; taken: Set<string> } {
  const taken = new Set<string>();
  const wanted: string[] = [];
  for (const se of entries) {
    const spec = asRecord(se.spec);
    const addresses = asStrings(spec['addresses']);
    for (const a of addresses) taken.add(isIP(a) === 6 ? canonical6(a) : a);
    if (!entryMakesService(se) || addresses.some((a) => isIP(a) !== 0)) continue;
    for (const h of asStrings(spec['hosts'])) if (!h.startsWith('*')) wanted.push(`${nsOf(se)}/${h.toLowerCase()}`);
  }
  return { keys: [...new Set(wanted)].sort(compareStrings), taken };
}

/** One address per key: a start slot from the key's hash, the first free slot from there. */
function allocateIn(keys: readonly string[], taken: Set<string>, slots: number, address: (slot: number) => string): Map<string, string> {
  const out = new Map<string, string>();
  for (const key of keys) {
    const start = fnv1a(key) % slots;
    for (let i = 0; i < slots; i++) {
      const a = address((start + i) % slots);
      if (taken.has(a)) continue;
      taken.add(a);
      out.set(key, a);
      break;
    }
  }
  return out;
}

function allocate(entries: readonly KubeObject[]): Map<string, string> {
  const { keys, taken } = wantedKeys(entries);
  return allocateIn(keys, taken, SLOTS, slotAddress);
}

/** An IPv6 address in the form slotAddress6 writes (lowercase, zeros compressed), so written addresses are compared as allocated ones. */
function canonical6(a: string): string {
  return new URL(`http://[${a}]/`).hostname.slice(1, -1);
}

const byList6 = new WeakMap<readonly KubeObject[], ReadonlyMap<string, string>>();

/** The allocated IPv6 address of each `ns/host` that needs one (the same keys as allocateEntryAddresses). */
export function allocateEntryAddresses6(entries: readonly KubeObject[]): ReadonlyMap<string, string> {
  let out = byList6.get(entries);
  if (!out) {
    const { keys, taken } = wantedKeys(entries);
    byList6.set(entries, (out = allocateIn(keys, taken, SLOTS6, slotAddress6)));
  }
  return out;
}

/** Both allocated addresses of each `ns/host` (IPv4 first, as istiod writes them in `status.addresses`). */
export function allocatedEntryAddresses(entries: readonly KubeObject[]): ReadonlyMap<string, readonly string[]> {
  const v4 = allocateEntryAddresses(entries);
  const v6 = allocateEntryAddresses6(entries);
  return new Map([...v4].map(([key, a]) => [key, [a, ...(v6.has(key) ? [v6.get(key)!] : [])]]));
}
