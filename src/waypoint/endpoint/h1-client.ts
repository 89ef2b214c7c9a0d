/**
 * The waypoint's HTTP/1.1 client (decision 67): requests framed by hand on pooled byte streams
 * (plain TCP or HBONE tunnel streams from the ConnectFn), responses parsed by a small strict
 * parser, one Readable per response body. node:http's client (ClientRequest, Agent, a second
 * IncomingMessage and llhttp instance, a dozen listeners per request) cost more CPU per request
 * than the rest of the waypoint together; this one keeps one set of listeners per connection.
 *
 * What it speaks: requests with no body, a Content-Length body or a chunked one (chunked when no
 * Content-Length is given); responses framed by Content-Length, chunked (trailers kept) or by the
 * connection's end; interim 1xx responses skipped (101 is an error: the waypoint never asks for an
 * upgrade, `upgrade` being hop-by-hop). Anything malformed (status line, header line, framing,
 * a head over 60 KiB, Content-Length with Transfer-Encoding, differing Content-Lengths, bytes
 * after a response) fails the exchange as a reset and closes the connection.
 */
import type * as http from 'node:http';
import { finished, Readable, type Duplex } from 'node:stream';
import { BAD_HEAD, BAD_VALUE, ChunkedDecoder, hasToken, parseFields, TOKEN } from '../http1-syntax.js';
import { abortError, UpstreamFailure, type ConnectFn, type Endpoint, type UpstreamRequest, type UpstreamResponse } from './exchange.js';

/** Status line plus headers of a response, and of a trailer section (Envoy's default header limit). */
const MAX_HEAD_BYTES = 60 * 1024;

const BAD_PATH = /[^\u0021-\u00ff]/;
const DIGITS = /^\d{1,15}$/;
/** Lone CR or LF, or NUL, anywhere in a head: refused (no obs-fold, no bare LF line ends). */
/** Methods whose requests get `content-length: 0` when sent without a body (as node:http does). */
const NO_BODY_OK = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);
const NOOP = (): void => {};
const NO_TRAILERS: Promise<Record<string, string | string[]>> = Promise.resolve(Object.freeze({}) as Record<string, string | string[]>);

const enum Phase {
  Idle,
  Head,
  Length,
  UntilClose,
  Chunked,
}

function protocolError(message: string): Error {
  return Object.assign(new Error(`upstream HTTP/1.1 protocol error: ${message}`), { code: 'HPE_INVALID' });
}

/** One request on one connection, from its head to the end of its response. */
interface Exchange {
  endpoint: Endpoint;
  req: UpstreamRequest;
  resolve: (r: UpstreamResponse) => void;
  reject: (e: unknown) => void;
  headRequest: boolean;
  responded: boolean;
  requestDone: boolean;
  responseDone: boolean;
  keepAlive: boolean;
  body: ResponseBody | undefined;
  trailersDone: ((t: Record<string, string | string[]>) => void) | undefined;
  onAbort: () => void;
  settled: boolean;
}

/** A response body: a Readable fed by its connection's parser; reading it resumes the connection. */
class ResponseBody extends Readable {
  constructor(private readonly conn: H1Connection) {
    super();
  }

  override _read(): void {
    this.conn.bodyWantsMore(this);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.conn.bodyDestroyed(this);
    cb(err);
  }
}

