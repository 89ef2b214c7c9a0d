/**
 * Gateway mode of the waypoint binary: the ingress listeners the controller pushes
 * (GatewayListener, one per port) opened as plain or TLS sockets whose connections feed the L7
 * WaypointServer (HTTPS with MUTUAL requires client certificates), or, for TCP and TLS ports,
 * go to `acceptL4` as raw sockets (after the TLS handshake when the listener terminates TLS); and
 * the ingress route configs of the Gateways served merged into one table per gateway pod.
 * Invariants: listeners change only through apply(), one call at a time; a port that fails to
 * open is logged and retried on the next apply, the others keep serving; certificates are swapped
 * in place (new handshakes get the new one, open connections keep theirs).
 */
import type * as http from 'node:http';
import { nodeHttp, nodeTls } from '../../shared/node-builtins.js';
import { X509Certificate } from 'node:crypto';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { HTTP1_LIMITS } from './limits.js';
import type { Logger } from '../../shared/log.js';
import { certificateFor, type GatewayListener, type HttpRoute, type JwtRule, type RouteConfig } from '../../shared/routes.js';
import type { ConnectionMeta } from './server.js';
import type { Duplex } from 'node:stream';
import { peerIdentity, type TunnelCertificate } from '../../shared/hbone/tunnel.js';
import { tryParseSpiffeId } from '../../shared/identity.js';

/**
 * The route configs a gateway pod serves: mesh configs as they are (destination policies), and the
 * ingress configs of the Gateways it listens for, merged per host (routes of the Gateways in name
 * order) and rebound to `gatewayKey` so one route table serves every port. Authorization policies
 * and JWT rules of selector policies (`pods`) are kept only when they name this pod (the one the
 * listeners are for).
 */
export function gatewayRoutes(configs: Iterable<RouteConfig>, listeners: Iterable<GatewayListener>, gatewayKey: string): RouteConfig[] {
  const served = new Set<string>();
  let pod: string | undefined;
  for (const l of listeners) {
    pod ??= l.pod;
    for (const g of l.gateways) served.add(g);
  }
  const mine = (x: { pods?: string[] }): boolean => x.pods === undefined || (pod !== undefined && x.pods.includes(pod));
  const mesh: RouteConfig[] = [];
  const byHost = new Map<string, RouteConfig[]>();
  for (const c of configs) {
    if (c.gateway === undefined) mesh.push(c);
    else if (served.has(c.gateway)) {
      const host = c.hostname.toLowerCase();
      byHost.set(host, [...(byHost.get(host) ?? []), c]);
    }
  }
  const ingress: RouteConfig[] = [];
  for (const list of byHost.values()) {
    list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const first = list[0]!;
    const names = new Set<string>();
    const routes: HttpRoute[] = [];
    for (const c of list) {
      for (const r of c.routes) {
        let name = r.name;
        for (let k = 2; names.has(name); k++) name = `${r.name}#${k}`;
        names.add(name);
        routes.push({ ...r, name });
      }
    }
    const ports = new Map<number, { port: number; protocol: string }>();
    for (const c of list) for (const p of c.ports) if (!ports.has(p.port)) ports.set(p.port, p);
    ingress.push({
      ...first,
      gateway: gatewayKey,
      aliases: [...new Set(list.flatMap((c) => c.aliases))],
      ports: [...ports.values()].sort((a, b) => a.port - b.port),
      routes,
      authorization: uniqueByName(list.flatMap((c) => c.authorization).filter(mine)),
      ...jwtRulesOf(list, mine),
      ...l4Routes(list, 'tcpRoutes'),
      ...l4Routes(list, 'tlsRoutes'),
    });
  }
  return [...mesh, ...ingress.sort((a, b) => (a.name < b.name ? -1 : 1))];
}

/** A policy attached to several Gateways this pod serves is evaluated once. */
function uniqueByName<T extends { name: string }>(list: readonly T[]): T[] {
  const seen = new Set<string>();
  return list.filter((p) => !seen.has(p.name) && (seen.add(p.name), true));
}

