/**
 * One waypoint process, wired: HBONE listener (15008, mTLS with the waypoint's own workload
 * certificate) whose CONNECT streams feed the L7 WaypointServer; route configs and endpoints from
 * the controller's config stream; upstream tries over HBONE (TunnelPool, the waypoint's identity)
 * to enrolled endpoints, plain TCP to the others. Tunnels to ports that are not HTTP are piped to
 * an endpoint as TCP.
 * Invariants: a config whose route configs fail validation is rejected (thrown, so the stream
 * NACKs) and the last good one stays in force; endpoints are looked up in the last applied state.
 */
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import type * as tls from 'node:tls';
import { AmbitError, errorMessage } from '../shared/errors.js';
import { tryParseSpiffeId } from '../shared/identity.js';
import type { Logger } from '../shared/log.js';
import { Counter, createRegistry, type Registry } from '../shared/metrics.js';
import type { Workload } from '../shared/model.js';
import { formatIssue } from '../shared/validate.js';
import type { RouteConfig } from '../shared/routes.js';
import type { ConfigState } from '../shared/xds/client.js';
import { copyBidirectional, type CopyHandle } from '../shared/hbone/copy.js';
import { createTunnelPoolMetrics } from '../shared/hbone/metrics.js';
import { TunnelPool } from '../shared/hbone/pool.js';
import { AcceptedSockets, HBONE_HANDSHAKE_TIMEOUT_MS, HBONE_SERVER_IDLE_TIMEOUT_MS, watchLiveness } from '../shared/hbone/liveness.js';
import { normalizeIp, parseAddress, type Address } from '../shared/address.js';
import { HBONE_PORT, HBONE_STATUS, MAX_FRAME_BYTES, REASON_HEADER, STREAM_WINDOW_BYTES, peerIdentity, type TunnelCertificate } from '../shared/hbone/tunnel.js';
import { WorkloadIndex, workloadIdentity } from '../shared/state/workloads.js';
import { gatewayRoutes, IngressListeners } from './gateway.js';
import { hboneConnect } from './hbone.js';
import { isHttpProtocol } from './protocol.js';
import { WaypointServer, type BackendTarget, type SourceInfo } from './server.js';
import { HttpUpstream, tcpConnect, type ConnectFn, type Endpoint } from './upstream.js';

export interface WaypointOptions {
  /** `<namespace>/<gateway name>` this process serves. */
  name: string;
  /** The waypoint pod's IP (source of upstream tunnels). */
  podIp: string;
  /** SPIFFE id of the waypoint (its service account). */
  identity: string;
  trustDomain: string;
  clusterId?: string;
  log: Logger;
  registry: Registry;
  /** The waypoint's workload certificate (CertManager.getCertificate). */
  getCertificate: (identity: string) => Promise<TunnelCertificate>;
  /** Upstream TCP connect (default net.connect). */
  connectTcp?: (addr: { address: string; port: number }) => net.Socket;
  /**
   * Gateway mode: serve the ingress listeners and routes pushed for this gateway pod instead of
   * mesh routes; `source` is who the requests come from in telemetry (the gateway workload).
   */
  gateway?: { source: SourceInfo; listenHost?: string };
}

export class Waypoint {
  readonly server: WaypointServer;
  private readonly pool: TunnelPool;
  private readonly upstream: HttpUpstream;
  private readonly log: Logger;
  private index = new WorkloadIndex({ workloads: new Map(), services: new Map(), authorizations: new Map() });
  /** Opens a byte stream to an endpoint: HBONE with the waypoint's identity when it is enrolled, else TCP. */
  private readonly connectL4: ConnectFn;
  private readonly pipes = new Set<CopyHandle>();
  private readonly tcp: TcpMetrics;
  private hbone: net.Server | undefined;
  private h2: http2.Http2SecureServer | undefined;
  private currentCert: TunnelCertificate | undefined;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly accepted = new AcceptedSockets();
  /** Gateway mode: the ingress ports. */
  readonly ingress: IngressListeners | undefined;
  /** Gateway mode: endpoint key → HBONE address of the waypoint that endpoint (a Service VIP) is reached through. */
  private readonly waypointTunnels = new Map<string, Address>();