/** The request head: request line, host, the headers (checked as node:http checks them), framing. */
function requestHead(req: UpstreamRequest, keepAlive: boolean): { head: string; chunked: boolean } {
  if (!TOKEN.test(req.method)) throw new Error(`invalid upstream method ${JSON.stringify(req.method)}`);
  if (BAD_PATH.test(req.path)) throw new Error(`invalid characters in upstream path ${JSON.stringify(req.path)}`);
  if (BAD_VALUE.test(req.authority)) throw new Error('invalid characters in upstream authority');
  let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${req.authority}\r\n`;
  let contentLength = false;
  let connection = false;
  const h = req.headers;
  for (const k in h) {
    const v = h[k];
    if (v === undefined || k === 'host') continue;
    if (!TOKEN.test(k)) throw new Error(`invalid upstream header name ${JSON.stringify(k)}`);
    if (k === 'content-length') contentLength = true;
    else if (k === 'connection') connection = true;
    else if (k === 'transfer-encoding') continue; // framing is ours
    if (Array.isArray(v)) {
      for (const x of v) {
        if (BAD_VALUE.test(x)) throw new Error(`invalid characters in upstream header ${k}`);
        head += `${k}: ${x}\r\n`;
      }
    } else {
      const s = typeof v === 'string' ? v : String(v);
      if (BAD_VALUE.test(s)) throw new Error(`invalid characters in upstream header ${k}`);
      head += `${k}: ${s}\r\n`;
    }
  }
  if (!keepAlive && !connection) head += 'connection: close\r\n';
  const chunked = req.body !== undefined && !contentLength;
  if (chunked) head += 'transfer-encoding: chunked\r\n';
  else if (req.body === undefined && !contentLength && !NO_BODY_OK.has(req.method)) head += 'content-length: 0\r\n';
  return { head: head + '\r\n', chunked };
}

/** One pooled connection: its parser and the exchange in progress, listeners set once. */
class H1Connection {
  private phase = Phase.Idle;
  private pending: Buffer | undefined;
  private remaining = 0;
  private ex: Exchange | undefined;
  private gone = false;
  private readonly chunks = new ChunkedDecoder(MAX_HEAD_BYTES);
  private readonly pushChunk = (b: Buffer): void => this.pushBody(b);
  /** Set once the connection carried a request (a failure on it then is no fresh connect's). */
  constructor(
    readonly socket: Duplex,
    readonly key: string,
    private readonly client: H1Client,
  ) {
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('end', () => this.onGone(undefined));
    socket.on('close', () => this.onGone(undefined));
    socket.on('error', (e: Error) => this.onGone(e));
  }

  get usable(): boolean {
    return !this.gone && !this.socket.destroyed && this.socket.writable;
  }

  /** Sends the exchange's request on this (idle) connection. */
  start(ex: Exchange, head: string, chunked: boolean): void {
    this.ex = ex;
    this.phase = Phase.Head;
    const body = ex.req.body;
    if (!body) {
      ex.requestDone = true;
      this.socket.write(head, 'latin1');
      return;
    }
    // The head goes with the body's first bytes (as node:http sends it): a body that fails before
    // any arrive leaves the backend without a request begun.
    this.sendBody(ex, body, chunked, head);
  }

  /**
   * Pipes a request body upstream. A body that fails, or is destroyed before its end (the client
   * left, or a retry let go of this try), takes the connection down with it: a request left
   * waiting for the rest of its body would hold the connection (and the app's) for good.
   */
  private sendBody(ex: Exchange, body: Readable, chunked: boolean, head: string): void {
    const sock = this.socket;
    let headSent = false;
    const onData = (c: Buffer | string): void => {
      if (this.ex !== ex) return;
      const b = typeof c === 'string' ? Buffer.from(c) : c;
      if (b.length === 0) return;
      let ok: boolean;
      sock.cork();
      if (!headSent) {
        headSent = true;
        sock.write(head, 'latin1');
      }
      if (chunked) {
        sock.write(`${b.length.toString(16)}\r\n`, 'latin1');
        sock.write(b);
        ok = sock.write('\r\n', 'latin1');
      } else ok = sock.write(b);
      sock.uncork();
      if (!ok) {
        body.pause();
        sock.once('drain', () => body.resume());
      }
    };
    body.on('data', onData);
    finished(body, { writable: false }, (e) => {
      body.removeListener('data', onData);
      if (this.ex !== ex) return;
      if (e) return this.destroy(e);
      const rest = (headSent ? '' : head) + (chunked ? '0\r\n\r\n' : '');
      if (rest !== '') sock.write(rest, 'latin1');
      ex.requestDone = true;
      if (ex.responseDone) this.finish(ex);
    });
  }

  /** Closes the connection; the exchange on it (if any) fails. */
  destroy(err?: Error): void {
    this.onGone(err);
  }

  private onGone(err: Error | undefined): void {
    if (this.gone) return;
    this.gone = true;
    this.socket.destroy();
    this.client.forget(this);
    const ex = this.ex;
    this.ex = undefined;
    if (!ex || ex.responseDone) return;
    ex.req.signal.removeEventListener('abort', ex.onAbort);
    if (!ex.responded) return this.client.fail(ex, err ?? Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    if (this.phase === Phase.UntilClose && !err) {
      // A body framed by the connection's end: this is its end.
      ex.responseDone = true;
      ex.trailersDone?.({});
      ex.body!.push(null);
      return;
    }
    ex.trailersDone?.({});
    ex.body!.destroy(err ?? Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
  }

  bodyWantsMore(body: ResponseBody): void {
    if (this.ex?.body === body && this.socket.isPaused()) this.socket.resume();
  }

  bodyDestroyed(body: ResponseBody): void {
    // Destroyed before its end: the rest cannot be read off the connection, so it goes.
    if (this.ex?.body === body && !this.ex.responseDone) this.onGone(undefined);
  }

  private pushBody(b: Buffer): void {
    const ex = this.ex!;
    if (!ex.body!.push(b)) this.socket.pause();
  }

  private fatal(message: string): void {
    this.onGone(protocolError(message));
  }

  private onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let off = 0;
    while (off < buf.length && !this.gone) {
      switch (this.phase) {
        case Phase.Idle:
          return this.fatal('bytes received with no request outstanding');
        case Phase.Head: {
          const end = buf.indexOf('\r\n\r\n', off, 'latin1');
          if (end < 0) {
            if (buf.length - off > MAX_HEAD_BYTES) return this.fatal('response head too large');
            this.pending = buf.subarray(off);
            return;
          }
          if (end - off > MAX_HEAD_BYTES) return this.fatal('response head too large');
          const text = buf.toString('latin1', off, end);
          off = end + 4;
          this.onHead(text);
          break;
        }
        case Phase.Length: {
          const n = Math.min(this.remaining, buf.length - off);
          this.remaining -= n;
          this.pushBody(n === buf.length && off === 0 ? buf : buf.subarray(off, off + n));
          off += n;
          if (this.remaining === 0) this.complete(undefined);
          break;
        }
        case Phase.UntilClose:
          this.pushBody(off === 0 ? buf : buf.subarray(off));
          off = buf.length;
          break;
        case Phase.Chunked: {
          const next = this.chunks.decode(buf, off, this.pushChunk);
          if (next < 0) return this.fatal(this.chunks.error);
          if (this.chunks.done) {
            off = next;
            this.complete(this.chunks.trailers);
          } else if (next < buf.length) {
            this.pending = buf.subarray(next);
            return;
          } else off = next;
          break;
        }
      }
    }
  }

  /** A response head: interim ones are skipped; a final one resolves the exchange with its body to come. */
  private onHead(text: string): void {
    const ex = this.ex!;
    if (BAD_HEAD.test(text)) return this.fatal('malformed response head');
    const lines = text.split('\r\n');
    const statusLine = lines[0]!;
    const minor = statusLine.startsWith('HTTP/1.1 ') ? 1 : statusLine.startsWith('HTTP/1.0 ') ? 0 : -1;
    const code = statusLine.slice(9, 12);
    if (minor < 0 || !/^[1-9]\d\d$/.test(code) || (statusLine.length > 12 && statusLine.charCodeAt(12) !== 32)) return this.fatal('malformed status line');
    const status = Number(code);
    const headers = parseFields(lines, 1);
    if (!headers) return this.fatal('malformed header line');
    if (status < 200) {
      if (status === 101) return this.fatal('unexpected 101 Switching Protocols');
      return; // interim: the final response follows
    }
    const conn = headers['connection'];
    ex.keepAlive = ex.keepAlive && (minor === 1 ? !hasToken(conn, 'close') : hasToken(conn, 'keep-alive'));
    const te = headers['transfer-encoding'];
    const cl = headers['content-length'];
    let length = -1;
    let chunked = false;
    if (te !== undefined) {
      if (cl !== undefined) return this.fatal('both content-length and transfer-encoding');
      const codings = (te as string).split(',');
      chunked = codings[codings.length - 1]!.trim().toLowerCase() === 'chunked';
    } else if (cl !== undefined) {
      const v = cl as string;
      if (!DIGITS.test(v)) return this.fatal('invalid content-length');
      length = Number(v);
    }
    // Duplicate content-lengths are dropped (first kept) by the header rules; a differing one is refused.
    if (cl !== undefined && lines.length >= 3) {
      for (let i = 1; i < lines.length; i++) {
        const l = lines[i]!;
        if (l.length > 15 && l.charCodeAt(14) === 58 && l.slice(0, 14).toLowerCase() === 'content-length' && l.slice(15).trim() !== cl) return this.fatal('differing content-lengths');
      }
    }
    ex.responded = true;
    const body = new ResponseBody(this);
    ex.body = body;
    const noBody = ex.headRequest || status === 204 || status === 304 || length === 0;
    let trailers = NO_TRAILERS;
    if (chunked && !noBody) trailers = new Promise((done) => (ex.trailersDone = done));
    this.client.settle(ex);
    ex.resolve({ status, headers: headers as http.IncomingHttpHeaders, body, trailers });
    if (noBody) return this.complete(undefined);
    if (chunked) {
      this.chunks.reset();
      this.phase = Phase.Chunked;
    }
    else if (length > 0) {
      this.phase = Phase.Length;
      this.remaining = length;
    } else {
      this.phase = Phase.UntilClose;
      ex.keepAlive = false;
    }
  }

  /** The response ended (its trailers, if any, given). */
  private complete(trailers: Record<string, string | string[]> | undefined): void {
    const ex = this.ex!;
    this.phase = Phase.Idle;
    ex.responseDone = true;
    ex.trailersDone?.(trailers ?? {});
    ex.body!.push(null);
    // The rest of the body sits in the Readable: the connection may read on.
    if (this.socket.isPaused()) this.socket.resume();
    if (ex.requestDone) this.finish(ex);
    else {
      // Answered before the request body was sent: the connection cannot carry another request.
      ex.keepAlive = false;
      this.finish(ex);
    }
  }

  private finish(ex: Exchange): void {
    if (this.ex !== ex) return;
    ex.req.signal.removeEventListener('abort', ex.onAbort);
    this.ex = undefined;
    if (ex.keepAlive && !this.pending) this.client.release(this);
    else this.onGone(undefined);
  }
}

/** Pools of idle connections per endpoint (LIFO, as the agent's `scheduling: 'lifo'`). */
export class H1Client {
  private readonly idle = new Map<string, H1Connection[]>();
  private readonly all = new Set<H1Connection>();
  private closed = false;

  constructor(
    private readonly connectFn: ConnectFn,
    private readonly opts: { keepAlive: boolean; maxFreeSockets: number },
  ) {}

  /** Sends one request; resolves with the response once its head arrived. Rejects as node:http's client would. */
  request(endpoint: Endpoint, req: UpstreamRequest): Promise<UpstreamResponse> {
    return new Promise<UpstreamResponse>((resolve, reject) => {
      if (req.signal.aborted) return reject(abortError(req.signal));
      const { head, chunked } = requestHead(req, this.opts.keepAlive);
      let conn: H1Connection | undefined;
      const ex: Exchange = {
        endpoint,
        req,
        resolve,
        reject,
        headRequest: req.method === 'HEAD',
        responded: false,
        requestDone: false,
        responseDone: false,
        keepAlive: this.opts.keepAlive && !hasToken(req.headers['connection'] as string | string[] | undefined, 'close'),
        body: undefined,
        trailersDone: undefined,
        settled: false,
        onAbort: () => {
          const e = abortError(req.signal);
          if (conn) conn.destroy(e);
          else this.fail(ex, e);
        },
      };
      req.signal.addEventListener('abort', ex.onAbort, { once: true });
      // The body may fail while the connection is still being opened: its error is read from the
      // stream's state once sending starts (finished() in sendBody), not thrown meanwhile.
      req.body?.on('error', NOOP);
      const idle = this.idle.get(endpoint.key);
      while (idle && idle.length > 0) {
        const c = idle.pop()!;
        if (c.usable) {
          conn = c;
          break;
        }
      }
      if (conn) return conn.start(ex, head, chunked);
      this.connectFn(endpoint).then(
        (socket) => {
          if (ex.settled || this.closed) {
            socket.destroy();
            if (!ex.settled) this.fail(ex, new Error('upstream client closed'));
            return;
          }
          conn = new H1Connection(socket, endpoint.key, this);
          this.all.add(conn);
          conn.start(ex, head, chunked);
        },
        (e: unknown) => {
          req.signal.removeEventListener('abort', ex.onAbort);
          this.fail(ex, new UpstreamFailure('connect-failure', endpoint, e));
        },
      );
    });
  }

  /** Marks an exchange answered (head received or failed); true the first time. */
  settle(ex: Exchange): boolean {
    if (ex.settled) return false;
    ex.settled = true;
    return true;
  }

  /** Fails an exchange that has no response: the signal's abort error when aborted, else a reset. */
  fail(ex: Exchange, e: unknown): void {
    if (!this.settle(ex)) return;
    ex.req.signal.removeEventListener('abort', ex.onAbort);
    if (e instanceof UpstreamFailure || ex.req.signal.aborted) ex.reject(ex.req.signal.aborted && !(e instanceof UpstreamFailure) ? abortError(ex.req.signal) : e);
    else ex.reject(new UpstreamFailure('reset', ex.endpoint, e));
  }

  release(conn: H1Connection): void {
    if (this.closed) return conn.destroy();
    let list = this.idle.get(conn.key);
    if (!list) this.idle.set(conn.key, (list = []));
    if (list.length >= this.opts.maxFreeSockets) return conn.destroy();
    list.push(conn);
  }

  forget(conn: H1Connection): void {
    this.all.delete(conn);
    const list = this.idle.get(conn.key);
    if (!list) return;
    const i = list.indexOf(conn);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.idle.delete(conn.key);
  }

  /** Closes every connection, idle or busy (as the agent's destroy()). */
  close(): void {
    this.closed = true;
    for (const c of [...this.all]) c.destroy();
    this.idle.clear();
  }
}
