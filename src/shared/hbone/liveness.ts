/**
 * Liveness of one HBONE session, on either end: a peer that closed its side of the connection, or
 * that stopped answering PINGs, is dead, and its session is destroyed with every stream on it (the
 * proxies then reset each stream's app socket, copy.ts); a server session without streams for a
 * while is closed gracefully.
 * Invariants:
 * - the TLS socket's 'end' (the peer's FIN or close_notify) ends the session at once: HTTP/2 has
 *   no half-closed connection, so no stream on it can ever be completed by the peer;
 * - a PING is sent only after a whole interval in which nothing was read, so a busy session costs
 *   nothing; a PING unanswered for `keepaliveTimeoutMs` ends the session;
 * - `onEnd` runs at most once per session, with a bounded reason;
 * - a session found destroyed but not closed gets its TCP socket (`socket`) closed within one
 *   interval, whoever destroyed it.
 */
import type * as http2 from 'node:http2';
import type * as net from 'node:net';

/** Every 10 s a session that read nothing is PINGed (HTTP/2 keepalive, as gRPC and ztunnel do). */
export const HBONE_KEEPALIVE_INTERVAL_MS = 10_000;
/** A PING unanswered this long ends the session. */
export const HBONE_KEEPALIVE_TIMEOUT_MS = 10_000;
/** A server session with no stream for this long gets GOAWAY (longer than the pool's 5-minute client idle timeout, so clients close first). */
export const HBONE_SERVER_IDLE_TIMEOUT_MS = 10 * 60_000;

export type SessionEndReason = 'peer_closed' | 'keepalive_timeout' | 'idle';

export interface LivenessOptions {
  keepaliveIntervalMs?: number;
  keepaliveTimeoutMs?: number;
  /** Server sessions: close (GOAWAY) after this long without a stream; absent: never. */
  idleTimeoutMs?: number;
  /** Called once when liveness ends the session. */
  onEnd?: (reason: SessionEndReason) => void;
  /**
   * The TCP socket under the session, destroyed with it: node:http2 leaves a session's socket
   * open when the session is destroyed while a write of its own is pending (seen with clients
   * that vanish right after the handshake: the session never emits 'close' and the fd stays).
   */
  socket?: net.Socket;
}

/**
 * The TCP sockets a server accepted, found again by the peer address of the session on top of
 * them (a TLS server wraps the accepted socket; node:http2 hides it behind a proxy).
 */
export class AcceptedSockets {
  private readonly byPeer = new Map<string, net.Socket>();

  /** Call for every accepted socket, before handing it to the TLS server. */
  track(raw: net.Socket): void {
    const key = `${raw.remoteAddress}|${raw.remotePort}`;
    this.byPeer.set(key, raw);
    raw.once('close', () => {
      if (this.byPeer.get(key) === raw) this.byPeer.delete(key);
    });
  }

  /** The accepted socket under `session`, if it is still open. */
  of(session: http2.Http2Session): net.Socket | undefined {
    return this.byPeer.get(`${session.socket.remoteAddress}|${session.socket.remotePort}`);
  }

  get size(): number {
    return this.byPeer.size;
  }
}

/** TLS handshakes on 15008 must finish within this (Node's default is 2 minutes). */
export const HBONE_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * The longest a dead peer goes unnoticed when it vanished without a FIN: one interval for the
 * last read to age, one more to see nothing new, then the PING timeout.
 */
export function deadPeerBoundMs(o: Pick<LivenessOptions, 'keepaliveIntervalMs' | 'keepaliveTimeoutMs'> = {}): number {
  return 2 * (o.keepaliveIntervalMs ?? HBONE_KEEPALIVE_INTERVAL_MS) + (o.keepaliveTimeoutMs ?? HBONE_KEEPALIVE_TIMEOUT_MS);
}

/** Watches `session` until it closes (see the module invariants). */
export function watchLiveness(session: http2.Http2Session, opts: LivenessOptions = {}): void {
  const intervalMs = opts.keepaliveIntervalMs ?? HBONE_KEEPALIVE_INTERVAL_MS;
  const timeoutMs = opts.keepaliveTimeoutMs ?? HBONE_KEEPALIVE_TIMEOUT_MS;
  const socket = session.socket;
  // The session's socket proxy throws once the session let go of its socket.
  const bytesRead = (): number => {
    try {
      return session.destroyed ? -1 : socket.bytesRead;
    } catch {
      return -1;
    }
  };
  let ended = false;
  const end = (reason: SessionEndReason, graceful = false): void => {
    if (ended || session.destroyed) return;
    ended = true;
    opts.onEnd?.(reason);
    if (graceful) session.close();
    else {
      session.destroy();
      opts.socket?.destroy();
    }
  };

  let lastRead = bytesRead();
  let pingTimer: NodeJS.Timeout | undefined;
  const tick = setInterval(() => {
    if (session.destroyed) {
      // Destroyed (by liveness or by node:http2 on an error) yet never closed: its socket is stuck
      // open (see `socket`). Close it, and stop watching.
      stop();
      opts.socket?.destroy();
      return;
    }
    if (pingTimer) return;
    const read = bytesRead();
    if (read !== lastRead) {
      lastRead = read;
      return;
    }
    // setImmediate: after an event-loop stall, timers run before pending reads, so the PONG that
    // already arrived is read first and the verdict waits for it.
    pingTimer = setTimeout(() => setImmediate(() => pingTimer !== undefined && end('keepalive_timeout')), timeoutMs);
    pingTimer.unref();
    try {
      session.ping((err) => {
        clearTimeout(pingTimer);
        pingTimer = undefined;
        lastRead = bytesRead();
        if (err && !session.destroyed) end('keepalive_timeout');
      });
    } catch {
      clearTimeout(pingTimer);
      end('keepalive_timeout');
    }
  }, intervalMs);
  tick.unref();

  let idleTimer: NodeJS.Timeout | undefined;
  let streams = 0;
  const armIdle = (): void => {
    if (opts.idleTimeoutMs === undefined) return;
    idleTimer = setTimeout(() => end('idle', true), opts.idleTimeoutMs);
    idleTimer.unref();
  };
  if (opts.idleTimeoutMs !== undefined) {
    session.on('stream', (stream: http2.Http2Stream) => {
      streams++;
      clearTimeout(idleTimer);
      stream.once('close', () => {
        if (--streams === 0 && !session.closed) armIdle();
      });
    });
    armIdle();
  }

  function stop(): void {
    clearInterval(tick);
    clearTimeout(pingTimer);
    clearTimeout(idleTimer);
  }
  socket.once('end', () => end('peer_closed'));
  session.once('close', stop);
}