  constructor(private readonly opts: WaypointOptions) {
    this.log = opts.log.child({ component: 'waypoint', waypoint: opts.name });
    this.tcp = createTcpMetrics(opts.registry);
    const connectTcp = opts.connectTcp ?? ((a) => net.connect({ host: a.address, port: a.port, noDelay: true }));
    this.pool = new TunnelPool({
      log: this.log,
      // Kept out of the waypoint's registry, as before the pool moved to shared/hbone.
      metrics: createTunnelPoolMetrics(createRegistry()),
      connectTcp,
      getCertificate: (id) => opts.getCertificate(id),
    });
    const viaHbone = hboneConnect({ pool: this.pool, srcIdentity: opts.identity, srcIp: opts.podIp });
    const plain = tcpConnect();
    // Gateway mode: endpoints standing for a waypoint-bound Service tunnel to its waypoint.
    const viaWaypoint = hboneConnect({ pool: this.pool, srcIdentity: opts.identity, srcIp: opts.podIp, tunnelAddressOf: (e) => this.waypointTunnels.get(e.key)! });
    this.connectL4 = (e) =>
      this.waypointTunnels.has(e.key) ? viaWaypoint(e) : this.index.workloadByIp(e.address)?.tunnelProtocol === 'HBONE' ? viaHbone(e) : plain(e);
    this.upstream = new HttpUpstream({
      connect: async (e) => {
        const stream = await this.connectL4(e);
        // The backend closing an idle keep-alive connection arrives as END_STREAM: a tunnel stream
        // stays writable after that, so the HTTP client would keep it as a free socket and send the
        // next request into a dead connection. HTTP never needs half-close: end means gone.
        stream.once('end', () => stream.destroy());
        return stream;
      },
    });
    this.server = new WaypointServer({
      log: opts.log,
      registry: opts.registry,
      dispatch: this.upstream.dispatch,
      resolveEndpoints: opts.gateway ? (t) => this.gatewayEndpoints(t) : (t) => this.resolveEndpoints(t),
      ...(opts.clusterId ? { cluster: opts.clusterId } : {}),
      ...(opts.gateway ? { gateway: opts.name } : {}),
    });
    if (opts.gateway) {
      this.ingress = new IngressListeners({
        log: this.log,
        accept: (conn, meta) => this.server.acceptConnection(conn, meta),
        source: opts.gateway.source,
        ...(opts.gateway.listenHost ? { host: opts.gateway.listenHost } : {}),
      });
    }
  }

  /** Route configs bound to this waypoint (or, in gateway mode, served by this gateway pod), from a config state. */
  routesOf(state: ConfigState): RouteConfig[] {
    if (this.opts.gateway) return gatewayRoutes(state.routes?.values() ?? [], state.listeners?.values() ?? [], this.opts.name);
    return [...(state.routes?.values() ?? [])].filter((r) => r.gateway === undefined && (r.waypoint === undefined || r.waypoint === this.opts.name));
  }

  /**
   * Gateway mode: where a backend goes. A Service bound to a waypoint is reached through it (as
   * Istio's `istio.io/ingress-use-waypoint`; destination agents admit only the waypoint for such
   * Services): one endpoint, the Service VIP and port, tunnelled over HBONE to the waypoint, which
   * applies the Service's routes. Other Services: their endpoints, as a waypoint resolves them.
   */
  gatewayEndpoints(target: BackendTarget): Endpoint[] {
    const svc = this.index.serviceByHostname(target.host);
    const wp = svc?.waypoint;
    const vip = svc?.vips[0];
    const tunnel = wp?.addresses[0];
    if (!svc || !wp || vip === undefined || tunnel === undefined) return this.resolveEndpoints(target);
    const key = `waypoint|${wp.name}|${vip}:${target.port}`;
    this.waypointTunnels.set(key, { address: tunnel, port: HBONE_PORT });
    return [{ key, address: vip, port: target.port, principal: wp.identity, workload: wp.name.slice(wp.name.indexOf('/') + 1), namespace: wp.namespace }];
  }

  /** Gateway mode: opens, updates and closes the ingress ports to match the config state. */
  async applyListeners(state: ConfigState): Promise<void> {
    await this.ingress?.apply(state.listeners?.values() ?? []);
  }

  /** Applies a config stream state; throws (NACK) when the route configs are invalid. */
  applyConfig(state: ConfigState): void {
    const result = this.server.setRoutes(this.routesOf(state));
    if (!result.ok) {
      throw new AmbitError('AMBIT_ERR_XDS_STREAM', `route config rejected: ${result.issues.slice(0, 5).map(formatIssue).join('; ')}`);
    }
    this.index = new WorkloadIndex(state);
  }

