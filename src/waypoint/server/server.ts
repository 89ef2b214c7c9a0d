/**
 * The waypoint's HTTP server: route configs in force (validated on receipt, last good set kept),
 * listeners (plain TCP with HTTP/1.1 and h2c on one port, TLS for ingress servers, or any byte
 * stream handed to acceptConnection, e.g. a terminated HBONE tunnel stream), and the wiring of the
 * layers every request goes through (request.ts):
 *
 *   route → filters → backend → withDeadline → withPoolGate → withMirror → withRetries
 *     → balance → endpoint Dispatch
 */
import type * as http from 'node:http';
import { nodeHttp } from '../../shared/node-builtins.js';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import type { Registry } from 'prom-client';
import { accessLogger, type Logger } from '../../shared/log.js';
import type { Service } from '../../shared/model.js';
import { type RetryPolicy, type RouteConfig } from '../../shared/routes.js';
import { balance } from '../balance/balance.js';
import { withPoolGate } from '../balance/pool-gate.js';
import { Destinations } from '../balance/destinations.js';
import type { BackendTarget, ProxyDispatch } from '../dispatch/dispatch.js';
import { withRetries } from '../dispatch/retry.js';
import { withDeadline } from '../dispatch/deadline.js';
import { tcpConnect, type ConnectFn, type Dispatch, type Endpoint } from '../endpoint/upstream.js';
import { ExtAuthzClient, type ExtAuthzDial } from '../filters/ext-authz.js';
import { RateLimits } from '../filters/filters.js';
import { createWaypointMetrics, type WaypointMetrics } from '../metrics.js';
import { withMirror } from '../route/mirror.js';
import { buildRouteTable, type RouteTable } from '../route/router.js';
import type { RandomSource } from '../route/weighted.js';
import type { OtlpSpanExporter } from '../trace.js';
import { out, type ServerRequest, type ServerResponse } from './headers.js';
import { HTTP1_LIMITS, HTTP2_LIMITS, MAX_REQUEST_HEADER_BYTES, refuseAmbiguousFraming } from './limits.js';
import { H1Front } from './h1-front.js';
import { JwksCache } from '../filters/jwt.js';
import { RequestHandler, type ConnectionMeta } from './request.js';
import type { SourceInfo } from './telemetry.js';

export type { BackendTarget } from '../dispatch/dispatch.js';
export type { ConnectionMeta } from './request.js';
export type { SourceInfo } from './telemetry.js';

export interface WaypointServerOptions {
  log: Logger;
  registry: Registry;
  /** Sends one try to one endpoint (HttpUpstream.dispatch over TCP or HBONE). */
  dispatch: Dispatch;
  /** Endpoints of a backend (service + port + subset labels). */
  resolveEndpoints: (target: BackendTarget) => Endpoint[];
  /** Serve the routes bound to this ingress Gateway (`ns/name`) instead of mesh routes. */
  gateway?: string;
  /** Who sent a request; defaults to unknown (plain listener). */
  identifySource?: (req: ServerRequest) => SourceInfo;
  /** Service port a request was addressed to; defaults to the config's only port, else the listener port. */
  portOf?: (req: ServerRequest, config: RouteConfig) => number | undefined;
  /** Retry policy for routes that set none (Istio default: 2 retries on connect failures); null for none. */
  defaultRetries?: RetryPolicy | null;
  random?: RandomSource;
  now?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Largest request body kept for retries and mirroring. */
  maxReplayBytes?: number;
  /** The Service of a hostname, for the destination_service_* labels (default: read from the name). */
  serviceOf?: (host: string) => Service | undefined;
  /** Exports one span per sampled request (OTLP); optional. */
  spanExporter?: Pick<OtlpSpanExporter, 'export'>;
  /** Opens a connection to an external authorizer (default: plain TCP to an endpoint of its service, else to its name). */
  extAuthzDial?: ExtAuthzDial;
}

