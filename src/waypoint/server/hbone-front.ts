/**
 * The waypoint's HBONE front (port 15008): mTLS (TLS 1.3, the waypoint's own workload
 * certificate, refreshed as it rotates; peers must present an identity of this trust domain) and
 * HTTP/2 CONNECT. Each CONNECT stream names a target; `classify` says whether the tunnel is served
 * as HTTP (the stream becomes a connection of the WaypointServer), carried as TCP (to an endpoint
 * chosen now, or by the SNI of the ClientHello read first), or refused.
 */
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import type * as tls from 'node:tls';
import { normalizeIp, parseAddress, type Address } from '../../shared/address.js';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import { tryParseSpiffeId } from '../../shared/identity.js';
import type { Logger } from '../../shared/log.js';
import { HBONE_STATUS, MAX_FRAME_BYTES, REASON_HEADER, STREAM_WINDOW_BYTES, parseForwardedFor, peerIdentity, type TunnelCertificate } from '../../shared/hbone/tunnel.js';
import { AcceptedSockets, HBONE_HANDSHAKE_TIMEOUT_MS, HBONE_SERVER_IDLE_TIMEOUT_MS, watchLiveness } from '../../shared/hbone/liveness.js';
import type { Endpoint } from '../endpoint/upstream.js';
import type { ConnectionMeta } from './request.js';
import type { SourceInfo } from './telemetry.js';
import { CLIENT_HELLO_TIMEOUT_MS, peekStream } from './sni.js';

/** What a CONNECT target gets: HTTP service, a TCP pipe to one endpoint, or a refusal with its status. */
export type TunnelDecision =
  | { kind: 'http'; meta: ConnectionMeta }
  | { kind: 'tcp'; endpoint: Endpoint; source: SourceInfo; admit?: Admit }
  /** TCP to the endpoint `choose` picks once the first bytes (a TLS ClientHello, or not) are read. */
  | { kind: 'sni'; choose: (hello: { tls: boolean; sni?: string }) => Endpoint | null; source: SourceInfo; admit?: Admit }
  | { kind: 'refuse'; status: number; /** Bounded reason sent as x-ambit-reason (e.g. self_call). */ reason?: string };

/** The authorization of a TCP tunnel, when its service has policies: false refuses it (401 policy_denied) before it is answered. */
export type Admit = () => Promise<boolean>;

/** Who opened a tunnel: the mTLS peer's identity and address, and the client address it forwarded. */
export interface TunnelPeer {
  identity: string | undefined;
  ip: string | undefined;
  /**
   * The `for=` address of the CONNECT's `forwarded` header: the pod the source agent carries the
   * connection for (AuthorizationPolicy `ipBlocks`, `source.ip`). Read only on streams of an
   * mTLS session whose peer is of the trust domain (onStream refuses others).
   */
  client?: string;
}

/** The client address a mesh peer forwarded (`forwarded: for="<ip>"`), normalized; undefined when absent or no IP address. */
export function forwardedClient(header: string | string[] | undefined): string | undefined {
  const ip = parseForwardedFor(header);
  return ip !== undefined && net.isIP(ip) !== 0 ? normalizeIp(ip) : undefined;
}

export interface HboneFrontOptions {
  log: Logger;
  /** The waypoint's SPIFFE id and trust domain (peers from other trust domains are refused). */
  identity: string;
  trustDomain: string;
  getCertificate: (identity: string) => Promise<TunnelCertificate>;
  /** Decides what a tunnel to `target` from `peer` (identity, source IP, the client's address it forwarded) is. */
  classify: (target: Address, peer: TunnelPeer) => TunnelDecision;
  /** Serves an accepted HTTP tunnel (WaypointServer.acceptConnection). */
  serveHttp: (stream: Duplex, meta: ConnectionMeta) => void;
  /** Carries a TCP tunnel (TcpForwarder.forward). */
  forwardTcp: (stream: http2.ServerHttp2Stream, endpoint: Endpoint, target: Address, source: SourceInfo) => Promise<void>;
}

function tlsOptions(cert: TunnelCertificate): { cert: string; key: string; ca: string[] } {
  return { cert: cert.certChainPem.join('\n'), key: cert.keyPem, ca: cert.rootsPem };
}

export class HboneFront {
  private readonly log: Logger;
  private server: net.Server | undefined;
  private h2: http2.Http2SecureServer | undefined;
  private currentCert: TunnelCertificate | undefined;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly accepted = new AcceptedSockets();

  constructor(private readonly opts: HboneFrontOptions) {
    this.log = opts.log;
  }

