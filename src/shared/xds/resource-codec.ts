/**
 * Wire form of model resources: canonical JSON (sorted keys) as the body and a content hash of
 * that body as the version, so equal content always has equal versions on every controller.
 */
import { createHash } from 'node:crypto';
import { TYPE_AUTHORIZATION, TYPE_GATEWAY_LISTENER, TYPE_ROUTE_CONFIG, TYPE_SERVICE, TYPE_WORKLOAD } from '../resources.js';

/** JSON with object keys sorted at every level; arrays keep their order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const child = (v as Record<string, unknown>)[k];
      if (child !== undefined) out[k] = sortKeys(child);
    }
    return out;
  }
  return v;
}

/** First 16 hex digits of sha256: versions are compared, never trusted for integrity. */
export function contentHash(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 16);
}

export interface EncodedResource {
  body: Buffer;
  version: string;
}

/** The wire body of a resource: its canonical JSON. */
export function encodeBody(resource: unknown): Buffer {
  return Buffer.from(canonicalJson(resource), 'utf8');
}

export function encodeResource(resource: unknown): EncodedResource {
  const body = encodeBody(resource);
  return { body, version: contentHash(body) };
}

/**
 * Version of a whole set of resources of one type (the response's system_version_info): a hash
 * of the multiset of `name`/`version` pairs, independent of order (see SetVersion).
 */
export function setVersion(versions: ReadonlyMap<string, string>): string {
  const v = new SetVersion();
  for (const [name, version] of versions) v.add(name, version);
  return v.value();
}

/**
 * A set version kept up to date one entry at a time, so a push round that changed k resources
 * costs O(k), not a sort and hash of every name (decision 65): four 32-bit lanes, each the sum
 * (mod 2^32) of the same lane of every entry's sha256, and the entry count, hashed together.
 * Sums commute, so the value depends on the set, not on the order entries were added.
 */
export class SetVersion {
  private readonly lanes = new Uint32Array(4);
  private count = 0;

  /** A copy that changes independently. */
  clone(): SetVersion {
    const c = new SetVersion();
    c.lanes.set(this.lanes);
    c.count = this.count;
    return c;
  }

  add(name: string, version: string): void {
    this.mix(name, version, 1);
  }

  remove(name: string, version: string): void {
    this.mix(name, version, -1);
  }

  /** 16 hex digits (the empty set has a fixed value). */
  value(): string {
    return contentHash(`${[...this.lanes].map((l) => l.toString(16)).join('.')}/${this.count}`);
  }

  private mix(name: string, version: string, sign: 1 | -1): void {
    const h = createHash('sha256').update(name).update('\0').update(version).digest();
    for (let i = 0; i < 4; i++) this.lanes[i] = (this.lanes[i]! + sign * h.readUInt32LE(i * 4)) >>> 0;
    this.count += sign;
  }
}

const KIND_LABELS: Record<string, string> = {
  [TYPE_WORKLOAD]: 'workload',
  [TYPE_SERVICE]: 'service',
  [TYPE_AUTHORIZATION]: 'authorization',
  [TYPE_ROUTE_CONFIG]: 'route',
  [TYPE_GATEWAY_LISTENER]: 'listener',
};

/** Bounded metric/log label for a type URL: workload | service | authorization | route | listener | unknown. */
export function typeLabel(typeUrl: string): string {
  return KIND_LABELS[typeUrl] ?? 'unknown';
}
