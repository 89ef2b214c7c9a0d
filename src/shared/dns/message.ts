/**
 * DNS messages (RFC 1035, EDNS0 of RFC 6891), pure: parse a wire message into header, questions
 * and records (names decompressed), serialize one back (names written uncompressed), and fit a
 * UDP answer into the size the client can take (TC). Record data the agent does not interpret
 * stays raw bytes, so a message re-serializes to the same meaning.
 *
 * Invariant: parsing never throws anything but DnsParseError, whatever the bytes.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { formatIPv6, ipToBytes16 } from '../ip-bytes.js';

export const TYPE_A = 1;
export const TYPE_NS = 2;
export const TYPE_CNAME = 5;
export const TYPE_SOA = 6;
export const TYPE_PTR = 12;
export const TYPE_MX = 15;
export const TYPE_TXT = 16;
export const TYPE_AAAA = 28;
export const TYPE_SRV = 33;
export const TYPE_OPT = 41;
export const TYPE_ANY = 255;
export const CLASS_IN = 1;

export const OPCODE_QUERY = 0;
export const OPCODE_UPDATE = 5;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;

/** Largest UDP message a client without EDNS accepts (RFC 1035 4.2.1). */
export const UDP_PLAIN_MAX = 512;
/** EDNS payload size the proxy announces (the DNS flag day 2020 value). */
export const EDNS_PAYLOAD = 1232;
/** Header size; a shorter message is not DNS. */
export const HEADER_BYTES = 12;

const TYPE_NAMES: Record<number, string> = {
  [TYPE_A]: 'a',
  [TYPE_NS]: 'ns',
  [TYPE_CNAME]: 'cname',
  [TYPE_SOA]: 'soa',
  [TYPE_PTR]: 'ptr',
  [TYPE_MX]: 'mx',
  [TYPE_TXT]: 'txt',
  [TYPE_AAAA]: 'aaaa',
  [TYPE_SRV]: 'srv',
  [TYPE_OPT]: 'opt',
  [TYPE_ANY]: 'any',
  65: 'https',
  64: 'svcb',
};

/** Lowercase name of a query type as ztunnel labels it (`a`, `aaaa`, ...); `type<N>` for others (bounded: 65,536 values at most). */
export function queryTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `type${type}`;
}

export class DnsParseError extends Error {
  constructor(
    message: string,
    /** The id from the header when it could be read (a FORMERR answer can carry it). */
    readonly id?: number,
  ) {
    super(message);
    this.name = 'DnsParseError';
  }
}

export interface DnsHeader {
  id: number;
  /** true: a response. */
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  /** The Z, AD and CD bits, kept as they came (bits 6..4 of the second flag byte). */
  z: number;
  rcode: number;
}

export interface DnsQuestion {
  /** Lowercase, no trailing dot; "" is the root. */
  name: string;
  type: number;
  class: number;
}

/** A resource record; `data` is the address (A/AAAA), the target name (CNAME) or the raw RDATA. */
export interface DnsRecord {
  name: string;
  type: number;
  /** For OPT: the requester's UDP payload size. */
  class: number;
  /** For OPT: extended rcode, version and flags. */
  ttl: number;
  data: string | Buffer;
}

