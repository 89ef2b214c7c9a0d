/**
 * PodSockets over 127.0.0.0/8 for tests: every "pod" is one loopback address; listeners bind an
 * ephemeral port and the net remembers (ip, wanted port) → real port so dials to pod:15008 arrive.
 */
import * as net from 'node:net';
import type { PodSockets, PodConnectOptions } from '../../src/agent/proxy/sockets.js';

export class LoopbackNet {
  private readonly ports = new Map<string, number>();
  private readonly servers = new Set<net.Server>();

  /** The PodSockets of the pod whose address is `podIp` (a 127.x.y.z address). */
  pod(podIp: string): PodSockets {
    return {
      preservesSource: true,
      listen: (port, address) => this.listen(podIp, port, address),
      connect: (opts) => this.connect(podIp, opts),
    };
  }

  /** The real port behind (ip, wanted port), or the wanted port when nothing was remapped. */
  realPort(ip: string, port: number): number {
    return this.ports.get(`${ip}:${port}`) ?? port;
  }

  private async listen(podIp: string, port: number, address?: string): Promise<net.Server> {
    const ip = address && address !== '0.0.0.0' && address !== '::' ? address : podIp;
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: ip, port: 0, backlog: 2048 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const real = (server.address() as net.AddressInfo).port;
    this.ports.set(`${ip}:${port}`, real);
    this.servers.add(server);
    server.once('close', () => {
      this.servers.delete(server);
      if (this.ports.get(`${ip}:${port}`) === real) this.ports.delete(`${ip}:${port}`);
    });
    return server;
  }

  private connect(podIp: string, opts: PodConnectOptions): net.Socket {
    return net.connect({
      host: opts.address,
      port: this.realPort(opts.address, opts.port),
      localAddress: opts.localAddress ?? podIp,
      allowHalfOpen: true,
    });
  }

  /** Closes every listener still open (tests call this from t.after). */
  closeAll(): void {
    for (const s of this.servers) s.close();
  }
}