const DEFAULT_MAX_REPLAY_BYTES = 64 * 1024;
/** Idle HTTP/1.1 keep-alive connections close after this long. */
const KEEP_ALIVE_MS = 60_000;

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

export class WaypointServer {
  readonly metrics: WaypointMetrics;
  private readonly log: Logger;
  private readonly handler: RequestHandler;
  private readonly destinations: Destinations;
  private readonly h1: http.Server;
  private readonly h2: http2.Http2Server;
  private readonly lean: H1Front;
  private listener: net.Server | undefined;
  private readonly tlsListeners = new Set<tls.Server>();
  private readonly connections = new Set<Duplex>();
  private readonly meta = new WeakMap<object, ConnectionMeta>();
  private configs: RouteConfig[] = [];
  private table: RouteTable = buildRouteTable([]);
  private meshTable: RouteTable = buildRouteTable([]);
  /** The external authorizers' client (the HTTP filters' and, for TCP connections, the waypoint's). */
  readonly extAuthz: ExtAuthzClient;

  constructor(private readonly opts: WaypointServerOptions) {
    this.log = opts.log.child({ component: opts.gateway ? 'gateway' : 'waypoint' });
    this.extAuthz = new ExtAuthzClient(opts.extAuthzDial ?? directExtAuthzDial(opts.resolveEndpoints));
    this.metrics = createWaypointMetrics(opts.registry);
    const random = opts.random ?? Math.random;
    const now = opts.now ?? (() => performance.now());
    const sleep = opts.sleep ?? defaultSleep;
    this.destinations = new Destinations(now);
    const metrics = this.metrics;
    const labels = (r: { service: string; route: string }): { destination_service: string; route: string } => ({ destination_service: r.service, route: r.route });
    const dispatch: ProxyDispatch = withDeadline(
      withPoolGate(
        withMirror(
          withRetries(
            balance(opts.dispatch, {
              resolveEndpoints: opts.resolveEndpoints,
              random,
              onEjection: (req, endpoint) => {
                metrics.outlierEjections.inc({ destination_service: req.service });
                this.log.warn({ reqId: req.reqId, endpoint: endpoint.key, service: req.service }, 'endpoint ejected by outlier detection');
              },
              onTryFailed: (req, endpoint, err) => this.log.debug({ reqId: req.reqId, endpoint: endpoint.key, err }, 'upstream try failed'),
            }),
            {
              now,
              random,
              sleep,
              onRetry: (req, reason) => metrics.retries.inc({ ...labels(req), reason }),
              onTryTimeout: (req) => metrics.timeouts.inc({ ...labels(req), kind: 'per_try' }),
              onBudgetExhausted: (req) => metrics.circuitBreakerTrips.inc({ destination_service: req.service, reason: 'retry_budget' }),
            },
          ),
          { dispatch: opts.dispatch, resolveEndpoints: opts.resolveEndpoints, random },
        ),
        (req) => metrics.circuitBreakerTrips.inc({ destination_service: req.service, reason: 'pool_overflow' }),
      ),
      { now, onTimeout: (req) => metrics.timeouts.inc({ ...labels(req), kind: 'request' }) },
    );
    this.handler = new RequestHandler({
      log: this.log,
      metrics,
      random,
      now,
      filters: { metrics, log: this.log, random, sleep, rateLimits: new RateLimits(now), jwks: new JwksCache(), extAuthz: this.extAuthz },
      telemetry: { metrics, accessLog: accessLogger(this.log), now, reporter: opts.gateway !== undefined ? 'source' : 'waypoint', ...(opts.serviceOf ? { serviceOf: opts.serviceOf } : {}), spanExporter: opts.spanExporter },
      destinations: this.destinations,
      dispatch,
      routes: () => ({ table: this.table, mesh: this.meshTable, configs: this.configs }),
      ...(opts.identifySource ? { identifySource: opts.identifySource } : {}),
      ...(opts.portOf ? { portOf: opts.portOf } : {}),
      ...(opts.defaultRetries !== undefined ? { defaultRetries: opts.defaultRetries } : {}),
      maxReplayBytes: opts.maxReplayBytes ?? DEFAULT_MAX_REPLAY_BYTES,
    });
    const onRequest = (req: ServerRequest, res: ServerResponse): void => {
      if (refuseAmbiguousFraming(req, out(res))) return;
      this.handle(req, res).catch((e: unknown) => this.handler.failed(res, e));
    };
    this.h1 = nodeHttp.createServer({ ...HTTP1_LIMITS, keepAliveTimeout: KEEP_ALIVE_MS, requestTimeout: 0, headersTimeout: 60_000 }, onRequest);
    // HTTP/1.1 goes to the lean front; what it does not take (anything unusual) to node:http's server.
    this.lean = new H1Front({
      maxHeadBytes: MAX_REQUEST_HEADER_BYTES,
      keepAliveMs: KEEP_ALIVE_MS,
      onRequest: (req, res) => onRequest(req as unknown as ServerRequest, res as unknown as ServerResponse),
      fallback: (conn, rest) => {
        conn.pause();
        conn.unshift(rest);
        this.h1.emit('connection', conn);
        conn.resume();
      },
    });
    this.h2 = http2.createServer({ ...HTTP2_LIMITS, peerMaxConcurrentStreams: 1000, settings: { ...HTTP2_LIMITS.settings, maxConcurrentStreams: 1000 } }, onRequest);
    this.h2.on('sessionError', (e) => this.log.debug({ err: e }, 'http2 session error'));
  }

