/**
 * Protocol Buffers wire codecs for the messages the agent and the waypoint exchange with the
 * controller as clients: DeltaConfig requests out and responses in (config.proto), certificate
 * requests out and responses in (ca.proto). Clients use these instead of @grpc/proto-loader, which
 * loads protobufjs, parses the .proto files and builds descriptors of every message at startup:
 * ~4 MB of resident memory per process for four messages. The controller (the servers) still loads
 * the .proto files (src/shared/api/load.ts), so every message here is checked against protobufjs
 * on the other end of each test that talks to a controller.
 *
 * Encoders take the objects proto-loader's serializers take (camelCase fields, enums by name or
 * number, absent fields left out); decoders return what proto-loader's deserializers return with
 * `defaults: true` (every field present, bytes as Buffer). Unknown fields are skipped; a malformed
 * message throws, and grpc-js turns that into a failed call.
 */

/** Appends proto3 fields to a growing list of chunks; `finish()` joins them. */
class Writer {
  private readonly parts: Buffer[] = [];
  private readonly bytes: number[] = [];

  private flushBytes(): void {
    if (this.bytes.length > 0) {
      this.parts.push(Buffer.from(this.bytes));
      this.bytes.length = 0;
    }
  }

  varint(v: number): this {
    if (!Number.isInteger(v)) throw new TypeError(`protobuf: ${v} is not an integer`);
    if (v < 0) {
      // Negative int32/int64: ten bytes of two's complement.
      let b = BigInt.asUintN(64, BigInt(v));
      while (b > 0x7fn) {
        this.bytes.push(Number(b & 0x7fn) | 0x80);
        b >>= 7n;
      }
      this.bytes.push(Number(b));
      return this;
    }
    while (v > 0x7f) {
      this.bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.bytes.push(v);
    return this;
  }

  tag(field: number, wireType: number): this {
    return this.varint(field * 8 + wireType);
  }

  lengthDelimited(field: number, data: Buffer): this {
    this.tag(field, 2).varint(data.length);
    this.flushBytes();
    this.parts.push(data);
    return this;
  }

  string(field: number, v: string | undefined | null): this {
    return v === undefined || v === null ? this : this.lengthDelimited(field, Buffer.from(String(v), 'utf8'));
  }

  uint(field: number, v: number | undefined | null): this {
    return v === undefined || v === null ? this : this.tag(field, 0).varint(Number(v));
  }

  bool(field: number, v: boolean | undefined | null): this {
    return v === undefined || v === null ? this : this.tag(field, 0).varint(v ? 1 : 0);
  }

  double(field: number, v: number): this {
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleLE(v);
    this.tag(field, 1);
    this.flushBytes();
    this.parts.push(b);
    return this;
  }

  message(field: number, v: Writer): this {
    return this.lengthDelimited(field, v.finish());
  }

  finish(): Buffer {
    this.flushBytes();
    return this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
  }
}

/** Reads the fields of one message; every length is checked against the buffer. */
class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new RangeError('protobuf: truncated varint');
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 0x80;
    }
    throw new RangeError('protobuf: varint longer than 10 bytes');
  }

  bytes(): Buffer {
    const n = this.varint();
    if (n > this.buf.length - this.pos) throw new RangeError('protobuf: field length past the end of the message');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(): string {
    return this.bytes().toString('utf8');
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.advance(8);
        return;
      case 2:
        this.bytes();
        return;
      case 5:
        this.advance(4);
        return;
      default:
        throw new RangeError(`protobuf: unsupported wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (n > this.buf.length - this.pos) throw new RangeError('protobuf: fixed field past the end of the message');
    this.pos += n;
  }

  /** Calls `field` for every field; it returns false for fields it does not know (skipped). */
  fields(field: (no: number, wireType: number) => boolean): void {
    while (!this.done) {
      const key = this.varint();
      const no = Math.floor(key / 8);
      const wireType = key % 8;
      if (no === 0) throw new RangeError('protobuf: field number 0');
      if (!field(no, wireType)) this.skip(wireType);
    }
  }
}

function expectWire(wireType: number, want: number, what: string): void {
  if (wireType !== want) throw new RangeError(`protobuf: ${what} has wire type ${wireType}, expected ${want}`);
}

function stringMap(w: Writer, field: number, map: Record<string, string> | undefined | null): void {
  if (!map) return;
  for (const [k, v] of Object.entries(map)) w.message(field, new Writer().string(1, k).string(2, v));
}

function repeatedStrings(w: Writer, field: number, list: readonly string[] | undefined | null): void {
  for (const s of list ?? []) w.string(field, s);
}

// ---- config.proto (ambit.config.v1) ----

const ROLES = ['ROLE_UNSPECIFIED', 'ROLE_AGENT', 'ROLE_WAYPOINT', 'ROLE_GATEWAY'] as const;

function roleNumber(role: string | number | undefined | null): number | undefined {
  if (role === undefined || role === null) return undefined;
  if (typeof role === 'number') return role;
  const i = (ROLES as readonly string[]).indexOf(role);
  if (i < 0) throw new TypeError(`protobuf: unknown Role ${JSON.stringify(role)}`);
  return i;
}

/** The request fields a client sends (config.proto DeltaConfigRequest), as proto-loader takes them. */
export interface DeltaConfigRequestInput {
  node?: { id?: string; nodeName?: string; role?: string | number; metadata?: Record<string, string> } | null;
  typeUrl?: string;
  resourceNamesSubscribe?: readonly string[];
  resourceNamesUnsubscribe?: readonly string[];
  initialResourceVersions?: Record<string, string>;
  responseNonce?: string;
  errorDetail?: { code?: number; message?: string } | null;
  status?: { workloads?: ReadonlyArray<{ uid?: string; captured?: boolean; mode?: string; message?: string }> } | null;
}

export function encodeDeltaConfigRequest(m: DeltaConfigRequestInput): Buffer {
  const w = new Writer();
  if (m.node) {
    const n = new Writer().string(1, m.node.id).string(2, m.node.nodeName).uint(3, roleNumber(m.node.role));
    stringMap(n, 4, m.node.metadata);
    w.message(1, n);
  }
  w.string(2, m.typeUrl);
  repeatedStrings(w, 3, m.resourceNamesSubscribe);
  repeatedStrings(w, 4, m.resourceNamesUnsubscribe);
  stringMap(w, 5, m.initialResourceVersions);
  w.string(6, m.responseNonce);
  if (m.errorDetail) w.message(7, new Writer().uint(1, m.errorDetail.code).string(2, m.errorDetail.message));
  if (m.status) {
    const s = new Writer();
    for (const x of m.status.workloads ?? []) s.message(1, new Writer().string(1, x.uid).bool(2, x.captured).string(3, x.mode).string(4, x.message));
    w.message(8, s);
  }
  return w.finish();
}

export interface DecodedResource {
  name: string;
  version: string;
  body: Buffer;
}

export interface DecodedDeltaConfigResponse {
  systemVersionInfo: string;
  typeUrl: string;
  resources: DecodedResource[];
  removedResources: string[];
  nonce: string;
  /** Bytes of the encoded message (istio_xds_message_bytes_total). */
  wireBytes: number;
}

function decodeResource(buf: Buffer): DecodedResource {
  const out: DecodedResource = { name: '', version: '', body: Buffer.alloc(0) };
  const r = new Reader(buf);
  r.fields((no, wt) => {
    if (no < 1 || no > 3) return false;
    expectWire(wt, 2, `Resource field ${no}`);
    if (no === 1) out.name = r.string();
    else if (no === 2) out.version = r.string();
    else out.body = r.bytes();
    return true;
  });
  return out;
}

export function decodeDeltaConfigResponse(buf: Buffer): DecodedDeltaConfigResponse {
  const out: DecodedDeltaConfigResponse = { systemVersionInfo: '', typeUrl: '', resources: [], removedResources: [], nonce: '', wireBytes: buf.length };
  const r = new Reader(buf);
  r.fields((no, wt) => {
    if (no < 1 || no > 5) return false;
    expectWire(wt, 2, `DeltaConfigResponse field ${no}`);
    if (no === 1) out.systemVersionInfo = r.string();
    else if (no === 2) out.typeUrl = r.string();
    else if (no === 3) out.resources.push(decodeResource(r.bytes()));
    else if (no === 4) out.removedResources.push(r.string());
    else out.nonce = r.string();
    return true;
  });
  return out;
}

// ---- ca.proto (istio.v1.auth) and google.protobuf.Struct ----

/** A google.protobuf.Value as proto-loader takes it: one of the kind fields set. */
export interface StructValueInput {
  nullValue?: string | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: { fields?: Record<string, StructValueInput> };
  listValue?: { values?: readonly StructValueInput[] };
}

function encodeStruct(s: { fields?: Record<string, StructValueInput> }): Writer {
  const w = new Writer();
  for (const [k, v] of Object.entries(s.fields ?? {})) w.message(1, new Writer().string(1, k).message(2, encodeValue(v)));
  return w;
}

function encodeValue(v: StructValueInput): Writer {
  const w = new Writer();
  if (v.nullValue !== undefined) w.uint(1, 0);
  else if (v.numberValue !== undefined) w.double(2, v.numberValue);
  else if (v.stringValue !== undefined) w.string(3, v.stringValue);
  else if (v.boolValue !== undefined) w.bool(4, v.boolValue);
  else if (v.structValue !== undefined) w.message(5, encodeStruct(v.structValue));
  else if (v.listValue !== undefined) {
    const l = new Writer();
    for (const x of v.listValue.values ?? []) l.message(1, encodeValue(x));
    w.message(6, l);
  }
  return w;
}

export interface CertificateRequestInput {
  csr: string;
  validityDuration: number;
  metadata?: { fields?: Record<string, StructValueInput> };
}

export function encodeCertificateRequest(m: CertificateRequestInput): Buffer {
  const w = new Writer().string(1, m.csr).uint(3, m.validityDuration);
  if (m.metadata) w.message(4, encodeStruct(m.metadata));
  return w.finish();
}

export function decodeCertificateResponse(buf: Buffer): { certChain: string[] } {
  const out = { certChain: [] as string[] };
  const r = new Reader(buf);
  r.fields((no, wt) => {
    if (no !== 1) return false;
    expectWire(wt, 2, 'IstioCertificateResponse field 1');
    out.certChain.push(r.string());
    return true;
  });
  return out;
}
