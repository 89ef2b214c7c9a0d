/** Small socket helpers of the ingress tests: backends on loopback addresses, and one TCP exchange through a gateway port. */
import type { TestContext } from 'node:test';
import * as http from 'node:http';
import * as net from 'node:net';

/** Listens on an ephemeral port of `host` until the test ends; returns the port. */
export async function listening(t: TestContext, server: net.Server, host: string): Promise<number> {
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/** What a TCP connection from `from` gets back after sending `echo` (the backend greets first, then echoes); `reset` when refused. */
export function tcpExchange(port: number, echo: string, from = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      data += d;
      if (data.endsWith(echo)) {
        s.destroy();
        resolve(data);
      }
    });
    s.once('connect', () => s.write(echo));
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve('reset') : reject(e)));
    s.once('close', () => resolve('reset'));
    s.setTimeout(10_000, () => s.destroy(new Error('tcp exchange timed out')));
  });
}

/** A TCP backend on `host` that greets `<greeting>\n`, then echoes; its connections are closed when the test ends. */
export async function startGreetingEcho(t: TestContext, host: string, greeting = 'echo'): Promise<number> {
  const sockets = new Set<net.Socket>();
  t.after(() => sockets.forEach((s) => s.destroy()));
  return listening(
    t,
    net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => s.destroy());
      s.write(`${greeting}\n`);
      s.pipe(s);
    }),
    host,
  );
}

/** An HTTP backend on `host` answering `web`; `hits()` counts the requests it served. */
export async function startCountingWeb(t: TestContext, host: string): Promise<{ port: number; hits: () => number }> {
  let n = 0;
  const port = await listening(
    t,
    http.createServer((req, res) => {
      n++;
      req.resume();
      res.end('web');
    }),
    host,
  );
  return { port, hits: () => n };
}
