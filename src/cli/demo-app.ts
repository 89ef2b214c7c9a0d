/**
 * Tiny servers the demo and the end-to-end tests run as pod containers:
 *   http-echo  --port P --text T      answers every request with T, its pod name and the client address and port;
 *              [--fail-every N] [--fail-status S]  every Nth request answers S (default 500) instead;
 *              [--delay-ms D]         waits D ms before answering; GET /count tells how many requests
 *                                     were served and how many failed (not counting /count itself)
 *   http-front --port P --backend URL calls URL for every request and wraps the answer
 *   tcp-echo   --port P               echoes bytes back (half-close aware)
 *   grpc-echo  --port P --text T [--delay-ms D]  gRPC ambit.demo.Echo/Say (grpc-echo.ts)
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { AmbitError } from '../shared/errors.js';
import type { Io } from './io.js';

const USAGE =
  'usage: ambit demo-app <http-echo|http-front|tcp-echo|grpc-echo|ext-authz> --port P [--text T] [--backend URL] [--fail-every N] [--fail-status S] [--delay-ms D]\n';

export interface HttpEchoOptions {
  text: string;
  pod: string;
  /** Every failEvery-th request (1-based) fails; undefined or 0: none does. */
  failEvery?: number;
  /** Status of a failed request. */
  failStatus: number;
  /** Wait before every answer. */
  delayMs: number;
}

/** Whether the n-th request (1-based) is one of the failing ones. */
export function failsRequest(n: number, failEvery: number | undefined): boolean {
  return failEvery !== undefined && failEvery > 0 && n % failEvery === 0;
}

/** An integer flag within [min, max], or the default when absent; a clear usage error otherwise. */
export function intFlag(name: string, value: string | undefined, min: number, max: number, dflt?: number): number | undefined {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `--${name} must be an integer ${min}..${max} (got ${JSON.stringify(value)})`);
  }
  return n;
}

/** The http-echo server (not yet listening). */
export function createHttpEcho(o: HttpEchoOptions): Server {
  let served = 0;
  let failed = 0;
  return createServer((req, res) => {
    req.resume();
    if (req.method === 'GET' && req.url === '/count') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ requests: served, failed, text: o.text, pod: o.pod }) + '\n');
      return;
    }
    const n = ++served;
    const fail = failsRequest(n, o.failEvery);
    if (fail) failed++;
    const answer = (): void => {
      if (res.destroyed) return;
      const status = fail ? o.failStatus : 200;
      const body = JSON.stringify({ text: o.text, pod: o.pod, client: req.socket.remoteAddress, clientPort: req.socket.remotePort, path: req.url, ...(fail ? { error: 'injected failure', request: n } : {}) }) + '\n';
      res.writeHead(status, { 'content-type': 'application/json', 'x-served-by': o.pod });
      res.end(body);
    };
    if (o.delayMs > 0) {
      const timer = setTimeout(answer, o.delayMs);
      res.once('close', () => clearTimeout(timer));
    } else answer();
  });
}

/**
 * An external authorizer for CUSTOM AuthorizationPolicies, as Istio's ext-authz sample behaves over
 * HTTP: a request with `x-ext-authz: allow` is allowed (200, `x-ext-authz-check-result: allowed`),
 * any other is denied (403, `x-ext-authz-check-result: denied`, a body saying why).
 */
export function createExtAuthzDemo(pod: string): Server {
  return createServer((req, res) => {
    req.resume();
    const allowed = req.headers['x-ext-authz'] === 'allow';
    res.writeHead(allowed ? 200 : 403, { 'x-ext-authz-check-result': allowed ? 'allowed' : 'denied', 'x-ext-authz-pod': pod, 'content-type': 'text/plain' });
    res.end(allowed ? '' : 'denied by ext_authz for not found header `x-ext-authz: allow` in the request');
  });
}

export async function runDemoApp(argv: string[], io: Io): Promise<number> {
  const [kind, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      port: { type: 'string', default: '8080' },
      text: { type: 'string', default: 'hello' },
      backend: { type: 'string' },
      'fail-every': { type: 'string' },
      'fail-status': { type: 'string' },
      'delay-ms': { type: 'string' },
    },
  });
  const port = intFlag('port', values.port, 1, 65535)!;
  const failEvery = intFlag('fail-every', values['fail-every'], 0, 1_000_000);
  const failStatus = intFlag('fail-status', values['fail-status'], 100, 599, 500)!;
  const delayMs = intFlag('delay-ms', values['delay-ms'], 0, 600_000, 0)!;
  const pod = process.env.POD_NAME ?? 'unknown';
  if (kind !== 'http-echo' && (failEvery !== undefined || values['fail-status'] !== undefined)) {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `--fail-every and --fail-status are http-echo options (got them for ${JSON.stringify(kind)})`);
  }
  if (kind !== 'http-echo' && kind !== 'grpc-echo' && delayMs > 0) {
    throw new AmbitError('AMBIT_ERR_CLI_USAGE', `--delay-ms is an http-echo and grpc-echo option (got it for ${JSON.stringify(kind)})`);
  }
  /** Stops serving so the process exits on SIGTERM (open connections are cut: a demo app has no drain). */
  let close: () => void;
  if (kind === 'http-echo') {
    close = closerOf(createHttpEcho({ text: values.text!, pod, ...(failEvery !== undefined ? { failEvery } : {}), failStatus, delayMs }).listen(port));
  } else if (kind === 'grpc-echo') {
    // Loaded only here: the HTTP kinds start without gRPC.
    const { listenGrpcEcho } = await import('./grpc-echo.js');
    const grpcServer = await listenGrpcEcho({ text: values.text!, pod, delayMs }, port);
    close = () => grpcServer.forceShutdown();
  } else if (kind === 'http-front') {
    const backend = values.backend;
    if (!backend) throw new AmbitError('AMBIT_ERR_CLI_USAGE', 'http-front needs --backend <url>');
    const front = createServer((req, res) => {
      req.resume();
      // A new connection per request, so the L4 balancer (per connection) spreads them over endpoints.
      const up = httpRequest(backend, { timeout: 5000, agent: false }, (br) => {
        const chunks: Buffer[] = [];
        br.on('data', (c: Buffer) => chunks.push(c));
        br.on('end', () => {
          let backendReply: unknown = Buffer.concat(chunks).toString('utf8').trim();
          try {
            backendReply = JSON.parse(backendReply as string);
          } catch {
            // keep text
          }
          res.writeHead(br.statusCode ?? 502, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ frontend: pod, backend: backendReply }) + '\n');
        });
      });
      up.on('timeout', () => up.destroy(new Error('backend timed out')));
      up.on('error', (err) => {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ frontend: pod, error: err.message }) + '\n');
      });
      up.end();
    });
    close = closerOf(front.listen(port));
  } else if (kind === 'ext-authz') {
    close = closerOf(createExtAuthzDemo(pod).listen(port));
  } else if (kind === 'tcp-echo') {
    const sockets = new Set<Socket>();
    const tcp = createTcpServer({ allowHalfOpen: true }, (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
      s.pipe(s);
    }).listen(port);
    close = () => {
      tcp.close();
      for (const s of sockets) s.destroy();
    };
  } else {
    io.err(USAGE);
    return 2;
  }
  // Serve until terminated.
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  close();
  return 0;
}

function closerOf(server: Server): () => void {
  return () => {
    server.close();
    server.closeAllConnections();
  };
}
