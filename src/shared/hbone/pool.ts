/**
 * HBONE client pool: mTLS HTTP/2 connections keyed by {source identity, expected destination
 * identities, tunnel address}; each carries up to `maxStreamsPerConnection` CONNECT streams.
 * Invariants:
 * - a connection moves connecting → ready → draining → closed (or connecting → closed) only via
 *   transition(); only `connecting`/`ready` connections take new streams;
 * - `reserved` counts streams promised or open on a connection and never exceeds its cap, so a
 *   burst of N opens makes ceil(N / cap) connections, not N;
 * - the server must present a URI SAN in the expected set, else AMBIT_ERR_TUNNEL_IDENTITY;
 * - a ready connection with no streams for `idleTimeoutMs` is closed;
 * - a connection whose peer closed its side or stopped answering PINGs is destroyed with its
 *   streams (liveness.ts), never left draining on a half-open socket;
 * - a connection is retired (draining: its streams finish, new ones go to a fresh connection
 *   with the current certificate) before its client certificate expires and after
 *   `maxStreamsTotal` streams; a retired connection never takes a new stream, even when its
 *   timer runs late.
 */
import * as crypto from 'node:crypto';
import type * as http2 from 'node:http2';
import { nodeHttp2, nodeTls } from '../node-builtins.js';
import type * as net from 'node:net';
import { AmbitError, errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { drain } from '../drain.js';
import { formatAddress, type Address } from '../address.js';
import type { TunnelPoolMetrics } from './metrics.js';
import { watchLiveness, type LivenessOptions } from './liveness.js';
import {
  CONNECTION_WINDOW_BYTES,
  HBONE_STATUS,
  MAX_FRAME_BYTES,
  REASON_HEADER,
  STREAM_WINDOW_BYTES,
  TUNNEL_SEND_BUFFER_BYTES,
  tunnelStatusError,
  uriSans,
  type TunnelCertificate,
} from './tunnel.js';

export type TunnelState = 'connecting' | 'ready' | 'draining' | 'closed';

/** Where the pool dials a tunnel connection, and the kernel send buffer it wants (TUNNEL_SEND_BUFFER_BYTES). */
export interface TunnelDialOptions extends Address {
  sendBufferBytes?: number;
}

export interface TunnelPoolOptions {
  log: Logger;
  metrics: TunnelPoolMetrics;
  /** TCP connect from the source pod's side, marked so capture skips it (PodSockets.connect). */
  connectTcp: (opts: TunnelDialOptions) => net.Socket;
  /** The certificate of a source identity (CertManager.getCertificate). */
  getCertificate: (identity: string) => Promise<TunnelCertificate>;
  maxStreamsPerConnection?: number;
  idleTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** How long to wait for the CONNECT reply (default 15 s). */
  replyTimeoutMs?: number;
  streamWindowBytes?: number;
  connectionWindowBytes?: number;
  /** Streams one connection carries in its life before it is retired (default 10,000). */
  maxStreamsTotal?: number;
  /**
   * How long before its client certificate expires a connection is retired; default the smaller
   * of 5 minutes and a tenth of the certificate's lifetime.
   */
  retireBeforeExpiryMs?: number;
  /** Keepalive of each pooled session (liveness.ts defaults: PING after 10 s without reads, 10 s to answer). */
  liveness?: Pick<LivenessOptions, 'keepaliveIntervalMs' | 'keepaliveTimeoutMs'>;
}

export interface TunnelOpenRequest {
  srcIdentity: string;
  expectedIdentities: readonly string[];
  tunnelAddress: Address;
  target: Address;
  /** CONNECT headers (buildConnectHeaders). */
  headers: http2.OutgoingHttpHeaders;
}

export interface OpenTunnel {
  stream: http2.ClientHttp2Stream;
  /** The server identity the TLS handshake verified. */
  peerIdentity: string | undefined;
}

/** A CONNECT stream sent on a verified connection whose reply has not come yet (TunnelPool.send). */
export interface SentTunnel extends OpenTunnel {
  /** Resolves on 200; rejects as open() does (AMBIT_ERR_TUNNEL_* / UPSTREAM_CONNECT). Never unhandled. */
  reply: Promise<void>;
}

let nextTunnelId = 1;

/** What a pooled connection presents to its peer: the leaf certificate's serial and validity. */
export interface PresentedCertificate {
  serial: string;
  notBefore: string;
  notAfter: string;
}

/** The leaf of a chain as shown in the admin view, or undefined when it does not parse. */
export function presentedCertificate(certChainPem: readonly string[]): (PresentedCertificate & { notAfterMs: number; notBeforeMs: number }) | undefined {
  try {
    const x = new crypto.X509Certificate(certChainPem[0] ?? '');
    const notBeforeMs = Date.parse(x.validFrom);
    const notAfterMs = Date.parse(x.validTo);
    return { serial: x.serialNumber, notBefore: new Date(notBeforeMs).toISOString(), notAfter: new Date(notAfterMs).toISOString(), notBeforeMs, notAfterMs };
  } catch {
    return undefined;
  }
}

/** Longest delay Node's timers take (2^31 - 1 ms); longer waits are re-armed in steps. */
const MAX_TIMER_MS = 2_147_483_647;

class PooledConnection {
  readonly id = nextTunnelId++;
  state: TunnelState = 'connecting';
  reserved = 0;
  session: http2.ClientHttp2Session | undefined;
  peerIdentity: string | undefined;
  /** Streams this connection has taken in its life. */
  streamsTotal = 0;
  /** The client certificate this connection presents (set when it starts). */
  certificate: PresentedCertificate | undefined;
  /** When this connection stops taking streams (certificate about to expire), epoch ms. */
  retireAt: number | undefined;
  readonly ready: Promise<void>;
  private idleTimer: NodeJS.Timeout | undefined;
  private retireTimer: NodeJS.Timeout | undefined;
  /** Draining because of retirement (GOAWAY waits for promised streams), not because of the peer or the pool closing. */
  private retired = false;
  private resolveReady!: () => void;
  private rejectReady!: (e: Error) => void;
  private failure: Error | undefined;
  /** The TCP socket under the session, destroyed with it (see destroy). */
  private socket: net.Socket | undefined;

  constructor(
    readonly key: string,
    private readonly pool: TunnelPool,
    private readonly log: Logger,
  ) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined);
  }

  /** Moves the state machine; refuses (and reports) an illegal move. */
  transition(from: readonly TunnelState[], to: TunnelState): boolean {
    if (!from.includes(this.state)) {
      this.log.debug({ tunnelId: this.id, state: this.state, to }, 'tunnel transition refused');
      return false;
    }
    this.log.debug({ tunnelId: this.id }, `${this.state} -> ${to}`);
    const wasReady = this.state === 'ready' || this.state === 'draining';
    this.state = to;
    if (to === 'ready') this.pool.metrics.poolConnections.inc();
    if (to === 'closed') {
      if (wasReady) this.pool.metrics.poolConnections.dec();
      this.clearIdle();
      clearTimeout(this.retireTimer);
      this.pool.forget(this);
      this.rejectReady(this.failure ?? new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', `tunnel connection ${this.id} closed before it was ready`));
    }
    return true;
  }

  cap(): number {
    const remote = this.session?.remoteSettings.maxConcurrentStreams;
    const max = this.pool.maxStreamsPerConnection;
    return remote !== undefined && remote > 0 ? Math.min(max, remote) : max;
  }

  acceptsStreams(): boolean {
    return (this.state === 'connecting' || this.state === 'ready') && this.reserved < this.cap() && this.retirement() === undefined;
  }

  reserve(): void {
    this.reserved++;
    this.streamsTotal++;
    this.clearIdle();
    if (this.state === 'ready') this.retireIfDue();
  }

  /** Why this connection must take no more streams, if it must not. */
  private retirement(): 'cert_expiry' | 'max_streams' | undefined {
    if (this.retireAt !== undefined && Date.now() >= this.retireAt) return 'cert_expiry';
    if (this.streamsTotal >= this.pool.maxStreamsTotal) return 'max_streams';
    return undefined;
  }

  /** Drains a ready connection that is due for retirement (its running streams finish). */
  private retireIfDue(): void {
    const reason = this.retirement();
    if (reason === undefined || !this.transition(['ready'], 'draining')) return;
    this.retired = true;
    this.pool.metrics.sessionsEnded.inc({ direction: 'outbound', reason: `retired_${reason}` });
    this.log.info({ tunnelId: this.id, reason, certificate: this.certificate, streamsTotal: this.streamsTotal }, 'tunnel connection retired');
    // Streams already promised still go out on it; once none is pending, close() sends GOAWAY and
    // lets the running streams finish: drained, not reset.
    if (this.reserved === 0) this.session?.close();
  }

  /** Runs retireIfDue at retireAt (re-armed in steps past Node's timer range). */
  private armRetire(): void {
    if (this.retireAt === undefined) return;
    const wait = Math.max(0, this.retireAt - Date.now());
    this.retireTimer = setTimeout(() => (Date.now() >= this.retireAt! ? this.retireIfDue() : this.armRetire()), Math.min(wait, MAX_TIMER_MS));
    this.retireTimer.unref();
  }

  release(): void {
    this.reserved = Math.max(0, this.reserved - 1);
    if (this.reserved === 0 && this.state === 'ready') this.armIdle();
    if (this.reserved === 0 && this.retired) this.session?.close();
  }

  private armIdle(): void {
    this.clearIdle();
    this.idleTimer = setTimeout(() => this.drain(), this.pool.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** No new streams; the session closes once its streams finish. */
  drain(): void {
    if (this.transition(['ready'], 'draining')) this.session?.close();
    else if (this.state === 'connecting') this.destroy();
  }

  destroy(err?: Error): void {
    if (err) this.failure ??= err;
    this.session?.destroy();
    // A session destroyed while its own write is stuck leaves its socket open (seen: the connection
    // lingered for minutes with both queues full after the PING probe gave up, and the peer kept
    // its streams). Closing the socket resets it, so the peer's streams end too.
    this.socket?.destroy();
    this.transition(['connecting', 'ready', 'draining'], 'closed');
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.destroy(err);
  }

  start(req: TunnelOpenRequest, cert: TunnelCertificate, opts: { connectTimeoutMs: number; streamWindowBytes: number; connectionWindowBytes: number }): void {
    const via = formatAddress(req.tunnelAddress);
    const expected = new Set(req.expectedIdentities);
    const presented = presentedCertificate(cert.certChainPem);
    if (presented) {
      const { notAfterMs, notBeforeMs, ...shown } = presented;
      this.certificate = shown;
      const margin = this.pool.retireBeforeExpiryMs ?? Math.min(5 * 60_000, (notAfterMs - notBeforeMs) / 10);
      this.retireAt = notAfterMs - margin;
      if (this.retireAt <= Date.now()) this.log.warn({ tunnelId: this.id, certificate: shown }, 'client certificate expires within the retirement margin; the connection takes this one stream only');
    }
    let tcpConnected = false;
    let secured = false;
    const tcp = this.pool.connectTcp({ ...req.tunnelAddress, sendBufferBytes: TUNNEL_SEND_BUFFER_BYTES });
    this.socket = tcp;
    tcp.setKeepAlive(true, 180_000);
    tcp.once('connect', () => (tcpConnected = true));
    const timer = setTimeout(() => {
      this.fail(new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', `tunnel connect to ${via} timed out after ${opts.connectTimeoutMs} ms; is a NetworkPolicy blocking port 15008?`));
      tcp.destroy();
    }, opts.connectTimeoutMs);
    timer.unref();
    const tlsSocket = nodeTls.connect({
      socket: tcp,
      cert: cert.certChainPem.join('\n'),
      key: cert.keyPem,
      ca: cert.rootsPem,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      // ztunnel sends no SNI: the server identity is checked by URI SAN, not by name.
      servername: '',
      rejectUnauthorized: true,
      checkServerIdentity: (_host, peer) => {
        const sans = uriSans(peer);
        const match = sans.find((s) => expected.has(s));
        if (match === undefined) {
          return new AmbitError(
            'AMBIT_ERR_TUNNEL_IDENTITY',
            `tunnel peer at ${via} presented ${JSON.stringify(sans)}, expected one of ${JSON.stringify([...expected])}; is the destination's identity what the config says?`,
          );
        }
        this.peerIdentity = match;
        return undefined;
      },
    });
    tlsSocket.once('secureConnect', () => (secured = true));
    const onEarlyError = (e: Error): void => {
      clearTimeout(timer);
      const code = errorCode(e);
      if (tcpConnected && !secured) this.pool.metrics.handshakeFailures.inc({ direction: 'outbound' });
      const wrapped =
        code === 'AMBIT_ERR_TUNNEL_IDENTITY'
          ? (e as AmbitError)
          : tcpConnected
            ? new AmbitError('AMBIT_ERR_TUNNEL_HANDSHAKE', `mTLS handshake with ${via} failed: ${errorMessage(e)}`, { cause: e })
            : new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', `tunnel connect to ${via} failed: ${errorMessage(e)}; is a NetworkPolicy blocking port 15008?`, { cause: e });
      this.fail(wrapped);
    };
    tlsSocket.on('error', onEarlyError);
    const session = nodeHttp2.connect(`https://${via}`, {
      createConnection: () => tlsSocket,
      settings: { initialWindowSize: opts.streamWindowBytes, maxFrameSize: MAX_FRAME_BYTES, enablePush: false },
      maxSessionMemory: 256,
    });
    this.session = session;
    session.on('error', (e) => {
      if (this.state === 'connecting') onEarlyError(e);
      else this.log.debug({ tunnelId: this.id, err: e }, 'tunnel session error');
    });
    session.once('connect', () => {
      clearTimeout(timer);
      if (tlsSocket.alpnProtocol !== 'h2') {
        this.fail(new AmbitError('AMBIT_ERR_TUNNEL_HANDSHAKE', `tunnel peer at ${via} did not negotiate ALPN h2 (got ${String(tlsSocket.alpnProtocol)})`));
        return;
      }
      session.setLocalWindowSize(opts.connectionWindowBytes);
      if (this.transition(['connecting'], 'ready')) {
        this.log.debug({ tunnelId: this.id, via, peer: this.peerIdentity }, 'tunnel connection established');
        this.resolveReady();
        if (this.reserved === 0) this.armIdle();
        this.armRetire();
        this.retireIfDue();
      }
    });
    session.once('goaway', () => this.transition(['ready'], 'draining'));
    // The peer closed its side (its agent exited or restarted) or stopped answering PINGs: no
    // stream on this connection can complete, so it ends with all of them (their app sockets are
    // reset by the proxy) and new streams go to a fresh connection.
    watchLiveness(session, {
      ...this.pool.liveness,
      onEnd: (reason) => {
        this.pool.metrics.sessionsEnded.inc({ direction: 'outbound', reason });
        this.log.debug({ tunnelId: this.id, reason }, 'tunnel peer gone; closing the connection');
        this.destroy(new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', `tunnel connection ${this.id} to ${via} ended: ${reason}`));
      },
    });
    session.once('close', () => {
      clearTimeout(timer);
      this.transition(['connecting', 'ready', 'draining'], 'closed');
    });
  }
}

/** One pooled connection as the admin view shows it. */
export interface TunnelStats {
  key: string;
  id: number;
  state: TunnelState;
  /** Streams open (or promised) now. */
  streams: number;
  /** Streams taken in the connection's life. */
  streamsTotal: number;
  peerIdentity: string | undefined;
  /** The client certificate the connection presents (serial, validity). */
  certificate?: PresentedCertificate;
  /** When it stops taking streams, ahead of the certificate's expiry. */
  retireAt?: string;
}

export class TunnelPool {
  readonly metrics: TunnelPoolMetrics;
  readonly maxStreamsPerConnection: number;
  readonly idleTimeoutMs: number;
  readonly connectTcp: (opts: TunnelDialOptions) => net.Socket;
  readonly liveness: TunnelPoolOptions['liveness'];
  readonly maxStreamsTotal: number;
  readonly retireBeforeExpiryMs: number | undefined;
  private readonly log: Logger;
  private readonly getCertificate: (identity: string) => Promise<TunnelCertificate>;
  private readonly connectTimeoutMs: number;
  private readonly replyTimeoutMs: number;
  private readonly streamWindowBytes: number;
  private readonly connectionWindowBytes: number;
  private readonly byKey = new Map<string, PooledConnection[]>();
  private closing = false;

  constructor(opts: TunnelPoolOptions) {
    this.log = opts.log.child({ component: 'tunnel-pool' });
    this.metrics = opts.metrics;
    this.connectTcp = opts.connectTcp;
    this.liveness = opts.liveness;
    this.maxStreamsTotal = opts.maxStreamsTotal ?? 10_000;
    this.retireBeforeExpiryMs = opts.retireBeforeExpiryMs;
    this.getCertificate = opts.getCertificate;
    this.maxStreamsPerConnection = opts.maxStreamsPerConnection ?? 100;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 5 * 60_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    // Longer than the destination's upstream connect timeout, so a slow app gets its 503 first.
    this.replyTimeoutMs = opts.replyTimeoutMs ?? 15_000;
    this.streamWindowBytes = opts.streamWindowBytes ?? STREAM_WINDOW_BYTES;
    this.connectionWindowBytes = opts.connectionWindowBytes ?? CONNECTION_WINDOW_BYTES;
  }

  static keyOf(req: Pick<TunnelOpenRequest, 'srcIdentity' | 'expectedIdentities' | 'tunnelAddress'>): string {
    return `${req.srcIdentity}|${[...req.expectedIdentities].sort().join(',')}|${formatAddress(req.tunnelAddress)}`;
  }

  /** Opens one CONNECT stream; resolves on 200, rejects with AMBIT_ERR_TUNNEL_* / UPSTREAM_CONNECT. */
  async open(req: TunnelOpenRequest): Promise<OpenTunnel> {
    const { stream, peerIdentity, reply } = await this.send(req);
    await reply;
    return { stream, peerIdentity };
  }

  /**
   * Sends one CONNECT stream and resolves as soon as it is written on a connection whose TLS
   * handshake verified the peer's identity, without waiting for the reply: a caller may write the
   * client's first bytes behind the request (they reach only the verified peer, which drops them
   * if it refuses). Rejects when no connection or stream could be had; the reply settles later.
   */
  async send(req: TunnelOpenRequest): Promise<SentTunnel> {
    if (this.closing) throw new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', 'tunnel pool is closing; no new tunnels');
    const key = TunnelPool.keyOf(req);
    let list = this.byKey.get(key);
    if (!list) this.byKey.set(key, (list = []));
    let conn = list.find((c) => c.acceptsStreams());
    if (!conn) {
      conn = new PooledConnection(key, this, this.log);
      list.push(conn);
      const fresh = conn;
      this.getCertificate(req.srcIdentity).then(
        (cert) => {
          if (fresh.state === 'connecting') {
            fresh.start(req, cert, {
              connectTimeoutMs: this.connectTimeoutMs,
              streamWindowBytes: this.streamWindowBytes,
              connectionWindowBytes: this.connectionWindowBytes,
            });
          }
        },
        (e: unknown) =>
          fresh.fail(new AmbitError('AMBIT_ERR_CERT_UNAVAILABLE', `no certificate for ${req.srcIdentity}: ${errorMessage(e)}`, { cause: e })),
      );
    }
    conn.reserve();
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      conn.release();
    };
    try {
      await conn.ready;
      return { ...this.request(conn, req, release), peerIdentity: conn.peerIdentity };
    } catch (e) {
      release();
      throw e;
    }
  }

  /** Writes the CONNECT request; throws when the session takes no stream. */
  private request(conn: PooledConnection, req: TunnelOpenRequest, release: () => void): { stream: http2.ClientHttp2Stream; reply: Promise<void> } {
    const session = conn.session!;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(req.headers, { endStream: false });
    } catch (e) {
      throw new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', `opening a stream on tunnel ${conn.id} failed: ${errorMessage(e)}`, { cause: e });
    }
    const reply = new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settle(new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', `no CONNECT reply from ${formatAddress(req.tunnelAddress)} within ${this.replyTimeoutMs} ms`));
        stream.close(nodeHttp2.constants.NGHTTP2_CANCEL);
        // The peer may be gone without a FIN (agent killed, node lost): probe before reuse.
        this.probe(conn);
      }, this.replyTimeoutMs);
      timer.unref();
      const settle = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      stream.once('close', () => {
        release();
        // Normally long settled (the reply came): build no error for nothing.
        if (!settled) settle(new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', `tunnel stream to ${formatAddress(req.target)} closed before a reply (code ${stream.rstCode})`));
      });
      stream.once('error', (e) => {
        if (!settled) settle(new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', `tunnel stream to ${formatAddress(req.target)} failed: ${errorMessage(e)}`, { cause: e }));
      });
      stream.once('response', (headers) => {
        const status = Number(headers[':status']);
        if (status === HBONE_STATUS.OK) settle();
        else {
          const reason = headers[REASON_HEADER];
          settle(tunnelStatusError(status, req.target, req.tunnelAddress, typeof reason === 'string' ? reason : undefined));
          stream.close();
        }
      });
    });
    // Callers that stop listening (their client went away first) leave no unhandled rejection.
    reply.catch(() => undefined);
    return { stream, reply };
  }

  /** PINGs a connection that let a CONNECT go unanswered; no PONG within 2 s → it is destroyed. */
  private probe(conn: PooledConnection): void {
    const session = conn.session;
    if (!session || session.destroyed || conn.state === 'closed') return;
    const dead = (): void => {
      this.log.warn({ tunnelId: conn.id }, 'tunnel connection unresponsive; closing it');
      conn.destroy(new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', `tunnel connection ${conn.id} did not answer a PING`));
    };
    const timer = setTimeout(dead, 2000);
    timer.unref();
    try {
      session.ping((err) => {
        clearTimeout(timer);
        if (err) dead();
      });
    } catch {
      clearTimeout(timer);
      dead();
    }
  }

  /** Called by a connection entering `closed`. */
  forget(conn: PooledConnection): void {
    const list = this.byKey.get(conn.key);
    if (!list) return;
    const i = list.indexOf(conn);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byKey.delete(conn.key);
  }

  /** Open connections, their streams and the certificate each presents, for /debug and tests. */
  stats(): TunnelStats[] {
    const out: TunnelStats[] = [];
    for (const [key, list] of this.byKey) {
      for (const c of list) {
        out.push({
          key,
          id: c.id,
          state: c.state,
          streams: c.reserved,
          streamsTotal: c.streamsTotal,
          peerIdentity: c.peerIdentity,
          ...(c.certificate ? { certificate: c.certificate } : {}),
          ...(c.retireAt !== undefined ? { retireAt: new Date(c.retireAt).toISOString() } : {}),
        });
      }
    }
    return out;
  }

  /** Stops new tunnels, lets open streams finish until the deadline, then destroys the rest. */
  async close(deadlineMs: number): Promise<void> {
    this.closing = true;
    const all = [...this.byKey.values()].flat();
    for (const c of all) c.drain();
    await drain(
      () => Promise.all(all.map((c) => new Promise<void>((resolve) => (c.session && !c.session.closed ? c.session.once('close', () => resolve()) : resolve())))).then(() => undefined),
      () => this.destroy(),
      deadlineMs,
    );
  }

  destroy(err?: Error): void {
    this.closing = true;
    for (const c of [...this.byKey.values()].flat()) c.destroy(err);
  }
}
