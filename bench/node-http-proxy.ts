/**
 * The plain Node HTTP proxy of the L7 section: what node:http gives as it comes, run in the proxy
 * pod beside haproxy and nginx. One process, one thread: an http.Server whose every request is
 * re-sent with http.request over a keep-alive Agent to the one backend, response status, headers
 * and body piped back. No routing, policy, telemetry or logs. Its CPU per request next to haproxy's
 * and the waypoint's says what part of the waypoint's cost Node's HTTP/1.1 machinery alone is.
 *   node dist/bench/node-http-proxy.js PORT BACKEND_IP:BACKEND_PORT
 * Runs until SIGTERM (the bench kills its process group).
 */
import * as http from 'node:http';
import { fileURLToPath } from 'node:url';

export function startPlainProxy(port: number, backendHost: string, backendPort: number): http.Server {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    const up = http.request({ host: backendHost, port: backendPort, method: req.method, path: req.url, headers: req.headers, agent }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(up);
  });
  server.listen(port, '0.0.0.0');
  return server;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2]);
  const m = /^(.+):(\d+)$/.exec(process.argv[3] ?? '');
  if (!Number.isInteger(port) || port <= 0 || !m) {
    process.stderr.write('usage: node-http-proxy.js PORT BACKEND_IP:BACKEND_PORT\n');
    process.exit(2);
  }
  startPlainProxy(port, m[1]!, Number(m[2]));
  process.once('SIGTERM', () => process.exit(0));
}
