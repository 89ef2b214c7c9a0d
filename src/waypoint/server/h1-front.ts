/**
 * The waypoint's HTTP/1.1 front for the common case (decision 67): keep-alive requests whose head
 * is plainly well formed (request line `METHOD /target HTTP/1.1`, a Host, token names, printable
 * values, at most one Content-Length, or Transfer-Encoding exactly `chunked`), parsed here and
 * handed to the request handler as light request and response objects; one set of listeners per
 * connection. Anything else (HTTP/1.0, upgrades, Expect, CONNECT, an absolute or odd target,
 * obs-fold, bare LF, whitespace before a colon, a head over the limit, duplicate framing headers)
 * is handed, with every byte not yet consumed, to node:http's server at a request boundary: its
 * strict parser answers it (400, 431, ...) and keeps the connection from then on.
 *
 * A chunked body that turns out malformed (bad size line, missing CRLF) cannot go back: the body
 * stream fails (the upstream request is cut), the caller gets 400 unless a response began, and
 * the connection closes, as node:http does. Idle connections close after the keep-alive timeout,
 * checked by one coarse sweep per front instead of a timer per connection.
 */
import { EventEmitter } from 'node:events';
import type * as http from 'node:http';
import { STATUS_CODES } from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { addHeader, BAD_HEAD, BAD_VALUE, ChunkedDecoder, hasToken, TOKEN } from '../http1-syntax.js';

const DIGITS = /^\d{1,15}$/;
/** A plain origin-form target: printable ASCII without spaces. */
const TARGET = /^\/[\x21-\x7e]*$/;
/** Bytes of a following request read ahead while one is answered, before the connection pauses. */
const MAX_READ_AHEAD = 64 * 1024;

const enum Body {
  None,
  Length,
  Chunked,
}

export interface H1FrontOptions {
  /** Request line plus headers; a longer head goes to node:http (which answers 431). */
  maxHeadBytes: number;
  /** Idle keep-alive connections close after this long. */
  keepAliveMs: number;
  /** Where a request goes (the server's request handler). */
  onRequest: (req: LeanRequest, res: LeanResponse) => void;
  /** Takes over a connection at a request boundary (node:http's server); `rest` is what was read and not consumed. */
  fallback: (conn: Duplex, rest: Buffer) => void;
}

/** A request as the handler reads it: what node:http's IncomingMessage offers that the waypoint uses. */
export class LeanRequest extends Readable {
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor = 1;
  readonly httpVersion = '1.1';
  complete = false;
  /** A chunked body's trailer fields, once read. */
  trailers: Record<string, string | string[]> = {};
  constructor(
    readonly method: string,
    readonly url: string,
    readonly headers: http.IncomingHttpHeaders,
    readonly rawHeaders: string[],
    readonly socket: Duplex,
    private readonly conn: LeanConnection,
  ) {
    super();
  }

  override _read(): void {
    this.conn.requestWantsMore();
  }

  /** As node:http's IncomingMessage: a failure is emitted only to a listener that waits for one. */
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    cb(this.listenerCount('error') > 0 ? err : null);
  }
}

/** A response as the handler writes it: node:http's ServerResponse methods the waypoint uses. */
export class LeanResponse extends EventEmitter {
  headersSent = false;
  writableFinished = false;
  writableEnded = false;
  destroyed = false;
  statusCode = 200;
  private head: string | undefined;
  private chunked = false;
  private noBody: boolean;
  private closeAfter: boolean;

  constructor(
    private readonly conn: LeanConnection,
    headRequest: boolean,
    closeAfter: boolean,
  ) {
    super();
    this.noBody = headRequest;
    this.closeAfter = closeAfter;
  }

  get socket(): Duplex {
    return this.conn.socket;
  }

