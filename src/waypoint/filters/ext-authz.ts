/**
 * External authorization (CUSTOM AuthorizationPolicy) as Envoy's ext_authz filter does it for
 * Istio: a request a CUSTOM policy matches is checked with the policy's provider before DENY and
 * ALLOW run. HTTP providers get the request's method and `pathPrefix` + path with Host, Method,
 * Path, Content-Length, Authorization, the `includeRequestHeadersInCheck` headers and the
 * `includeAdditionalHeadersInCheck` ones, and with `includeRequestBodyInCheck` the body the
 * waypoint held (`x-envoy-auth-partial-body` says whether it was cut); a 200 allows (the
 * `headersToUpstreamOnAllow` headers of the answer go upstream, the `headersToDownstreamOnAllow`
 * ones to the client), a 5xx or no answer is
 * an error, anything else denies with the provider's status, body and the
 * `headersToDownstreamOnDeny` headers (all but Host when not listed). gRPC providers are asked
 * `envoy.service.auth.v3.Authorization/Check` (src/shared/api/ext-authz.proto); status OK allows
 * (ok_response headers set or appended upstream, headers_to_remove removed), any other status
 * denies with denied_response (403 when it names none), a failed call is an error. An error is
 * answered `statusOnError` (403) unless the provider fails open. TCP connections are checked as
 * Envoy's network ext_authz does (checkConnection: peers only, gRPC providers only).
 *
 * Providers are reached through a loopback bridge per provider: grpc-js and node:http dial
 * 127.0.0.1, the bridge opens each connection with `dial` (an endpoint of the provider's service,
 * over HBONE when it is in the mesh), so both clients keep their own connection reuse.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import type { StringMatch } from '../../shared/model.js';
import type { ExtAuthzProvider } from '../../shared/routes.js';
import type { RequestHeaders } from '../route/router.js';
import { matchAuthzString } from './authz.js';

/** A request as the filters see it (filters.ts FilterRequest extends it). */
export interface CheckedRequest {
  reqId: string;
  method: string;
  /** Path with query. */
  path: string;
  authority: string;
  /** `http` or `https`: how the request reached this proxy. */
  scheme: string;
  headers: RequestHeaders;
  /** `HTTP/1.1` or `HTTP/2` (told to gRPC external authorizers). */
  protocol: string;
  /** The caller's SPIFFE id, when it came over mTLS. */
  principal: string | undefined;
  /** The service port the request was addressed to. */
  port: number | undefined;
  /** includeRequestBodyInCheck: the body's first bytes, and whether it was longer. */
  body?: { bytes: Buffer; partial: boolean };
}

/** Envoy's header telling the authorizer whether the body it got was cut at maxRequestBytes. */
const PARTIAL_BODY_HEADER = 'x-envoy-auth-partial-body';

/** What a check is told: the request, and the signal that ends it (the caller went away). */
export type ExtAuthzRequest = CheckedRequest & { signal: AbortSignal; sourceAddress?: string };

export type ExtAuthzVerdict =
  | { kind: 'allow'; setHeaders: Record<string, string>; appendHeaders: Record<string, string>; removeHeaders: string[]; responseHeaders: Record<string, string>; failedOpen?: string }
  | { kind: 'deny'; status: number; body: string; headers: Record<string, string>; error?: string };

/**
 * A TCP connection as Envoy's network ext_authz filter describes it: the peers' addresses and
 * principals (the source's SPIFFE id when it came over mTLS, the proxy's own on the destination
 * side), no HTTP request.
 */
export interface CheckedConnection {
  sourceAddress?: string;
  sourcePort?: number;
  sourcePrincipal?: string;
  destinationAddress?: string;
  destinationPort: number;
  destinationPrincipal?: string;
  /** Aborted when the client went away. */
  signal?: AbortSignal;
}

/** A connection's verdict: allowed, or denied; `error` when the check failed, `failedOpen` when a failure was let through. */
export type ConnectionVerdict = { allowed: true; failedOpen?: string } | { allowed: false; error?: string };

/** Opens one connection to an endpoint of the provider's service. */
export type ExtAuthzDial = (provider: ExtAuthzProvider) => Promise<Duplex>;

