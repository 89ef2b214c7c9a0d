/**
 * The waypoint's HTTP front: accepts HTTP/1.1 and h2c on one listener (or on any byte stream handed
 * to acceptConnection, e.g. a terminated HBONE tunnel stream) and proxies each request:
 * route → fault → authz → rate limit → circuit breaker → retries/timeouts → upstream, streaming
 * bodies both ways and passing HTTP/2 trailers (gRPC status) through. One access-log line and one
 * set of Istio metrics per request.
 */
import type * as http from 'node:http';
import { nodeHttp } from '../shared/node-builtins.js';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import type { Registry } from 'prom-client';
import { errorMessage } from '../shared/errors.js';
import { accessLogger, type Logger } from '../shared/log.js';
import { UNKNOWN } from '../shared/metrics.js';
import { formatIssue, type Issue } from '../shared/validate.js';
import {
  validateRouteConfig,
  type HeaderOps,
  type HttpRoute,
  type RetryPolicy,
  type RouteBackend,
  type RouteConfig,
  type TrafficPolicy,
} from '../shared/routes.js';
import { authorizeRequest, RBAC_DENIED_BODY } from './authz.js';
import { ConnectionPoolGate, OutlierDetector, classifyResult, type Release } from './circuit-breaker.js';
import { baseLabels, createWaypointMetrics, recordRequest, RESPONSE_FLAGS, type IstioHttpLabels, type WaypointMetrics } from './metrics.js';
import { upstreamUsesHttp2 } from './protocol.js';
import { TokenBucket } from './rate-limit.js';
import { HTTP1_LIMITS, HTTP2_LIMITS, refuseAmbiguousFraming } from './limits.js';
import { ReplayableBody } from './replay-body.js';
import { decideFault, rollPercent } from './route/fault.js';
import { defaultRetryPolicy, isRetryable, retryBackoffMs, RetryBudget, type TryOutcome } from './route/retry.js';
import { createDeadline, parseGrpcTimeout, tryTimeoutMs } from './route/timeout.js';
import { pickWeighted, type RandomSource } from './route/weighted.js';
import { buildRouteTable, hostOfAuthority, rewritePath, routeRequest, type RouteRequest, type RouteTable } from './router.js';
import { propagateTrace, type OtlpSpanExporter, type TraceContext } from './trace.js';
import { isUpstreamFailure, type Dispatch, type Endpoint, type UpstreamResponse } from './upstream.js';

type ServerRequest = http.IncomingMessage | http2.Http2ServerRequest;
type ServerResponse = http.ServerResponse | http2.Http2ServerResponse;

/** The methods both response kinds share, callable on the union. */
function out(res: ServerResponse): http.ServerResponse {
  return res as unknown as http.ServerResponse;
}

/** The calling workload, as the tunnel (HBONE peer certificate, baggage) tells it. */
export interface SourceInfo {
  principal?: string;
  workload?: string;
  namespace?: string;
  app?: string;
  version?: string;
  canonicalService?: string;
  canonicalRevision?: string;
  cluster?: string;
}

/** What resolveEndpoints gets: the chosen backend and the service port to use. */
export interface BackendTarget {
  host: string;
  port: number;
  subset?: string;
  subsetLabels?: Record<string, string>;
}

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
  /** Cluster name for metric labels. */
  cluster?: string;
  /** Exports one span per sampled request (OTLP); optional. */
  spanExporter?: Pick<OtlpSpanExporter, 'export'>;
}

interface DestinationState {
  policyKey: string;
  /** The route config the policy was read from; the key is recomputed only when it changes. */
  from: RouteConfig | undefined;
  gate: ConnectionPoolGate;
  outlier?: OutlierDetector;
  budget?: RetryBudget;
  budgetKey?: string;
  /** DestinationRule maxRequestsPerConnection: 1 turns off HTTP/1.1 keep-alive upstream. */
  closeAfterRequest: boolean;
  /** In-flight requests per endpoint key, for least-request picks. */
  active: Map<string, number>;
}

/**
 * Least-request endpoint choice (Istio's default LEAST_REQUEST): two random candidates, the one
 * with fewer requests in flight wins.
 */
export function pickLeastRequest<T extends { key: string }>(pool: readonly T[], active: ReadonlyMap<string, number>, random: RandomSource): T | undefined {
  if (pool.length <= 1) return pool[0];
  const a = pool[Math.min(pool.length - 1, Math.floor(random() * pool.length))]!;
  let b = pool[Math.min(pool.length - 1, Math.floor(random() * pool.length))]!;
  if (b === a) b = pool[(pool.indexOf(a) + 1) % pool.length]!;
  return (active.get(b.key) ?? 0) < (active.get(a.key) ?? 0) ? b : a;
}

interface RequestState {
  reqId: string;
  started: number;
  method: string;
  authority: string;
  path: string;
  protocol: 'http' | 'grpc';
  http2: boolean;
  status?: number;
  grpcStatus?: string;
  flags: string[];
  route?: string;
  service?: string;
  serviceNamespace?: string;
  endpoint?: Endpoint;
  retries: number;
  bytesIn: number;
  bytesOut: number;
  traceId?: string;
  trace?: TraceContext;
  source: SourceInfo;
  headerBytes: number;
  body?: ReplayableBody;
}

