/**
 * The inbound proxy's dial to a pod's app that keeps the original client address as source,
 * as ztunnel does: a socket in the pod's netns with IP_TRANSPARENT bound to the client IP,
 * SO_MARK 0x539, its port chosen by the kernel at connect and exempted from inbound capture by
 * the kernel itself while it connects (BPF: sockops.bpf.c), its replies routed back to it by the
 * pod's reply routing (reply-route.ts).
 *
 * Falls back to a plain dial from the pod's own address when the pod has no reply routing, there
 * is no capture, or the source is not of the destination's family.
 */
import * as net from 'node:net';
import { AmbitError } from '../../shared/errors.js';
import { BYPASS_MARK, socketInNetns, transparentSocketInNetns } from '../../../native/netns.js';
import type { Capture } from './capture.js';

export interface DialTransparentOptions {
  /** The agent's capture; undefined dials from the pod's address. */
  capture: Capture | undefined;
  /** The destination pod's UID (as enrolled). */
  uid: string;
  /** The destination pod's netns file. */
  netnsPath: string;
  /** The original client: its IP (v4-mapped IPv6 is accepted); port 0/absent lets the kernel pick. */
  source: { address: string; port?: number };
  /** The app: the pod's own IP (not loopback) and port. */
  destination: { address: string; port: number };
  /** Default BYPASS_MARK (0x539); reply routing only recognises that mark. */
  mark?: number;
  /** Default 10 s; the socket is destroyed on timeout. */
  timeoutMs?: number;
  /** Default true (the proxy half-closes explicitly). */
  allowHalfOpen?: boolean;
}

function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

/** Resolves with a connected socket once 'connect' fired; rejects (socket destroyed) on error or timeout. */
export async function dialTransparent(opts: DialTransparentOptions): Promise<net.Socket> {
  const mark = opts.mark ?? BYPASS_MARK;
  const source = unmapped(opts.source.address);
  const destination = unmapped(opts.destination.address);
  const family = net.isIPv6(destination) ? 'IPv6' : 'IPv4';
  const transparent =
    opts.capture !== undefined &&
    opts.capture.preservesSource(opts.uid) &&
    net.isIP(source) !== 0 &&
    net.isIPv6(source) === (family === 'IPv6');
  const fd = transparent
    ? transparentSocketInNetns(opts.netnsPath, { source: { address: source, port: opts.source.port ?? 0 }, mark }).fd
    : socketInNetns(opts.netnsPath, { family, mark });
  const socket = new net.Socket({ fd, allowHalfOpen: opts.allowHalfOpen ?? true });
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise<net.Socket>((resolve, reject) => {
    const settle = (err?: Error): void => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('error', onError);
      if (err === undefined) return resolve(socket);
      socket.destroy();
      reject(err);
    };
    const onConnect = (): void => settle();
    const onError = (e: Error): void =>
      settle(
        new AmbitError('AMBIT_ERR_UPSTREAM_CONNECT', `connecting to ${destination}:${opts.destination.port} in ${opts.netnsPath} failed: ${e.message}`, {
          cause: e,
          details: { source: transparent ? source : undefined, transparent },
        }),
      );
    const timer = setTimeout(
      () =>
        settle(
          new AmbitError(
            'AMBIT_ERR_UPSTREAM_CONNECT',
            `connecting to ${destination}:${opts.destination.port} in ${opts.netnsPath} timed out after ${timeoutMs} ms; is the app listening?`,
            { details: { transparent } },
          ),
        ),
      timeoutMs,
    );
    socket.once('connect', onConnect);
    socket.once('error', onError);
    socket.connect(opts.destination.port, destination);
  });
}