function jwtRulesOf(list: readonly RouteConfig[], mine: (r: JwtRule) => boolean): Pick<RouteConfig, 'jwtRules'> {
  const seen = new Set<string>();
  const rules = list.flatMap((c) => c.jwtRules ?? []).filter((r) => {
    const key = JSON.stringify({ ...r, pods: undefined });
    return mine(r) && !seen.has(key) && (seen.add(key), true);
  });
  return { jwtRules: rules };
}

function l4Routes(list: readonly RouteConfig[], key: 'tcpRoutes' | 'tlsRoutes'): Partial<Pick<RouteConfig, 'tcpRoutes' | 'tlsRoutes'>> {
  const all = list.flatMap((c) => c[key] ?? []);
  return all.length > 0 ? { [key]: all } : {};
}

export interface IngressListenersOptions {
  log: Logger;
  /** Where accepted connections go (WaypointServer.acceptConnection). */
  accept: (conn: Duplex, meta: ConnectionMeta) => void;
  /** Who the requests come from, for telemetry (the gateway workload itself). */
  source: ConnectionMeta['source'];
  /** Address to bind (default 0.0.0.0: every address of the pod). */
  host?: string;
  /** ISTIO_MUTUAL listeners: the gateway's own mesh certificate (current one; rotated in place), and the mesh trust domain clients must belong to. */
  meshCertificate?: () => Promise<TunnelCertificate>;
  trustDomain?: string;
  /** Where connections of TCP and TLS listeners go, with the listener as it is now. */
  acceptL4?: (socket: net.Socket, listener: L4Listener) => void;
  /** SO_REUSEPORT on every port (the worker threads of one gateway listen on the same ports). */
  reusePort?: boolean;
}

/** A TCP or TLS listener as a connection arrives on it. */
export interface L4Listener {
  port: number;
  protocol: 'TCP' | 'TLS';
  hosts: readonly string[];
  /**
   * Set when the listener terminated TLS: the SNI the client asked for (TLS routes match on it;
   * the socket then carries the decrypted bytes), and its mesh identity on ISTIO_MUTUAL.
   */
  terminated?: { sni?: string; principal?: string };
}

interface OpenListener {
  port: number;
  protocol: GatewayListener['protocol'];
  /** protocol, plus whether the port only redirects to https: a change of kind reopens the port. */
  kind: string;
  server: net.Server;
  /** HTTPS: contexts by certificate, chosen per handshake by SNI. */
  certs: GatewayListener['certificates'];
  contexts: Map<GatewayListener['certificates'][number], tls.SecureContext>;
  /** The listener's server hosts (TLS passthrough admits only SNI names among them). */
  hosts: readonly string[];
  /** ISTIO_MUTUAL: re-reads the mesh certificate so rotations reach new handshakes. */
  refresh?: NodeJS.Timeout;
  /** ALPN offered in the handshake: HTTP's for HTTPS, none for TLS ending in a byte stream. */
  alpn: string[];
}

/** How often an ISTIO_MUTUAL listener picks up a rotated mesh certificate. */
const MESH_CERT_REFRESH_MS = 30_000;

const HTTP_ALPN = ['h2', 'http/1.1'];

function meshContext(c: TunnelCertificate, alpn: string[]): tls.SecureContextOptions {
  return { cert: c.certChainPem.join('\n'), key: c.keyPem, ca: c.rootsPem.join('\n'), ...(alpn.length > 0 ? { ALPNProtocols: alpn } : {}) } as tls.SecureContextOptions;
}

/** True when the listener ends TLS itself (HTTPS, or TCP/TLS with terminate). */
function endsTls(l: GatewayListener): boolean {
  return l.protocol === 'HTTPS' || l.terminate === true;
}

/** The ingress ports of one gateway pod. */
export class IngressListeners {
  private readonly log: Logger;
  private readonly open = new Map<number, OpenListener>();

  constructor(private readonly opts: IngressListenersOptions) {
    this.log = opts.log.child({ component: 'ingress' });
  }

  /** Ports listening now, with their protocol. */
  ports(): Array<{ port: number; protocol: GatewayListener['protocol'] }> {
    return [...this.open.values()].map((l) => ({ port: l.port, protocol: l.protocol })).sort((a, b) => a.port - b.port);
  }

