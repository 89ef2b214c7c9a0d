/**
 * PodSockets inside a pod's network namespace: sockets are made under setns() by native/netns.ts
 * and handed to Node as fds; dials carry SO_MARK 0x539 so capture lets them through. A dial with
 * `localAddress` (the original client) binds a transparent socket to it (and to `localPort`, else
 * a port chosen at connect), which inbound capture leaves alone by itself
 * (Capture.preservesSource), so the app sees the client's address as ztunnel does; this needs the
 * pod's reply routing, else the dial leaves from the pod's own address.
 */
import * as net from 'node:net';
import { BYPASS_MARK, listenInNetns, openNetns, socketInNetns, transparentSocketInNetns, closeFd, type NetnsHandle } from '../../../native/netns.js';
import { errorMessage } from '../../shared/errors.js';
import type { Capture } from '../capture/capture.js';
import type { PodConnectOptions, PodListenOptions, PodSockets } from './sockets.js';

/**
 * What source-preserving dials need from capture: the agent's Capture on its main thread; on a
 * worker thread what the main thread told it (CapturedPod).
 */
export interface SourcePreservation {
  preservesSource(uid: string): boolean;
}

export interface NetnsPodSocketsOptions {
  /** The agent's capture and the pod's uid in it, for source-preserving dials. */
  capture?: Capture | SourcePreservation;
  uid?: string;
  mark?: number;
  /** Listeners join the port's SO_REUSEPORT group (one listener per agent worker thread). */
  reusePort?: boolean;
}

function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

export class NetnsPodSockets implements PodSockets {
  private readonly mark: number;
  /** The pod's netns, opened at the first socket and kept until release() (one open+close less per dial). */
  private handle: NetnsHandle | undefined;
  private released = false;

  constructor(
    readonly netnsPath: string,
    private readonly opts: NetnsPodSocketsOptions = {},
  ) {
    this.mark = opts.mark ?? BYPASS_MARK;
  }

  /** The kept netns handle; after release() the path (opened per call). */
  private netns(): NetnsHandle | string {
    if (this.released) return this.netnsPath;
    return (this.handle ??= openNetns(this.netnsPath));
  }

  release(): void {
    this.released = true;
    if (this.handle) closeFd(this.handle.fd);
    this.handle = undefined;
  }

  get preservesSource(): boolean {
    return this.opts.capture !== undefined && this.opts.uid !== undefined && this.opts.capture.preservesSource(this.opts.uid);
  }

  async listen(port: number, address = '0.0.0.0', options: PodListenOptions = {}): Promise<net.Server> {
    const listenOpts = { port, backlog: 1024, ...(this.opts.reusePort ? { reusePort: true } : {}), ...(options.sendBufferBytes === undefined ? {} : { sendBufferBytes: options.sendBufferBytes }) };
    let fd: number;
    try {
      fd = listenInNetns(this.netns(), { address, ...listenOpts });
    } catch (e) {
      // "::" in a pod without IPv6: IPv4 only (capture then refuses the pod's IPv6, never lets it through).
      if (address !== '::' || !/EAFNOSUPPORT|EADDRNOTAVAIL/.test(errorMessage(e))) throw e;
      fd = listenInNetns(this.netns(), { address: '0.0.0.0', ...listenOpts });
    }
    // Nagle off everywhere on the data path: HTTP/2 writes HEADERS and DATA separately, and Nagle +
    // delayed ACK would hold the second write for ~40 ms.
    const server = net.createServer({ allowHalfOpen: true, noDelay: true });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ fd }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return server;
  }

  connect(opts: PodConnectOptions): net.Socket {
    const destination = unmapped(opts.address);
    const family = net.isIPv6(destination) ? 'IPv6' : 'IPv4';
    const source = opts.localAddress === undefined ? undefined : unmapped(opts.localAddress);
    if (source !== undefined && this.preservesSource && net.isIPv6(source) === (family === 'IPv6')) {
      const t = transparentSocketInNetns(this.netns(), { source: { address: source, port: opts.localPort ?? 0 }, mark: this.mark });
      const socket = new net.Socket({ fd: t.fd, allowHalfOpen: true });
      socket.setNoDelay(true);
      return socket.connect({ port: opts.port, host: destination });
    }
    const fd = socketInNetns(this.netns(), { family, mark: this.mark, ...(opts.sendBufferBytes === undefined ? {} : { sendBufferBytes: opts.sendBufferBytes }) });
    const socket = new net.Socket({ fd, allowHalfOpen: true });
    socket.setNoDelay(true);
    return socket.connect({ port: opts.port, host: destination });
  }
}
