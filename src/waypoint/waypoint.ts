/**
 * One waypoint process, wired: the HBONE front (server/hbone-front.ts) whose CONNECT streams feed
 * the L7 WaypointServer (server/server.ts), or the TCP forwarder for ports that are not HTTP;
 * route configs and endpoints from the controller's config stream, looked up in a WorkloadIndex;
 * upstream tries over HBONE (TunnelPool, the waypoint's identity) to enrolled endpoints, plain TCP
 * to the others. In gateway mode the ingress listeners (server/gateway.ts) replace the HBONE front.
 * Invariants: every resource of an applied state was validated on receipt by the config client
 * (an invalid one NACKs the whole response and the last good state stays); endpoints are looked
 * up in the last applied state.
 */
import * as net from 'node:net';
import { tryParseSpiffeId } from '../shared/identity.js';
import type { Logger } from '../shared/log.js';
import { createRegistry, type Registry } from '../shared/metrics.js';
import type { Service, Workload } from '../shared/model.js';
import type { L4Route, RouteCaller, RouteConfig } from '../shared/routes.js';
import type { ConfigState } from '../shared/xds/client.js';
import { createTunnelPoolMetrics } from '../shared/hbone/metrics.js';
import { TunnelPool } from '../shared/hbone/pool.js';
import { normalizeIp, type Address } from '../shared/address.js';
import { HBONE_PORT, HBONE_STATUS, type TunnelCertificate } from '../shared/hbone/tunnel.js';
import { WorkloadIndex, workloadIdentity } from '../shared/state/workloads.js';
import { clusterOfUid } from '../shared/istio-metrics.js';
import { hboneConnect } from './endpoint/hbone.js';
import { HttpUpstream, tcpConnect, type ConnectFn, type Endpoint } from './endpoint/upstream.js';
import { isHttpProtocol } from './protocol.js';
import { selectL4Route, sniMatches } from './route/l4.js';
import { admitConnection, type ConnectionAuthzDeps } from './filters/connection-authz.js';
import { pickWeighted } from './route/weighted.js';
import { gatewayRoutes, IngressListeners, type L4Listener } from './server/gateway.js';
import { HboneFront, type Admit, type TunnelDecision, type TunnelPeer } from './server/hbone-front.js';
import { directExtAuthzDial, WaypointServer, type BackendTarget, type SourceInfo } from './server/server.js';
import { TcpForwarder } from './server/tcp-forward.js';
import { CLIENT_HELLO_TIMEOUT_MS, peekStream } from './server/sni.js';

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
  /** Listen with SO_REUSEPORT (HBONE and ingress ports): one of several worker threads (workers.ts). */
  reusePort?: boolean;
}

export class Waypoint {
  readonly server: WaypointServer;
  private readonly pool: TunnelPool;
  private readonly upstream: HttpUpstream;
  private readonly log: Logger;
  private index = new WorkloadIndex({ workloads: new Map(), services: new Map(), authorizations: new Map() });
  /** Opens a byte stream to an endpoint: HBONE with the waypoint's identity when it is enrolled, else TCP. */
  private readonly connectL4: ConnectFn;
  private readonly tcp: TcpForwarder;
  private readonly hbone: HboneFront;
  /** Gateway mode: the ingress ports. */
  readonly ingress: IngressListeners | undefined;
  /** Gateway mode: endpoint key → HBONE address of the waypoint that endpoint (a Service VIP) is reached through. */
  private readonly waypointTunnels = new Map<string, Address>();

