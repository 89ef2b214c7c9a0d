/**
 * Benchmark servers, run as a pod container:
 *   node dist/bench/servers.js --sink-port 9000 --echo-port 9001
 * sink: reads until the client half-closes, then answers the byte count as one line and closes
 *       (so the client's clock stops only once every byte reached the server).
 * echo: writes back every byte it reads (half-close aware); used for request/response, new
 *       connections and held connections.
 * Both listen on every address, so loopback (stunnel server side) and the pod IP both work.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

function portOf(value: string | undefined, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${flag} must be a port 1..65535 (got ${JSON.stringify(value)})`);
  return n;
}

/** Counts bytes until the peer half-closes, then replies `<count>\n` and ends. */
export function createSinkServer(): Server {
  return createServer({ allowHalfOpen: true, noDelay: true }, (s: Socket) => {
    let bytes = 0;
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.on('end', () => s.end(`${bytes}\n`));
    s.on('error', () => s.destroy());
  });
}

/** Echoes every byte back; ends its side when the peer ends. */
export function createEchoServer(): Server {
  return createServer({ allowHalfOpen: true, noDelay: true }, (s: Socket) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'sink-port': { type: 'string', default: '9000' }, 'echo-port': { type: 'string', default: '9001' } } });
  const sink = createSinkServer().listen(portOf(values['sink-port'], '--sink-port'));
  const echo = createEchoServer().listen(portOf(values['echo-port'], '--echo-port'));
  sink.maxConnections = 20_000;
  echo.maxConnections = 20_000;
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  sink.close();
  echo.close();
  process.exit(0);
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench servers: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
