/** The seam through which proxies open sockets on a pod's behalf: listeners and dials inside the pod's netns. */
import type * as net from 'node:net';

/** Socket mark on every socket the agent opens for a pod, so capture (BPF or nft) skips it. */
export const AMBIT_SOCKET_MARK = 0x539;

export interface Address {
  address: string;
  port: number;
}

export interface PodConnectOptions extends Address {
  /**
   * Source address to bind before connecting (original-source preservation on inbound). Needs
   * IP_TRANSPARENT/freebind when the address is not local to the pod; implementations that cannot
   * honour it ignore it and report that through `preservesSource`.
   */
  localAddress?: string;
  /** Kernel send buffer for this socket (HBONE connections: TUNNEL_SEND_BUFFER_BYTES). */
  sendBufferBytes?: number;
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
}

/** `ip:port`, with brackets for IPv6 (HTTP authority form). */
export function formatAddress(a: Address): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Parses `ip:port` or `[v6]:port`; undefined when malformed. */
export function parseAddress(text: string): Address | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([0-9.]+):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { address: m[1]!, port };
}

/** Strips the IPv4-mapped prefix Node reports on dual-stack sockets (`::ffff:10.0.0.1`). */
export function normalizeIp(ip: string | undefined): string {
  if (!ip) return '';
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/** Dials through `sockets` and resolves once connected; rejects on error or after `timeoutMs`. */
export function connectVia(sockets: PodSockets, opts: PodConnectOptions, timeoutMs = 10_000): Promise<net.Socket> {
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
