/**
 * Istio's address auto-allocation for ServiceEntries (pure): every host of an entry that names no
 * `spec.addresses`, is not a wildcard and has a resolution that makes a Service (STATIC, DNS,
 * DNS_ROUND_ROBIN) gets an IPv4 address of Istio's class E range 240.240.0.0/16, so the node
 * agents can capture connections to it as to any Service VIP. An address depends only on the
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

/** Resolutions whose entries become Services (NONE and DYNAMIC_DNS keep the client's address). */
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

function allocate(entries: readonly KubeObject[]): Map<string, string> {
  const taken = new Set<string>();
  const wanted: string[] = [];
  for (const se of entries) {
    const spec = asRecord(se.spec);
    const addresses = asStrings(spec['addresses']);
    for (const a of addresses) taken.add(a);
    if (!entryMakesService(se) || addresses.some((a) => isIP(a) !== 0)) continue;
    for (const h of asStrings(spec['hosts'])) if (!h.startsWith('*')) wanted.push(`${nsOf(se)}/${h.toLowerCase()}`);
  }
  const out = new Map<string, string>();
  for (const key of [...new Set(wanted)].sort(compareStrings)) {
    const start = fnv1a(key) % SLOTS;
    for (let i = 0; i < SLOTS; i++) {
      const address = slotAddress((start + i) % SLOTS);
      if (taken.has(address)) continue;
      taken.add(address);
      out.set(key, address);
      break;
    }
  }
  return out;
}
