/**
 * The plain Node pair: an HBONE hop written the straightforward way on the same Node build, run
 * like the stunnel pair (a client relay in the client pod, a server relay in the server pod): TLS
 * 1.3 with mutual authentication (RSA-2048 certificates from the test CA, as stunnel and the mesh
 * use), one shared HTTP/2 session carrying a CONNECT stream per connection with Ambit's window and
 * frame settings, and `pipe()` both ways; no capture, policy, metrics, logs or pooling logic, and
 * none of the agent's data-path tuning. Its figures next to stunnel's and Ambit's say what Node's
 * TLS and HTTP/2 give as they come, how far Ambit's own work (features, tuning) moves from there,
 * and so which targets the runtime itself stands in the way of (README, Benchmarks).
 *   node dist/bench/node-pair.js client DIR   (DIR/client.json: listen ports → server address)
 *   node dist/bench/node-pair.js server DIR   (DIR/server.json: listen port, loopback targets)
 * The program runs until SIGTERM (the bench kills its process group).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { CONNECTION_WINDOW_BYTES, MAX_FRAME_BYTES, STREAM_WINDOW_BYTES } from '../src/shared/hbone/tunnel.js';
import { cpuOfProcesses } from './mesh.js';
import { startRelayPair, type PairOptions, type RelayPair } from './relay-pair.js';

const CLIENT_SINK = 19100;
const CLIENT_ECHO = 19101;
const SERVER_PORT = 9543;

interface ClientConfig {
  /** Loopback port → target port on the server side's loopback. */
  listen: { port: number; target: number }[];
  serverIp: string;
  serverPort: number;
}

interface ServerConfig {
  port: number;
  /** Ports the server relay may connect to on its loopback (the sink and echo servers). */
  targets: number[];
}

const h2Settings = { initialWindowSize: STREAM_WINDOW_BYTES, maxFrameSize: MAX_FRAME_BYTES, enablePush: false };

function tlsFiles(dir: string, who: 'client' | 'server'): { key: Buffer; cert: Buffer; ca: Buffer } {
  return { key: readFileSync(join(dir, `${who}.key`)), cert: readFileSync(join(dir, `${who}.pem`)), ca: readFileSync(join(dir, 'ca.pem')) };
}

/** Joins an app socket and a tunnel stream; either side failing or closing tears down both. */
function splice(socket: net.Socket, stream: http2.Http2Stream): void {
  socket.setNoDelay(true);
  socket.pipe(stream);
  stream.pipe(socket);
  const teardown = (): void => {
    socket.destroy();
    if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
  };
  socket.on('error', teardown);
  stream.on('error', teardown);
  socket.on('close', () => {
    if (!stream.destroyed && !stream.writableEnded) teardown();
  });
  stream.on('close', () => {
    if (!socket.destroyed && !socket.writableEnded) socket.destroy();
  });
}

function runClient(dir: string): void {
  const cfg = JSON.parse(readFileSync(join(dir, 'client.json'), 'utf8')) as ClientConfig;
  const files = tlsFiles(dir, 'client');
  let session: http2.ClientHttp2Session | undefined;
  const sessionNow = (): http2.ClientHttp2Session => {
    if (session && !session.closed && !session.destroyed) return session;
    const s = http2.connect(`https://${cfg.serverIp}:${cfg.serverPort}`, {
      createConnection: () => {
        const socket = tls.connect({ host: cfg.serverIp, port: cfg.serverPort, ...files, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
        socket.setNoDelay(true);
        return socket;
      },
      settings: h2Settings,
      maxSessionMemory: 256,
    });
    s.once('connect', () => s.setLocalWindowSize(CONNECTION_WINDOW_BYTES));
    s.on('error', () => undefined);
    s.once('close', () => {
      if (session === s) session = undefined;
    });
    session = s;
    return s;
  };
  for (const l of cfg.listen) {
    net
      .createServer({ allowHalfOpen: true }, (socket) => {
        let stream: http2.ClientHttp2Stream;
        try {
          stream = sessionNow().request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${l.target}` });
        } catch {
          socket.destroy();
          return;
        }
        splice(socket, stream);
      })
      .listen(l.port, '127.0.0.1');
  }
}

function runServer(dir: string): void {
  const cfg = JSON.parse(readFileSync(join(dir, 'server.json'), 'utf8')) as ServerConfig;
  const server = http2.createSecureServer({ ...tlsFiles(dir, 'server'), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'], settings: { ...h2Settings, maxConcurrentStreams: 1000 }, maxSessionMemory: 256 });
  server.on('secureConnection', (socket: tls.TLSSocket) => socket.setNoDelay(true));
  server.on('session', (s) => {
    s.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    s.on('error', () => undefined);
  });
  server.on('stream', (stream, headers) => {
    const port = Number(/:(\d+)$/.exec(String(headers[':authority'] ?? ''))?.[1]);
    if (headers[':method'] !== 'CONNECT' || !cfg.targets.includes(port)) {
      stream.respond({ ':status': 400 }, { endStream: true });
      return;
    }
    const upstream = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => {
      stream.respond({ ':status': 200 });
      splice(upstream, stream);
    });
    upstream.once('error', () => {
      if (!stream.headersSent) stream.respond({ ':status': 503 }, { endStream: true });
    });
  });
  server.listen(cfg.port, '0.0.0.0');
}

/** Starts the server relay then the client relay in their pods (relay-pair.ts). */
export function startNodePair(o: PairOptions): Promise<RelayPair> {
  const client: ClientConfig = { listen: [{ port: CLIENT_SINK, target: o.sinkPort }, { port: CLIENT_ECHO, target: o.echoPort }], serverIp: o.serverIp, serverPort: SERVER_PORT };
  const server: ServerConfig = { port: SERVER_PORT, targets: [o.sinkPort, o.echoPort] };
  const program = fileURLToPath(import.meta.url);
  return startRelayPair(o, {
    name: 'Node relay pair',
    version: `Node ${process.version} TLS 1.3 + HTTP/2 CONNECT, pipe()`,
    writeConfigs: (dir) => {
      writeFileSync(join(dir, 'client.json'), JSON.stringify(client));
      writeFileSync(join(dir, 'server.json'), JSON.stringify(server));
    },
    argv: (who, dir) => [process.execPath, program, who, dir],
    serverPorts: [SERVER_PORT],
    clientPorts: { sink: CLIENT_SINK, echo: CLIENT_ECHO },
    cpuSeconds: pairCpu,
  });
}

/** CPU seconds of the two relay processes started with `dir` (found by their command line). */
function pairCpu(dir: string): number | undefined {
  return cpuOfProcesses((argv) => argv[0] === process.execPath && argv[3] === dir, 2);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [side, dir] = process.argv.slice(2);
  if ((side !== 'client' && side !== 'server') || !dir) {
    process.stderr.write('usage: node-pair.js client|server DIR\n');
    process.exit(2);
  }
  if (side === 'client') runClient(dir);
  else runServer(dir);
  process.once('SIGTERM', () => process.exit(0));
}