/** Hop-by-hop and framing headers never copied from an authorizer's answer. */
const NOT_COPIED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade', 'proxy-connection', 'te', 'trailer', 'host', ':authority']);
/** Always sent to an HTTP authorizer (besides Host, Method and Path, which the request carries). */
const ALWAYS_SENT: StringMatch[] = [{ exact: 'authorization' }];

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

function pick(headers: http.IncomingHttpHeaders, patterns: readonly StringMatch[] | undefined, whenAbsent: 'all' | 'none'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    const value = headerValue(v);
    if (value === undefined || NOT_COPIED.has(k)) continue;
    if (patterns === undefined ? whenAbsent === 'all' : patterns.some((m) => matchAuthzString(m, k))) out[k] = value;
  }
  return out;
}

/** One loopback listener whose connections are carried to the provider by `dial`. */
class Bridge {
  readonly ready: Promise<number>;
  private readonly server: net.Server;
  private readonly open = new Set<Duplex>();

  constructor(dial: () => Promise<Duplex>) {
    this.server = net.createServer((sock) => {
      this.open.add(sock);
      sock.once('close', () => this.open.delete(sock));
      sock.on('error', () => sock.destroy());
      dial().then(
        (up) => {
          if (sock.destroyed) return up.destroy();
          this.open.add(up);
          up.once('close', () => {
            this.open.delete(up);
            sock.destroy();
          });
          up.on('error', () => up.destroy());
          sock.once('close', () => up.destroy());
          sock.pipe(up);
          up.pipe(sock);
        },
        () => sock.destroy(),
      );
    });
    this.ready = new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as net.AddressInfo).port));
    });
  }

  close(): void {
    this.server.close();
    for (const s of this.open) s.destroy();
  }
}

type CheckClient = grpc.Client & { Check: (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: CheckResponse) => void) => grpc.ClientUnaryCall };

interface HeaderOption {
  header?: { key?: string; value?: string } | null;
  append?: { value?: boolean } | null;
}

interface CheckResponse {
  status?: { code?: number; message?: string } | null;
  deniedResponse?: { status?: { code?: number } | null; headers?: HeaderOption[]; body?: string } | null;
  okResponse?: { headers?: HeaderOption[]; headersToRemove?: string[]; responseHeadersToAdd?: HeaderOption[] } | null;
}

export class ExtAuthzClient {
  private readonly bridges = new Map<string, Bridge>();
  private readonly grpcClients = new Map<string, CheckClient>();
  private readonly http = new http.Agent({ keepAlive: true, maxSockets: 64 });
  private grpcModule: Promise<{ grpc: typeof grpc; ctor: grpc.ServiceClientConstructor }> | undefined;

  constructor(private readonly dial: ExtAuthzDial) {}

  /** Checks `req` with `provider`; never throws (an error is a verdict by statusOnError/failOpen). */
  async check(provider: ExtAuthzProvider, req: ExtAuthzRequest): Promise<ExtAuthzVerdict> {
    try {
      const port = await this.bridgePort(provider);
      return provider.protocol === 'http' ? await this.checkHttp(provider, port, req) : await this.checkGrpc(provider, port, req);
    } catch (e) {
      return this.failed(provider, e instanceof Error ? e.message : String(e));
    }
  }

