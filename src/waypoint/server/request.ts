/**
 * One request through the waypoint's layers: route (router.ts) → filters (fault, authz, rate
 * limit, CORS, redirect, direct response) → backend (weighted pick, port) and rewrite → the dispatch stack
 * (deadline, pool gate, mirror, retries, balance, endpoint) → the response streamed back, or the
 * local reply a failure gets. The record it fills is written out when the response closes
 * (telemetry.ts).
 */
import type * as http2 from 'node:http2';
import { isIP } from 'node:net';
import type * as net from 'node:net';
import type { Logger } from '../../shared/log.js';
import type { HttpRoute, RetryPolicy, RouteCaller, RouteConfig } from '../../shared/routes.js';
import type { Destinations } from '../balance/destinations.js';
import { DispatchFailure, type ProxyDispatch } from '../dispatch/dispatch.js';
import { ReplayableBody } from '../dispatch/replay-body.js';
import { defaultRetryPolicy } from '../dispatch/retry.js';
import { parseGrpcTimeout } from '../dispatch/timeout.js';
import { runFilters, type FilterDeps } from '../filters/filters.js';
import { RESPONSE_FLAGS, type WaypointMetrics } from '../metrics.js';
import { upstreamUsesHttp2 } from '../protocol.js';
import { rewritePath } from '../route/rewrite.js';
import { hostOfAuthority, routeRequest, type RouteRequest, type RouteTable } from '../route/router.js';
import { pickWeighted, type RandomSource } from '../route/weighted.js';
import { propagateTrace } from '../trace.js';
import { headerString, out, upstreamHeaders, type ServerRequest, type ServerResponse } from './headers.js';
import { failureReply, grpcReply, localReply, sendResponse } from './reply.js';
import { finishRequest, type RequestState, type SourceInfo, type TelemetryDeps } from './telemetry.js';

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
  /**
   * The address the caller dialed, when `targetService` is a service whose endpoint is the
   * original destination (ServiceEntry resolution NONE): a route sending the request to that
   * service itself sends it to this address.
   */
  originalDestination?: string;
  /** Source address (AuthorizationPolicy `ipBlocks`): an ingress listener's peer; an HBONE tunnel's forwarded client. */
  peerAddress?: string;
  /** Ingress listeners: proxies in front whose X-Forwarded-For entries are trusted (`remoteIpBlocks`). */
  trustedProxies?: number;
  /** The caller as verified (an HBONE peer, an ISTIO_MUTUAL client): route matches' sourceNamespace and sourceLabels. */
  caller?: RouteCaller;
}

export interface RequestHandlerDeps {
  log: Logger;
  metrics: WaypointMetrics;
  random: RandomSource;
  now: () => number;
  filters: FilterDeps;
  telemetry: TelemetryDeps;
  destinations: Destinations;
  /** The dispatch stack (withDeadline → ... → endpoint). */
  dispatch: ProxyDispatch;
  /** The route configs in force, and their tables: for this listener scope, and the mesh's (destination policies). */
  routes: () => { table: RouteTable; mesh: RouteTable; configs: readonly RouteConfig[] };
  /** Who sent a request when the connection did not say. */
  identifySource?: (req: ServerRequest) => SourceInfo;
  /** Service port a request was addressed to; defaults to the config's only port, else the listener port. */
  portOf?: (req: ServerRequest, config: RouteConfig) => number | undefined;
  /** Retry policy for routes that set none; null for none. */
  defaultRetries?: RetryPolicy | null;
  maxReplayBytes: number;
}

/**
 * The original client's address at an ingress gateway (Envoy's xff_num_trusted_hops): with N
 * trusted proxies in front, the X-Forwarded-For entry N from the right; the peer's address
 * without any, or when the header has fewer entries or that entry is no address.
 */
export function clientAddress(peer: string, trusted: number, xff: string | string[] | undefined): string {
  if (trusted <= 0 || xff === undefined) return peer;
  const entries = (Array.isArray(xff) ? xff.join(',') : xff).split(',').map((e) => e.trim()).filter((e) => e !== '');
  const pick = entries[entries.length - trusted];
  return pick !== undefined && isIP(pick) !== 0 ? pick : peer;
}

function hexId(random: RandomSource): string {
  return Math.floor(random() * 0x100000000).toString(16).padStart(8, '0') + Math.floor(random() * 0x100000000).toString(16).padStart(8, '0');
}

export class RequestHandler {
  private seq = 0;
  /** The policy of routes that set none, made once (the retry layer keys its budget and conditions by the object). */
  private readonly defaultRetries: RetryPolicy | undefined;