  /** The status line and headers, checked as node:http checks them; sent with the first body bytes. */
  writeHead(status: number, headers?: http.OutgoingHttpHeaders | Record<string, string | string[] | number | undefined>): this {
    if (this.headersSent) throw Object.assign(new Error('Cannot write headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' });
    if (!Number.isInteger(status) || status < 100 || status > 999) throw Object.assign(new RangeError(`Invalid status code: ${status}`), { code: 'ERR_HTTP_INVALID_STATUS_CODE' });
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n`;
    let length = false;
    let connection = false;
    let date = false;
    if (headers) {
      for (const k in headers) {
        const v = headers[k];
        if (v === undefined) continue;
        if (!TOKEN.test(k)) throw Object.assign(new TypeError(`Header name must be a valid HTTP token ["${k}"]`), { code: 'ERR_INVALID_HTTP_TOKEN' });
        const lower = k.toLowerCase();
        if (lower === 'transfer-encoding') continue; // framing is ours
        if (lower === 'content-length') length = true;
        else if (lower === 'connection') {
          connection = true;
          if (hasToken(v as string | string[], 'close')) this.closeAfter = true;
        } else if (lower === 'date') date = true;
        if (Array.isArray(v)) {
          for (const x of v) {
            if (BAD_VALUE.test(x)) throw Object.assign(new TypeError(`Invalid character in header content ["${k}"]`), { code: 'ERR_INVALID_CHAR' });
            head += `${k}: ${x}\r\n`;
          }
        } else {
          const s = typeof v === 'string' ? v : String(v);
          if (BAD_VALUE.test(s)) throw Object.assign(new TypeError(`Invalid character in header content ["${k}"]`), { code: 'ERR_INVALID_CHAR' });
          head += `${k}: ${s}\r\n`;
        }
      }
    }
    if (!date) head += `date: ${httpDate()}\r\n`;
    if (this.closeAfter && !connection) head += 'connection: close\r\n';
    if (status === 204 || status === 304 || status < 200) this.noBody = true;
    else if (!length && !this.noBody) {
      this.chunked = true;
      head += 'transfer-encoding: chunked\r\n';
    }
    this.statusCode = status;
    this.head = head + '\r\n';
    this.headersSent = true;
    return this;
  }

  /** Writes body bytes (the head goes with the first); false when the connection wants a drain. */
  write(chunk: Buffer | string): boolean {
    if (this.destroyed || this.writableEnded) return false;
    if (!this.headersSent) this.writeHead(200);
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const head = this.head ?? '';
    this.head = undefined;
    if (this.noBody || b.length === 0) return head === '' || this.conn.socket.write(head, 'latin1');
    return this.chunked ? send(this.conn.socket, `${head}${b.length.toString(16)}\r\n`, b, '\r\n') : send(this.conn.socket, head, b, '');
  }

  /** Ends the response (with a last chunk); 'close' follows on the next tick, as node:http emits it. */
  end(chunk?: Buffer | string): this {
    if (this.destroyed || this.writableEnded) return this;
    if (!this.headersSent) this.writeHead(this.statusCode);
    const body = chunk === undefined || this.noBody ? undefined : typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const head = this.head ?? '';
    this.head = undefined;
    const sock = this.conn.socket;
    if (body && body.length > 0) {
      if (this.chunked) send(sock, `${head}${body.length.toString(16)}\r\n`, body, '\r\n0\r\n\r\n');
      else send(sock, head, body, '');
    } else {
      const tail = head + (this.chunked ? '0\r\n\r\n' : '');
      if (tail !== '') sock.write(tail, 'latin1');
    }
    this.writableEnded = true;
    this.writableFinished = true;
    this.conn.responseDone(this, this.closeAfter);
    process.nextTick(emitClose, this);
    return this;
  }

  /** Closes the connection (the response is cut). */
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.conn.socket.destroy();
    return this;
  }

  /** The connection closed before end(): the response is gone. */
  gone(): void {
    if (this.writableEnded) return;
    this.destroyed = true;
    this.writableEnded = true;
    process.nextTick(emitClose, this);
  }
}

/** Bodies up to this size go out in one buffer with their framing (one write, no writev). */
const COALESCE_BYTES = 16 * 1024;

/** Writes `prefix` (latin1), `body`, `suffix` (latin1) as one write; false when the socket wants a drain. */
function send(sock: Duplex, prefix: string, body: Buffer, suffix: string): boolean {
  if (body.length <= COALESCE_BYTES) {
    const out = Buffer.allocUnsafe(prefix.length + body.length + suffix.length);
    out.write(prefix, 0, 'latin1');
    body.copy(out, prefix.length);
    if (suffix !== '') out.write(suffix, prefix.length + body.length, 'latin1');
    return sock.write(out);
  }
  sock.cork();
  if (prefix !== '') sock.write(prefix, 'latin1');
  sock.write(body);
  const ok = suffix === '' || sock.write(suffix, 'latin1');
  sock.uncork();
  return ok && !sock.writableNeedDrain;
}

function emitClose(res: LeanResponse): void {
  res.emit('close');
}

let dateSecond = -1;
let dateText = '';

/** The Date header's value, made once a second. */
function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateText = new Date(s * 1000).toUTCString();
  }
  return dateText;
}

/** One connection on the lean front: its parser, the request in progress, its read-ahead. */
export class LeanConnection {
  private pending: Buffer | undefined;
  private req: LeanRequest | undefined;
  private res: LeanResponse | undefined;
  private body = Body.None;
  private remaining = 0;
  private closed = false;
  private handedOff = false;
  private readonly chunks: ChunkedDecoder;
  private readonly pushChunk = (b: Buffer): void => this.push(b);
  /** Set by the front's close: the connection closes once idle. */
  draining = false;
  lastActive: number;
  private readonly onData = (c: Buffer): void => this.read(c);
  private readonly onDrain = (): void => void this.res?.emit('drain');
  private readonly onGone = (): void => this.gone();
  /** The caller ended its side: a request being answered still gets its response, then the connection closes. */
  private readonly onEnd = (): void => {
    if (!this.res || this.body !== Body.None) return this.gone();
    this.draining = true;
  };

  constructor(
    readonly socket: Duplex,
    private readonly opts: H1FrontOptions,
    private readonly front: H1Front,
  ) {
    this.lastActive = front.clock;
    this.chunks = new ChunkedDecoder(opts.maxHeadBytes);
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('end', this.onEnd);
    socket.on('close', this.onGone);
  }

  /** Reads the connection's first bytes (those the HTTP/2 preface check saw). */
  start(first: Buffer): void {
    this.read(first);
  }

  /** No request in progress. */
  get idle(): boolean {
    return this.res === undefined;
  }

  close(): void {
    this.socket.destroy();
  }

  requestWantsMore(): void {
    if (this.socket.isPaused() && this.req && this.body !== Body.None) this.socket.resume();
  }

  private gone(): void {
    if (this.closed || this.handedOff) return;
    this.closed = true;
    this.front.forget(this);
    this.socket.destroy();
    const req = this.req;
    if (req && this.body !== Body.None) req.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
    this.res?.gone();
  }

  /** node:http takes the connection from here, with `rest` (the next request's first bytes). */
  private handOff(rest: Buffer): void {
    this.handedOff = true;
    this.front.forget(this);
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('drain', this.onDrain);
    this.socket.removeListener('end', this.onEnd);
    this.socket.removeListener('close', this.onGone);
    this.opts.fallback(this.socket, rest);
  }

  /** A malformed request body: the body fails, 400 unless a response began, and the connection goes. */
  private badBody(message: string): void {
    const req = this.req;
    this.body = Body.None;
    this.pending = undefined;
    req?.destroy(Object.assign(new Error(`malformed request body: ${message}`), { code: 'HPE_INVALID_CHUNK_SIZE' }));
    const res = this.res;
    if (res && !res.headersSent && !this.closed) {
      this.socket.write('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n', 'latin1');
      this.socket.end();
    }
    this.gone();
  }

  private read(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let off = 0;
    while (off < buf.length && !this.closed && !this.handedOff) {
      switch (this.body) {
        case Body.None: {
          if (this.res) {
            // A request while one is answered (pipelining): kept for later, within bounds.
            this.pending = off === 0 ? buf : buf.subarray(off);
            if (this.pending.length > MAX_READ_AHEAD) this.socket.pause();
            return;
          }
          const end = buf.indexOf('\r\n\r\n', off, 'latin1');
          if (end < 0) {
            // A head that cannot end the plain way (bare LF, NUL) goes to node:http now, not when more arrives.
            if (buf.length - off > this.opts.maxHeadBytes || BAD_HEAD.test(buf.toString('latin1', off, buf[buf.length - 1] === 13 ? buf.length - 1 : buf.length))) return this.handOff(buf.subarray(off));
            this.pending = off === 0 ? buf : buf.subarray(off);
            return;
          }
          if (end - off > this.opts.maxHeadBytes) return this.handOff(buf.subarray(off));
          const next = this.onHead(buf.toString('latin1', off, end));
          if (!next) return this.handOff(buf.subarray(off));
          off = end + 4;
          break;
        }
        case Body.Length: {
          const n = Math.min(this.remaining, buf.length - off);
          this.remaining -= n;
          this.push(off === 0 && n === buf.length ? buf : buf.subarray(off, off + n));
          off += n;
          if (this.remaining === 0) this.endBody();
          break;
        }
        case Body.Chunked: {
          const next = this.chunks.decode(buf, off, this.pushChunk);
          if (next < 0) return this.badBody(this.chunks.error);
          if (this.chunks.done) {
            off = next;
            this.req!.trailers = this.chunks.trailers;
            this.endBody();
          } else if (next < buf.length) {
            this.pending = buf.subarray(next);
            return;
          } else off = next;
          break;
        }
      }
    }
  }

  private push(b: Buffer): void {
    if (!this.req!.push(b)) this.socket.pause();
  }

  private endBody(): void {
    this.body = Body.None;
    this.req!.complete = true;
    this.req!.push(null);
  }

  /** Parses a request head; false when it is not the plain common case (node:http takes it). */
  private onHead(text: string): boolean {
    if (BAD_HEAD.test(text)) return false;
    const lines = text.split('\r\n');
    const rl = lines[0]!;
    const sp1 = rl.indexOf(' ');
    const sp2 = rl.lastIndexOf(' ');
    if (sp1 <= 0 || sp2 === sp1 || rl.slice(sp2 + 1) !== 'HTTP/1.1') return false;
    const method = rl.slice(0, sp1);
    const url = rl.slice(sp1 + 1, sp2);
    if (!TOKEN.test(method) || method === 'CONNECT' || !TARGET.test(url)) return false;
    const headers = Object.create(null) as Record<string, string | string[]>;
    const raw: string[] = [];
    let host = 0;
    let lengths = 0;
    let te = 0;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      if (!validField(line)) return false;
      const colon = line.indexOf(':');
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).trim();
      const lower = name.toLowerCase();
      switch (lower) {
        case 'host':
          host++;
          break;
        case 'content-length':
          if (!DIGITS.test(value)) return false;
          lengths++;
          break;
        case 'transfer-encoding':
          if (value.toLowerCase() !== 'chunked') return false;
          te++;
          break;
        case 'upgrade':
        case 'expect':
        case 'http2-settings':
          return false;
      }
      raw.push(name, value);
      addHeader(headers, lower, value);
    }
    if (host !== 1 || lengths > 1 || te > 1 || (te === 1 && lengths === 1)) return false;
    const closeAfter = hasToken(headers['connection'], 'close') || this.draining;
    const req = new LeanRequest(method, url, headers as http.IncomingHttpHeaders, raw, this.socket, this);
    const res = new LeanResponse(this, method === 'HEAD', closeAfter);
    this.req = req;
    this.res = res;
    if (te === 1) {
      this.chunks.reset();
      this.body = Body.Chunked;
    }
    else {
      const length = lengths === 1 ? Number(headers['content-length']) : 0;
      if (length > 0) {
        this.body = Body.Length;
        this.remaining = length;
      } else {
        req.complete = true;
        req.push(null);
      }
    }
    this.opts.onRequest(req, res);
    return true;
  }

  /** The response ended: the next request (already read ahead, perhaps) goes on, or the connection closes. */
  responseDone(res: LeanResponse, closeAfter: boolean): void {
    if (this.res !== res) return;
    this.lastActive = this.front.clock;
    const bodyLeft = this.body !== Body.None;
    if (closeAfter || bodyLeft || this.draining) {
      // A body still arriving cannot be skipped safely: the connection ends with the response.
      if (bodyLeft) this.req?.destroy();
      this.res = undefined;
      this.req = undefined;
      this.closed = true;
      this.front.forget(this);
      this.socket.end();
      return;
    }
    this.res = undefined;
    this.req = undefined;
    const rest = this.pending;
    this.pending = undefined;
    if (this.socket.isPaused()) this.socket.resume();
    if (rest) queueMicrotask(() => this.read(rest));
  }
}

/** A header line of the plain kind: token, colon right after it, printable value. */
function validField(line: string): boolean {
  const colon = line.indexOf(':');
  return colon > 0 && TOKEN.test(line.slice(0, colon)) && !BAD_VALUE.test(line.slice(colon + 1));
}

/** The lean front of one server: its connections and the sweep that closes idle ones. */
export class H1Front {
  private readonly conns = new Set<LeanConnection>();
  private readonly sockets = new WeakSet<Duplex>();
  private sweep: NodeJS.Timeout | undefined;
  /** Coarse clock (ms), advanced by the sweep. */
  clock = Date.now();

  constructor(private readonly opts: H1FrontOptions) {}

  /** Serves a connection whose first bytes (`first`) are not the HTTP/2 preface. */
  accept(socket: Duplex, first: Buffer): void {
    this.clock = Date.now();
    const c = new LeanConnection(socket, this.opts, this);
    this.conns.add(c);
    this.sockets.add(socket);
    c.start(first);
    this.sweep ??= setInterval(() => this.closeIdle(), Math.max(1000, Math.floor(this.opts.keepAliveMs / 10))).unref();
  }

  forget(c: LeanConnection): void {
    this.conns.delete(c);
    this.sockets.delete(c.socket);
  }

  /** Whether this front serves `socket` now. */
  owns(socket: Duplex): boolean {
    return this.sockets.has(socket);
  }

  private closeIdle(): void {
    this.clock = Date.now();
    for (const c of this.conns) if (c.idle && this.clock - c.lastActive > this.opts.keepAliveMs) c.close();
    if (this.conns.size === 0 && this.sweep) {
      clearInterval(this.sweep);
      this.sweep = undefined;
    }
  }

  /** Closes idle connections now; busy ones close after their response. */
  drain(): void {
    for (const c of this.conns) {
      c.draining = true;
      if (c.idle) c.close();
    }
  }

  /** Closes every connection. */
  destroy(): void {
    for (const c of this.conns) c.close();
    this.conns.clear();
    if (this.sweep) clearInterval(this.sweep);
    this.sweep = undefined;
  }
}
