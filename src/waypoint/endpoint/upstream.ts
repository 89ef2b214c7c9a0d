/**
 * The waypoint's client side: HTTP/1.1 and HTTP/2 (h2c) requests to one endpoint over a pluggable
 * connection factory. Tests connect with plain TCP; the agent's HBONE pool will supply tunnel
 * streams through the same `connect` seam. Failures are tagged so retry and outlier logic can tell
 * a connect failure (request never sent) from a reset (maybe processed).
 */
import type * as http from 'node:http';
import { nodeHttp } from '../../shared/node-builtins.js';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { finished, type Duplex, type Readable, type Writable } from 'node:stream';
import { AmbitError } from '../../shared/errors.js';

/** One address of a backend, with what telemetry needs to know about the pod behind it. */
export interface Endpoint {
  /** Stable key for outlier detection and pools, e.g. `10.0.0.5:9080`. */
  key: string;
  address: string;
  port: number;
  labels?: Record<string, string>;
  workload?: string;
  namespace?: string;
  canonicalService?: string;
  canonicalRevision?: string;
  /** SPIFFE id the endpoint presents. */
  principal?: string;
  cluster?: string;
}

export interface UpstreamRequest {
  method: string;
  /** Path with query. */
  path: string;
  authority: string;
  /** Lowercase names; no pseudo-headers and no hop-by-hop headers. */
  headers: http.OutgoingHttpHeaders;
  /** Undefined when the request has no body. */
  body: Readable | undefined;
  http2: boolean;
  signal: AbortSignal;
}

export interface UpstreamResponse {
  status: number;
  /** Lowercase names, no pseudo-headers. */
  headers: http.IncomingHttpHeaders;
  body: Readable;
  /** Resolves with the trailers (empty when none) once the body has ended. */
  trailers: Promise<Record<string, string | string[]>>;
}

/** Sends one request to one endpoint. Rejects with UpstreamFailure on connect failure or reset. */
export type Dispatch = (endpoint: Endpoint, req: UpstreamRequest) => Promise<UpstreamResponse>;

/** Opens a byte stream to an endpoint (plain TCP, or an HBONE tunnel stream). */
export type ConnectFn = (endpoint: Endpoint) => Promise<Duplex>;

export type UpstreamFailureKind = 'connect-failure' | 'reset' | 'refused-stream';

/** A try that produced no response; `kind` drives retry and outlier decisions. */
export class UpstreamFailure extends AmbitError {
  constructor(
    readonly kind: UpstreamFailureKind,
    endpoint: Endpoint,
    cause: unknown,
  ) {
    super(
      'AMBIT_ERR_UPSTREAM_CONNECT',
      kind === 'connect-failure'
        ? `connect to upstream ${endpoint.key} failed; is the pod running and listening on ${endpoint.port}?`
        : `upstream ${endpoint.key} ${kind === 'refused-stream' ? 'refused the stream' : 'reset the request'} before a response`,
      { cause, details: { endpoint: endpoint.key, kind } },
    );
  }
}

export function isUpstreamFailure(e: unknown): e is UpstreamFailure {
  return e instanceof UpstreamFailure;
}

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

/**
 * http.Agent treats its connections as net.Sockets (setKeepAlive, setNoDelay, ref/unref); a tunnel
 * stream is a plain Duplex, so the missing methods become no-ops.
 */
function asSocketLike(s: Duplex): Duplex {
  const x = s as Duplex & Record<string, unknown>;
  for (const m of ['setKeepAlive', 'setNoDelay', 'ref', 'unref']) {
    if (typeof x[m] !== 'function') x[m] = () => s;
  }
  if (typeof x['setTimeout'] !== 'function') x['setTimeout'] = () => s;
  return s;
}

class ConnectAgent extends nodeHttp.Agent {
  constructor(
    private readonly connectFn: ConnectFn,
    opts: http.AgentOptions,
  ) {
    super(opts);
  }

  override createConnection(options: http.ClientRequestArgs, cb?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const ep = (options as { ambitEndpoint?: Endpoint }).ambitEndpoint;
    const fail = cb as ((err: Error) => void) | undefined;
    if (!ep) {
      fail?.(new Error('no endpoint on request'));
      return undefined;
    }
    this.connectFn(ep).then(
      (s) => cb?.(null, asSocketLike(s)),
      (e: unknown) => {
        const err = e instanceof Error ? e : new Error(String(e));
        (err as Tagged).ambitConnectFailure = true;
        fail?.(err);
      },
    );
    return undefined;
  }
}

export interface HttpUpstreamOptions {
  connect?: ConnectFn;
  /** 1 disables connection reuse (DestinationRule maxRequestsPerConnection: 1). */
  maxRequestsPerConnection?: number;
  /** Idle keep-alive sockets per endpoint (HTTP/1). */
  maxFreeSockets?: number;
}

const NOOP = (): void => {};

/** The error an aborted signal carries (as `signal:` on http.request would raise it). */
function abortError(signal: AbortSignal): Error {
  const e = new Error('The operation was aborted', { cause: signal.reason });
  e.name = 'AbortError';
  return e;
}

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

/** HTTP/1.1 (keep-alive) and HTTP/2 (one session per endpoint) client over `connect`. */
export class HttpUpstream {
  private readonly connectFn: ConnectFn;
  private readonly agent: ConnectAgent;
  private readonly sessions = new Map<string, Promise<http2.ClientHttp2Session>>();
  private closed = false;

  constructor(opts: HttpUpstreamOptions = {}) {
    this.connectFn = opts.connect ?? tcpConnect();
    const keepAlive = opts.maxRequestsPerConnection !== 1;
    this.agent = new ConnectAgent(this.connectFn, { keepAlive, maxFreeSockets: opts.maxFreeSockets ?? 256, scheduling: 'lifo' });
  }

  readonly dispatch: Dispatch = (endpoint, req) => (req.http2 ? this.dispatchHttp2(endpoint, req) : this.dispatchHttp1(endpoint, req));

  private dispatchHttp1(endpoint: Endpoint, req: UpstreamRequest): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { ...req.headers, host: req.authority };
      const creq = nodeHttp.request({
        agent: this.agent,
        host: endpoint.address,
        port: endpoint.port,
        method: req.method,
        path: req.path,
        headers,
        ambitEndpoint: endpoint,
      } as http.RequestOptions);
      // Abort by hand rather than with `signal:` (which hooks end-of-stream on the request: several
      // listeners per request); the listener goes when the response ends or the request fails.
      const onAbort = (): void => void creq.destroy(abortError(req.signal));
      if (req.signal.aborted) onAbort();
      else req.signal.addEventListener('abort', onAbort, { once: true });
      const unhook = (): void => req.signal.removeEventListener('abort', onAbort);
      creq.once('close', unhook);
      let responded = false;
      creq.once('response', (res) => {
        responded = true;
        const trailers = new Promise<Record<string, string | string[]>>((done) => {
          res.once('end', () => done({ ...(res.trailers as Record<string, string>) }));
          res.once('close', () => done({}));
        });
        resolve({ status: res.statusCode ?? 502, headers: res.headers, body: res, trailers });
      });
      creq.once('error', (e) => {
        if (responded) return;
        const kind: UpstreamFailureKind = (e as Tagged).ambitConnectFailure ? 'connect-failure' : 'reset';
        reject(req.signal.aborted ? e : new UpstreamFailure(kind, endpoint, e));
      });
      if (req.body) sendBody(req.body, creq);
      else creq.end();
    });
  }

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
    this.agent.destroy();
    for (const p of this.sessions.values()) p.then((s) => s.close(), NOOP);
    this.sessions.clear();
  }
}
