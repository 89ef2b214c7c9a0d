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
 * Version of a whole set of resources of one type (the response's system_version_info):
 * hash over the sorted `name=version` lines; the empty set has a fixed version.
 */
export function setVersion(versions: ReadonlyMap<string, string>): string {
  const names = [...versions.keys()].sort();
  return contentHash(names.map((n) => `${n}=${versions.get(n)}`).join('\n'));
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
