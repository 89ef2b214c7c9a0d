/** TCP servers for data-path tests: echo (with half-close), sink-and-report, and send-then-close. */
import * as net from 'node:net';

export interface EchoServer {
  server: net.Server;
  port: number;
  /** Remote addresses of accepted connections, in accept order. */
  peers: string[];
  /** Live server-side sockets. */
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

/**
 * Echoes every byte back; when the client half-closes, finishes sending and half-closes too
 * (allowHalfOpen), so tests can observe FIN in both directions.
 */
export async function startEchoServer(host = '127.0.0.1', port = 0): Promise<EchoServer> {
  const peers: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    peers.push(s.remoteAddress ?? '');
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.once('close', () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 2048 }, () => resolve());
  });
  return {
    server,
    port: (server.address() as net.AddressInfo).port,
    peers,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Connects, writes `payload`, half-closes, and resolves with everything read until the peer's FIN. */
export function roundTrip(opts: net.NetConnectOpts, payload: Buffer, timeoutMs = 20_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ ...opts, allowHalfOpen: true } as net.NetConnectOpts);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`round trip to ${JSON.stringify(opts)} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.once('end', () => {
      clearTimeout(timer);
      s.end();
      resolve(Buffer.concat(chunks));
    });
    s.once('connect', () => s.end(payload));
  });
}
