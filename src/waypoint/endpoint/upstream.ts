/**
 * The waypoint's client side: HTTP/1.1 and HTTP/2 (h2c) requests to one endpoint over a pluggable
 * connection factory. Tests connect with plain TCP; the agent's HBONE pool will supply tunnel
 * streams through the same `connect` seam. Failures are tagged so retry and outlier logic can tell
 * a connect failure (request never sent) from a reset (maybe processed).
 */
import type * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { finished, type Readable, type Writable } from 'node:stream';
import { UpstreamFailure, type ConnectFn, type Dispatch, type Endpoint, type UpstreamRequest, type UpstreamResponse } from './exchange.js';
import { H1Client } from './h1-client.js';

export { isUpstreamFailure, UpstreamFailure, type ConnectFn, type Dispatch, type Endpoint, type UpstreamFailureKind, type UpstreamRequest, type UpstreamResponse } from './exchange.js';

/** Plain TCP connect with a connect timeout; the default ConnectFn. */
export function tcpConnect(timeoutMs = 5000): ConnectFn {
  return (endpoint) =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: endpoint.address, port: endpoint.port });
      const timer = setTimeout(() => s.destroy(new Error(`connect to ${endpoint.key} timed out after ${timeoutMs} ms`)), timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        s.removeListener('error', reject);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
}

interface Tagged {
  ambitConnectFailure?: boolean;
}

export interface HttpUpstreamOptions {
  connect?: ConnectFn;
  /** 1 disables connection reuse (DestinationRule maxRequestsPerConnection: 1). */
  maxRequestsPerConnection?: number;
  /** Idle keep-alive sockets per endpoint (HTTP/1). */
  maxFreeSockets?: number;
}

const NOOP = (): void => {};

/**
 * Pipes a request body upstream. A body that fails, or is destroyed before its end (the client
 * left, or a retry let go of this try), takes the upstream request down with it: a request left
 * waiting for the rest of its body would hold its connection (and the app's) for good.
 */
function sendBody(body: Readable, upstream: Writable): void {
  finished(body, { writable: false }, (e) => {
    if (e && !upstream.writableFinished) upstream.destroy(e);
  });
  body.pipe(upstream);
}

/** HTTP/1.1 (keep-alive, h1-client.ts) and HTTP/2 (one session per endpoint) client over `connect`. */
export class HttpUpstream {
  private readonly connectFn: ConnectFn;
  private readonly h1: H1Client;
  private readonly sessions = new Map<string, Promise<http2.ClientHttp2Session>>();
  private closed = false;

  constructor(opts: HttpUpstreamOptions = {}) {
    this.connectFn = opts.connect ?? tcpConnect();
    this.h1 = new H1Client(this.connectFn, { keepAlive: opts.maxRequestsPerConnection !== 1, maxFreeSockets: opts.maxFreeSockets ?? 256 });
  }

  readonly dispatch: Dispatch = (endpoint, req) => (req.http2 ? this.dispatchHttp2(endpoint, req) : this.h1.request(endpoint, req));

  private session(endpoint: Endpoint): Promise<http2.ClientHttp2Session> {
    const existing = this.sessions.get(endpoint.key);
    if (existing) return existing;
    const p = this.connectFn(endpoint).then(
      (socket) => {
        const s = http2.connect(`http://${endpoint.key}`, { createConnection: () => socket, peerMaxConcurrentStreams: 1000 });
        const forget = (): void => {
          if (this.sessions.get(endpoint.key) === p) this.sessions.delete(endpoint.key);
        };
        s.once('close', forget);
        s.once('goaway', forget);
        s.on('error', forget);
        return s;
      },
      (e: unknown) => {
        this.sessions.delete(endpoint.key);
        const err = e instanceof Error ? e : new Error(String(e));
        (err as Tagged).ambitConnectFailure = true;
        throw err;
      },
    );
    this.sessions.set(endpoint.key, p);
    return p;
  }

  private async dispatchHttp2(endpoint: Endpoint, req: UpstreamRequest): Promise<UpstreamResponse> {
    let session: http2.ClientHttp2Session;
    try {
      session = await this.session(endpoint);
    } catch (e) {
      throw new UpstreamFailure('connect-failure', endpoint, e);
    }
    if (session.closed || session.destroyed) {
      this.sessions.delete(endpoint.key);
      throw new UpstreamFailure('refused-stream', endpoint, new Error('session closed'));
    }
    return new Promise((resolve, reject) => {
      const headers: http2.OutgoingHttpHeaders = {
        ...req.headers,
        ':method': req.method,
        ':path': req.path,
        ':authority': req.authority,
        ':scheme': 'http',
      };
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: req.body === undefined, signal: req.signal });
      } catch (e) {
        this.sessions.delete(endpoint.key);
        reject(new UpstreamFailure('refused-stream', endpoint, e));
        return;
      }
      let responded = false;
      const trailers = new Promise<Record<string, string | string[]>>((done) => {
        stream.once('trailers', (t: http2.IncomingHttpHeaders) => done({ ...(t as Record<string, string>) }));
        stream.once('close', () => done({}));
      });
      stream.once('response', (h) => {
        responded = true;
        const status = Number(h[':status'] ?? 502);
        const out: http.IncomingHttpHeaders = {};
        for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) out[k] = v as string;
        resolve({ status, headers: out, body: stream, trailers });
      });
      stream.once('error', (e) => {
        if (responded) return;
        const refused = stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
        reject(req.signal.aborted ? e : new UpstreamFailure(refused ? 'refused-stream' : 'reset', endpoint, e));
      });
      stream.once('close', () => {
        if (!responded) {
          const refused = stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
          reject(new UpstreamFailure(refused ? 'refused-stream' : 'reset', endpoint, new Error(`stream closed with code ${stream.rstCode}`)));
        }
      });
      if (req.body) sendBody(req.body, stream);
    });
  }

  /** Closes idle connections and every HTTP/2 session. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.h1.close();
    for (const p of this.sessions.values()) p.then((s) => s.close(), NOOP);
    this.sessions.clear();
  }
}