  /**
   * Checks a TCP connection with a gRPC provider (Envoy's network ext_authz: a CheckRequest with
   * the source and destination peers only; status OK allows, anything else denies, a failed call
   * denies unless the provider fails open). Never throws. HTTP providers cannot check a byte
   * stream; callers leave them out, as Istio does.
   */
  async checkConnection(provider: ExtAuthzProvider, conn: CheckedConnection): Promise<ConnectionVerdict> {
    try {
      if (provider.protocol !== 'grpc') throw new Error(`provider ${provider.name} is not a gRPC provider; TCP connections need envoyExtAuthzGrpc`);
      const port = await this.bridgePort(provider);
      const { grpc: g, client } = await this.grpcClient(provider, port);
      const peer = (address: string | undefined, portValue: number | undefined, principal: string | undefined) => ({
        ...(address !== undefined || portValue !== undefined ? { address: { socketAddress: { ...(address !== undefined ? { address } : {}), ...(portValue !== undefined ? { portValue } : {}) } } } : {}),
        principal: principal ?? '',
      });
      const check = { attributes: { source: peer(conn.sourceAddress, conn.sourcePort, conn.sourcePrincipal), destination: peer(conn.destinationAddress, conn.destinationPort, conn.destinationPrincipal) } };
      const res = await new Promise<CheckResponse>((resolve, reject) => {
        const call = client.Check(check, new g.Metadata(), { deadline: Date.now() + provider.timeoutMs }, (err, out) => (err ? reject(new Error(`Check failed: ${err.code === g.status.DEADLINE_EXCEEDED ? `no answer within ${provider.timeoutMs} ms` : err.details || err.message}`)) : resolve(out ?? {})));
        conn.signal?.addEventListener('abort', () => call.cancel(), { once: true });
      });
      return (res.status?.code ?? 0) === 0 ? { allowed: true } : { allowed: false };
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      return provider.failOpen ? { allowed: true, failedOpen: error } : { allowed: false, error };
    }
  }

  close(): void {
    for (const c of this.grpcClients.values()) c.close();
    this.grpcClients.clear();
    for (const b of this.bridges.values()) b.close();
    this.bridges.clear();
    this.http.destroy();
  }

  private failed(provider: ExtAuthzProvider, error: string): ExtAuthzVerdict {
    if (provider.failOpen) return { kind: 'allow', setHeaders: {}, appendHeaders: {}, removeHeaders: [], responseHeaders: {}, failedOpen: error };
    return { kind: 'deny', status: provider.statusOnError ?? 403, body: '', headers: {}, error };
  }

  private bridgePort(provider: ExtAuthzProvider): Promise<number> {
    const key = `${provider.service}:${provider.port}`;
    let b = this.bridges.get(key);
    if (!b) {
      b = new Bridge(() => this.dial(provider));
      this.bridges.set(key, b);
    }
    return b.ready;
  }

