/**
 * Decodes Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`: the `k8s\0`
 * magic, a runtime.Unknown envelope, the object in its generated.proto encoding) into the JSON
 * form the rest of the server handles. kubectl's typed clients send this (create configmap,
 * create token, auth can-i, ...). The field table (`k8s-wire.json`, see extract.ts) covers the
 * API groups this server serves; a field it does not know is an error, never silently dropped.
 *
 * JSON conventions applied: empty strings and zero Times are absent (Go's omitempty), maps are
 * objects, bytes are base64, Time is RFC 3339, Quantity a string, IntOrString a number or string,
 * RawExtension/FieldsV1 embedded JSON.
 */
import wire from './k8s-wire.json' with { type: 'json' };
import { badRequest } from '../status.js';
import { rfc3339, rfc3339Micro } from '../types.js';

type FieldRow = [name: string, number: number, type: string, repeated: number, typeName?: string];

const table = wire as unknown as { messages: Record<string, FieldRow[]>; maps: string[] };
const MESSAGES = new Map<string, Map<number, FieldRow>>();
for (const [name, rows] of Object.entries(table.messages)) MESSAGES.set(name, new Map(rows.map((r) => [r[1], r])));
const MAP_ENTRIES = new Set(table.maps);

const META = 'k8s.io.apimachinery.pkg.apis.meta.v1';

/**
 * Go marshals non-pointer fields even when zero; their JSON (omitempty) leaves them out. Pointer
 * fields where 0 or false is a real choice are kept; every other zero number or false is dropped.
 */
const KEEP_ZERO = new Set([
  'replicas', 'terminationGracePeriodSeconds', 'activeDeadlineSeconds', 'automountServiceAccountToken', 'expirationSeconds',
  'gracePeriodSeconds', 'orphanDependents', 'immutable', 'readOnly', 'allowed', 'denied', 'authenticated', 'optional',
  'privileged', 'runAsUser', 'runAsGroup', 'runAsNonRoot', 'readOnlyRootFilesystem', 'allowPrivilegeEscalation',
  'revisionHistoryLimit', 'progressDeadlineSeconds', 'defaultMode', 'mode', 'fsGroup', 'enableServiceLinks',
  'shareProcessNamespace', 'setHostnameAsFQDN', 'hostUsers', 'leaseDurationSeconds', 'leaseTransitions', 'priority',
  'ready', 'serving', 'terminating', 'port', 'allocateLoadBalancerNodePorts', 'publishNotReadyAddresses',
  'successThreshold', 'failureThreshold', 'periodSeconds', 'initialDelaySeconds', 'timeoutSeconds', 'paused',
  'minReadySeconds', 'maxSurge', 'maxUnavailable', 'minAvailable', 'partition', 'exitCode', 'incomplete',
]);
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** Proto package of each API group this server serves. */
const PACKAGES: Record<string, string> = {
  '': 'k8s.io.api.core.v1',
  apps: 'k8s.io.api.apps.v1',
  'rbac.authorization.k8s.io': 'k8s.io.api.rbac.v1',
  policy: 'k8s.io.api.policy.v1',
  'discovery.k8s.io': 'k8s.io.api.discovery.v1',
  'coordination.k8s.io': 'k8s.io.api.coordination.v1',
  'authentication.k8s.io': 'k8s.io.api.authentication.v1',
  'authorization.k8s.io': 'k8s.io.api.authorization.v1',
  autoscaling: 'k8s.io.api.autoscaling.v1',
  'meta.k8s.io': META,
};

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
    throw new Error('varint longer than 10 bytes');
  }

  bytes(): Buffer {
    const n = Number(this.varint());
    if (n < 0 || this.pos + n > this.buf.length) throw new Error('length-delimited field runs past the end');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  fixed(n: 4 | 8): Buffer {
    if (this.pos + n > this.buf.length) throw new Error('truncated fixed-width field');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.fixed(8);
    else if (wireType === 2) this.bytes();
    else if (wireType === 5) this.fixed(4);
    else throw new Error(`unsupported wire type ${wireType}`);
  }
}

function signed64(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}

function scalar(type: string, wireType: number, r: Reader): unknown {
  switch (type) {
    case 'string':
      return r.bytes().toString('utf8');
    case 'bytes':
      return r.bytes().toString('base64');
    case 'bool':
      return r.varint() !== 0n;
    case 'int64':
    case 'int32':
    case 'enum':
      return signed64(r.varint());
    case 'uint64':
    case 'uint32':
      return Number(r.varint());
    case 'sint32':
    case 'sint64': {
      const v = r.varint();
      return Number((v >> 1n) ^ -(v & 1n));
    }
    case 'double':
      return r.fixed(8).readDoubleLE(0);
    case 'float':
      return r.fixed(4).readFloatLE(0);
    case 'fixed64':
      return Number(r.fixed(8).readBigUInt64LE(0));
    case 'sfixed64':
      return Number(r.fixed(8).readBigInt64LE(0));
    case 'fixed32':
      return r.fixed(4).readUInt32LE(0);
    case 'sfixed32':
      return r.fixed(4).readInt32LE(0);
    default:
      r.skip(wireType);
      return undefined;
  }
}