  /**
   * Healthy endpoints of a backend: service port → pod target port, filtered by subset labels. A
   * pod address as the host (original destination, workload-bound waypoint) is that pod itself.
   */
  resolveEndpoints(target: BackendTarget): Endpoint[] {
    const svc = this.index.serviceByHostname(target.host);
    if (!svc) {
      const w = this.index.workloadByIp(target.host);
      return w && w.status === 'Healthy' ? [this.endpointOf(w, normalizeIp(target.host), target.port)] : [];
    }
    const key = `${svc.namespace}/${svc.hostname}`;
    const out: Endpoint[] = [];
    for (const uid of svc.endpoints) {
      const w = this.index.workloadByUid(uid);
      if (!w || w.status !== 'Healthy') continue;
      if (target.subsetLabels && !Object.entries(target.subsetLabels).every(([k, v]) => w.labels[k] === v)) continue;
      const mapping = (w.services[key] ?? []).find((m) => m.servicePort === target.port);
      const port = mapping?.targetPort ?? svc.ports.find((p) => p.port === target.port)?.targetPort;
      const address = w.addresses[0];
      if (port === undefined || address === undefined) continue;
      out.push(this.endpointOf(w, address, port));
    }
    return out;
  }

  private endpointOf(w: Workload, address: string, port: number): Endpoint {
    return {
      key: `${address}:${port}`,
      address,
      port,
      labels: w.labels,
      workload: w.workloadName || w.name,
      namespace: w.namespace,
      canonicalService: w.canonicalName,
      canonicalRevision: w.canonicalRevision,
      principal: workloadIdentity(w),
      ...(this.opts.clusterId ? { cluster: this.opts.clusterId } : {}),
    };
  }

  /**
   * What an HTTP tunnel addressed: a Service VIP (its routes apply whatever the Host says), or a
   * pod (workload-bound waypoint: the pod itself, under the config of its Service on that port).
   */
  private addressed(target: Address): { targetService?: string; targetWorkload?: string } {
    const ip = normalizeIp(target.address);
    const svc = this.index.serviceByVip(ip, target.port)?.service;
    if (svc) return { targetService: svc.hostname };
    const w = this.index.workloadByIp(ip);
    if (!w) return {};
    for (const [key, mappings] of Object.entries(w.services)) {
      const host = key.slice(key.indexOf('/') + 1);
      if (mappings.some((m) => m.targetPort === target.port) && this.index.serviceByHostname(host) !== undefined) return { targetWorkload: ip, targetService: host };
    }
    return { targetWorkload: ip };
  }

  /**
   * Where a tunnel to `target` goes when it is not HTTP (Istio: ports not declared http, http2,
   * grpc or grpc-web are carried as TCP): an endpoint, null when the TCP service has none, or
   * undefined when the waypoint serves it as HTTP.
   */
  tcpEndpoint(target: Address, random: () => number = Math.random): Endpoint | null | undefined {
    const ip = normalizeIp(target.address);
    const svc = this.index.serviceByVip(ip, target.port)?.service;
    if (svc) {
      const sp = svc.ports.find((p) => p.port === target.port);
      if (!sp || isHttpProtocol(sp.protocol)) return undefined;
      const eps = this.resolveEndpoints({ host: svc.hostname, port: target.port });
      return eps.length === 0 ? null : eps[Math.min(eps.length - 1, Math.floor(random() * eps.length))]!;
    }
    const w = this.index.workloadByIp(ip);
    if (!w) return undefined;
    for (const [key, mappings] of Object.entries(w.services)) {
      const s = this.index.serviceByHostname(key.slice(key.indexOf('/') + 1));
      const m = mappings.find((x) => x.targetPort === target.port);
      if (s && m && isHttpProtocol(s.ports.find((p) => p.port === m.servicePort)?.protocol ?? 'tcp')) return undefined;
    }
    return { key: `${ip}:${target.port}`, address: ip, port: target.port, principal: workloadIdentity(w), workload: w.name, namespace: w.namespace };
  }