  /** Opens, updates and closes listeners to match `listeners`; resolves once every change is done. */
  async apply(listeners: Iterable<GatewayListener>): Promise<void> {
    const want = new Map<number, GatewayListener>();
    for (const l of listeners) want.set(l.port, l);
    for (const [port, cur] of this.open) {
      const next = want.get(port);
      if (!next || kindOf(next) !== cur.kind) this.closeListener(cur);
    }
    for (const l of want.values()) {
      const cur = this.open.get(l.port);
      if (cur) {
        if (endsTls(l) && !l.istioMutual) this.setCertificates(cur, l.certificates);
        cur.hosts = l.hosts;
        continue;
      }
      try {
        await this.openListener(l);
      } catch (e) {
        this.log.error({ port: l.port, protocol: l.protocol, err: e }, 'ingress listener cannot open; other ports keep serving');
      }
    }
  }

  private setCertificates(l: OpenListener, certs: GatewayListener['certificates']): void {
    const contexts = new Map<GatewayListener['certificates'][number], tls.SecureContext>();
    for (const c of certs) contexts.set(c, nodeTls.createSecureContext({ cert: c.certPem, key: c.keyPem, ...(c.caPem !== undefined ? { ca: c.caPem } : {}), ...(c.crlPem !== undefined ? { crl: c.crlPem } : {}) }));
    l.certs = certs;
    l.contexts = contexts;
    const first = certs[0];
    const ca = clientCas(certs);
    const crl = clientCrls(certs);
    if (first && l.server instanceof nodeTls.Server) l.server.setSecureContext({ cert: first.certPem, key: first.keyPem, ...(l.alpn.length > 0 ? { ALPNProtocols: l.alpn } : {}), ...(ca ? { ca } : {}), ...(crl ? { crl } : {}) } as tls.SecureContextOptions);
    this.log.info({ port: l.port, secrets: certs.map((c) => c.secret) }, 'ingress certificates loaded');
  }