  constructor(private readonly opts: WaypointOptions) {
    this.log = opts.log.child({ component: 'waypoint', waypoint: opts.name });
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
      serviceOf: (host) => this.index.serviceByHostname(host),
      // External authorizers are reached as any backend: their service's endpoints, over HBONE when in the mesh.
      extAuthzDial: directExtAuthzDial((t) => this.resolveEndpoints(t), (e) => this.connectL4(e)),
      ...(opts.gateway ? { gateway: opts.name } : {}),
    });
    this.tcp = new TcpForwarder(opts.registry, this.log, this.connectL4);
    this.hbone = new HboneFront({
      log: this.log,
      identity: opts.identity,
      trustDomain: opts.trustDomain,
      getCertificate: (id) => opts.getCertificate(id),
      classify: (target, peer) => this.classify(target, peer),
      serveHttp: (stream, meta) => this.server.acceptConnection(stream, meta),
      forwardTcp: (stream, endpoint, target, source) => this.tcp.forward(stream, endpoint, this.tcpService(target, endpoint), source),
    });
    if (opts.gateway) {
      this.ingress = new IngressListeners({
        log: this.log,
        accept: (conn, meta) => this.server.acceptConnection(conn, meta),
        acceptL4: (socket, l) => {
          this.acceptIngressL4(socket, l).catch((e: unknown) => {
            this.log.error({ err: e, port: l.port }, 'ingress tcp forward failed');
            socket.destroy();
          });
        },
        source: opts.gateway.source,
        meshCertificate: () => opts.getCertificate(opts.identity),
        trustDomain: opts.trustDomain,
        ...(opts.gateway.listenHost ? { host: opts.gateway.listenHost } : {}),
        ...(opts.reusePort ? { reusePort: true } : {}),
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
    // Labelled as the waypoint's own pod (the workload at its address), as every reporter names it.
    const pod = this.index.workloadByIp(tunnel);
    const labels = pod ? this.endpointOf(pod, vip, target.port) : { workload: wp.name.slice(wp.name.indexOf('/') + 1), namespace: wp.namespace };
    return [{ ...labels, key, address: vip, port: target.port, principal: wp.identity }];
  }

  /** Gateway mode: opens, updates and closes the ingress ports to match the config state. */
  async applyListeners(state: ConfigState): Promise<void> {
    await this.ingress?.apply(state.listeners?.values() ?? []);
  }

  /** Mesh route configs by Service hostname (their L4 routes pick TCP and TLS backends). */
  private meshConfigs = new Map<string, RouteConfig>();
  /** Gateway mode: the ingress configs, whose tcp and tls routes serve the TCP and TLS listeners. */
  private ingressConfigs: RouteConfig[] = [];

  /**
   * Endpoints resolved under the config state in force, by `host|port` and subset labels (the
   * labels object of a route's backend is the same for every request under one state). Emptied
   * when a state is applied. Callers never change the arrays.
   */
  private endpointCache = new Map<string, { all?: Endpoint[]; bySubset: WeakMap<object, Endpoint[]> }>();

  /** Applies a config stream state (validated on receipt by the config client). */
  applyConfig(state: ConfigState): void {
    const routes = this.routesOf(state);
    this.server.setRoutes(routes);
    this.meshConfigs = new Map(routes.filter((r) => r.gateway === undefined).map((r) => [r.hostname, r]));
    this.ingressConfigs = routes.filter((r) => r.gateway !== undefined);
    this.index = new WorkloadIndex(state);
    this.endpointCache = new Map();
  }

  /**
   * Healthy endpoints of a backend: service port → pod target port, filtered by subset labels. A
   * pod address as the host (original destination, workload-bound waypoint) is that pod itself.
   * Resolved once per config state and backend (every request to a backend asks).
   */
  resolveEndpoints(target: BackendTarget): Endpoint[] {
    const key = `${target.host}|${target.port}`;
    let entry = this.endpointCache.get(key);
    if (!entry) this.endpointCache.set(key, (entry = { bySubset: new WeakMap() }));
    const labels = target.subsetLabels;
    const cached = labels ? entry.bySubset.get(labels) : entry.all;
    if (cached) return cached;
    const out = this.endpointsNow(target);
    if (labels) entry.bySubset.set(labels, out);
    else entry.all = out;
    return out;
  }

  private endpointsNow(target: BackendTarget): Endpoint[] {
    const svc = this.index.serviceByHostname(target.host);
    if (!svc) {
      if (net.isIP(target.host) === 0) return [];
      const ep = this.originalDestination({ address: target.host, port: target.port });
      return ep ? [ep] : [];
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

  /**
   * The address a tunnel named as its own endpoint (a pod addressed directly, or an address of a
   * service whose endpoint is the original destination): the workload there when the mesh knows
   * one (undefined when it is unhealthy), else the bare address when such a service holds it.
   */
  private originalDestination(target: Address): Endpoint | undefined {
    const ip = normalizeIp(target.address);
    const w = this.index.workloadByIp(ip);
    if (w) return w.status === 'Healthy' ? this.endpointOf(w, ip, target.port) : undefined;
    if (!this.index.serviceByVip(ip, target.port)?.service.originalDestination) return undefined;
    return { key: `${ip}:${target.port}`, address: ip, port: target.port };
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
      cluster: clusterOfUid(w.uid),
    };
  }

  /**
   * What an HTTP tunnel addressed: a Service VIP (its routes apply whatever the Host says), or a
   * pod (workload-bound waypoint: the pod itself, under the config of its Service on that port).
   */
  private addressed(target: Address): { targetService?: string; targetWorkload?: string; originalDestination?: string } {
    const ip = normalizeIp(target.address);
    const svc = this.index.serviceByVip(ip, target.port)?.service;
    // A service whose endpoint is the original destination: its routes and policy apply, and a
    // route to the service itself goes to the address the client dialed.
    if (svc?.originalDestination) return { targetService: svc.hostname, originalDestination: ip };
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
  tcpEndpoint(target: Address, random: () => number = Math.random, caller?: RouteCaller): Endpoint | null | undefined {
    const ip = normalizeIp(target.address);
    const svc = this.index.serviceByVip(ip, target.port)?.service;
    if (svc) {
      const sp = svc.ports.find((p) => p.port === target.port);
      if (!sp || isHttpProtocol(sp.protocol)) return undefined;
      const route = selectL4Route(this.meshConfigs.get(svc.hostname)?.tcpRoutes, target.port, undefined, caller, ip);
      const dialed = svc.originalDestination ? { host: svc.hostname, address: ip } : undefined;
      if (route) return this.l4Endpoint(route, target.port, random, dialed);
      if (dialed) return this.originalDestination(target) ?? null;
      return pickEndpoint(this.resolveEndpoints({ host: svc.hostname, port: target.port }), random);
    }
    const w = this.index.workloadByIp(ip);
    if (!w) return undefined;
    for (const [key, mappings] of Object.entries(w.services)) {
      const s = this.index.serviceByHostname(key.slice(key.indexOf('/') + 1));
      const m = mappings.find((x) => x.targetPort === target.port);
      if (s && m && isHttpProtocol(s.ports.find((p) => p.port === m.servicePort)?.protocol ?? 'tcp')) return undefined;
    }
    return this.endpointOf(w, ip, target.port);
  }

  /** The Service a TCP tunnel addressed: the VIP's, else (a pod addressed) the pod's Service on that port. */
  private tcpService(target: Address, endpoint: Endpoint): Service | undefined {
    const byVip = this.index.serviceByVip(target.address, target.port)?.service;
    if (byVip) return byVip;
    const w = this.index.workloadByIp(endpoint.address);
    return w ? this.index.serviceOfWorkloadPort(w, target.port) : undefined;
  }

  /**
   * An endpoint of the backend a TCP/TLS route picks by weight; null when it has none (or is
   * refused). `dialed`: the tunnel addressed a service whose endpoint is the original
   * destination, so a backend naming that service is the address dialed.
   */
  private l4Endpoint(route: L4Route, port: number, random: () => number, dialed?: { host: string; address: string }): Endpoint | null {
    const backend = pickWeighted(route.backends, random);
    if (!backend || backend.refused) return null;
    if (dialed && backend.host === dialed.host) return this.originalDestination({ address: dialed.address, port: backend.port ?? port }) ?? null;
    return pickEndpoint(this.resolveEndpoints({ host: backend.host, port: backend.port ?? port, ...(backend.subsetLabels ? { subsetLabels: backend.subsetLabels } : {}) }), random);
  }

  /**
   * For a TCP port of a Service with TLS routes: how to pick the endpoint once the first bytes
   * are read (a TLS route by SNI, else the TCP routes or the Service itself); undefined otherwise.
   */
  sniChooser(target: Address, random: () => number = Math.random, caller?: RouteCaller): ((hello: { tls: boolean; sni?: string }) => Endpoint | null) | undefined {
    const svc = this.index.serviceByVip(normalizeIp(target.address), target.port)?.service;
    const sp = svc?.ports.find((p) => p.port === target.port);
    if (!svc || !sp || isHttpProtocol(sp.protocol)) return undefined;
    const tlsRoutes = this.meshConfigs.get(svc.hostname)?.tlsRoutes;
    if (!tlsRoutes || tlsRoutes.length === 0) return undefined;
    return (hello) => {
      const route = hello.tls ? selectL4Route(tlsRoutes, target.port, hello.sni, caller, normalizeIp(target.address)) : undefined;
      const dialed = svc.originalDestination ? { host: svc.hostname, address: normalizeIp(target.address) } : undefined;
      return route ? this.l4Endpoint(route, target.port, random, dialed) : (this.tcpEndpoint(target, random, caller) ?? null);
    };
  }

  /**
   * Gateway mode: a connection on a TCP or TLS listener. TCP takes the first `tcp` route of the
   * ingress configs whose port matches; TLS takes the first `tls` route matching port and SNI,
   * whose SNI must be one of the listener's hosts: read from the ClientHello on passthrough (the
   * bytes go on unchanged), from the handshake when the listener terminated TLS (the socket then
   * carries the decrypted bytes). The backend is reached as HTTP backends are (through its
   * waypoint when it has one). No route, no SNI, or no endpoint: the client's connection is reset.
   */
  async acceptIngressL4(socket: net.Socket, l: L4Listener, random: () => number = Math.random): Promise<void> {
    let sni: string | undefined;
    if (l.protocol === 'TLS') {
      const hosts = l.hosts.map((h) => (h.includes('/') ? h.slice(h.indexOf('/') + 1) : h));
      if (l.terminated) sni = l.terminated.sni;
      else {
        const peek = await peekStream(socket, CLIENT_HELLO_TIMEOUT_MS);
        if (peek.kind !== 'tls') {
          this.log.debug({ port: l.port }, 'tls passthrough: no ClientHello; reset');
          return void socket.resetAndDestroy();
        }
        sni = peek.sni;
      }
      if (!sniMatches(hosts, sni)) {
        this.log.debug({ port: l.port, sni, terminated: l.terminated !== undefined }, 'tls listener: no served SNI; reset');
        return void socket.resetAndDestroy();
      }
    }
    let route: L4Route | undefined;
    let config: RouteConfig | undefined;
    for (const c of this.ingressConfigs) {
      route = selectL4Route(l.protocol === 'TLS' ? c.tlsRoutes : c.tcpRoutes, l.port, sni, l.terminated?.principal ? { namespace: tryParseSpiffeId(l.terminated.principal)?.namespace } : undefined, socket.localAddress !== undefined ? normalizeIp(socket.localAddress) : undefined);
      if (route) {
        config = c;
        break;
      }
    }
    if (config && config.authorization.length > 0) {
      const gone = new AbortController();
      const onClose = (): void => gone.abort();
      socket.once('close', onClose);
      const admitted = await admitConnection(this.connectionAuthzDeps(), config, {
        ...(socket.remoteAddress !== undefined ? { sourceAddress: normalizeIp(socket.remoteAddress) } : {}),
        ...(socket.remotePort !== undefined ? { sourcePort: socket.remotePort } : {}),
        ...(socket.localAddress !== undefined ? { destinationAddress: normalizeIp(socket.localAddress) } : {}),
        destinationPort: l.port,
        destinationPrincipal: this.opts.identity,
        ...(l.terminated?.principal !== undefined ? { sourcePrincipal: l.terminated.principal } : {}),
        signal: gone.signal,
      });
      socket.off('close', onClose);
      if (!admitted.allowed) return void socket.resetAndDestroy();
    }
    const backend = route ? pickWeighted(route.backends, random) : undefined;
    const target = backend && !backend.refused ? { host: backend.host, port: backend.port ?? l.port, ...(backend.subsetLabels ? { subsetLabels: backend.subsetLabels } : {}) } : undefined;
    const endpoint = target ? pickEndpoint(this.gatewayEndpoints(target), random) : null;
    if (!endpoint || !target) {
      this.log.debug({ port: l.port, sni, route: route?.name }, 'ingress connection has no route or no endpoint; reset');
      return void socket.resetAndDestroy();
    }
    if (socket.destroyed) return;
    await this.tcp.forwardSocket(socket, endpoint, this.index.serviceByHostname(target.host), this.opts.gateway?.source ?? {});
  }

  /** The caller of a tunnel: its peer identity, and its workload when the source IP matches it. */
  /**
   * The caller of a tunnel for telemetry (`source`) and for route matches (`caller`): its identity's
   * namespace, and the labels of the workload at its address when that workload's identity is the
   * one it presented (an address alone proves nothing).
   */
  private callerOf(identity: string | undefined, srcIp: string | undefined): { source: SourceInfo; caller: RouteCaller } {
    const parsed = identity ? tryParseSpiffeId(identity) : undefined;
    const w = srcIp ? this.index.workloadByIp(srcIp) : undefined;
    const match = w && identity === workloadIdentity(w) ? w : undefined;
    return {
      source: {
        ...(parsed ? { principal: identity!, namespace: parsed.namespace } : {}),
        ...(match ? { workload: match.workloadName || match.name, canonicalService: match.canonicalName, canonicalRevision: match.canonicalRevision, cluster: clusterOfUid(match.uid) } : {}),
      },
      caller: { ...(parsed ? { namespace: parsed.namespace } : {}), ...(match ? { labels: match.labels } : {}) },
    };
  }

  private connectionAuthzDeps(): ConnectionAuthzDeps {
    return { extAuthz: this.server.extAuthz, metrics: this.server.metrics, log: this.log };
  }

  /**
   * A TCP tunnel to a Service whose route config has policies: they are checked before the tunnel
   * is answered (CUSTOM through a gRPC provider, then DENY and ALLOW as network RBAC), with the
   * caller's address and mTLS identity; the waypoint's own identity is the destination principal.
   */
  private tunnelAdmit(target: Address, peer: TunnelPeer): { admit?: Admit } {
    const svc = this.index.serviceByVip(normalizeIp(target.address), target.port)?.service;
    const config = svc ? this.meshConfigs.get(svc.hostname) : undefined;
    if (!config || config.authorization.length === 0) return {};
    const from = sourceAddressOf(peer);
    const conn = {
      ...(from !== undefined ? { sourceAddress: from } : {}),
      ...(peer.identity !== undefined ? { sourcePrincipal: peer.identity } : {}),
      destinationAddress: normalizeIp(target.address),
      destinationPort: target.port,
      destinationPrincipal: this.opts.identity,
    };
    return { admit: async () => (await admitConnection(this.connectionAuthzDeps(), config, conn)).allowed };
  }

  /** What a tunnel to `target` is: a TCP pipe (ports not served as HTTP), a refusal, or HTTP. */
  private classify(target: Address, peer: TunnelPeer): TunnelDecision {
    // The waypoint's own address (its 15008, metrics, readiness): never a destination to dial.
    if (normalizeIp(target.address) === normalizeIp(this.opts.podIp)) {
      this.log.warn({ target: `${target.address}:${target.port}` }, 'tunnel to the waypoint itself refused');
      return { kind: 'refuse', status: HBONE_STATUS.BAD_REQUEST, reason: 'self_call' };
    }
    const { source, caller } = this.callerOf(peer.identity, peer.client ?? peer.ip);
    const choose = this.sniChooser(target, Math.random, caller);
    if (choose) return { kind: 'sni', choose, source, ...this.tunnelAdmit(target, peer) };
    const l4 = this.tcpEndpoint(target, Math.random, caller);
    if (l4 === null) return { kind: 'refuse', status: HBONE_STATUS.UPSTREAM_FAILED };
    if (l4 !== undefined) return { kind: 'tcp', endpoint: l4, source, ...this.tunnelAdmit(target, peer) };
    const from = sourceAddressOf(peer);
    return { kind: 'http', meta: { source, caller, targetPort: target.port, ...this.addressed(target), ...(from !== undefined ? { peerAddress: from } : {}) } };
  }

  /** Opens the HBONE listener (mTLS, h2 CONNECT); each accepted stream is served as HTTP or TCP. */
  listenHbone(port: number, host = '0.0.0.0'): Promise<net.AddressInfo> {
    return this.hbone.listen(port, host, this.opts.reusePort === true);
  }

  async close(deadlineMs = 5000): Promise<void> {
    this.hbone.close();
    this.ingress?.close();
    this.tcp.destroy();
    await this.server.close(deadlineMs);
    this.upstream.close();
    await this.pool.close(Math.min(deadlineMs, 1000)).catch(() => undefined);
    this.hbone.destroy();
  }
}

/** One of `eps` at random; null when there is none. */
function pickEndpoint(eps: readonly Endpoint[], random: () => number): Endpoint | null {
  return eps.length === 0 ? null : eps[Math.min(eps.length - 1, Math.floor(random() * eps.length))]!;
}

/**
 * The source address of a tunnel's traffic (AuthorizationPolicy `ipBlocks`, `source.ip`): the
 * client the mesh peer forwarded, as Istio's waypoints match the original source; the peer's own
 * address when it forwarded none.
 */
function sourceAddressOf(peer: TunnelPeer): string | undefined {
  return peer.client ?? (peer.ip !== undefined ? normalizeIp(peer.ip) : undefined);
}
