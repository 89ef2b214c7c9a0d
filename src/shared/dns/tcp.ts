/**
 * DNS over TCP on the server side (RFC 1035 4.2.2, RFC 7766): each message is framed by a 2-byte
 * length; a connection may carry several queries, answered as each completes. Shared by the
 * agent's DNS proxy and local mode's cluster DNS.
 *
 * Invariant: at most one partial message (under 64 KiB) is buffered per connection, and a
 * connection without a complete query for `idleMs` is closed.
 */
import type net from 'node:net';

/** Serves one accepted connection: `handle` gets each query and returns the answer, or undefined to send none. */
export function serveDnsTcp(s: net.Socket, handle: (query: Buffer) => Promise<Buffer | undefined>, idleMs: number): void {
  s.on('error', () => undefined);
  s.setTimeout(idleMs, () => s.destroy());
  let buf: Buffer = Buffer.alloc(0);
  s.on('data', (d: Buffer) => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) break;
      const msg = Buffer.from(buf.subarray(2, 2 + len));
      buf = buf.subarray(2 + len);
      void handle(msg).then((answer) => {
        if (!answer || s.destroyed) return;
        const head = Buffer.alloc(2);
        head.writeUInt16BE(Math.min(answer.length, 0xffff));
        s.write(Buffer.concat([head, answer.subarray(0, 0xffff)]));
      });
    }
  });
}