  private checkHttp(provider: ExtAuthzProvider, port: number, req: ExtAuthzRequest): Promise<ExtAuthzVerdict> {
    const sent = [...ALWAYS_SENT, ...(provider.includeRequestHeadersInCheck ?? [])];
    const body = req.body?.bytes;
    const headers: Record<string, string> = {
      ...pick(req.headers as http.IncomingHttpHeaders, sent, 'none'),
      ...provider.includeAdditionalHeadersInCheck,
      host: req.authority,
      'content-length': String(body?.length ?? 0),
      ...(req.body ? { [PARTIAL_BODY_HEADER]: String(req.body.partial) } : {}),
    };
    const signal = AbortSignal.any([req.signal, AbortSignal.timeout(provider.timeoutMs)]);
    return new Promise((resolve, reject) => {
      const r = http.request({ host: '127.0.0.1', port, method: req.method, path: (provider.pathPrefix ?? '') + req.path, headers, agent: this.http, signal }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= 64 * 1024) chunks.push(c);
        });
        res.once('error', reject);
        res.once('end', () => {
          const status = res.statusCode ?? 0;
          if (status === 200) {
            resolve({ kind: 'allow', setHeaders: pick(res.headers, provider.headersToUpstreamOnAllow ?? [], 'none'), appendHeaders: {}, removeHeaders: [], responseHeaders: pick(res.headers, provider.headersToDownstreamOnAllow ?? [], 'none') });
          } else if (status >= 500) {
            resolve(this.failed(provider, `the authorizer answered ${status}`));
          } else {
            resolve({ kind: 'deny', status, body: Buffer.concat(chunks).toString('utf8'), headers: pick(res.headers, provider.headersToDownstreamOnDeny, 'all') });
          }
        });
      });
      r.once('error', (e) => reject(signal.aborted && !req.signal.aborted ? new Error(`no answer within ${provider.timeoutMs} ms`) : e));
      r.end(body);
    });
  }

  private async grpcClient(provider: ExtAuthzProvider, port: number): Promise<{ grpc: typeof grpc; client: CheckClient }> {
    this.grpcModule ??= (async () => {
      const g = await import('@grpc/grpc-js');
      const { loadProto } = await import('../../shared/api/load.js');
      const pkg = loadProto('ext-authz.proto') as unknown as { envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } } };
      return { grpc: g, ctor: pkg.envoy.service.auth.v3.Authorization };
    })();
    const { grpc: g, ctor } = await this.grpcModule;
    const key = `${provider.service}:${provider.port}`;
    let client = this.grpcClients.get(key);
    if (!client) {
      client = new ctor(`127.0.0.1:${port}`, g.credentials.createInsecure(), { 'grpc.default_authority': `${provider.service}:${provider.port}` }) as unknown as CheckClient;
      this.grpcClients.set(key, client);
    }
    return { grpc: g, client };
  }

  private async checkGrpc(provider: ExtAuthzProvider, port: number, req: ExtAuthzRequest): Promise<ExtAuthzVerdict> {
    const { grpc: g, client } = await this.grpcClient(provider, port);
    const q = req.path.indexOf('?');
    const headers: Record<string, string> = { ':authority': req.authority, ':method': req.method, ':path': req.path };
    for (const [k, v] of Object.entries(req.headers)) {
      const value = headerValue(v as string | string[] | undefined);
      if (value !== undefined && !k.startsWith(':')) headers[k] = value;
    }
    if (req.body) headers[PARTIAL_BODY_HEADER] = String(req.body.partial);
    const body = req.body ? (provider.includeRequestBodyInCheck?.packAsBytes ? { rawBody: req.body.bytes } : { body: req.body.bytes.toString('utf8') }) : {};
    const check = {
      attributes: {
        source: { ...(req.sourceAddress ? { address: { socketAddress: { address: req.sourceAddress } } } : {}), principal: req.principal ?? '' },
        destination: { ...(req.port !== undefined ? { address: { socketAddress: { portValue: req.port } } } : {}) },
        request: {
          http: { id: req.reqId, method: req.method, headers, path: req.path, host: req.authority, scheme: req.scheme, query: q < 0 ? '' : req.path.slice(q + 1), protocol: req.protocol, size: req.body && !req.body.partial ? req.body.bytes.length : -1, ...body },
        },
      },
    };
    const res = await new Promise<CheckResponse>((resolve, reject) => {
      const call = client.Check(check, new g.Metadata(), { deadline: Date.now() + provider.timeoutMs }, (err, out) => (err ? reject(new Error(`Check failed: ${err.code === g.status.DEADLINE_EXCEEDED ? `no answer within ${provider.timeoutMs} ms` : err.details || err.message}`)) : resolve(out ?? {})));
      req.signal.addEventListener('abort', () => call.cancel(), { once: true });
    });
    const options = (list: HeaderOption[] | undefined) => (list ?? []).filter((h) => h.header?.key).map((h) => ({ key: h.header!.key!.toLowerCase(), value: h.header!.value ?? '', append: h.append?.value === true }));
    if ((res.status?.code ?? 0) === 0) {
      const ok = res.okResponse;
      const out = { kind: 'allow' as const, setHeaders: {} as Record<string, string>, appendHeaders: {} as Record<string, string>, removeHeaders: (ok?.headersToRemove ?? []).map((h) => h.toLowerCase()).filter((h) => !h.startsWith(':') && h !== 'host'), responseHeaders: {} as Record<string, string> };
      for (const h of options(ok?.headers)) (h.append ? out.appendHeaders : out.setHeaders)[h.key] = h.value;
      for (const h of options(ok?.responseHeadersToAdd)) out.responseHeaders[h.key] = h.value;
      return out;
    }
    const denied = res.deniedResponse;
    const status = denied?.status?.code || 403;
    const deniedHeaders: Record<string, string> = {};
    for (const h of options(denied?.headers)) if (!NOT_COPIED.has(h.key)) deniedHeaders[h.key] = h.value;
    return { kind: 'deny', status, body: denied?.body ?? '', headers: deniedHeaders };
  }
}