  private async openListener(l: GatewayListener): Promise<void> {
    const meta: ConnectionMeta = { targetPort: l.port, ...(this.opts.source ? { source: this.opts.source } : {}), ...(l.numTrustedProxies ? { trustedProxies: l.numTrustedProxies } : {}) };
    let server: net.Server;
    const l4 = l.protocol === 'TCP' || l.protocol === 'TLS' ? l.protocol : undefined;
    const rec: OpenListener = { port: l.port, protocol: l.protocol, kind: kindOf(l), server: undefined as unknown as net.Server, certs: [], contexts: new Map(), hosts: l.hosts, alpn: l4 ? [] : HTTP_ALPN };
    // Where a connection goes once the listener's TLS, if any, is done: HTTP to the WaypointServer,
    // TCP and TLS to acceptL4 (with the handshake's SNI and peer identity when TLS ended here).
    const deliver = (s: net.Socket, m: ConnectionMeta, terminated?: L4Listener['terminated']): void => {
      if (!l4) return this.opts.accept(s, m);
      if (!this.opts.acceptL4) return void s.resetAndDestroy();
      this.opts.acceptL4(s, { port: rec.port, protocol: l4, hosts: rec.hosts, ...(terminated ? { terminated } : {}) });
    };
    if (endsTls(l) && l.istioMutual) {
      server = await this.openIstioMutual(rec, meta, deliver);
    } else if (endsTls(l)) {
      const first = l.certificates[0];
      if (!first) throw new Error(`port ${l.port} is ${l.protocol} terminating TLS but has no certificate`);
      const ca = clientCas(l.certificates);
      const secure = nodeTls.createServer(
        {
          cert: first.certPem,
          key: first.keyPem,
          ...(rec.alpn.length > 0 ? { ALPNProtocols: rec.alpn } : {}),
          minVersion: 'TLSv1.2',
          // MUTUAL: a client certificate chaining to one of the port's CAs is required in the handshake;
          // OPTIONAL_MUTUAL: requested, and checked below when the client sent one.
          ...(ca ? { ca, requestCert: true, rejectUnauthorized: l.optionalClientCert !== true } : {}),
          ...(clientCrls(l.certificates) ? { crl: clientCrls(l.certificates) } : {}),
          SNICallback: (servername, cb) => {
            const cert = certificateFor(rec.certs, servername);
            cb(null, cert ? rec.contexts.get(cert) : undefined);
          },
        },
        (s) => {
          // ... and to the CA of the host the client asked for, when the port serves several.
          const cert = certificateFor(rec.certs, s.servername || undefined);
          const optionalWithout = l.optionalClientCert === true && !sentCertificate(s);
          if (cert?.caPem !== undefined && !optionalWithout && (!s.authorized || !chainsTo(s, cert.caPem))) {
            this.log.debug({ port: l.port, servername: s.servername }, 'client certificate not issued by the CA of the requested host');
            s.destroy();
            return;
          }
          deliver(s, withPeer(meta, s), { ...(s.servername ? { sni: s.servername } : {}) });
        },
      );
      secure.on('tlsClientError', (e) => this.log.debug({ port: l.port, err: e }, 'tls handshake failed'));
      server = secure;
    } else if (l4) {
      server = net.createServer({ noDelay: true }, (s) => {
        s.on('error', () => s.destroy());
        deliver(s, meta);
      });
    } else if (l.httpsRedirect) {
      const redirect = nodeHttp.createServer({ ...HTTP1_LIMITS, requestTimeout: 10_000, headersTimeout: 10_000 }, (req, res) => answerHttpsRedirect(req, res));
      server = net.createServer({ noDelay: true }, (s) => {
        s.on('error', () => s.destroy());
        redirect.emit('connection', s);
      });
    } else {
      server = net.createServer({ noDelay: true }, (s) => this.opts.accept(s, withPeer(meta, s)));
    }
    rec.server = server;
    if (endsTls(l) && !l.istioMutual) this.setCertificates(rec, l.certificates);
    const host = this.opts.host ?? '0.0.0.0';
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: l.port, host, backlog: 1024, ...(this.opts.reusePort ? { reusePort: true } : {}) }, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.log.warn({ port: l.port, err: e }, 'ingress listener error'));
    this.open.set(l.port, rec);
    this.log.info({ addr: `${host}:${l.port}`, protocol: l.protocol, httpsRedirect: l.httpsRedirect === true, gateways: l.gateways, hosts: l.hosts }, 'ingress listener established');
  }

  /**
   * ISTIO_MUTUAL: TLS with the gateway's mesh certificate; the client must present a certificate
   * of the mesh CA with a SPIFFE identity of the trust domain, which becomes the requests'
   * principal (AuthorizationPolicy `principals` apply to it).
   */
  private async openIstioMutual(rec: OpenListener, meta: ConnectionMeta, deliver: (s: net.Socket, m: ConnectionMeta, terminated?: L4Listener['terminated']) => void): Promise<tls.Server> {
    const get = this.opts.meshCertificate;
    if (!get || !this.opts.trustDomain) throw new Error(`port ${rec.port} is ISTIO_MUTUAL but this gateway has no mesh certificate`);
    let current = await get();
    const server = nodeTls.createServer({ ...meshContext(current, rec.alpn), minVersion: 'TLSv1.2', requestCert: true, rejectUnauthorized: true }, (s) => {
      const id = peerIdentity(s);
      const parsed = id ? tryParseSpiffeId(id) : undefined;
      if (!id || !parsed || parsed.trustDomain !== this.opts.trustDomain) {
        this.log.debug({ port: rec.port, peer: id }, 'ISTIO_MUTUAL client without an identity of this mesh refused');
        s.destroy();
        return;
      }
      deliver(s, { ...withPeer(meta, s), source: { ...meta.source, principal: id, namespace: parsed.namespace }, caller: { namespace: parsed.namespace } }, { principal: id, ...(s.servername ? { sni: s.servername } : {}) });
    });
    server.on('tlsClientError', (e) => this.log.debug({ port: rec.port, err: e }, 'tls handshake failed'));
    rec.refresh = setInterval(() => {
      get().then(
        (next) => {
          if (next.certChainPem[0] === current.certChainPem[0] && next.rootsPem.join() === current.rootsPem.join()) return;
          current = next;
          server.setSecureContext(meshContext(next, rec.alpn));
          this.log.info({ port: rec.port }, 'ingress mesh certificate rotated');
        },
        (e: unknown) => this.log.warn({ port: rec.port, err: e }, 'mesh certificate refresh failed; the current one stays'),
      );
    }, MESH_CERT_REFRESH_MS);
    rec.refresh.unref();
    return server;
  }

  /** Stops accepting on the port; connections already open stay with the WaypointServer (drained on close). */
  private closeListener(l: OpenListener): void {
    if (l.refresh) clearInterval(l.refresh);
    this.open.delete(l.port);
    l.server.close();
    this.log.info({ port: l.port, protocol: l.protocol }, 'ingress listener closed');
  }

  /** Stops accepting on every port (open connections are drained by the WaypointServer). */
  close(): void {
    for (const l of [...this.open.values()]) this.closeListener(l);
  }
}

