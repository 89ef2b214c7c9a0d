/**
 * Inbound HBONE for one enrolled pod (port 15008 in its netns): terminate mTLS (TLS 1.3, client
 * certificate from the mesh root, same trust domain), read the peer identity, accept only CONNECT
 * to this pod, authorize, dial the pod's port from inside the pod, and pipe.
 * Replies: 400 bad request / wrong target, 401 denied by policy, 503 upstream refused, 200 piped.
 */
import type * as http2 from 'node:http2';
import { nodeHttp2 } from '../../shared/node-builtins.js';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import { errorMessage } from '../../shared/errors.js';
import { tryParseSpiffeId, principalOf } from '../../shared/identity.js';
import type { Service, WaypointRef, Workload } from '../../shared/model.js';
import type { Duplex } from 'node:stream';
import type { CopyHandle } from '../../shared/hbone/copy.js';
import { authorize, type ConnAttributes } from '../policy/authorize.js';
import { workloadIdentity, type WorkloadIndex } from '../../shared/state/workloads.js';
import { connectVia } from './sockets.js';
import { normalizeIp, parseAddress, formatAddress, type Address } from '../../shared/address.js';
import { PodProxy, type PodProxyOptions } from './listener.js';
import { ConnectionTelemetry, newConnId, trafficLabelSet, type ProxyMetrics } from './metrics.js';
import { pipeTracked, type ConnectionRegistry } from './connections.js';
import { SELF_CALL_REASON } from './self-call.js';
import { AcceptedSockets, HBONE_HANDSHAKE_TIMEOUT_MS, HBONE_SERVER_IDLE_TIMEOUT_MS, watchLiveness, type LivenessOptions } from '../../shared/hbone/liveness.js';
import { TCP_KEEPALIVE_MS } from './sockets.js';
import {
  CONNECTION_WINDOW_BYTES,
  HBONE_PORT,
  HBONE_STATUS,
  MAX_FRAME_BYTES,
  REASON_HEADER,
  STREAM_WINDOW_BYTES,
  TUNNEL_SEND_BUFFER_BYTES,
  forwardedClientPort,
  parseForwardedSource,
  peerIdentity,
  type TunnelCertificate,
} from '../../shared/hbone/tunnel.js';

/** The initiator left while the pod was dialed: nothing to answer, nothing to count. */
const DOWNSTREAM_CLOSED = 'downstream_closed';

export interface InboundHboneOptions extends PodProxyOptions {
  pod: Workload;
  /** The current config index (read per connection, so config changes apply at once). */
  index: () => WorkloadIndex;
  /** The pod's own certificate (CertManager.getCertificate(identity of the pod)). */
  getCertificate: () => Promise<TunnelCertificate>;
  metrics: ProxyMetrics;
  connections: ConnectionRegistry;
  upstreamConnectTimeoutMs?: number;
  now?: () => number;
  /** Keepalive and idle timeout of each tunnel session (liveness.ts defaults: 10 s, 10 s, 10 min). */
  liveness?: Omit<LivenessOptions, 'onEnd'>;
}

export class InboundHbone extends PodProxy {
  private h2: http2.Http2SecureServer | undefined;
  private currentCert: TunnelCertificate | undefined;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly accepted = new AcceptedSockets();
  private readonly trustDomain: string;

  constructor(private readonly opts: InboundHboneOptions) {
    super(opts, 'inbound', HBONE_PORT, { listenOptions: { sendBufferBytes: TUNNEL_SEND_BUFFER_BYTES } });
    this.trustDomain = opts.pod.trustDomain;
  }

  override async start(): Promise<void> {
    const cert = await this.opts.getCertificate();
    this.currentCert = cert;
    const h2 = nodeHttp2.createSecureServer({
      ...tlsOptions(cert),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      allowHTTP1: false,
      settings: { initialWindowSize: STREAM_WINDOW_BYTES, maxConcurrentStreams: 200, maxFrameSize: MAX_FRAME_BYTES, enablePush: false },
      maxSessionMemory: 256,
      handshakeTimeout: HBONE_HANDSHAKE_TIMEOUT_MS,
    });
    this.h2 = h2;
    h2.on('tlsClientError', (err, socket: tls.TLSSocket) => {
      this.opts.metrics.handshakeFailures.inc({ direction: 'inbound' });
      // A refused client certificate (CERT_HAS_EXPIRED, CERT_NOT_YET_VALID, ...) surfaces only as a
      // hang-up; the verify error is on the socket.
      const authorizationError = (socket as { authorizationError?: Error | string } | undefined)?.authorizationError;
      this.log.warn(
        { err: { message: errorMessage(err), code: (err as { code?: string }).code }, ...(authorizationError ? { authorizationError: String(authorizationError) } : {}) },
        'mtls handshake failed',
      );
    });
    h2.on('session', (session) => this.onSession(session));
    h2.on('stream', (stream, headers) => {
      this.onStream(stream, headers).catch((e: unknown) => {
        this.log.error({ err: e }, 'inbound stream handler failed');
        if (!stream.destroyed) stream.destroy();
      });
    });
    await this.shell.start();
  }