  /** Pipes a tunnel stream to a TCP endpoint (half-close kept, errors tear both sides down). */
  private async forwardTcp(stream: http2.ServerHttp2Stream, endpoint: Endpoint, target: Address, srcIdentity: string | undefined): Promise<void> {
    let upstream: Duplex;
    try {
      upstream = await this.connectL4(endpoint);
    } catch (e) {
      this.log.warn({ endpoint: endpoint.key, err: errorMessage(e) }, 'tcp upstream connect failed');
      if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': HBONE_STATUS.UPSTREAM_FAILED }, { endStream: true });
      return;
    }
    if (stream.destroyed || stream.closed) {
      upstream.destroy();
      return;
    }
    stream.respond({ ':status': HBONE_STATUS.OK });
    const svc = this.index.serviceByVip(target.address, target.port)?.service;
    const labels: Record<TcpLabel, string> = {
      reporter: 'waypoint',
      source_principal: srcIdentity ?? 'unknown',
      destination_service: svc?.hostname ?? 'unknown',
      destination_workload: endpoint.workload ?? 'unknown',
      destination_workload_namespace: endpoint.namespace ?? 'unknown',
      destination_principal: endpoint.principal ?? 'unknown',
    };
    this.tcp.opened.inc(labels);
    const handle = copyBidirectional(stream, upstream, {
      onDownstreamBytes: (n) => this.tcp.received.inc(labels, n),
      onUpstreamBytes: (n) => this.tcp.sent.inc(labels, n),
      onClose: () => {
        this.pipes.delete(handle);
        this.tcp.closed.inc(labels);
      },
    });
    this.pipes.add(handle);
  }

  /** The caller of a tunnel: its peer identity, and its workload when the source IP matches it. */
  private sourceOf(identity: string | undefined, srcIp: string | undefined): SourceInfo {
    const parsed = identity ? tryParseSpiffeId(identity) : undefined;
    const w = srcIp ? this.index.workloadByIp(srcIp) : undefined;
    const match = w && identity === workloadIdentity(w) ? w : undefined;
    return {
      ...(parsed ? { principal: identity!, namespace: parsed.namespace } : {}),
      ...(match ? { workload: match.workloadName || match.name, app: match.canonicalName, version: match.canonicalRevision, canonicalService: match.canonicalName, canonicalRevision: match.canonicalRevision } : {}),
      ...(this.opts.clusterId ? { cluster: this.opts.clusterId } : {}),
    };
  }

  /** Opens the HBONE listener (mTLS, h2 CONNECT); each accepted stream is served as HTTP. */
  async listenHbone(port: number, host = '0.0.0.0'): Promise<net.AddressInfo> {
    const cert = await this.opts.getCertificate(this.opts.identity);
    this.currentCert = cert;
    const h2 = http2.createSecureServer({
      ...tlsOptions(cert),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      allowHTTP1: false,
      settings: { initialWindowSize: STREAM_WINDOW_BYTES, maxConcurrentStreams: 1000, maxFrameSize: MAX_FRAME_BYTES, enablePush: false },
      handshakeTimeout: HBONE_HANDSHAKE_TIMEOUT_MS,
    });
    this.h2 = h2;
    h2.on('tlsClientError', (e, socket: tls.TLSSocket) => {
      // A refused client certificate shows only as a hang-up; the verify error is on the socket.
      const authorizationError = (socket as { authorizationError?: Error | string } | undefined)?.authorizationError;
      this.log.warn({ err: errorMessage(e), ...(authorizationError ? { authorizationError: String(authorizationError) } : {}) }, 'mtls handshake failed');
    });
    h2.on('session', (session) => {
      const identity = peerIdentity(session.socket as tls.TLSSocket);
      const parsed = identity ? tryParseSpiffeId(identity) : undefined;
      if (!parsed || parsed.trustDomain !== this.opts.trustDomain) {
        this.log.warn({ peer: identity }, 'tunnel peer rejected: identity not in this trust domain');
        session.destroy();
        return;
      }
      this.sessions.add(session);
      session.on('error', (e) => this.log.debug({ err: errorMessage(e) }, 'tunnel session error'));
      // A caller that closed its side, vanished or idles is let go with its streams (liveness.ts).
      const raw = this.accepted.of(session);
      watchLiveness(session, { idleTimeoutMs: HBONE_SERVER_IDLE_TIMEOUT_MS, ...(raw ? { socket: raw } : {}), onEnd: (reason) => this.log.debug({ peer: identity, reason }, 'tunnel session ended') });
      session.once('close', () => this.sessions.delete(session));
    });
    h2.on('stream', (stream, headers) => this.onStream(stream, headers));
    const server = net.createServer({ noDelay: true }, (raw) => {
      raw.on('error', () => raw.destroy());
      raw.setKeepAlive(true, 60_000);
      this.accepted.track(raw);
      this.refreshCertificate().then(
        () => h2.emit('connection', raw),
        (e: unknown) => {
          this.log.error({ err: errorMessage(e) }, 'no certificate for the hbone listener; closing connection');
          raw.destroy();
        },
      );
    });
    this.hbone = server;
    return new Promise((resolve, reject) => {
      server.once('error', (e) => reject(new AmbitError('AMBIT_ERR_CONFIG_INVALID', `waypoint cannot listen on ${host}:${port}: ${errorMessage(e)}`, { cause: e })));
      server.listen({ port, host, backlog: 1024 }, () => {
        const addr = server.address() as net.AddressInfo;
        // An accept that failed (EMFILE) must not throw out of the listener and kill the process.
        server.on('error', (e) => this.log.warn({ err: errorMessage(e) }, 'accept failed'));
        this.log.info({ addr: `${addr.address}:${addr.port}` }, 'hbone listener established');
        resolve(addr);
      });
    });
  }

