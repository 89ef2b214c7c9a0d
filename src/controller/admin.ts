/**
 * The controller's HTTP admin server: `/metrics` (CA, config and controller metrics), `/ready`,
 * `/debug/syncz` (what every config subscriber holds, what `ambit proxy-status` prints) and
 * `/debug/config_dump` (the translated model; it holds no key material, but names every principal
 * and address, so /debug/* needs the admin bearer token, or a loopback caller when none is set).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gauge, type Registry } from 'prom-client';
import { AmbitError, errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { typeLabel } from '../shared/xds/resource-codec.js';
import { registerOnce } from '../shared/xds/metric-util.js';
import { KINDS, kindRef } from './objects.js';
import type { ObjectStore } from './store.js';
import type { TranslateResult } from './translate/translate.js';
import type { SubscriberState, TypeSubscriptionState } from './xds/status.js';

/** What the admin server reads; the Controller provides it. */
export interface AdminSource {
  readonly registry: Registry;
  readonly store: Pick<ObjectStore, 'snapshot'>;
  readonly configServer: { subscribers(): SubscriberState[] };
  /** gRPC address (host:port). */
  readonly address: string;
  /** The current translation (workloads, services, authorizations, conditions). */
  translation(): TranslateResult;
}

export interface AdminServerOptions {
  source: AdminSource;
  host: string;
  /** 0 picks a free port. */
  port: number;
  log: Logger;
  /** /ready answers 200 only while this is true (default: always once listening). */
  ready?: () => boolean;
  now?: () => number;
  /** When the controller started (ms since epoch), for the uptime gauge. Default: now. */
  startedAt?: number;
  /**
   * Bearer token /debug/* requires (the config dump names every principal and address). Without
   * one, /debug/* answers only callers on the loopback interface. /metrics and /ready stay open.
   */
  debugToken?: string;
}

/** Whether a request may read /debug/*: the right bearer token, or, with no token configured, a loopback peer. */
export function mayReadDebug(req: Pick<IncomingMessage, 'headers' | 'socket'>, debugToken: string | undefined): boolean {
  if (debugToken === undefined) {
    const peer = req.socket.remoteAddress ?? '';
    return peer === '::1' || peer.startsWith('127.') || peer.startsWith('::ffff:127.');
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const want = createHash('sha256').update(debugToken).digest();
  return timingSafeEqual(createHash('sha256').update(m[1]!).digest(), want);
}

/**
 * Sync state of one type for one subscriber, as `istioctl proxy-status` names it:
 * SYNCED (holds the current version), STALE (a push awaits its ACK, or the subscriber is behind),
 * NACKED (rejected the current version; keeps its last good one), NOT SENT (nothing sent yet).
 */
export type SyncState = 'SYNCED' | 'STALE' | 'NACKED' | 'NOT SENT';

export function typeSyncState(t: TypeSubscriptionState): SyncState {
  if (t.pending !== undefined) return 'STALE';
  if (t.lastNack !== undefined && t.lastNack.version === t.targetVersion && t.ackedVersion !== t.targetVersion) return 'NACKED';
  if (t.ackedVersion !== undefined && t.ackedVersion === t.targetVersion) return 'SYNCED';
  if (t.ackedVersion === undefined) return 'NOT SENT';
  return 'STALE';
}

export interface SynczType {
  /** `workload`, `service`, `authorization`. */
  type: string;
  typeUrl: string;
  state: SyncState;
  /** Version of the set the subscriber holds (or will hold once the pending push is answered). */
  sentVersion: string;
  /** Version the controller wants it to hold. */
  targetVersion: string;
  ackedVersion: string | null;
  /** Nonce of the push awaiting ACK/NACK. */
  pending: string | null;
  resources: number;
  nackCount: number;
  lastNack: { message: string; version: string; code: number; at: string } | null;
}

export interface SynczCapture {
  total: number;
  captured: number;
  /** Pods per capture mode (`ambient`, `none`, `failed`, ...). */
  modes: Record<string, number>;
  /** Up to 20 pods that are not captured and say why. */
  problems: Array<{ uid: string; mode: string; message: string }>;
}

export interface SynczSubscriber {
  /** `<node>/<role>`. */
  name: string;
  nodeId: string;
  nodeName: string;
  role: string;
  streamId: string;
  peer: string;
  connectedAt: string;
  types: SynczType[];
  capture: SynczCapture;
  statusAt: string | null;
}

export interface SynczReport {
  controller: string;
  generatedAt: string;
  subscribers: SynczSubscriber[];
}

const MAX_CAPTURE_PROBLEMS = 20;

/** Builds the /debug/syncz document from the config server's subscriber states (sorted by name). */
export function buildSyncz(controller: string, subscribers: readonly SubscriberState[], now: number): SynczReport {
  const iso = (ms: number): string => new Date(ms).toISOString();
  const subs = subscribers.map((s): SynczSubscriber => {
    const modes: Record<string, number> = {};
    const problems: SynczCapture['problems'] = [];
    let captured = 0;
    for (const w of s.workloadStatus) {
      modes[w.mode || 'unknown'] = (modes[w.mode || 'unknown'] ?? 0) + 1;
      if (w.captured) captured++;
      else if (w.message && problems.length < MAX_CAPTURE_PROBLEMS) problems.push({ uid: w.uid, mode: w.mode, message: w.message });
    }
    return {
      name: `${s.nodeName}/${s.role}`,
      nodeId: s.nodeId,
      nodeName: s.nodeName,
      role: s.role,
      streamId: s.streamId,
      peer: s.peer,
      connectedAt: iso(s.connectedAt),
      types: s.types
        .map((t) => ({
          type: typeLabel(t.typeUrl),
          typeUrl: t.typeUrl,
          state: typeSyncState(t),
          sentVersion: t.sentVersion,
          targetVersion: t.targetVersion,
          ackedVersion: t.ackedVersion ?? null,
          pending: t.pending ?? null,
          resources: t.resourceCount,
          nackCount: t.nackCount,
          lastNack: t.lastNack ? { message: t.lastNack.message, version: t.lastNack.version, code: t.lastNack.code, at: iso(t.lastNack.at) } : null,
        }))
        .sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0)),
      capture: { total: s.workloadStatus.length, captured, modes, problems },
      statusAt: s.statusAt === undefined ? null : iso(s.statusAt),
    };
  });
  subs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.streamId < b.streamId ? -1 : 1));
  return { controller, generatedAt: iso(now), subscribers: subs };
}

