/**
 * Reads the SNI of a TLS ClientHello from the first bytes of a connection, without consuming them
 * (TLS passthrough routing: the bytes go on to the chosen backend unchanged). RFC 8446 §4.1.2 and
 * RFC 6066 §3: record header (type 22, version, length), handshake header (type 1, length),
 * version, random, session id, cipher suites, compression methods, then extensions, among them
 * server_name (type 0) with a host_name (type 0) entry.
 */
import type { Duplex } from 'node:stream';

export type ClientHelloPeek =
  /** More bytes are needed to decide. */
  | { kind: 'incomplete' }
  /** The connection does not start with a TLS handshake record. */
  | { kind: 'not-tls' }
  /** A ClientHello; `sni` when it names a server. */
  | { kind: 'tls'; sni?: string };

/** Most bytes read before giving up on finding the end of a ClientHello. */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024 + 5;

const NOT_TLS: ClientHelloPeek = { kind: 'not-tls' };
const INCOMPLETE: ClientHelloPeek = { kind: 'incomplete' };

export function peekClientHello(buf: Buffer): ClientHelloPeek {
  if (buf.length === 0) return INCOMPLETE;
  if (buf[0] !== 0x16) return NOT_TLS;
  if (buf.length < 5) return INCOMPLETE;
  if (buf[1] !== 0x03) return NOT_TLS;
  const recordLen = buf.readUInt16BE(3);
  if (buf.length < 5 + recordLen) return 5 + recordLen > MAX_CLIENT_HELLO_BYTES ? NOT_TLS : INCOMPLETE;
  const rec = buf.subarray(5, 5 + recordLen);
  // A ClientHello split over several records is read from the first one only; its SNI is nearly
  // always there (it comes before the large extensions), and otherwise the hello has no SNI for us.
  if (rec.length < 4 || rec[0] !== 0x01) return NOT_TLS;
  const helloLen = rec.readUIntBE(1, 3);
  const hello = rec.subarray(4, 4 + Math.min(helloLen, rec.length - 4));
  let p = 2 + 32; // version, random
  const need = (n: number): boolean => p + n <= hello.length;
  if (!need(1)) return { kind: 'tls' };
  p += 1 + hello[p]!; // session id
  if (!need(2)) return { kind: 'tls' };
  p += 2 + hello.readUInt16BE(p); // cipher suites
  if (!need(1)) return { kind: 'tls' };
  p += 1 + hello[p]!; // compression methods
  if (!need(2)) return { kind: 'tls' };
  const extEnd = Math.min(hello.length, p + 2 + hello.readUInt16BE(p));
  p += 2;
  while (p + 4 <= extEnd) {
    const type = hello.readUInt16BE(p);
    const len = hello.readUInt16BE(p + 2);
    p += 4;
    if (type === 0 && p + len <= extEnd && len >= 2) {
      let q = p + 2;
      const listEnd = Math.min(p + len, p + 2 + hello.readUInt16BE(p));
      while (q + 3 <= listEnd) {
        const nameType = hello[q]!;
        const nameLen = hello.readUInt16BE(q + 1);
        q += 3;
        if (q + nameLen > listEnd) break;
        if (nameType === 0) return { kind: 'tls', sni: hello.subarray(q, q + nameLen).toString('ascii') };
        q += nameLen;
      }
      return { kind: 'tls' };
    }
    p += len;
  }
  return { kind: 'tls' };
}

/** How long a TLS-routed tunnel may take to send its ClientHello. */
export const CLIENT_HELLO_TIMEOUT_MS = 10_000;

/**
 * Reads a stream's first bytes until they tell whether they start a TLS ClientHello (and its SNI),
 * then puts them back (unshift) for whoever reads the stream next.
 */
export function peekStream(stream: Duplex, timeoutMs: number): Promise<ClientHelloPeek> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (peek: ClientHelloPeek): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      const head = Buffer.concat(chunks);
      if (head.length > 0 && !stream.destroyed) stream.unshift(head);
      resolve(peek.kind === 'incomplete' ? { kind: 'not-tls' } : peek);
    };
    const onReadable = (): void => {
      let c: Buffer | null;
      while ((c = stream.read() as Buffer | null) !== null) chunks.push(c);
      const head = Buffer.concat(chunks);
      const peek = peekClientHello(head);
      if (peek.kind !== 'incomplete' || head.length >= MAX_CLIENT_HELLO_BYTES) finish(peek);
    };
    const onEnd = (): void => finish({ kind: 'not-tls' });
    const timer = setTimeout(() => finish({ kind: 'not-tls' }), timeoutMs);
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
  });
}
