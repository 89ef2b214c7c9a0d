/**
 * Input generators for the fuzz tests: a seeded PRNG, raw HTTP/2 frames (with a minimal HPACK
 * literal encoder), random and mutated frame sequences, and mutated HTTP/1 requests. Everything is
 * bytes: nothing here goes through node:http2's or node:http's client checks.
 */

/** xorshift32: reproducible from the seed a failing run prints. */
export class Rng {
  private x: number;
  constructor(readonly seed: number) {
    this.x = seed >>> 0 || 0x9e3779b9;
  }
  u32(): number {
    this.x ^= this.x << 13;
    this.x >>>= 0;
    this.x ^= this.x >>> 17;
    this.x ^= this.x << 5;
    this.x >>>= 0;
    return this.x;
  }
  int(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export const FRAME = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

/** One frame; `declaredLength` may lie about the payload size. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer, declaredLength = payload.length): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(declaredLength & 0xffffff, 0, 3);
  h[3] = type & 0xff;
  h[4] = flags & 0xff;
  h.writeUInt32BE(streamId >>> 0, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK integer with an N-bit prefix (RFC 7541 5.1). */
function hpackInt(value: number, prefixBits: number, firstByteHigh: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByteHigh | value]);
  const out = [firstByteHigh | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A header block of literals without indexing, new names (RFC 7541 6.2.2), no Huffman. */
export function hpack(headers: Array<[string, string]>): Buffer {
  return Buffer.concat(
    headers.flatMap(([name, value]) => {
      const n = Buffer.from(name, 'latin1');
      const v = Buffer.from(value, 'latin1');
      return [Buffer.from([0x00]), hpackInt(n.length, 7, 0), n, hpackInt(v.length, 7, 0), v];
    }),
  );
}

export function settingsFrame(entries: Array<[number, number]> = []): Buffer {
  const p = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, value], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(value >>> 0, i * 6 + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, p);
}

/** A well-formed opening: preface, SETTINGS, a CONNECT on stream 1 and some DATA. */
export function validConnect(authority: string, data: Buffer = Buffer.from('hello')): Buffer[] {
  return [
    H2_PREFACE,
    settingsFrame(),
    frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, hpack([[':method', 'CONNECT'], [':authority', authority]])),
    frame(FRAME.DATA, 0, 1, data),
  ];
}

/** A random frame: any type (also unknown ones), flags, stream id and payload, sometimes lying about its length. */
export function randomFrame(r: Rng): Buffer {
  const type = r.chance(0.9) ? r.int(10) : r.int(256);
  const stream = r.pick([0, 1, 3, 5, 2, 0x7fffffff, r.u32()]);
  const payload = r.bytes(r.pick([0, 1, 4, 5, 6, 8, 9, 13, 64, r.int(2048)]));
  const declared = r.chance(0.15) ? r.pick([0, payload.length + 1, payload.length - 1, 0xffffff, r.int(0x1000000)]) : payload.length;
  return frame(type, r.int(256), stream, payload, Math.max(0, declared));
}

