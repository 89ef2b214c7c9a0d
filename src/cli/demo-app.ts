/**
 * Tiny HTTP servers the demo and the end-to-end tests run as pod containers:
 *   http-echo  --port P --text T      answers every request with T, its pod name and the client address
 *   http-front --port P --backend URL calls URL for every request and wraps the answer
 *   tcp-echo   --port P               echoes bytes back (half-close aware)
 */
import { createServer, request as httpRequest } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { parseArgs } from 'node:util';
import { AmbitError } from '../shared/errors.js';
import type { Io } from './io.js';

export async function runDemoApp(argv: string[], io: Io): Promise<number> {
  const [kind, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: { port: { type: 'string', default: '8080' }, text: { type: 'string', default: 'hello' }, backend: { type: 'string' } },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new AmbitError('AMBIT_ERR_CLI_USAGE', `--port must be 1..65535 (got ${JSON.stringify(values.port)})`);
  const pod = process.env.POD_NAME ?? 'unknown';
  if (kind === 'http-echo') {
    const text = values.text!;
    createServer((req, res) => {
      req.resume();
      const body = JSON.stringify({ text, pod, client: req.socket.remoteAddress, path: req.url }) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': pod });
      res.end(body);
    }).listen(port);
  } else if (kind === 'http-front') {
    const backend = values.backend;
    if (!backend) throw new AmbitError('AMBIT_ERR_CLI_USAGE', 'http-front needs --backend <url>');
    createServer((req, res) => {
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
    }).listen(port);
  } else if (kind === 'tcp-echo') {
    createTcpServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => s.destroy());
      s.pipe(s);
    }).listen(port);
  } else {
    io.err('usage: ambit demo-app <http-echo|http-front|tcp-echo> --port P [--text T] [--backend URL]\n');
    return 2;
  }
  // Serve until terminated.
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  return 0;
}
