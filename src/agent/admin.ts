/**
 * The agent's HTTP endpoints, split like ztunnel's: Prometheus on 15020 (/metrics,
 * /stats/prometheus), readiness on 15021 (/healthz/ready), and a localhost-only admin on 15000
 * (/config_dump, /debug/connections). Certificates appear without keys.
 */
import type * as http from 'node:http';
import { nodeHttp } from '../shared/node-builtins.js';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/log.js';
import { errorMessage } from '../shared/errors.js';
import { flushCopyCounters } from '../shared/hbone/copy.js';
import type { HostPort } from '../shared/address.js';

export interface AdminSources {
  registry: Registry;
  /** Readiness and, when not ready, why. */
  readiness: () => { ready: boolean; reasons: string[] };
  /** Workloads, services, policies, certificates (never keys), pods and capture state. */
  configDump: () => unknown;
  connections: () => unknown;
  /** Prometheus text when the registry alone is not all of it (worker threads' counters merged); undefined: the registry's. */
  metrics?: () => Promise<string> | undefined;
}

export interface AdminAddresses {
  metrics: HostPort;
  ready: HostPort;
  admin: HostPort;
}

export class AdminServer {
  private readonly servers: http.Server[] = [];
  private readonly log: Logger;

  constructor(
    private readonly sources: AdminSources,
    log: Logger,
  ) {
    this.log = log.child({ component: 'admin' });
  }

  /** Listens on all three addresses (same address twice is served by one server). */
  async start(addrs: AdminAddresses): Promise<{ metrics: AddressInfo; ready: AddressInfo; admin: AddressInfo }> {
    const metrics = await this.listen(addrs.metrics, (req, res) => this.handleMetrics(req, res));
    const ready = await this.listen(addrs.ready, (req, res) => this.handleReady(req, res));
    const admin = await this.listen(addrs.admin, (req, res) => this.handleAdmin(req, res));
    return { metrics, ready, admin };
  }

  private listen(addr: HostPort, handler: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> | void): Promise<AddressInfo> {
    const server = nodeHttp.createServer((req, res) => {
      Promise.resolve(handler(req, res)).catch((e: unknown) => {
        this.log.error({ err: e, path: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, 'text/plain', `error: ${errorMessage(e)}\n`);
        else res.destroy();
      });
    });
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: addr.host, port: addr.port }, () => {
        server.off('error', reject);
        const a = server.address() as AddressInfo;
        this.log.info({ addr: a }, 'listener established');
        resolve(a);
      });
    });
  }

  private async handleMetrics(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = pathOf(req);
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n');
    if (path === '/metrics' || path === '/stats/prometheus') {
      flushCopyCounters();
      const merged = this.sources.metrics?.();
      return send(res, 200, this.sources.registry.contentType, await (merged ?? this.sources.registry.metrics()));
    }
    send(res, 404, 'text/plain', 'not found; try /metrics\n');
  }

  private handleReady(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (pathOf(req) !== '/healthz/ready') return send(res, 404, 'text/plain', 'not found; try /healthz/ready\n');
    const r = this.sources.readiness();
    if (r.ready) send(res, 200, 'text/plain', 'ready\n');
    else send(res, 503, 'text/plain', `not ready: ${r.reasons.join('; ')}\n`);
  }

  private async handleAdmin(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = pathOf(req);
    if (path === '/config_dump') return sendJson(res, await this.sources.configDump());
    if (path === '/debug/connections') return sendJson(res, await this.sources.connections());
    if (path === '/healthz/ready') return this.handleReady(req, res);
    if (path === '/') return sendJson(res, { endpoints: ['/config_dump', '/debug/connections', '/healthz/ready'] });
    send(res, 404, 'text/plain', 'not found; try /config_dump or /debug/connections\n');
  }

  async close(): Promise<void> {
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
  }
}

function pathOf(req: http.IncomingMessage): string {
  return (req.url ?? '/').split('?')[0] ?? '/';
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: http.ServerResponse, value: unknown): void {
  send(res, 200, 'application/json', JSON.stringify(value, replacer, 2) + '\n');
}

/** Maps and Sets as JSON; drops anything named like key material. */
function replacer(key: string, value: unknown): unknown {
  if (/^(keyPem|privateKey|key|token)$/i.test(key)) return undefined;
  if (value instanceof Map) return Object.fromEntries(value);
  if (value instanceof Set) return [...value];
  return value;
}