export interface DnsMessage {
  header: DnsHeader;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

/** The header alone (the first 12 bytes), or undefined when the message is shorter. */
export function peekHeader(buf: Buffer): (DnsHeader & { qdcount: number }) | undefined {
  if (buf.length < HEADER_BYTES) return undefined;
  return { ...decodeFlags(buf.readUInt16BE(0), buf.readUInt16BE(2)), qdcount: buf.readUInt16BE(4) };
}

function decodeFlags(id: number, f: number): DnsHeader {
  return {
    id,
    qr: (f & 0x8000) !== 0,
    opcode: (f >> 11) & 0xf,
    aa: (f & 0x0400) !== 0,
    tc: (f & 0x0200) !== 0,
    rd: (f & 0x0100) !== 0,
    ra: (f & 0x0080) !== 0,
    z: (f >> 4) & 0x7,
    rcode: f & 0xf,
  };
}

function encodeFlags(h: DnsHeader): number {
  return (
    (h.qr ? 0x8000 : 0) |
    ((h.opcode & 0xf) << 11) |
    (h.aa ? 0x0400 : 0) |
    (h.tc ? 0x0200 : 0) |
    (h.rd ? 0x0100 : 0) |
    (h.ra ? 0x0080 : 0) |
    ((h.z & 0x7) << 4) |
    (h.rcode & 0xf)
  );
}

/** Most compression pointers followed in one name: more means a loop. */
const MAX_POINTERS = 64;
const MAX_NAME = 255;

/** Reads a possibly compressed name at `off`; returns it and the offset after it (in the original place). */
function readName(buf: Buffer, off: number, id: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = off;
  let next = -1;
  let jumps = 0;
  let length = 0;
  for (;;) {
    if (pos >= buf.length) throw new DnsParseError(`name at offset ${off} runs past the end`, id);
    const len = buf[pos]!;
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) throw new DnsParseError(`compression pointer at offset ${pos} is cut off`, id);
      if (++jumps > MAX_POINTERS) throw new DnsParseError(`name at offset ${off} has a compression loop`, id);
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (next < 0) next = pos + 2;
      // Pointers go backwards (RFC 1035 4.1.4 points at a prior occurrence): forward ones are refused.
      if (target >= pos) throw new DnsParseError(`compression pointer at offset ${pos} points forward`, id);
      pos = target;
      continue;
    }
    if ((len & 0xc0) !== 0) throw new DnsParseError(`label type 0x${(len & 0xc0).toString(16)} at offset ${pos} is not supported`, id);
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    if (pos + 1 + len > buf.length) throw new DnsParseError(`label at offset ${pos} runs past the end`, id);
    length += len + 1;
    if (length > MAX_NAME) throw new DnsParseError(`name at offset ${off} is longer than ${MAX_NAME} bytes`, id);
    labels.push(buf.toString('latin1', pos + 1, pos + 1 + len).toLowerCase());
    pos += 1 + len;
  }
  return { name: labels.join('.'), next };
}

function readRecord(buf: Buffer, off: number, id: number): { record: DnsRecord; next: number } {
  const { name, next } = readName(buf, off, id);
  if (next + 10 > buf.length) throw new DnsParseError(`record ${name || '.'} at offset ${off} is cut off`, id);
  const type = buf.readUInt16BE(next);
  const cls = buf.readUInt16BE(next + 2);
  const ttl = buf.readUInt32BE(next + 4);
  const rdlen = buf.readUInt16BE(next + 8);
  const start = next + 10;
  if (start + rdlen > buf.length) throw new DnsParseError(`record ${name || '.'} data runs past the end`, id);
  let data: string | Buffer;
  if (type === TYPE_A && cls === CLASS_IN && rdlen === 4) data = [...buf.subarray(start, start + 4)].join('.');
  else if (type === TYPE_AAAA && cls === CLASS_IN && rdlen === 16) data = formatIPv6(buf.subarray(start, start + 16));
  else if (type === TYPE_CNAME) {
    const target = readName(buf, start, id);
    if (target.next !== start + rdlen) throw new DnsParseError(`CNAME ${name} data length ${rdlen} does not match its name`, id);
    data = target.name;
  } else data = Buffer.from(buf.subarray(start, start + rdlen));
  return { record: { name, type, class: cls, ttl, data }, next: start + rdlen };
}

/** Parses a whole message; throws DnsParseError (with the id when the header was readable). */
export function parseMessage(buf: Buffer): DnsMessage {
  const h = peekHeader(buf);
  if (!h) throw new DnsParseError(`message of ${buf.length} bytes is shorter than a DNS header`);
  const counts = [buf.readUInt16BE(4), buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)] as const;
  let off = HEADER_BYTES;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < counts[0]; i++) {
    const { name, next } = readName(buf, off, h.id);
    if (next + 4 > buf.length) throw new DnsParseError(`question ${name || '.'} is cut off`, h.id);
    questions.push({ name, type: buf.readUInt16BE(next), class: buf.readUInt16BE(next + 2) });
    off = next + 4;
  }
  const sections: DnsRecord[][] = [[], [], []];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s + 1]!; i++) {
      const { record, next } = readRecord(buf, off, h.id);
      sections[s]!.push(record);
      off = next;
    }
  }
  const { qdcount: _q, ...header } = h;
  return { header, questions, answers: sections[0]!, authorities: sections[1]!, additionals: sections[2]! };
}

/** The wire form of a name (uncompressed; for record data such as SOA's). Throws RangeError for a bad label. */
export function encodeName(name: string): Buffer {
  const out: number[] = [];
  writeName(name, out);
  return Buffer.from(out);
}