  private async refreshCertificate(): Promise<void> {
    const cert = await this.opts.getCertificate(this.opts.identity);
    if (cert !== this.currentCert && this.h2) {
      this.h2.setSecureContext(tlsOptions(cert));
      this.currentCert = cert;
    }
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const session = stream.session as http2.ServerHttp2Session | undefined;
    if (!session || !this.sessions.has(session)) return void stream.destroy();
    const target = parseAddress(String(headers[':authority'] ?? ''));
    if (headers[':method'] !== 'CONNECT' || !target) {
      stream.respond({ ':status': HBONE_STATUS.BAD_REQUEST }, { endStream: true });
      return;
    }
    // The waypoint's own address (its 15008, metrics, readiness): never a destination to dial.
    if (normalizeIp(target.address) === normalizeIp(this.opts.podIp)) {
      this.log.warn({ authority: headers[':authority'] }, 'tunnel to the waypoint itself refused');
      stream.respond({ ':status': HBONE_STATUS.BAD_REQUEST, [REASON_HEADER]: 'self_call' }, { endStream: true });
      return;
    }
    const l4 = this.tcpEndpoint(target);
    if (l4 === null) {
      stream.respond({ ':status': HBONE_STATUS.UPSTREAM_FAILED }, { endStream: true });
      return;
    }
    if (l4 !== undefined) {
      this.forwardTcp(stream, l4, target, peerIdentity(session.socket as tls.TLSSocket)).catch((e: unknown) => {
        this.log.error({ err: errorMessage(e) }, 'tcp forward failed');
        stream.destroy();
      });
      return;
    }
    const socket = session.socket as tls.TLSSocket;
    const source = this.sourceOf(peerIdentity(socket), socket.remoteAddress);
    stream.respond({ ':status': HBONE_STATUS.OK });
    this.server.acceptConnection(stream, { source, targetPort: target.port, ...this.addressed(target) });
  }

  async close(deadlineMs = 5000): Promise<void> {
    this.hbone?.close();
    this.ingress?.close();
    for (const s of this.sessions) s.close();
    for (const p of this.pipes) p.destroy();
    await this.server.close(deadlineMs);
    this.upstream.close();
    await this.pool.close(Math.min(deadlineMs, 1000)).catch(() => undefined);
    for (const s of this.sessions) s.destroy();
  }
}

const TCP_LABELS = ['reporter', 'source_principal', 'destination_service', 'destination_workload', 'destination_workload_namespace', 'destination_principal'] as const;
type TcpLabel = (typeof TCP_LABELS)[number];

interface TcpMetrics {
  opened: Counter<TcpLabel>;
  closed: Counter<TcpLabel>;
  sent: Counter<TcpLabel>;
  received: Counter<TcpLabel>;
}

/** Istio TCP metrics for connections the waypoint carries as TCP (reporter=waypoint). */
function createTcpMetrics(registry: Registry): TcpMetrics {
  const counter = (name: string, help: string): Counter<TcpLabel> => new Counter({ name, help, labelNames: TCP_LABELS, registers: [registry] });
  return {
    opened: counter('istio_tcp_connections_opened_total', 'TCP connections the waypoint opened to endpoints.'),
    closed: counter('istio_tcp_connections_closed_total', 'TCP connections through the waypoint that closed.'),
    sent: counter('istio_tcp_sent_bytes_total', 'Response bytes the waypoint sent back to callers on TCP connections.'),
    received: counter('istio_tcp_received_bytes_total', 'Request bytes the waypoint received from callers on TCP connections.'),
  };
}

function tlsOptions(cert: TunnelCertificate): { cert: string; key: string; ca: string[] } {
  return { cert: cert.certChainPem.join('\n'), key: cert.keyPem, ca: cert.rootsPem };
}