/** What the front end that accepted a connection knows about it (an HBONE tunnel: peer, target). */
export interface ConnectionMeta {
  /** The caller (from the tunnel's peer certificate and baggage). */
  source?: SourceInfo;
  /** The service port the caller addressed (the CONNECT target's port). */
  targetPort?: number;
  /** Hostname of the Service whose VIP the caller addressed: its routes apply whatever the Host says. */
  targetService?: string;
  /** Address of the pod the caller addressed (workload-bound waypoint): requests go to that pod. */
  targetWorkload?: string;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings', 'te', 'trailer']);

const GRPC_FOR_HTTP: Record<number, number> = { 400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 4 };

const DEFAULT_MAX_REPLAY_BYTES = 64 * 1024;

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

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

const NO_TOKENS: ReadonlySet<string> = new Set();

/** Header names a `Connection` header lists (hop-by-hop for this message); usually none. */
function connectionTokens(v: string | string[] | undefined): ReadonlySet<string> {
  if (v === undefined) return NO_TOKENS;
  return new Set((headerString(v) ?? '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
}

function applyHeaderOps(headers: Record<string, string | string[] | number | undefined>, ops: HeaderOps): void {
  for (const name of ops.remove) delete headers[name.toLowerCase()];
  for (const [k, v] of Object.entries(ops.set)) headers[k.toLowerCase()] = v;
  for (const [k, v] of Object.entries(ops.add)) {
    const key = k.toLowerCase();
    const cur = headers[key];
    if (cur === undefined) headers[key] = v;
    else headers[key] = [...(Array.isArray(cur) ? cur : [String(cur)]), v];
  }
}

/** `reviews.bookinfo.svc.cluster.local` → name reviews, namespace bookinfo. */
function serviceParts(host: string, fallbackNs: string | undefined): { name: string; namespace: string } {
  const parts = host.split('.');
  if (parts.length >= 3 && parts[2] === 'svc') return { name: parts[0]!, namespace: parts[1]! };
  return { name: parts[0] ?? host, namespace: fallbackNs ?? UNKNOWN };
}

function hexId(random: RandomSource): string {
  return Math.floor(random() * 0x100000000).toString(16).padStart(8, '0') + Math.floor(random() * 0x100000000).toString(16).padStart(8, '0');
}

export class WaypointServer {
  readonly metrics: WaypointMetrics;
  private readonly log: Logger;
  /** One line per request, without the redaction pass (only known-safe fields go in). */
  private readonly accessLog: Logger;
  private readonly random: RandomSource;
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly h1: http.Server;
  private readonly h2: http2.Http2Server;
  private listener: net.Server | undefined;
  private readonly tlsListeners = new Set<tls.Server>();
  private readonly connections = new Set<Duplex>();
  private readonly meta = new WeakMap<object, ConnectionMeta>();
  private configs: RouteConfig[] = [];
  private table: RouteTable = buildRouteTable([]);
  private meshTable: RouteTable = buildRouteTable([]);
  private readonly destinations = new Map<string, DestinationState>();
  private readonly rateLimits = new Map<string, { key: string; bucket: TokenBucket }>();
  private seq = 0;

  constructor(private readonly opts: WaypointServerOptions) {
    this.log = opts.log.child({ component: opts.gateway ? 'gateway' : 'waypoint' });
    this.accessLog = accessLogger(this.log);
    this.metrics = createWaypointMetrics(opts.registry);
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? (() => performance.now());
    this.sleep = opts.sleep ?? defaultSleep;
    const handler = (req: ServerRequest, res: ServerResponse): void => {
      if (refuseAmbiguousFraming(req, out(res))) return;
      this.handle(req, res).catch((e: unknown) => {
        this.log.error({ err: errorMessage(e) }, 'request handler failed');
        if (!res.headersSent) {
          out(res).writeHead(500);
          res.end();
        } else res.destroy();
      });
    };
    this.h1 = nodeHttp.createServer({ ...HTTP1_LIMITS, keepAliveTimeout: 60_000, requestTimeout: 0, headersTimeout: 60_000 }, handler);
    this.h2 = http2.createServer({ ...HTTP2_LIMITS, peerMaxConcurrentStreams: 1000, settings: { ...HTTP2_LIMITS.settings, maxConcurrentStreams: 1000 } }, handler);
    this.h2.on('sessionError', (e) => this.log.debug({ err: errorMessage(e) }, 'http2 session error'));
  }

  /**
   * Replaces the route configs. Every config is validated first; when any is invalid nothing
   * changes (the last good set stays in force) and the issues are returned.
   */
  setRoutes(configs: readonly RouteConfig[]): { ok: boolean; issues: Issue[] } {
    const issues: Issue[] = [];
    configs.forEach((c, i) => issues.push(...validateRouteConfig(c, `routes[${i}]${typeof c?.name === 'string' ? `(${c.name})` : ''}`)));
    if (issues.length > 0) {
      this.metrics.configRejections.inc();
      this.log.warn({ issues: issues.slice(0, 20).map(formatIssue), count: issues.length }, 'route config rejected; keeping last good config');
      return { ok: false, issues };
    }
    this.configs = configs.map((c) => structuredClone(c));
    this.table = buildRouteTable(this.configs, this.opts.gateway);
    this.meshTable = this.opts.gateway ? buildRouteTable(this.configs) : this.table;
    this.log.info({ configs: configs.length }, 'route config applied');
    return { ok: true, issues: [] };
  }

  get routes(): readonly RouteConfig[] {
    return this.configs;
  }

  /** Listens on a plain TCP port (HTTP/1.1 and h2c, told apart by the HTTP/2 preface). */
  listen(port = 0, host = '127.0.0.1'): Promise<net.AddressInfo> {
    const server = net.createServer({ noDelay: true }, (s) => this.acceptConnection(s));
    this.listener = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host, backlog: 1024 }, () => {
        server.removeListener('error', reject);
        const addr = server.address() as net.AddressInfo;
        this.log.info({ addr: `${addr.address}:${addr.port}` }, 'listener established');
        resolve(addr);
      });
    });
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
    server.on('tlsClientError', (e) => this.log.debug({ err: errorMessage(e) }, 'tls handshake failed'));
    this.tlsListeners.add(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: opts.port ?? 0, host: opts.host ?? '127.0.0.1', backlog: 1024 }, () => {
        server.removeListener('error', reject);
        const addr = server.address() as net.AddressInfo;
        this.log.info({ addr: `${addr.address}:${addr.port}`, tls: true }, 'listener established');
        resolve(addr);
      });
    });
  }

  /**
   * Serves HTTP on a byte stream (a TCP socket or a terminated HBONE tunnel stream); `meta` tells
   * who is calling and which service port it addressed.
   */
  acceptConnection(conn: Duplex, meta: ConnectionMeta = {}): void {
    this.meta.set(conn, meta);
    this.connections.add(conn);
    conn.once('close', () => this.connections.delete(conn));
    conn.on('error', (e) => this.log.debug({ err: errorMessage(e) }, 'downstream connection error'));
    let buf: Buffer = Buffer.alloc(0);
    const preface = Buffer.from('PRI ');
    const onData = (c: Buffer): void => {
      buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
      if (buf.length < preface.length && preface.subarray(0, buf.length).equals(buf)) return;
      conn.removeListener('data', onData);
      conn.pause();
      conn.unshift(buf);
      const isH2 = buf.subarray(0, preface.length).equals(preface);
      if (isH2) {
        // The session is created synchronously inside emit('connection'); remember its meta.
        const onSession = (session: http2.ServerHttp2Session): void => void this.meta.set(session, meta);
        this.h2.once('session', onSession);
        this.h2.emit('connection', conn);
        this.h2.removeListener('session', onSession);
      } else {
        this.h1.emit('connection', conn);
        conn.resume();
      }
    };
    conn.on('data', onData);
  }

  private metaOf(req: ServerRequest): ConnectionMeta | undefined {
    if (req.httpVersionMajor === 2) return this.meta.get((req as http2.Http2ServerRequest).stream.session as object);
    return this.meta.get(req.socket);
  }

  /** Requests in flight and queued at each destination's connection pool (`host|subset`), for /debug and tests. */
  poolLoad(): Array<{ destination: string; active: number; pending: number }> {
    return [...this.destinations].map(([destination, st]) => ({ destination, active: st.gate.activeCount, pending: st.gate.pendingCount }));
  }

  private destination(backend: RouteBackend): DestinationState {
    const key = `${backend.host}|${backend.subset ?? ''}`;
    const svc = this.meshTable.exact.get(backend.host.toLowerCase()) ?? this.configs.find((c) => !c.gateway && c.hostname === backend.host);
    const known = this.destinations.get(key);
    // Configs are replaced, never changed in place (setRoutes clones): same object, same policy.
    if (known && known.from === svc) return known;
    const tp: TrafficPolicy | undefined = svc?.trafficPolicy;
    const subset = backend.subset ? tp?.subsets.find((s) => s.name === backend.subset) : undefined;
    const connectionPool = subset?.trafficPolicy?.connectionPool ?? tp?.connectionPool;
    const outlierDetection = subset?.trafficPolicy?.outlierDetection ?? tp?.outlierDetection;
    const policyKey = JSON.stringify([connectionPool, outlierDetection]);
    let st = this.destinations.get(key);
    if (!st || st.policyKey !== policyKey) {
      st = { policyKey, from: svc, gate: new ConnectionPoolGate(connectionPool), closeAfterRequest: connectionPool?.maxRequestsPerConnection === 1, active: new Map() };
      if (outlierDetection) st.outlier = new OutlierDetector(outlierDetection, this.now);
      this.destinations.set(key, st);
    }
    st.from = svc;
    return st;
  }

  private rateLimiter(config: RouteConfig): TokenBucket | undefined {
    if (!config.rateLimit) return undefined;
    const key = JSON.stringify(config.rateLimit);
    let rl = this.rateLimits.get(config.name);
    if (!rl || rl.key !== key) {
      rl = { key, bucket: new TokenBucket(config.rateLimit, this.now) };
      this.rateLimits.set(config.name, rl);
    }
    return rl.bucket;
  }

  /** Handles one request (exposed so other front ends can feed requests in). */
  async handle(req: ServerRequest, res: ServerResponse): Promise<void> {
    const h2 = req.httpVersionMajor === 2;
    const authority = headerString(h2 ? req.headers[':authority'] : req.headers.host) ?? '';
    const contentType = headerString(req.headers['content-type']);
    const grpc = contentType === 'application/grpc' || contentType?.startsWith('application/grpc+') === true;
    const st: RequestState = {
      reqId: `${(++this.seq).toString(36)}-${hexId(this.random).slice(0, 8)}`,
      started: this.now(),
      method: req.method ?? 'GET',
      authority,
      path: req.url ?? '/',
      protocol: grpc ? 'grpc' : 'http',
      http2: h2,
      flags: [],
      retries: 0,
      bytesIn: 0,
      bytesOut: 0,
      source: {},
      headerBytes: 0,
    };
    const meta = this.metaOf(req);
    st.source = meta?.source ?? this.opts.identifySource?.(req) ?? {};
    for (let i = 0; i < req.rawHeaders.length; i++) st.headerBytes += req.rawHeaders[i]!.length + 2;
    res.once('close', () => this.finish(st, res));

    const rreq: RouteRequest = { authority, path: st.path, method: st.method, headers: req.headers, ...(meta?.targetPort !== undefined ? { port: meta.targetPort } : {}), ...(meta?.targetService !== undefined ? { service: meta.targetService } : {}), ...(meta?.targetWorkload !== undefined ? { workload: meta.targetWorkload } : {}) };
    const decision = routeRequest(this.table, rreq);
    if (decision.kind === 'no-route') {
      st.service = hostOfAuthority(authority);
      req.resume();
      return this.localReply(st, res, 404, decision.reason === 'unknown-host' ? `no route config for host ${JSON.stringify(st.service)}` : 'no route matched the request', RESPONSE_FLAGS.NO_ROUTE);
    }
    const { config, route } = decision;
    rreq.port ??= this.opts.portOf?.(req, config) ?? (config.ports.length === 1 ? config.ports[0]!.port : (req.socket as net.Socket | undefined)?.localPort);
    st.route = route.name;
    st.service = config.hostname;
    st.serviceNamespace = config.namespace;

    const trace = propagateTrace(req.headers, this.random);
    st.traceId = trace.context.traceId;
    st.trace = trace.context;

    // fault injection
    const fault = decideFault(route.fault, this.random);
    if (fault.delayMs > 0) {
      this.metrics.faults.inc({ destination_service: config.hostname, route: route.name, kind: 'delay' });
      st.flags.push(RESPONSE_FLAGS.FAULT_DELAY);
      const gone = new AbortController();
      const onClose = (): void => gone.abort();
      res.once('close', onClose);
      await this.sleep(fault.delayMs, gone.signal);
      res.removeListener('close', onClose);
      if (gone.signal.aborted) return;
    }
    if (fault.abort) {
      this.metrics.faults.inc({ destination_service: config.hostname, route: route.name, kind: 'abort' });
      req.resume();
      if (fault.abort.grpcStatus !== undefined) return this.grpcReply(st, res, fault.abort.grpcStatus, 'fault filter abort', RESPONSE_FLAGS.FAULT_ABORT);
      return this.localReply(st, res, fault.abort.httpStatus, 'fault filter abort', RESPONSE_FLAGS.FAULT_ABORT);
    }

    // L7 authorization
    if (config.authorization.length > 0) {
      const verdict = authorizeRequest(config.authorization, { method: st.method, path: st.path, authority, headers: req.headers, port: rreq.port, principal: st.source.principal });
      if (verdict.audited.length > 0 || verdict.dryRunDenied.length > 0) this.log.info({ reqId: st.reqId, audited: verdict.audited, dryRunDenied: verdict.dryRunDenied }, 'authorization audit');
      if (!verdict.allowed) {
        this.metrics.policyDenials.inc({ destination_service: config.hostname, reason: 'rbac' });
        req.resume();
        return this.localReply(st, res, 403, RBAC_DENIED_BODY, RESPONSE_FLAGS.RBAC_DENIED);
      }
    }

    // local rate limit
    const bucket = this.rateLimiter(config);
    if (bucket && !bucket.tryTake()) {
      this.metrics.policyDenials.inc({ destination_service: config.hostname, reason: 'rate_limited' });
      req.resume();
      return this.localReply(st, res, 429, 'local_rate_limited', RESPONSE_FLAGS.RATE_LIMITED);
    }

    if (route.directResponse) {
      req.resume();
      return this.localReply(st, res, route.directResponse.status, route.directResponse.body ?? '', RESPONSE_FLAGS.NONE);
    }

    const backend = pickWeighted(route.backends, this.random);
    if (!backend) {
      req.resume();
      return this.localReply(st, res, 503, 'no healthy upstream', RESPONSE_FLAGS.NO_HEALTHY_UPSTREAM);
    }
    const port = backend.port ?? rreq.port;
    // A pod-addressed request (workload waypoint) is labelled with the pod's Service when it has one.
    st.service = rreq.workload !== undefined ? config.hostname : backend.host;
    st.serviceNamespace = serviceParts(st.service, config.namespace).namespace;
    if (port === undefined) {
      req.resume();
      return this.localReply(st, res, 503, `no port known for backend ${backend.host}`, RESPONSE_FLAGS.NO_HEALTHY_UPSTREAM);
    }
    await this.proxy(st, req, res, { config, route, backend, port, rreq, traceSet: trace.set, traceRemove: trace.remove, grpc, contentType });
  }

  private upstreamHeaders(req: ServerRequest, route: HttpRoute, traceSet: Record<string, string>, traceRemove: string[]): http.OutgoingHttpHeaders {
    const out: Record<string, string | string[] | number | undefined> = {};
    const connTokens = connectionTokens(req.headers.connection);
    const inHeaders = req.headers;
    for (const k in inHeaders) {
      const v = inHeaders[k];
      if (v === undefined || k.charCodeAt(0) === 58 /* ':' */ || HOP_BY_HOP.has(k) || connTokens.has(k)) continue;
      out[k] = v;
    }
    if (headerString(req.headers.te)?.toLowerCase().includes('trailers')) out['te'] = 'trailers';
    for (const k of traceRemove) delete out[k];
    Object.assign(out, traceSet);
    out['x-forwarded-proto'] ??= 'http';
    if (out['x-request-id'] === undefined) out['x-request-id'] = crypto.randomUUID();
    applyHeaderOps(out, route.headers.request);
    return out as http.OutgoingHttpHeaders;
  }

  private async proxy(
    st: RequestState,
    req: ServerRequest,
    res: ServerResponse,
    p: {
      config: RouteConfig;
      route: HttpRoute;
      backend: RouteBackend;
      port: number;
      rreq: RouteRequest;
      traceSet: Record<string, string>;
      traceRemove: string[];
      grpc: boolean;
      contentType: string | undefined;
    },
  ): Promise<void> {
    const { route, backend, port } = p;
    const service = backend.host;
    const dest = this.destination(backend);
    const entry = dest.gate.enter();
    if (!entry.ok) {
      this.metrics.circuitBreakerTrips.inc({ destination_service: service, reason: 'pool_overflow' });
      req.resume();
      return this.localReply(st, res, 503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow', RESPONSE_FLAGS.UPSTREAM_OVERFLOW);
    }

    const grpcTimeout = p.grpc ? parseGrpcTimeout(headerString(req.headers['grpc-timeout'])) : undefined;
    const timeoutMs = route.timeoutMs !== undefined && grpcTimeout !== undefined ? Math.min(route.timeoutMs, grpcTimeout) : (route.timeoutMs ?? grpcTimeout);
    const deadline = createDeadline(timeoutMs, this.now());
    const overall = new AbortController();
    let overallTimedOut = false;
    const overallTimer =
      timeoutMs !== undefined
        ? setTimeout(() => {
            overallTimedOut = true;
            overall.abort();
          }, timeoutMs)
        : undefined;
    // The downstream going away aborts everything in flight for this request.
    let downstreamGone = false;
    const onResClose = (): void => {
      if (res.writableFinished) return;
      downstreamGone = true;
      overall.abort();
    };
    res.once('close', onResClose);

    let release: Release | undefined;
    try {
      release = entry.immediate ?? await new Promise<Release | undefined>((resolve) => {
        if (overall.signal.aborted) return resolve(undefined);
        const onAbort = (): void => {
          entry.cancel();
          resolve(undefined);
        };
        overall.signal.addEventListener('abort', onAbort, { once: true });
        entry.ready.then((r) => {
          overall.signal.removeEventListener('abort', onAbort);
          if (overall.signal.aborted) {
            r();
            resolve(undefined);
          } else resolve(r);
        }, () => resolve(undefined));
      });
      if (!release) {
        if (overallTimedOut) {
          this.metrics.timeouts.inc({ destination_service: service, route: route.name, kind: 'request' });
          req.resume();
          this.localReply(st, res, 504, 'upstream request timeout', RESPONSE_FLAGS.UPSTREAM_TIMEOUT);
        }
        return;
      }

      const hasBody = st.http2 ? !(req as http2.Http2ServerRequest).stream.endAfterHeaders : req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
      const body = hasBody ? new ReplayableBody(req, this.opts.maxReplayBytes ?? DEFAULT_MAX_REPLAY_BYTES) : undefined;
      if (body) st.body = body;
      if (!hasBody) req.resume();
      const policy = route.retries ?? (this.opts.defaultRetries === null ? undefined : (this.opts.defaultRetries ?? defaultRetryPolicy()));
      let budget: RetryBudget | undefined;
      if (policy?.budget) {
        const bk = JSON.stringify(policy.budget);
        if (!dest.budget || dest.budgetKey !== bk) {
          dest.budget = new RetryBudget(policy.budget);
          dest.budgetKey = bk;
        }
        budget = dest.budget;
        budget.deposit();
      }
      const headers = this.upstreamHeaders(req, route, p.traceSet, p.traceRemove);
      const authority = route.rewrite?.authority ?? st.authority;
      const path = rewritePath(route, p.rreq);
      const backendConfig = this.meshTable.exact.get(backend.host.toLowerCase()) ?? p.config;
      const useH2 = upstreamUsesHttp2(backendConfig.ports.find((x) => x.port === port)?.protocol, st.http2, p.contentType);
      if (dest.closeAfterRequest && !useH2) headers['connection'] = 'close';
      const target = { host: backend.host, port, ...(backend.subset ? { subset: backend.subset } : {}), ...(backend.subsetLabels ? { subsetLabels: backend.subsetLabels } : {}) };

      if (route.mirror && rollPercent(route.mirror.percent, this.random) && (!body || body.replayable)) {
        this.mirror(route, st, headers, path, authority, body, useH2);
      }

      const tried = new Set<string>();
      for (let attempt = 0; ; attempt++) {
        const all = this.opts.resolveEndpoints(target);
        const keys = all.map((e) => e.key);
        const healthy = dest.outlier ? dest.outlier.filter(all, (e) => e.key) : all;
        if (healthy.length === 0) {
          body?.detachAll();
          req.resume();
          return this.localReply(st, res, 503, 'no healthy upstream', RESPONSE_FLAGS.NO_HEALTHY_UPSTREAM);
        }
        const fresh = healthy.filter((e) => !tried.has(e.key));
        const pool = fresh.length > 0 ? fresh : healthy;
        const endpoint = pickLeastRequest(pool, dest.active, this.random)!;
        tried.add(endpoint.key);
        st.endpoint = endpoint;
        dest.active.set(endpoint.key, (dest.active.get(endpoint.key) ?? 0) + 1);
        const endpointDone = (): void => {
          const n = (dest.active.get(endpoint.key) ?? 1) - 1;
          if (n <= 0) dest.active.delete(endpoint.key);
          else dest.active.set(endpoint.key, n);
        };

        const perTry = policy?.perTryTimeoutMs !== undefined ? tryTimeoutMs(deadline, policy.perTryTimeoutMs, this.now()) : undefined;
        // A try has its own signal only when it has its own timeout; otherwise the request's.
        const tryCtl = perTry !== undefined && perTry !== Infinity ? new AbortController() : undefined;
        const onOverall = (): void => tryCtl?.abort();
        if (tryCtl) overall.signal.addEventListener('abort', onOverall, { once: true });
        let tryTimedOut = false;
        const tryTimer = tryCtl
          ? setTimeout(() => {
              tryTimedOut = true;
              tryCtl.abort();
            }, perTry)
          : undefined;
        let resp: UpstreamResponse | undefined;
        let outcome: TryOutcome;
        try {
          resp = await this.opts.dispatch(endpoint, { method: st.method, path, authority, headers, body: body?.open(), http2: useH2, signal: tryCtl?.signal ?? overall.signal });
          const gs = headerString(resp.headers['grpc-status']);
          outcome = { kind: 'response', status: resp.status, ...(gs !== undefined ? { grpcStatus: Number(gs) } : {}) };
        } catch (e) {
          if (tryTimedOut && !overallTimedOut) outcome = { kind: 'timeout' };
          else if (overall.signal.aborted) outcome = { kind: 'timeout' };
          else if (isUpstreamFailure(e)) outcome = { kind: e.kind };
          else outcome = { kind: 'reset' };
          this.log.debug({ reqId: st.reqId, endpoint: endpoint.key, err: errorMessage(e) }, 'upstream try failed');
        } finally {
          if (tryTimer) clearTimeout(tryTimer);
          if (tryCtl) overall.signal.removeEventListener('abort', onOverall);
        }
        if (attempt > 0) budget?.finish();
        if (!resp) endpointDone();
        if (resp && (downstreamGone || overallTimedOut)) endpointDone();
        if (downstreamGone) {
          resp?.body.destroy();
          body?.detachAll();
          st.flags.push(RESPONSE_FLAGS.DOWNSTREAM_RESET);
          return;
        }
        if (overallTimedOut) {
          resp?.body.destroy();
          body?.detachAll();
          this.metrics.timeouts.inc({ destination_service: service, route: route.name, kind: 'request' });
          req.resume();
          return this.localReply(st, res, 504, 'upstream request timeout', RESPONSE_FLAGS.UPSTREAM_TIMEOUT);
        }
        if (outcome.kind === 'timeout') this.metrics.timeouts.inc({ destination_service: service, route: route.name, kind: 'per_try' });

        if (dest.outlier) {
          const result = resp ? classifyResult(resp.status) : classifyResult(outcome.kind === 'response' ? 502 : outcome.kind === 'refused-stream' ? 'reset' : outcome.kind);
          if (dest.outlier.record(endpoint.key, result, keys)) {
            this.metrics.outlierEjections.inc({ destination_service: service });
            this.log.warn({ reqId: st.reqId, endpoint: endpoint.key, service }, 'endpoint ejected by outlier detection');
          }
        }

        const verdict = isRetryable({ policy, method: st.method, retriesDone: attempt, outcome, bodyReplayable: body ? body.replayable : true });
        if (verdict.retry) {
          if (budget && !budget.tryStart()) {
            this.metrics.circuitBreakerTrips.inc({ destination_service: service, reason: 'retry_budget' });
          } else {
            if (resp) {
              endpointDone();
              // Small error bodies are drained so the connection can be reused; large ones are reset.
              const len = Number(headerString(resp.headers['content-length']) ?? NaN);
              if (Number.isFinite(len) && len <= 65_536) resp.body.resume();
              else resp.body.destroy();
            }
            body?.detachAll();
            st.retries++;
            this.metrics.retries.inc({ destination_service: service, route: route.name, reason: verdict.reason });
            const wait = retryBackoffMs(attempt, policy?.backoffMs ?? 25, this.random);
            if (wait > 0) await this.sleep(Math.min(wait, Math.max(0, deadline.endsAt - this.now())), overall.signal);
            if (overall.signal.aborted && !overallTimedOut) {
              if (budget) budget.finish();
              return;
            }
            if (overallTimedOut) {
              if (budget) budget.finish();
              this.metrics.timeouts.inc({ destination_service: service, route: route.name, kind: 'request' });
              req.resume();
              return this.localReply(st, res, 504, 'upstream request timeout', RESPONSE_FLAGS.UPSTREAM_TIMEOUT);
            }
            continue;
          }
        }

        if (resp) {
          try {
            await this.sendResponse(st, res, resp, route, overall.signal, () => overallTimedOut);
          } finally {
            endpointDone();
          }
          return;
        }
        body?.detachAll();
        req.resume();
        const retried = st.retries > 0 && verdict.reason === 'attempts-exhausted' ? [RESPONSE_FLAGS.UPSTREAM_RETRY_LIMIT] : [];
        if (outcome.kind === 'timeout') return this.localReply(st, res, 504, 'upstream request timeout', RESPONSE_FLAGS.UPSTREAM_TIMEOUT, retried);
        if (outcome.kind === 'connect-failure') return this.localReply(st, res, 503, 'upstream connect error or disconnect/reset before headers. reset reason: connection failure', RESPONSE_FLAGS.UPSTREAM_CONNECT_FAILURE, retried);
        return this.localReply(st, res, 503, 'upstream connect error or disconnect/reset before headers. reset reason: connection termination', RESPONSE_FLAGS.UPSTREAM_RESET, retried);
      }
    } finally {
      release?.();
      if (overallTimer) clearTimeout(overallTimer);
      res.removeListener('close', onResClose);
    }
  }

  private mirror(route: HttpRoute, st: RequestState, headers: http.OutgoingHttpHeaders, path: string, authority: string, body: ReplayableBody | undefined, useH2: boolean): void {
    const m = route.mirror!;
    const port = m.port;
    if (port === undefined) return;
    const eps = this.opts.resolveEndpoints({ host: m.host, port, ...(m.subset ? { subset: m.subset } : {}), ...(m.subsetLabels ? { subsetLabels: m.subsetLabels } : {}) });
    const ep = eps[Math.floor(this.random() * eps.length)];
    if (!ep) return;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 10_000);
    const host = hostOfAuthority(authority);
    this.opts
      .dispatch(ep, { method: st.method, path, authority: `${host}-shadow`, headers: { ...headers }, body: body?.open(), http2: useH2, signal: ctl.signal })
      .then(
        (r) => {
          r.body.resume();
          r.body.once('close', () => clearTimeout(timer));
        },
        () => clearTimeout(timer),
      );
  }

  private sendResponse(st: RequestState, res: ServerResponse, resp: UpstreamResponse, route: HttpRoute, overall: AbortSignal, timedOut: () => boolean): Promise<void> {
    const headers: Record<string, string | string[] | number | undefined> = {};
    const connTokens = connectionTokens(resp.headers.connection);
    const respHeaders = resp.headers;
    for (const k in respHeaders) {
      const v = respHeaders[k];
      if (v === undefined || HOP_BY_HOP.has(k) || connTokens.has(k)) continue;
      headers[k] = v;
    }
    applyHeaderOps(headers, route.headers.response);
    st.status = resp.status;
    const gs = headerString(resp.headers['grpc-status']);
    if (gs !== undefined) st.grpcStatus = gs;
    return new Promise<void>((resolve) => {
      let settled = false;
      const done = (): void => {
        if (settled) return;
        settled = true;
        overall.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        if (timedOut()) {
          st.flags.push(RESPONSE_FLAGS.UPSTREAM_TIMEOUT);
          this.metrics.timeouts.inc({ destination_service: st.service ?? UNKNOWN, route: route.name, kind: 'request' });
        }
        resp.body.destroy();
        res.destroy();
        done();
      };
      overall.addEventListener('abort', onAbort, { once: true });
      if (gs !== undefined && st.http2) {
        // A gRPC trailers-only answer (the status in the headers) stays one frame that ends the stream.
        resp.body.resume();
        try {
          (res as http2.Http2ServerResponse).stream.respond({ ...headers, ':status': resp.status } as http2.OutgoingHttpHeaders, { endStream: true });
        } catch (e) {
          this.log.warn({ reqId: st.reqId, err: errorMessage(e) }, 'upstream response headers rejected');
          res.destroy();
        }
        return done();
      }
      try {
        out(res).writeHead(resp.status, headers as http.OutgoingHttpHeaders);
      } catch (e) {
        this.log.warn({ reqId: st.reqId, err: errorMessage(e) }, 'upstream response headers rejected');
        resp.body.destroy();
        res.destroy();
        return done();
      }
      resp.body.on('data', (c: Buffer) => {
        st.bytesOut += c.length;
        if (!out(res).write(c)) {
          resp.body.pause();
          res.once('drain', () => resp.body.resume());
        }
      });
      resp.body.once('end', () => {
        resp.trailers.then((t) => {
          const trailers: Record<string, string> = {};
          for (const [k, v] of Object.entries(t)) if (!k.startsWith(':') && v !== undefined) trailers[k] = Array.isArray(v) ? v.join(',') : v;
          if (trailers['grpc-status'] !== undefined) st.grpcStatus = trailers['grpc-status'];
          if (Object.keys(trailers).length > 0 && st.http2) (res as http2.Http2ServerResponse).addTrailers(trailers);
          res.end();
          done();
        }, done);
      });
      resp.body.once('error', () => {
        st.flags.push(RESPONSE_FLAGS.UPSTREAM_RESET);
        res.destroy();
        done();
      });
      resp.body.once('close', () => {
        if (!resp.body.readableEnded) {
          res.destroy();
          done();
        }
      });
      res.once('close', () => {
        if (!resp.body.readableEnded) resp.body.destroy();
        done();
      });
    });
  }

  private localReply(st: RequestState, res: ServerResponse, status: number, body: string, flag: string, extraFlags: string[] = []): void {
    if (flag !== RESPONSE_FLAGS.NONE) st.flags.push(flag);
    st.flags.push(...extraFlags);
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    if (st.protocol === 'grpc' && status !== 200) return this.grpcReply(st, res, GRPC_FOR_HTTP[status] ?? 2, body, RESPONSE_FLAGS.NONE);
    st.status = status;
    const buf = Buffer.from(body);
    st.bytesOut += buf.length;
    out(res).writeHead(status, { 'content-type': 'text/plain', 'content-length': String(buf.length) });
    res.end(buf);
  }

  /** A trailers-only gRPC reply: HTTP 200 with grpc-status in the headers. */
  private grpcReply(st: RequestState, res: ServerResponse, code: number, message: string, flag: string): void {
    if (flag !== RESPONSE_FLAGS.NONE) st.flags.push(flag);
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    st.status = 200;
    st.grpcStatus = String(code);
    const headers = { 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) };
    // Trailers-only: one HEADERS frame that ends the stream (gRPC clients take the status only from
    // a frame that ends the stream; headers followed by an empty DATA frame read as "no status").
    if (st.http2) (res as http2.Http2ServerResponse).stream.respond({ ':status': 200, ...headers }, { endStream: true });
    else {
      out(res).writeHead(200, headers);
      res.end();
    }
  }

  private finish(st: RequestState, res: ServerResponse): void {
    const durationMs = this.now() - st.started;
    if (st.body) st.bytesIn = st.body.bytes;
    if (!res.writableFinished && !st.flags.includes(RESPONSE_FLAGS.DOWNSTREAM_RESET) && st.status === undefined) st.flags.push(RESPONSE_FLAGS.DOWNSTREAM_RESET);
    const status = st.status ?? 0;
    const flags = st.flags.length > 0 ? [...new Set(st.flags)].join(',') : RESPONSE_FLAGS.NONE;
    const labels = this.labels(st, status, flags);
    recordRequest(this.metrics, { labels, durationMs, requestBytes: st.headerBytes + st.bytesIn, responseBytes: st.bytesOut });
    if (this.opts.spanExporter && st.trace) {
      this.opts.spanExporter.export({
        context: st.trace,
        name: `${st.service ?? hostOfAuthority(st.authority)}/*`,
        startUnixMs: Date.now() - durationMs,
        durationMs,
        attributes: {
          'http.method': st.method,
          'http.url': st.path,
          'http.status_code': status,
          'upstream_cluster': st.service ?? UNKNOWN,
          'response_flags': flags,
          'istio.canonical_service': st.endpoint?.canonicalService ?? UNKNOWN,
          'ambit.req_id': st.reqId,
          ...(st.grpcStatus !== undefined ? { 'grpc.status_code': Number(st.grpcStatus) } : {}),
        },
        error: status >= 500 || status === 0,
      });
    }
    this.accessLog.info(
      {
        reqId: st.reqId,
        method: st.method,
        authority: st.authority,
        path: st.path,
        protocol: st.http2 ? 'HTTP/2' : 'HTTP/1.1',
        status,
        responseFlags: flags,
        ...(st.grpcStatus !== undefined ? { grpcStatus: st.grpcStatus } : {}),
        route: st.route,
        dst: { service: st.service, endpoint: st.endpoint?.key, workload: st.endpoint?.workload },
        src: { identity: st.source.principal, workload: st.source.workload, namespace: st.source.namespace },
        retries: st.retries,
        durationMs: Math.round(durationMs * 1000) / 1000,
        bytesReceived: st.bytesIn,
        bytesSent: st.bytesOut,
        traceId: st.traceId,
      },
      'request',
    );
  }

  private labels(st: RequestState, status: number, flags: string): IstioHttpLabels {
    const l = baseLabels(this.opts.gateway !== undefined ? 'source' : 'waypoint');
    const src = st.source;
    const ep = st.endpoint;
    const svc = st.service ?? UNKNOWN;
    const parts = serviceParts(svc, st.serviceNamespace);
    l.source_workload = src.workload ?? UNKNOWN;
    l.source_workload_namespace = src.namespace ?? UNKNOWN;
    l.source_principal = src.principal ?? UNKNOWN;
    l.source_app = src.app ?? src.canonicalService ?? UNKNOWN;
    l.source_version = src.version ?? src.canonicalRevision ?? UNKNOWN;
    l.source_canonical_service = src.canonicalService ?? src.app ?? UNKNOWN;
    l.source_canonical_revision = src.canonicalRevision ?? src.version ?? 'latest';
    l.source_cluster = src.cluster ?? this.opts.cluster ?? UNKNOWN;
    l.destination_service = svc;
    l.destination_service_name = parts.name;
    l.destination_service_namespace = parts.namespace;
    l.destination_workload = ep?.workload ?? UNKNOWN;
    l.destination_workload_namespace = ep?.namespace ?? UNKNOWN;
    l.destination_principal = ep?.principal ?? UNKNOWN;
    l.destination_app = ep?.labels?.['app'] ?? ep?.canonicalService ?? UNKNOWN;
    l.destination_version = ep?.labels?.['version'] ?? ep?.canonicalRevision ?? UNKNOWN;
    l.destination_canonical_service = ep?.canonicalService ?? ep?.labels?.['app'] ?? UNKNOWN;
    l.destination_canonical_revision = ep?.canonicalRevision ?? ep?.labels?.['version'] ?? (ep ? 'latest' : UNKNOWN);
    l.destination_cluster = ep?.cluster ?? this.opts.cluster ?? UNKNOWN;
    l.request_protocol = st.protocol;
    l.response_code = String(status);
    l.response_flags = flags;
    l.grpc_response_status = st.grpcStatus ?? '';
    l.connection_security_policy = src.principal ? 'mutual_tls' : UNKNOWN;
    return l;
  }

  /** Closes every connection now (in-flight requests fail). */
  destroy(): void {
    this.listener?.close();
    this.listener = undefined;
    for (const l of this.tlsListeners) l.close();
    this.tlsListeners.clear();
    this.h1.close();
    this.h2.close();
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
    const timer = setTimeout(() => {
      for (const c of this.connections) c.destroy();
    }, deadlineMs);
    this.h1.close();
    this.h2.close();
    for (const c of this.connections) {
      if (c instanceof net.Socket && !(c as net.Socket & { _httpMessage?: unknown })._httpMessage) c.end();
    }
    await closed;
    clearTimeout(timer);
    for (const c of this.connections) c.destroy();
  }
}
