/**
 * PodSockets inside a pod's network namespace: sockets are made under setns() by native/netns.ts
 * and handed to Node as fds; dials carry SO_MARK 0x539 so capture lets them through.
 * Gap: original-source preservation (bind to the client's IP with IP_TRANSPARENT before connect)
 * needs a native bind-before-connect helper; until then upstream dials use the pod's own address.
 */
import * as net from 'node:net';
import { BYPASS_MARK, listenInNetns, socketInNetns, closeFd } from '../../../native/netns.js';
import type { PodConnectOptions, PodSockets } from './sockets.js';

export class NetnsPodSockets implements PodSockets {
  readonly preservesSource = false;

  constructor(
    readonly netnsPath: string,
    private readonly mark: number = BYPASS_MARK,
  ) {}

  async listen(port: number, address = '0.0.0.0'): Promise<net.Server> {
    const fd = listenInNetns(this.netnsPath, { address, port, backlog: 1024 });
    const server = net.createServer({ allowHalfOpen: true });
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
    const family = net.isIPv6(opts.address) ? 'IPv6' : 'IPv4';
    const fd = socketInNetns(this.netnsPath, { family, mark: this.mark });
    const socket = new net.Socket({ fd, allowHalfOpen: true });
    return socket.connect({ port: opts.port, host: opts.address });
  }
}