  /** A raw TCP connection: TLS starts once the current certificate is in place. */
  protected onConnection(raw: net.Socket): void {
    const h2 = this.h2;
    if (!h2) return void raw.destroy();
    raw.on('error', () => raw.destroy());
    raw.setKeepAlive(true, TCP_KEEPALIVE_MS);
    this.accepted.track(raw);
    this.refreshCertificate().then(
      () => h2.emit('connection', raw),
      (e: unknown) => {
        this.log.error({ err: e }, 'no certificate for inbound tunnel; closing connection');
        raw.destroy();
      },
    );
  }

  /** Picks up a rotated certificate before the next handshake. */
  private async refreshCertificate(): Promise<void> {
    const cert = await this.opts.getCertificate();
    if (cert !== this.currentCert && this.h2) {
      this.h2.setSecureContext({ ...tlsOptions(cert) });
      this.currentCert = cert;
    }
  }

  private onSession(session: http2.ServerHttp2Session): void {
    const socket = session.socket as tls.TLSSocket;
    const peer = peerIdentity(socket);
    const parsed = peer ? tryParseSpiffeId(peer) : undefined;
    if (!parsed || parsed.trustDomain !== this.trustDomain) {
      this.opts.metrics.handshakeFailures.inc({ direction: 'inbound' });
      this.log.warn({ peer, trustDomain: this.trustDomain }, 'tunnel peer rejected: identity not in this trust domain');
      session.destroy();
      return;
    }
    session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    session.on('error', (e) => this.log.debug({ err: e }, 'inbound session error'));
    // A client that closed its side, vanished or idles is let go; its streams' app sockets are reset.
    const raw = this.accepted.of(session);
    watchLiveness(session, {
      idleTimeoutMs: HBONE_SERVER_IDLE_TIMEOUT_MS,
      ...this.opts.liveness,
      ...(raw ? { socket: raw } : {}),
      onEnd: (reason) => {
        this.opts.metrics.sessionsEnded.inc({ direction: 'inbound', reason });
        this.log.debug({ peer, reason }, 'tunnel session ended');
      },
    });
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
  }

  private reject(stream: http2.ServerHttp2Stream, status: number, reason: string, extra: Record<string, unknown> = {}): void {
    this.opts.metrics.connectionsRejected.inc({ direction: 'inbound', reason });
    this.log.warn({ status, reason, ...extra }, 'tunnel request rejected');
    // The bounded reason code only: policy names stay on this side.
    if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': status, [REASON_HEADER]: reason }, { endStream: true });
  }

