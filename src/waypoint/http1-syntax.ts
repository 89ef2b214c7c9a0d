/** HTTP/1.1 syntax the waypoint's own codecs share (endpoint/h1-client.ts, server/h1-front.ts). */

/** A token (method, header name). */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Characters a header value may not carry (node:http's check): controls other than tab, and anything past latin1. */
export const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** Lone CR or LF, or NUL, anywhere in a head: refused (no bare LF line ends). */
export const BAD_HEAD = /\0|\r(?!\n)|(?<!\r)\n/;
/** Headers node:http keeps only the first of (duplicates dropped); the rest are joined with ", ", set-cookie kept as a list. */
const FIRST_ONLY = new Set(['content-type', 'content-length', 'user-agent', 'referer', 'host', 'authorization', 'proxy-authorization', 'if-modified-since', 'if-unmodified-since', 'from', 'location', 'max-forwards', 'retry-after', 'etag', 'last-modified', 'server', 'age', 'expires']);

/** Adds one header line to a header object with node:http's duplicate rules (cookie joined with "; "). */
export function addHeader(headers: Record<string, string | string[]>, name: string, value: string): void {
  const cur = headers[name];
  if (cur === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
  else if (name === 'set-cookie') (cur as string[]).push(value);
  else if (name === 'cookie') headers[name] = `${cur as string}; ${value}`;
  else if (!FIRST_ONLY.has(name)) headers[name] = `${cur as string}, ${value}`;
}

/** Whether a comma-separated header (Connection) lists `token` (lowercase). */
export function hasToken(v: string | string[] | undefined, token: string): boolean {
  if (v === undefined) return false;
  const s = (Array.isArray(v) ? v.join(',') : v).toLowerCase();
  return s === token || s.split(',').some((t) => t.trim() === token);
}

/** Header lines into an object with node:http's duplicate rules; undefined when one is malformed (not `token: value`). */
export function parseFields(lines: string[], from: number): Record<string, string | string[]> | undefined {
  const headers = Object.create(null) as Record<string, string | string[]>;
  for (let i = from; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return undefined;
    addHeader(headers, name.toLowerCase(), line.slice(colon + 1).trim());
  }
  return headers;
}

const HEX = /^[0-9a-fA-F]{1,12}$/;
const MAX_CHUNK_LINE = 4096;

const enum Chunk {
  Size,
  Data,
  End,
  Trailers,
}

/**
 * A chunked body's decoder (RFC 9112 7.1), strict: a hex size of at most 12 digits (extensions
 * allowed and ignored), CRLF after each chunk, a trailer section of `token: value` lines within
 * `maxTrailerBytes`. Fed by a parser that owns the connection's bytes.
 */
export class ChunkedDecoder {
  private state = Chunk.Size;
  private remaining = 0;
  /** Set when the last chunk and the trailer section were read. */
  done = false;
  trailers: Record<string, string | string[]> = {};
  /** Why decode returned -1. */
  error = '';

  constructor(private readonly maxTrailerBytes: number) {}

  reset(): void {
    this.state = Chunk.Size;
    this.remaining = 0;
    this.done = false;
    this.trailers = {};
  }

  private fail(message: string): number {
    this.error = message;
    return -1;
  }

  /**
   * Reads `buf` from `off`, handing chunk data to `onData`; returns where it stopped: the end of
   * the body (done), `buf.length`, or an offset before it when the rest is an incomplete line
   * (keep it and call again with more). -1 when the body is malformed (`error`).
   */
  decode(buf: Buffer, off: number, onData: (b: Buffer) => void): number {
    while (off < buf.length) {
      switch (this.state) {
        case Chunk.Size: {
          const eol = buf.indexOf('\r\n', off, 'latin1');
          if (eol < 0) return buf.length - off > MAX_CHUNK_LINE ? this.fail('chunk size line too long') : off;
          const line = buf.toString('latin1', off, eol);
          const semi = line.indexOf(';');
          const hex = semi < 0 ? line : line.slice(0, semi);
          if (!HEX.test(hex) || BAD_VALUE.test(line)) return this.fail('invalid chunk size');
          off = eol + 2;
          this.remaining = parseInt(hex, 16);
          this.state = this.remaining === 0 ? Chunk.Trailers : Chunk.Data;
          break;
        }
        case Chunk.Data: {
          const n = Math.min(this.remaining, buf.length - off);
          this.remaining -= n;
          onData(buf.subarray(off, off + n));
          off += n;
          if (this.remaining === 0) this.state = Chunk.End;
          break;
        }
        case Chunk.End:
          if (buf.length - off < 2) return off;
          if (buf[off] !== 13 || buf[off + 1] !== 10) return this.fail('chunk not followed by CRLF');
          off += 2;
          this.state = Chunk.Size;
          break;
        case Chunk.Trailers: {
          if (buf.length - off < 2) return off;
          if (buf[off] === 13 && buf[off + 1] === 10) {
            this.done = true;
            return off + 2;
          }
          const end = buf.indexOf('\r\n\r\n', off, 'latin1');
          if (end < 0) return buf.length - off > this.maxTrailerBytes ? this.fail('trailers too large') : off;
          const text = buf.toString('latin1', off, end);
          const fields = BAD_HEAD.test(text) ? undefined : parseFields(text.split('\r\n'), 0);
          if (!fields) return this.fail('malformed trailer section');
          this.trailers = fields;
          this.done = true;
          return end + 4;
        }
      }
    }
    return off;
  }
}
