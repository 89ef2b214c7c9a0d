/**
 * A TCP relay for fault tests: sits between a client and a server and can make the path fail the
 * ways networks and processes do: freeze (the peer vanished, no FIN), FIN toward either side, or
 * reset both.
 */
import * as net from 'node:net';
import { once } from 'node:events';

export interface Relay {
  port: number;
  /** Client-side and server-side sockets of every relayed connection. */
  pairs: Array<{ client: net.Socket; server: net.Socket }>;
  /** Stops forwarding in both directions without closing anything (a peer that vanished). */
  freeze(): void;
  /** Sends FIN to the client and drops the server side (as a process exiting with nothing unread). */
  finClient(): void;
  /** Sends FIN to the server and drops the client side. */
  finServer(): void;
  close(): Promise<void>;
}

export async function startRelay(listenHost: string, target: () => { host: string; port: number; localAddress?: string }): Promise<Relay> {
  const pairs: Relay['pairs'] = [];
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const t = target();
    const upstream = net.connect({ host: t.host, port: t.port, allowHalfOpen: true, ...(t.localAddress ? { localAddress: t.localAddress } : {}) });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
    pairs.push({ client, server: upstream });
  });
  server.listen(0, listenHost);
  await once(server, 'listening');
  const halt = (): void => {
    for (const p of pairs) {
      p.client.unpipe();
      p.server.unpipe();
      p.client.pause();
      p.server.pause();
    }
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    pairs,
    freeze: halt,
    finClient() {
      halt();
      for (const p of pairs) {
        p.client.end();
        p.server.destroy();
      }
    },
    finServer() {
      halt();
      for (const p of pairs) {
        p.server.end();
        p.client.destroy();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of pairs) {
          p.client.destroy();
          p.server.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