  /** Requests in flight and queued at each destination's connection pool (`host|subset`), for /debug and tests. */
  poolLoad(): Array<{ destination: string; active: number; pending: number }> {
    return this.destinations.load();
  }

  /**
   * Replaces the route configs. They come validated: the config client checked every resource on
   * receipt (a bad one NACKed the update and the last good set stayed), so nothing is re-checked.
   */
  setRoutes(configs: readonly RouteConfig[]): void {
    this.configs = configs.map((c) => structuredClone(c));
    this.table = buildRouteTable(this.configs, this.opts.gateway);
    this.meshTable = this.opts.gateway ? buildRouteTable(this.configs) : this.table;
    this.log.info({ configs: configs.length }, 'route config applied');
  }

  get routes(): readonly RouteConfig[] {
    return this.configs;
  }

  /** Handles one request (exposed so other front ends can feed requests in). */
  handle(req: ServerRequest, res: ServerResponse): Promise<void> {
    const meta = req.httpVersionMajor === 2 ? this.meta.get((req as http2.Http2ServerRequest).stream.session as object) : this.meta.get(req.socket);
    return this.handler.handle(req, res, meta);
  }

  /** Listens on a plain TCP port (HTTP/1.1 and h2c, told apart by the HTTP/2 preface). */
  listen(port = 0, host = '127.0.0.1'): Promise<net.AddressInfo> {
    const server = net.createServer({ noDelay: true }, (s) => this.acceptConnection(s));
    this.listener = server;
    return listenOn(server, { port, host }, this.log, {});
  }

  /**
   * Listens with TLS (an ingress Gateway server with `tls.credentialName`): ALPN h2 and http/1.1,
   * `cert`/`key` PEM from the referenced Secret. Returns the bound address.
   */
  listenTls(opts: { port?: number; host?: string; certPem: string; keyPem: string; caPem?: string; requestClientCert?: boolean }): Promise<net.AddressInfo> {
    const server = tls.createServer(
      {
        cert: opts.certPem,
        key: opts.keyPem,
        ...(opts.caPem ? { ca: opts.caPem } : {}),
        ...(opts.requestClientCert ? { requestCert: true, rejectUnauthorized: true } : {}),
        ALPNProtocols: ['h2', 'http/1.1'],
        minVersion: 'TLSv1.2',
      },
      (s) => this.acceptConnection(s),
    );
    server.on('tlsClientError', (e) => this.log.debug({ err: e }, 'tls handshake failed'));
    this.tlsListeners.add(server);
    return listenOn(server, { port: opts.port ?? 0, host: opts.host ?? '127.0.0.1' }, this.log, { tls: true });
  }