/** Registers the controller's own gauges (uptime, stored objects per kind), computed at scrape time. */
export function createControllerMetrics(registry: Registry, source: Pick<AdminSource, 'store'>, startedAt: number, now: () => number): void {
  registerOnce(registry, 'ambit_controller_uptime_seconds', () => new Gauge({
    name: 'ambit_controller_uptime_seconds',
    help: 'Seconds since the controller started.',
    registers: [registry],
    collect() {
      this.set(Math.max(0, now() - startedAt) / 1000);
    },
  }));
  registerOnce(registry, 'ambit_config_objects', () => new Gauge({
    name: 'ambit_config_objects',
    help: 'Objects in the controller store, by kind.',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const counts = new Map<string, number>(KINDS.map((k) => [k.ref, 0]));
      for (const o of source.store.snapshot().objects) {
        const ref = kindRef(o);
        if (counts.has(ref)) counts.set(ref, (counts.get(ref) ?? 0) + 1);
      }
      for (const [kind, n] of counts) this.set({ kind }, n);
    },
  }));
}

/** Serves the admin endpoints on host:port. */
export class AdminServer {
  private constructor(
    private readonly server: Server,
    /** `host:port` actually bound. */
    readonly address: string,
  ) {}

  /** `http://host:port`. */
  get url(): string {
    return `http://${this.address}`;
  }

  static async start(opts: AdminServerOptions): Promise<AdminServer> {
    const now = opts.now ?? Date.now;
    const log = opts.log.child({ component: 'admin' });
    createControllerMetrics(opts.source.registry, opts.source, opts.startedAt ?? now(), now);
    const server = createServer((req, res) => {
      handle(req, res, opts, now).catch((e: unknown) => {
        log.warn({ err: e, path: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `internal error: ${errorMessage(e)}\n`);
        else res.destroy();
      });
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => {
        reject(new AmbitError('AMBIT_ERR_ADMIN_UNAVAILABLE', `controller admin cannot listen on ${opts.host}:${opts.port}: ${errorMessage(e)}; is the port in use or the address not on this host?`, { cause: e }));
      };
      server.once('error', onError);
      server.listen(opts.port, opts.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (e) => log.error({ err: e }, 'admin server error'));
    const a = server.address() as AddressInfo;
    const address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    log.info({ address }, 'admin server listening');
    return new AdminServer(server, address);
  }

  /** Stops accepting, ends idle connections, and destroys the rest after `deadlineMs`. */
  close(deadlineMs = 2000): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.server.closeAllConnections();
        resolve();
      }, deadlineMs);
      t.unref();
      this.server.close(() => {
        clearTimeout(t);
        resolve();
      });
      this.server.closeIdleConnections();
    });
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: AdminServerOptions, now: () => number): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  const path = new URL(req.url ?? '/', 'http://admin').pathname;
  const src = opts.source;
  if (path.startsWith('/debug/') && !mayReadDebug(req, opts.debugToken)) {
    res.setHeader('www-authenticate', 'Bearer');
    send(res, 401, 'text/plain; charset=utf-8', opts.debugToken === undefined
      ? 'debug endpoints answer loopback callers only (set AMBIT_ADMIN_TOKEN_FILE to allow a bearer token)\n'
      : 'debug endpoints need "authorization: Bearer <admin token>"\n');
    return;
  }
  switch (path) {
    case '/metrics':
      send(res, 200, src.registry.contentType, await src.registry.metrics());
      return;
    case '/ready': {
      const ready = opts.ready ? opts.ready() : true;
      send(res, ready ? 200 : 503, 'text/plain; charset=utf-8', ready ? 'ready\n' : 'not ready\n');
      return;
    }
    case '/debug/syncz':
      sendJson(res, buildSyncz(src.address, src.configServer.subscribers(), now()));
      return;
    case '/debug/config_dump': {
      const t = src.translation();
      sendJson(res, { workloads: t.workloads, services: t.services, authorizations: t.authorizations, conditions: t.conditions });
      return;
    }
    default:
      send(res, 404, 'text/plain; charset=utf-8', `no such endpoint ${path}; try /metrics, /ready, /debug/syncz, /debug/config_dump\n`);
  }
}

function sendJson(res: ServerResponse, body: unknown): void {
  send(res, 200, 'application/json', JSON.stringify(body, null, 2) + '\n');
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