/** Messages whose JSON form is not an object of their fields. */
function special(typeName: string, m: Record<string, unknown>): unknown {
  switch (typeName) {
    case `${META}.Time`:
    case `${META}.MicroTime`: {
      const s = typeof m['seconds'] === 'number' ? m['seconds'] : 0;
      // Go's zero time (year 1) marshals as -62135596800; it means "unset".
      if (s <= -62135596800) return undefined;
      const ms = s * 1000 + Math.floor((typeof m['nanos'] === 'number' ? m['nanos'] : 0) / 1e6);
      return typeName.endsWith('MicroTime') ? rfc3339Micro(ms) : rfc3339(ms);
    }
    case `${META}.Duration`:
      return `${(typeof m['duration'] === 'number' ? m['duration'] : 0) / 1e9}s`;
    case 'k8s.io.apimachinery.pkg.api.resource.Quantity':
      return m['string'] ?? '0';
    case 'k8s.io.apimachinery.pkg.util.intstr.IntOrString':
      return m['type'] === 1 ? (m['strVal'] ?? '') : (m['intVal'] ?? 0);
    case 'k8s.io.apimachinery.pkg.runtime.RawExtension':
    case `${META}.FieldsV1`: {
      const raw = (m['raw'] ?? m['Raw']) as string | undefined;
      if (raw === undefined) return undefined;
      try {
        return JSON.parse(Buffer.from(raw, 'base64').toString('utf8')) as unknown;
      } catch {
        throw new Error(`${typeName} does not hold JSON`);
      }
    }
    default:
      if (/\.ExtraValue$/.test(typeName)) return m['items'] ?? [];
      return m;
  }
}

/** Messages nest no deeper than this in any object this server serves. */
const MAX_DEPTH = 64;

function decodeMessage(buf: Buffer, typeName: string, path: string, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new Error(`messages nested deeper than ${MAX_DEPTH} levels`);
  const fields = MESSAGES.get(typeName);
  if (fields === undefined) throw new Error(`message ${typeName} is not known to this server`);
  const r = new Reader(buf);
  const out: Record<string, unknown> = {};
  while (!r.done) {
    const key = r.varint();
    const number = Number(key >> 3n);
    const wireType = Number(key & 7n);
    const f = fields.get(number);
    if (f === undefined) throw new Error(`${path || typeName}: field number ${number} of ${typeName} is not known to this server`);
    const [name, , type, repeated, ref] = f;
    const at = path === '' ? name : `${path}.${name}`;
    let value: unknown;
    if (type === 'message') {
      const body = r.bytes();
      if (MAP_ENTRIES.has(ref!)) {
        const entry = decodeMessage(body, ref!, at, depth + 1) as Record<string, unknown>;
        const target = (out[name] ??= {}) as Record<string, unknown>;
        target[String(entry['key'] ?? '')] = entry['value'] ?? (MESSAGES.get(ref!)!.get(2)?.[2] === 'string' ? '' : undefined);
        continue;
      }
      value = special(ref!, decodeMessage(body, ref!, at, depth + 1) as Record<string, unknown>);
    } else if (repeated && wireType === 2 && type !== 'string' && type !== 'bytes') {
      // Packed repeated scalars.
      const inner = new Reader(r.bytes());
      const list = (out[name] ??= []) as unknown[];
      while (!inner.done) list.push(scalar(type, type === 'double' || type.includes('fixed64') ? 1 : type === 'float' || type.includes('fixed32') ? 5 : 0, inner));
      continue;
    } else {
      value = scalar(type, wireType, r);
    }
    if (repeated) {
      ((out[name] ??= []) as unknown[]).push(value);
    } else if (value !== undefined && value !== '' && ((value !== 0 && value !== false) || KEEP_ZERO.has(name))) {
      out[name] = value;
    } else {
      delete out[name];
    }
  }
  return out;
}

/** True when the body carries the Kubernetes protobuf magic. */
export function isKubernetesProtobuf(buf: Buffer): boolean {
  return buf.length >= 4 && buf.subarray(0, 4).equals(MAGIC);
}

/** Decodes a protobuf request body to its JSON object (with apiVersion and kind); 400 on failure. */
export function decodeKubernetesProtobuf(buf: Buffer): Record<string, unknown> {
  if (!isKubernetesProtobuf(buf)) throw badRequest('protobuf body does not start with the Kubernetes magic number "k8s\\x00"');
  try {
    const env = decodeMessage(buf.subarray(4), 'k8s.io.apimachinery.pkg.runtime.Unknown', '') as Record<string, unknown>;
    const tm = (env['typeMeta'] ?? {}) as Record<string, unknown>;
    const apiVersion = String(tm['apiVersion'] ?? '');
    const kind = String(tm['kind'] ?? '');
    if (env['contentEncoding'] !== undefined) throw new Error(`content encoding ${String(env['contentEncoding'])} is not supported`);
    const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : kind === 'DeleteOptions' ? 'meta.k8s.io' : '';
    const pkg = kind === 'DeleteOptions' ? META : PACKAGES[group];
    if (pkg === undefined) throw new Error(`API group "${group}" has no protobuf decoding here`);
    const raw = Buffer.from(String(env['raw'] ?? ''), 'base64');
    const obj = decodeMessage(raw, `${pkg}.${kind}`, '') as Record<string, unknown>;
    return { apiVersion, kind, ...obj };
  } catch (e) {
    if (e instanceof Error && e.name === 'ApiError') throw e;
    throw badRequest(`error decoding protobuf body: ${(e as Error).message}; send application/json instead`);
  }
}