  /**
   * Serves HTTP on a byte stream (a TCP socket or a terminated HBONE tunnel stream); `meta` tells
   * who is calling and which service port it addressed.
   */
  acceptConnection(conn: Duplex, meta: ConnectionMeta = {}): void {
    this.meta.set(conn, meta);
    this.connections.add(conn);
    conn.once('close', () => this.connections.delete(conn));
    conn.on('error', (e) => this.log.debug({ err: e }, 'downstream connection error'));
    let buf: Buffer = Buffer.alloc(0);
    const preface = Buffer.from('PRI ');
    const onData = (c: Buffer): void => {
      buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
      if (buf.length < preface.length && preface.subarray(0, buf.length).equals(buf)) return;
      conn.removeListener('data', onData);
      const isH2 = buf.subarray(0, preface.length).equals(preface);
      if (isH2) {
        conn.pause();
        conn.unshift(buf);
        // The session is created synchronously inside emit('connection'); remember its meta.
        const onSession = (session: http2.ServerHttp2Session): void => void this.meta.set(session, meta);
        this.h2.once('session', onSession);
        this.h2.emit('connection', conn);
        this.h2.removeListener('session', onSession);
      } else this.lean.accept(conn, buf);
    };
    conn.on('data', onData);
  }

  /** Closes every connection now (in-flight requests fail). */
  destroy(): void {
    this.listener?.close();
    this.listener = undefined;
    for (const l of this.tlsListeners) l.close();
    this.tlsListeners.clear();
    this.h1.close();
    this.h2.close();
    this.lean.destroy();
    for (const c of this.connections) c.destroy();
  }

  /** Stops accepting, lets in-flight requests finish until the deadline, then destroys the rest. */
  async close(deadlineMs = 5000): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    const servers: net.Server[] = [...(listener ? [listener] : []), ...this.tlsListeners];
    this.tlsListeners.clear();
    const closed = Promise.all(servers.map((l) => new Promise<void>((r) => l.close(() => r()))));
    this.h1.closeIdleConnections();
    this.lean.drain();
    const timer = setTimeout(() => {
      for (const c of this.connections) c.destroy();
    }, deadlineMs);
    this.h1.close();
    this.h2.close();
    for (const c of this.connections) {
      if (c instanceof net.Socket && !this.lean.owns(c) && !(c as net.Socket & { _httpMessage?: unknown })._httpMessage) c.end();
    }
    await closed;
    clearTimeout(timer);
    for (const c of this.connections) c.destroy();
    this.extAuthz.close();
  }
}

/** Plain TCP to an endpoint of the provider's service (picked at random), or to its name when the mesh has none. */
export function directExtAuthzDial(resolveEndpoints: (target: BackendTarget) => Endpoint[], connect: ConnectFn = tcpConnect()): ExtAuthzDial {
  return (provider) => {
    const endpoints = resolveEndpoints({ host: provider.service, port: provider.port });
    const e = endpoints[Math.floor(Math.random() * endpoints.length)];
    return connect(e ?? { key: `${provider.service}:${provider.port}`, address: provider.service, port: provider.port });
  };
}

/** Listens and resolves with the bound address; logs `listener established`. */
function listenOn(server: net.Server, at: { port: number; host: string }, log: Logger, extra: Record<string, unknown>): Promise<net.AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: at.port, host: at.host, backlog: 1024 }, () => {
      server.removeListener('error', reject);
      const addr = server.address() as net.AddressInfo;
      log.info({ addr: `${addr.address}:${addr.port}`, ...extra }, 'listener established');
      resolve(addr);
    });
  });
}