function writeName(name: string, out: number[]): void {
  if (name !== '') {
    for (const label of name.split('.')) {
      const bytes = Buffer.from(label, 'latin1');
      if (bytes.length === 0 || bytes.length > 63) throw new RangeError(`label "${label}" of ${name} must be 1-63 bytes`);
      out.push(bytes.length, ...bytes);
    }
  }
  out.push(0);
}

function rdata(r: DnsRecord): Buffer {
  if (typeof r.data !== 'string') return r.data;
  if (r.type === TYPE_A) {
    if (!isIPv4(r.data)) throw new RangeError(`A record ${r.name} has data ${r.data}, not an IPv4 address`);
    return Buffer.from(r.data.split('.').map(Number));
  }
  if (r.type === TYPE_AAAA) {
    if (!isIPv6(r.data)) throw new RangeError(`AAAA record ${r.name} has data ${r.data}, not an IPv6 address`);
    return ipToBytes16(r.data);
  }
  const out: number[] = [];
  writeName(r.data, out);
  return Buffer.from(out);
}

/** Serializes a message (names uncompressed). Throws RangeError for a record it cannot write. */
export function serializeMessage(m: DnsMessage): Buffer {
  const out: number[] = [];
  const u16 = (v: number): void => {
    out.push((v >> 8) & 0xff, v & 0xff);
  };
  u16(m.header.id);
  u16(encodeFlags(m.header));
  u16(m.questions.length);
  u16(m.answers.length);
  u16(m.authorities.length);
  u16(m.additionals.length);
  for (const q of m.questions) {
    writeName(q.name, out);
    u16(q.type);
    u16(q.class);
  }
  for (const r of [...m.answers, ...m.authorities, ...m.additionals]) {
    writeName(r.name, out);
    u16(r.type);
    u16(r.class);
    out.push((r.ttl >>> 24) & 0xff, (r.ttl >>> 16) & 0xff, (r.ttl >>> 8) & 0xff, r.ttl & 0xff);
    const d = rdata(r);
    u16(d.length);
    for (const x of d) out.push(x);
  }
  return Buffer.from(out);
}

/** The EDNS OPT record of a message, if any. */
export function ednsOf(m: DnsMessage): DnsRecord | undefined {
  return m.additionals.find((r) => r.type === TYPE_OPT);
}

/**
 * Largest UDP answer the asker takes: its EDNS payload size (at least 512, at most what the proxy
 * announces), else 512.
 */
export function udpLimit(query: DnsMessage): number {
  const opt = ednsOf(query);
  if (!opt) return UDP_PLAIN_MAX;
  return Math.min(Math.max(opt.class, UDP_PLAIN_MAX), EDNS_PAYLOAD);
}

/**
 * The wire form of `response` for a UDP asker that takes `limit` bytes: as is when it fits, else
 * with its record sections emptied (the OPT record kept) and TC set, so the client retries over TCP.
 */
export function serializeForUdp(response: DnsMessage, limit: number): Buffer {
  const full = serializeMessage(response);
  if (full.length <= limit) return full;
  const opt = ednsOf(response);
  return serializeMessage({
    ...response,
    header: { ...response.header, tc: true },
    answers: [],
    authorities: [],
    additionals: opt ? [opt] : [],
  });
}

/**
 * A bare response to a query whose header could be read: the id, opcode and RD echoed, the
 * question when it was parsed, and `rcode` (FORMERR for an unreadable query, SERVFAIL, ...).
 */
export function errorResponse(query: { id: number; opcode?: number; rd?: boolean; questions?: DnsQuestion[] }, rcode: number): DnsMessage {
  return {
    header: { id: query.id, qr: true, opcode: query.opcode ?? OPCODE_QUERY, aa: false, tc: false, rd: query.rd ?? false, ra: true, z: 0, rcode },
    questions: query.questions ?? [],
    answers: [],
    authorities: [],
    additionals: [],
  };
}

/**
 * An authoritative answer to `query`'s first question: its id, opcode and RD echoed, RA set,
 * `rcode` with the given sections, and an OPT record announcing EDNS_PAYLOAD when the query had one.
 */
export function answerTo(query: DnsMessage, rcode: number, answers: DnsRecord[], authorities: DnsRecord[] = []): DnsMessage {
  const h = query.header;
  return {
    header: { id: h.id, qr: true, opcode: h.opcode, aa: true, tc: false, rd: h.rd, ra: true, z: 0, rcode },
    questions: query.questions.slice(0, 1),
    answers,
    authorities,
    additionals: ednsOf(query) ? [{ name: '', type: TYPE_OPT, class: EDNS_PAYLOAD, ttl: 0, data: Buffer.alloc(0) }] : [],
  };
}