  private async onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    stream.on('error', () => undefined);
    const session = stream.session;
    if (!session || !this.sessions.has(session as http2.ServerHttp2Session)) return void stream.destroy();
    const socket = session.socket as tls.TLSSocket;
    if (headers[':method'] !== 'CONNECT') return this.reject(stream, HBONE_STATUS.BAD_REQUEST, 'not_connect', { method: headers[':method'] });
    const target = parseAddress(String(headers[':authority'] ?? ''));
    if (!target) return this.reject(stream, HBONE_STATUS.BAD_REQUEST, 'bad_authority', { authority: headers[':authority'] });
    const forwardedHost = /;\s*host=([^;,\s]+)/i.exec(String(headers['forwarded'] ?? ''))?.[1];
    const index = this.opts.index();
    const srcIp = normalizeIp(socket.remoteAddress);
    const forwarded = parseForwardedSource(headers['forwarded']);
    const admitted = await this.admit({
      srcIdentity: peerIdentity(socket),
      srcIp,
      srcPort: forwardedClientPort(forwarded, srcIp),
      target,
      service: forwardedHost ? index.serviceByHostname(forwardedHost) : undefined,
      authority: headers[':authority'],
      forwardedFor: forwarded?.address,
      gone: () => stream.destroyed || stream.closed,
    });
    if (!admitted.ok) {
      if (admitted.reason !== DOWNSTREAM_CLOSED) this.reject(stream, admitted.status, admitted.reason, admitted.extra);
      return;
    }
    stream.respond({ ':status': HBONE_STATUS.OK });
    this.pipe(stream, admitted);
  }

  /**
   * The same-node fast path: a connection the agent captured from another pod on this node,
   * handed over in-process with the source pod's identity, admitted exactly as a CONNECT over
   * mTLS from that identity would be (target check, L4 authz, PeerAuthentication as mTLS,
   * waypoint requirement), then piped to this pod. Resolves false when refused (the caller resets
   * the app's connection); `source` is the outbound side's telemetry, fed the same bytes.
   */
  async acceptLocal(o: { downstream: Duplex; srcIdentity: string; srcIp: string; srcPort?: number | undefined; target: Address; service?: Service; source: ConnectionTelemetry; sourcePipes: Set<CopyHandle> }): Promise<Admission> {
    const admitted = await this.admit({ srcIdentity: o.srcIdentity, srcIp: o.srcIp, srcPort: o.srcPort, target: o.target, service: o.service, authority: formatAddress(o.target), gone: () => o.downstream.destroyed });
    if (!admitted.ok) {
      if (admitted.reason === DOWNSTREAM_CLOSED) return admitted;
      this.opts.metrics.connectionsRejected.inc({ direction: 'inbound', reason: admitted.reason });
      this.log.warn({ reason: admitted.reason, sameNode: true, ...admitted.extra }, 'same-node connection rejected');
      return admitted;
    }
    this.pipe(o.downstream, admitted, { telemetry: o.source, pipes: o.sourcePipes });
    return admitted;
  }

  private pipe(downstream: Duplex, a: Admitted, source?: { telemetry: ConnectionTelemetry; pipes: Set<CopyHandle> }): void {
    pipeTracked({
      downstream,
      upstream: a.upstream,
      telemetry: a.telemetry,
      pipes: this.shell.pipes,
      connections: this.opts.connections,
      entry: a.entry,
      ...(source ? { source } : {}),
    });
  }

  /**
   * Decides one tunnelled connection to this pod and dials the pod: the target must be this pod
   * (or its waypoint address) on a non-agent port, policy must allow the source identity, and a
   * required waypoint must be the source. The destination's telemetry is finished on refusal.
   */
  private async admit(r: {
    srcIdentity: string | undefined;
    srcIp: string;
    /** The client's own port, kept on the dial when the pod's address is not also the source (hairpin). */
    srcPort?: number | undefined;
    target: Address;
    service: Service | undefined;
    authority: unknown;
    forwardedFor?: unknown;
    /** True once the initiating side went away while dialing. */
    gone: () => boolean;
  }): Promise<Admission> {
    const { srcIdentity, srcIp, target } = r;
    const parsed = srcIdentity ? tryParseSpiffeId(srcIdentity) : undefined;
    const index = this.opts.index();
    const pod = index.workloadByUid(this.opts.pod.uid) ?? this.opts.pod;
    const podIps = new Set(pod.addresses.map(normalizeIp));
    const dstIp = normalizeIp(target.address);
    const refuse = (status: number, reason: string, extra: Record<string, unknown> = {}): Refused => ({ ok: false, status, reason, extra });
    if (!podIps.has(dstIp) && !pod.addresses.some((a) => index.isWaypointAddress(a))) return refuse(HBONE_STATUS.BAD_REQUEST, 'ip_mismatch', { authority: r.authority });
    if (this.agentPorts.has(target.port)) return refuse(HBONE_STATUS.BAD_REQUEST, SELF_CALL_REASON, { authority: r.authority });
    const srcByIp = index.workloadByIp(srcIp);
    const src = srcByIp && srcIdentity === workloadIdentity(srcByIp) ? srcByIp : undefined;
    // The Service the caller named, else the pod's Service on that port (a waypoint names none).
    const service = r.service ?? index.serviceOfWorkloadPort(pod, target.port);
    const connId = newConnId();
    const telemetry = new ConnectionTelemetry(
      this.opts.metrics,
      this.log,
      {
        connId,
        direction: 'inbound',
        src: { addr: srcIp, workload: src?.name, namespace: parsed?.namespace, identity: srcIdentity },
        dst: { addr: formatAddress({ address: dstIp, port: target.port }), hboneAddr: formatAddress(target), service: service?.hostname, workload: pod.name, identity: workloadIdentity(pod) },
      },
      trafficLabelSet(index, { reporter: 'destination', src, srcIdentity, dst: pod, dstIdentity: workloadIdentity(pod), service, mtls: true }),
      this.opts.now,
    );

    const attrs: ConnAttributes = {
      ...(parsed ? { srcPrincipal: principalOf(parsed), srcNamespace: parsed.namespace } : {}),
      srcIp,
      dstIp,
      dstPort: target.port,
    };
    const check = (ix: WorkloadIndex) => {
      const w = ix.workloadByUid(pod.uid) ?? pod;
      return authorize(ix.policiesFor(w), attrs, { peerAuthentication: ix.peerAuthenticationFor(w, target.port) });
    };
    const decision = check(index);
    if (!decision.allowed) {
      this.opts.metrics.policyDenials.inc({ reason: decision.reason });
      telemetry.finish('policy_denied', 'DENY', { policy: decision.policy, authz: decision.reason });
      return refuse(HBONE_STATUS.DENIED, 'policy_denied', { connId, policy: decision.policy, authz: decision.reason });
    }
    if (decision.audit.length > 0) this.log.info({ connId, audit: decision.audit }, 'audit policy matched');
    const waypoint = requiredWaypoint(index, index.workloadByUid(pod.uid) ?? pod, target.port);
    if (waypoint && srcIdentity !== waypoint.identity) {
      this.opts.metrics.policyDenials.inc({ reason: 'waypoint_required' });
      telemetry.finish('policy_denied', 'DENY', { authz: 'waypoint_required' });
      return refuse(HBONE_STATUS.DENIED, 'policy_denied', { connId, authz: 'waypoint_required', waypoint: waypoint.name, srcIdentity });
    }

    this.log.debug({ connId, forwardedFor: r.forwardedFor, srcIp }, 'dialing pod');
    let upstream: net.Socket;
    try {
      upstream = await connectVia(
        this.opts.sockets,
        { address: dstIp, port: target.port, ...(this.opts.sockets.preservesSource ? { localAddress: srcIp, ...(r.srcPort && !podIps.has(srcIp) ? { localPort: r.srcPort } : {}) } : {}) },
        this.opts.upstreamConnectTimeoutMs ?? 10_000,
      );
    } catch (e) {
      telemetry.finish('upstream_connect_failed', 'CONNECT');
      return refuse(HBONE_STATUS.UPSTREAM_FAILED, 'upstream_connect', { connId, err: e });
    }
    if (r.gone()) {
      upstream.destroy();
      telemetry.finish('downstream_closed');
      return refuse(HBONE_STATUS.UPSTREAM_FAILED, DOWNSTREAM_CLOSED, { connId });
    }
    return { ok: true, upstream, telemetry, entry: { connId, direction: 'inbound', workloadUid: pod.uid, attrs, mtls: true, check } };
  }

  /** Stops accepting; existing tunnels continue until the deadline, then are destroyed. */
  override close(deadlineMs: number): Promise<void> {
    return this.shell.close(deadlineMs, {
      settled: async () => {
        for (const s of this.sessions) s.close();
        await Promise.all([...this.sessions].map((s) => new Promise<void>((r) => (s.closed ? r() : s.once('close', () => r())))));
      },
      force: () => this.destroy(),
    });
  }

  override destroy(): void {
    this.shell.destroy();
    for (const s of this.sessions) s.destroy();
  }
}