  /**
   * Opens the HBONE listener; resolves once it listens (after the first certificate arrived).
   * `reusePort`: SO_REUSEPORT, so each worker thread of a waypoint listens on the same port and the
   * kernel spreads new connections over them.
   */
  async listen(port: number, host = '0.0.0.0', reusePort = false): Promise<net.AddressInfo> {
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
      this.log.warn({ err: e, ...(authorizationError ? { authorizationError: String(authorizationError) } : {}) }, 'mtls handshake failed');
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
      session.on('error', (e) => this.log.debug({ err: e }, 'tunnel session error'));
      session.once('close', () => this.sessions.delete(session));
      // A caller that closed its side, vanished or idles is let go with its streams (liveness.ts).
      const raw = this.accepted.of(session);
      watchLiveness(session, { idleTimeoutMs: HBONE_SERVER_IDLE_TIMEOUT_MS, ...(raw ? { socket: raw } : {}), onEnd: (reason) => this.log.debug({ peer: identity, reason }, 'tunnel session ended') });
    });
    h2.on('stream', (stream, headers) => this.onStream(stream, headers));
    const server = net.createServer({ noDelay: true }, (raw) => {
      raw.on('error', () => raw.destroy());
      raw.setKeepAlive(true, 60_000);
      this.accepted.track(raw);
      this.refreshCertificate().then(
        () => h2.emit('connection', raw),
        (e: unknown) => {
          this.log.error({ err: e }, 'no certificate for the hbone listener; closing connection');
          raw.destroy();
        },
      );
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (e) => reject(new AmbitError('AMBIT_ERR_CONFIG_INVALID', `waypoint cannot listen on ${host}:${port}: ${errorMessage(e)}`, { cause: e })));
      server.listen({ port, host, backlog: 1024, ...(reusePort ? { reusePort: true } : {}) }, () => {
        const addr = server.address() as net.AddressInfo;
        // An accept that failed (EMFILE) must not throw out of the listener and kill the process.
        server.on('error', (e) => this.log.warn({ err: e }, 'accept failed'));
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
    const socket = session.socket as tls.TLSSocket;
    const identity = peerIdentity(socket);
    const client = forwardedClient(headers['forwarded']);
    const decision = this.opts.classify(target, { identity, ip: socket.remoteAddress, ...(client !== undefined ? { client } : {}) });
    if (decision.kind === 'refuse') {
      stream.respond({ ':status': decision.status, ...(decision.reason ? { [REASON_HEADER]: decision.reason } : {}) }, { endStream: true });
      return;
    }
    if ((decision.kind === 'tcp' || decision.kind === 'sni') && decision.admit) {
      decision
        .admit()
        .then((ok) => {
          if (stream.destroyed) return;
          if (!ok) return void stream.respond({ ':status': HBONE_STATUS.DENIED, [REASON_HEADER]: 'policy_denied' }, { endStream: true });
          this.carryTcp(stream, target, decision);
        })
        .catch((e: unknown) => {
          this.log.error({ err: e }, 'tunnel authorization failed');
          stream.destroy();
        });
      return;
    }
    if (decision.kind === 'sni' || decision.kind === 'tcp') return this.carryTcp(stream, target, decision);
    stream.respond({ ':status': HBONE_STATUS.OK });
    this.opts.serveHttp(stream, decision.meta);
  }

  /** Carries an admitted TCP tunnel: at once, or (TLS routes) once the ClientHello picked the endpoint. */
  private carryTcp(stream: http2.ServerHttp2Stream, target: Address, decision: Extract<TunnelDecision, { kind: 'tcp' | 'sni' }>): void {
    if (decision.kind === 'sni') {
      // The client sends its ClientHello only once the tunnel is up: accept it, read, then pick.
      stream.respond({ ':status': HBONE_STATUS.OK });
      peekStream(stream, CLIENT_HELLO_TIMEOUT_MS)
        .then((peek) => {
          if (stream.destroyed) return;
          const endpoint = decision.choose(peek.kind === 'tls' ? { tls: true, ...(peek.sni !== undefined ? { sni: peek.sni } : {}) } : { tls: false });
          if (!endpoint) return void stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
          return this.opts.forwardTcp(stream, endpoint, target, decision.source);
        })
        .catch((e: unknown) => {
          this.log.error({ err: e }, 'tls forward failed');
          stream.destroy();
        });
    } else {
      this.opts.forwardTcp(stream, decision.endpoint, target, decision.source).catch((e: unknown) => {
        this.log.error({ err: e }, 'tcp forward failed');
        stream.destroy();
      });
    }
  }

  /** Stops accepting tunnels and asks open sessions to finish. */
  close(): void {
    this.server?.close();
    for (const s of this.sessions) s.close();
  }

  /** Tears open sessions down. */
  destroy(): void {
    for (const s of this.sessions) s.destroy();
  }
}