/** Structured-ish frames: well-formed headers with hostile values, settings, window updates, resets. */
export function hostileFrame(r: Rng, authority: string): Buffer {
  const sid = 1 + 2 * r.int(50);
  switch (r.int(9)) {
    case 0:
      return frame(FRAME.HEADERS, FLAG.END_HEADERS | (r.chance(0.3) ? FLAG.END_STREAM : 0), sid, hpack([[':method', r.pick(['CONNECT', 'GET', 'POST', 'connect', '', 'CONNECT '])], [':authority', r.pick([authority, '', 'x', '[::1]:80', '1.2.3.4:0', 'a'.repeat(r.int(9000))])], ...(r.chance(0.3) ? ([[':path', '/']] as Array<[string, string]>) : [])]));
    case 1:
      return frame(FRAME.HEADERS, 0, sid, hpack([[':method', 'CONNECT']]));
    case 2:
      return frame(FRAME.CONTINUATION, r.chance(0.5) ? FLAG.END_HEADERS : 0, sid, hpack([['x', 'y'.repeat(r.int(4096))]]));
    case 3:
      return settingsFrame(Array.from({ length: r.int(8) }, () => [r.int(10), r.pick([0, 1, 0xffffffff, 0x7fffffff, 16383, 16777216, r.u32()])] as [number, number]));
    case 4: {
      const p = Buffer.alloc(4);
      p.writeUInt32BE(r.pick([0, 1, 0x7fffffff, r.u32()]));
      return frame(FRAME.WINDOW_UPDATE, 0, r.pick([0, sid]), p);
    }
    case 5: {
      const p = Buffer.alloc(4);
      p.writeUInt32BE(r.int(16));
      return frame(FRAME.RST_STREAM, 0, sid, p);
    }
    case 6:
      return frame(FRAME.PING, r.int(2), 0, r.bytes(r.pick([8, 8, 8, 0, 7, 9])));
    case 7:
      return frame(FRAME.DATA, r.chance(0.3) ? FLAG.END_STREAM : 0, sid, r.bytes(r.int(20_000)));
    default: {
      const p = Buffer.alloc(8);
      p.writeUInt32BE(r.int(100));
      p.writeUInt32BE(r.int(16), 4);
      return frame(FRAME.GOAWAY, 0, 0, p);
    }
  }
}

/** Flips, inserts, deletes or duplicates bytes of `input`. */
export function mutate(r: Rng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const edits = 1 + r.int(6);
  for (let i = 0; i < edits && b.length > 0; i++) {
    const at = r.int(b.length);
    switch (r.int(6)) {
      case 0:
        b[at] = b[at]! ^ (1 << r.int(8));
        break;
      case 1:
        b[at] = r.int(256);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), r.bytes(1 + r.int(16)), b.subarray(at)]);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + r.int(16)))]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + 64), b.subarray(at)]);
        break;
      default:
        b = b.subarray(0, at);
    }
  }
  return b;
}

/** An HTTP/2 connection's bytes: random, hostile or mutated-valid frames after the preface. */
export function h2Case(r: Rng, authority: string): Buffer {
  const kind = r.int(4);
  if (kind === 0) return Buffer.concat([H2_PREFACE, ...Array.from({ length: 1 + r.int(12) }, () => randomFrame(r))]);
  if (kind === 1) return Buffer.concat([H2_PREFACE, settingsFrame(), ...Array.from({ length: 1 + r.int(12) }, () => hostileFrame(r, authority))]);
  if (kind === 2) return mutate(r, Buffer.concat(validConnect(authority)));
  return r.bytes(1 + r.int(512));
}

const HTTP1_TEMPLATES = [
  'GET / HTTP/1.1\r\nHost: svc\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'GET /a?b=c HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\nHost: svc\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: svc\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n',
  'CONNECT svc:80 HTTP/1.1\r\nHost: svc:80\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: svc\r\n\r\n',
];

/** A mutated or hostile HTTP/1 request. */
export function http1Case(r: Rng): Buffer {
  const base = Buffer.from(r.pick(HTTP1_TEMPLATES), 'latin1');
  switch (r.int(5)) {
    case 0:
      return mutate(r, base);
    case 1: {
      const inject = r.pick(['\r', '\n', '\0', ' ', ':', '\r\n ', '\r\n\r\n', 'Content-Length: 99999999999999999999\r\n', 'Transfer-Encoding: chunked\r\n', 'X: ' + 'a'.repeat(70_000) + '\r\n']);
      const at = base.indexOf('\r\n') + 2 + r.int(8);
      return Buffer.concat([base.subarray(0, at), Buffer.from(inject, 'latin1'), base.subarray(at)]);
    }
    case 2:
      return Buffer.concat(Array.from({ length: 1 + r.int(20) }, () => base));
    case 3:
      return Buffer.concat([Buffer.from('GET / HTTP/1.1\r\nHost: svc\r\n', 'latin1'), ...Array.from({ length: r.int(300) }, (_, i) => Buffer.from(`X-H${i}: ${'v'.repeat(r.int(400))}\r\n`, 'latin1')), Buffer.from('\r\n')]);
    default:
      return Buffer.concat([H2_PREFACE, ...Array.from({ length: 1 + r.int(6) }, () => randomFrame(r))]);
  }
}