function tlsOptions(cert: TunnelCertificate): { cert: string; key: string; ca: string[] } {
  return { cert: cert.certChainPem.join('\n'), key: cert.keyPem, ca: cert.rootsPem };
}

/**
 * The waypoint traffic to `port` of `pod` must come through: the pod's own waypoint
 * (workload-bound), else the waypoint of a service that maps a port to `port`.
 */
export function requiredWaypoint(index: WorkloadIndex, pod: Workload, port: number): WaypointRef | undefined {
  if (pod.waypoint) return pod.waypoint;
  for (const [key, mappings] of Object.entries(pod.services)) {
    if (!mappings.some((m) => m.targetPort === port)) continue;
    const service = index.serviceByHostname(key.slice(key.indexOf('/') + 1));
    if (service?.waypoint) return service.waypoint;
  }
  return undefined;
}

interface Admitted {
  ok: true;
  upstream: net.Socket;
  telemetry: ConnectionTelemetry;
  entry: Parameters<typeof pipeTracked>[0]['entry'];
}

interface Refused {
  ok: false;
  /** The HBONE status the refusal maps to (401 denied by policy, 400 wrong target, 503 upstream). */
  status: number;
  /** Bounded reason (connectionsRejected label). */
  reason: string;
  extra: Record<string, unknown>;
}

/** The outcome of admitting one connection to the pod. */
export type Admission = Admitted | Refused;