  constructor(private readonly deps: RequestHandlerDeps) {
    this.defaultRetries = deps.defaultRetries === null ? undefined : (deps.defaultRetries ?? defaultRetryPolicy());
  }

  /** Handles one request; `meta` is what its connection's front end knew. */
  async handle(req: ServerRequest, res: ServerResponse, meta: ConnectionMeta | undefined): Promise<void> {
    const d = this.deps;
    const h2 = req.httpVersionMajor === 2;
    const authority = headerString(h2 ? req.headers[':authority'] : req.headers.host) ?? '';
    const contentType = headerString(req.headers['content-type']);
    const grpc = contentType === 'application/grpc' || contentType?.startsWith('application/grpc+') === true;
    const flags: string[] = [];
    const st: RequestState = {
      reqId: `${(++this.seq).toString(36)}-${hexId(d.random).slice(0, 8)}`,
      started: d.now(),
      method: req.method ?? 'GET',
      authority,
      path: req.url ?? '/',
      protocol: grpc ? 'grpc' : 'http',
      http2: h2,
      flags,
      record: { retries: 0, tried: new Set(), flags },
      bytesIn: 0,
      bytesOut: 0,
      source: meta?.source ?? d.identifySource?.(req) ?? {},
      headerBytes: 0,
    };
    for (let i = 0; i < req.rawHeaders.length; i++) st.headerBytes += req.rawHeaders[i]!.length + 2;
    res.once('close', () => finishRequest(d.telemetry, st, res));
    const downstream = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) downstream.abort();
    });

    // route
    const rreq: RouteRequest = { authority, path: st.path, method: st.method, headers: req.headers, ...(meta?.targetPort !== undefined ? { port: meta.targetPort } : {}), ...(meta?.targetService !== undefined ? { service: meta.targetService } : {}), ...(meta?.targetWorkload !== undefined ? { workload: meta.targetWorkload } : {}), ...(meta?.caller !== undefined ? { caller: meta.caller } : {}) };
    const routes = d.routes();
    const decision = routeRequest(routes.table, rreq);
    if (decision.kind === 'no-route') {
      // No service: the host the client sent is no metric label (an address or any name a client makes up).
      req.resume();
      return localReply(st, res, 404, decision.reason === 'unknown-host' ? `no route config for host ${JSON.stringify(hostOfAuthority(authority))}` : 'no route matched the request', RESPONSE_FLAGS.NO_ROUTE);
    }
    const { config, route } = decision;
    rreq.port ??= d.portOf?.(req, config) ?? (config.ports.length === 1 ? config.ports[0]!.port : (req.socket as net.Socket | undefined)?.localPort);
    st.route = route.name;
    st.service = config.hostname;
    st.serviceNamespace = config.namespace;
    st.telemetry = config.telemetry;
    const trace = propagateTrace(req.headers, d.random, config.telemetry?.samplingPercent);
    st.traceId = trace.context.traceId;
    st.trace = trace.context;

    // filters (a check may read the body's first bytes: they are kept for the first try)
    const scheme = (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true ? 'https' : 'http';
    if (config.telemetry?.accessLogFilters || config.telemetry?.metricOverrides || config.telemetry?.accessLogFormat) {
      st.scheme = scheme;
      st.requestHeaders = req.headers;
    }
    if (config.telemetry?.accessLogFormat) {
      const sock = req.socket as net.Socket | undefined;
      const peer = meta?.peerAddress ?? sock?.remoteAddress;
      if (peer !== undefined) st.peer = sock?.remotePort !== undefined && meta?.peerAddress === undefined ? `${peer}:${sock.remotePort}` : peer;
      if (sock?.localAddress !== undefined) st.local = `${sock.localAddress}:${sock.localPort}`;
      if (rreq.port !== undefined) st.port = rreq.port;
    }
    const hasBody = h2 ? !(req as http2.Http2ServerRequest).stream.endAfterHeaders : req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
    let body: ReplayableBody | undefined;
    const readBody = hasBody ? (max: number) => (body ??= new ReplayableBody(req, d.maxReplayBytes)).hold(max) : undefined;
    // A request answered here: its body is read and dropped.
    const drain = (): void => (body ? body.discard() : void req.resume());
    const verdict = await runFilters(d.filters, config, route, { reqId: st.reqId, method: st.method, path: st.path, authority, scheme, headers: req.headers, port: rreq.port, principal: st.source.principal, ...(meta?.peerAddress !== undefined ? { sourceIp: meta.peerAddress, remoteIp: clientAddress(meta.peerAddress, meta.trustedProxies ?? config.numTrustedProxies ?? 0, req.headers['x-forwarded-for']) } : {}), protocol: h2 ? 'HTTP/2' : 'HTTP/1.1', flags, downstream: downstream.signal, ...(readBody ? { readBody } : {}) });
    if (verdict.kind === 'gone') return;
    if (verdict.kind === 'reply') {
      drain();
      if (verdict.grpcStatus !== undefined) return grpcReply(st, res, verdict.grpcStatus, verdict.body, verdict.flag);
      return localReply(st, res, verdict.status, verdict.body, verdict.flag, [], verdict.headers);
    }
    const addHeaders = verdict.responseHeaders;

    // backend
    const backend = pickWeighted(route.backends, d.random);
    if (!backend) {
      drain();
      return localReply(st, res, 503, 'no healthy upstream', RESPONSE_FLAGS.NO_HEALTHY_UPSTREAM, [], addHeaders);
    }
    if (backend.refused) {
      drain();
      return localReply(st, res, 500, `backend ${backend.host} is not permitted (RefNotPermitted)`, RESPONSE_FLAGS.NO_ROUTE, [], addHeaders);
    }
    const port = backend.port ?? rreq.port;
    // To the service the caller addressed, when its endpoint is the address it dialed: that address.
    const targetHost = meta?.originalDestination !== undefined && backend.host === config.hostname ? meta.originalDestination : backend.host;
    // A pod-addressed request (workload waypoint) is labelled with the pod's Service when it has one.
    st.service = rreq.workload !== undefined ? config.hostname : backend.host;
    st.serviceNamespace = config.namespace;
    if (port === undefined) {
      drain();
      return localReply(st, res, 503, `no port known for backend ${backend.host}`, RESPONSE_FLAGS.NO_HEALTHY_UPSTREAM, [], addHeaders);
    }

    // the request as it goes upstream
    const meshConfig = routes.mesh.exact.get(backend.host.toLowerCase());
    const backendConfig = meshConfig ?? config;
    const destination = d.destinations.of(backend, meshConfig ?? routes.configs.find((c) => !c.gateway && c.hostname === backend.host));
    if (hasBody) body ??= new ReplayableBody(req, d.maxReplayBytes);
    if (body) st.body = body;
    else req.resume();
    const headers = upstreamHeaders(req, route, trace.set, trace.remove);
    if (verdict.requestHeaders) {
      for (const h of verdict.requestHeaders.remove) delete headers[h];
      Object.assign(headers, verdict.requestHeaders.set);
    }
    const upstreamAuthority = route.rewrite?.authority ?? authority;
    const path = rewritePath(route, rreq);
    const useH2 = upstreamUsesHttp2(backendConfig.ports.find((x) => x.port === port)?.protocol, h2, contentType);
    if (destination.closeAfterRequest && !useH2) headers['connection'] = 'close';

    const grpcTimeout = grpc ? parseGrpcTimeout(headerString(req.headers['grpc-timeout'])) : undefined;
    try {
      const resp = await d.dispatch({
        reqId: st.reqId,
        target: { host: targetHost, port, ...(backend.subset ? { subset: backend.subset } : {}), ...(backend.subsetLabels ? { subsetLabels: backend.subsetLabels } : {}) },
        destination,
        method: st.method,
        path,
        authority: upstreamAuthority,
        headers,
        body,
        http2: useH2,
        route: route.name,
        service: backend.host,
        timeoutMs: route.timeoutMs !== undefined && grpcTimeout !== undefined ? Math.min(route.timeoutMs, grpcTimeout) : (route.timeoutMs ?? grpcTimeout),
        retryPolicy: this.retryPolicyOf(route),
        mirror: route.mirror,
        overall: downstream.signal,
        signal: downstream.signal,
        record: st.record,
      });
      await sendResponse(d.log, st, res, resp, route, addHeaders);
    } catch (e) {
      if (!(e instanceof DispatchFailure)) throw e;
      body?.detachAll();
      req.resume();
      failureReply(st, res, e, addHeaders);
    }
  }

  private retryPolicyOf(route: HttpRoute): RetryPolicy | undefined {
    return route.retries ?? this.defaultRetries;
  }

  /** A 500 for a request whose handling threw (a bug: logged at error). */
  failed(res: ServerResponse, e: unknown): void {
    this.deps.log.error({ err: e }, 'request handler failed');
    if (!res.headersSent) {
      out(res).writeHead(500);
      res.end();
    } else res.destroy();
  }
}