/** A listener's connection meta with the connection's peer address. */
function withPeer(meta: ConnectionMeta, s: net.Socket): ConnectionMeta {
  return s.remoteAddress !== undefined ? { ...meta, peerAddress: s.remoteAddress } : meta;
}

function kindOf(l: GatewayListener): string {
  // The connection meta of a port is fixed when it opens: a change of trusted proxies reopens it.
  const trusted = l.numTrustedProxies ? `+xff${l.numTrustedProxies}` : '';
  return `${baseKind(l)}${trusted}`;
}

function baseKind(l: GatewayListener): string {
  if (l.terminate) return `${l.protocol}+terminate${l.istioMutual ? '+istio-mutual' : l.optionalClientCert ? '+optional-mutual' : clientCas(l.certificates) ? '+mutual' : ''}`;
  if (l.httpsRedirect) return `${l.protocol}+redirect`;
  if (l.istioMutual) return `${l.protocol}+istio-mutual`;
  if (l.optionalClientCert) return `${l.protocol}+optional-mutual`;
  return clientCas(l.certificates) ? `${l.protocol}+mutual` : l.protocol;
}

/** MUTUAL: every CRL of the port's certificates (the handshake checks the client's chain against them). */
function clientCrls(certs: GatewayListener['certificates']): string[] | undefined {
  const crls = [...new Set(certs.flatMap((c) => (c.crlPem !== undefined ? [c.crlPem.trim()] : [])))];
  return crls.length > 0 ? crls : undefined;
}

/** MUTUAL: every CA certificate of the port's certificates (client certificates must chain to one). */
function clientCas(certs: GatewayListener['certificates']): string | undefined {
  const cas = certs.flatMap((c) => (c.caPem !== undefined ? [c.caPem.trim()] : []));
  return cas.length > 0 ? [...new Set(cas)].join('\n') : undefined;
}

/** True when the client presented a certificate in the handshake. */
function sentCertificate(socket: tls.TLSSocket): boolean {
  const c = socket.getPeerCertificate();
  return c !== null && typeof c === 'object' && Object.keys(c).length > 0;
}

/** True when the client's certificate chain holds a certificate issued by (or equal to) one in `caPem`. */
function chainsTo(socket: tls.TLSSocket, caPem: string): boolean {
  const cas = (caPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
  let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    const x = new X509Certificate(c.raw);
    if (cas.some((ca) => x.fingerprint256 === ca.fingerprint256 || (x.checkIssued(ca) && x.verify(ca.publicKey)))) return true;
    c = c.issuerCertificate;
  }
  return false;
}

/** The https URL for a request (Istio httpsRedirect): same host without its port, same path; undefined without a usable Host. */
export function httpsRedirectLocation(authority: string | undefined, path: string | undefined): string | undefined {
  const a = (authority ?? '').trim();
  const host = a.startsWith('[') ? a.slice(0, a.indexOf(']') + 1) : a.split(':')[0]!;
  if (host === '' || !/^[A-Za-z0-9.\-[\]:]+$/.test(host)) return undefined;
  const p = path && path.startsWith('/') ? path : '/';
  return `https://${host}${p}`;
}

function answerHttpsRedirect(req: http.IncomingMessage, res: http.ServerResponse): void {
  req.resume();
  const location = httpsRedirectLocation(req.headers.host, req.url);
  try {
    if (!location) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end('a Host header is required\n');
      return;
    }
    res.writeHead(301, { location, 'content-length': 0 });
    res.end();
  } catch {
    res.destroy();
  }
}
