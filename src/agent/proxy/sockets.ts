/** The seam through which proxies open sockets on a pod's behalf: listeners and dials inside the pod's netns. */
import type * as net from 'node:net';
import { formatAddress } from '../../shared/address.js';
import { AmbitError } from '../../shared/errors.js';
import type { TunnelDialOptions } from '../../shared/hbone/pool.js';
import type { Logger } from '../../shared/log.js';

/** Socket mark on every socket the agent opens for a pod, so capture (BPF or nft) skips it. */
export const AMBIT_SOCKET_MARK = 0x539;

export interface PodConnectOptions extends TunnelDialOptions {
  /**
   * Source address to bind before connecting (original-source preservation on inbound). Needs
   * IP_TRANSPARENT/freebind when the address is not local to the pod; implementations that cannot
   * honour it ignore it and report that through `preservesSource`.
   */
  localAddress?: string;
  /**
   * With `localAddress`: the port to bind as well (the client's own). connectVia dials again with a
   * port the kernel picks when this one is taken (EADDRINUSE, EADDRNOTAVAIL).
   */
  localPort?: number;
}

export interface PodListenOptions {
  /** Kernel send buffer of every accepted socket (inherited from the listener). */
  sendBufferBytes?: number;
}

/**
 * Sockets as seen from one pod's network namespace. Every socket is created with
 * allowHalfOpen: true and (in the netns implementation) SO_MARK 0x539.
 */
export interface PodSockets {
  /** Listens on `address` (default: all addresses) and `port` inside the pod; resolves once listening. */
  listen(port: number, address?: string, options?: PodListenOptions): Promise<net.Server>;
  /** A socket connecting from the pod's side; emits 'connect' or 'error' like net.connect. */
  connect(opts: PodConnectOptions): net.Socket;
  /** True when `connect({ localAddress })` really binds to a non-local source address. */
  readonly preservesSource: boolean;
  /** Frees what is held for the pod (its netns handle) at unenrolment; later calls still work, slower. */
  release?(): void;
}

/** TCP keepalive on accepted tunnel sockets: the kernel notices a vanished peer even where nothing is sent. */
export const TCP_KEEPALIVE_MS = 60_000;

/**
 * A listener's error handler: an accept that failed (EMFILE when the process is out of file
 * descriptors) is logged and the listener keeps serving; without a handler Node throws it and the
 * whole agent dies.
 */
export function logAcceptError(log: Logger, e: Error): void {
  log.warn({ err: { message: e.message, code: (e as NodeJS.ErrnoException).code } }, 'accept failed');
}

/**
 * Dials through `sockets` and resolves once connected; rejects on error or after `timeoutMs`. A
 * dial from `localPort` that finds the port or the 4-tuple taken is made once more without it.
 */
export async function connectVia(sockets: PodSockets, opts: PodConnectOptions, timeoutMs = 10_000): Promise<net.Socket> {
  if (opts.localPort === undefined) return connectOnce(sockets, opts, timeoutMs);
  try {
    return await connectOnce(sockets, opts, timeoutMs);
  } catch (e) {
    if (!portTaken(e)) throw e;
    const { localPort: _taken, ...rest } = opts;
    return connectOnce(sockets, rest, timeoutMs);
  }
}

/** EADDRINUSE (bind: a listener holds the port) or EADDRNOTAVAIL (connect: the 4-tuple exists, TIME_WAIT included). */
function portTaken(e: unknown): boolean {
  const errno = e instanceof AmbitError ? e.details?.['errno'] : (e as NodeJS.ErrnoException | undefined)?.code;
  return errno === 'EADDRINUSE' || errno === 'EADDRNOTAVAIL';
}

function connectOnce(sockets: PodSockets, opts: PodConnectOptions, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let s: net.Socket;
    try {
      s = sockets.connect(opts);
    } catch (e) {
      reject(e as Error);
      return;
    }
    const timer = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`connect to ${formatAddress(opts)} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    timer.unref();
    const onError = (e: Error): void => {
      clearTimeout(timer);
      s.destroy();
      reject(e);
    };
    s.once('error', onError);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
  });
}
