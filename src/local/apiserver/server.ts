/**
 * Local mode's Kubernetes API server as one object: loads its state folder (objects, keys),
 * starts the controllers, bootstraps a fresh cluster, serves HTTPS with bearer-token auth, and
 * offers the local daemon an in-process client, service-account token issuing and kubeconfigs.
 *
 * Lifecycle: `ApiServer.start(opts)` → serving; `stop()` ends every watch, closes connections,
 * stops controllers and closes the state file. A state folder is used by one process at a time.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { join } from 'node:path';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import { createLogger, type Logger } from '../../shared/log.js';
import { ADMIN_USER, AUTHENTICATED_GROUP, Authenticator, MASTERS_GROUP, type UserInfo } from './authn.js';
import { readBody } from './body.js';
import { bootstrap } from './bootstrap.js';
import { Controllers } from './controllers.js';
import { ApiHandler, type ApiRequest, type ApiResponse } from './handler.js';
import { kubernetesServiceIp } from './kinds/service.js';
import { kubeconfigYaml, writeKubeconfig } from './kubeconfig.js';
import { loadOrCreatePki, servingHosts, type ApiServerPki } from './pki.js';
import { Registry } from './registry.js';
import { ResourceTypes } from './resources.js';
import { tokenRequest } from './reviews.js';
import { StateFile, writeAtomic } from './state-file.js';
import { Store } from './store.js';
import { TokenSigner } from './tokens.js';
import { DEFAULT_MIN_REQUEST_TIMEOUT_S } from './watch.js';
import type { JsonMap } from './types.js';

export interface ApiServerOptions {
  /** Folder for objects, keys and the admin token (created 0700). */
  stateDir: string;
  /** Listen address (default 127.0.0.1). */
  host?: string;
  /** Listen port; default: the port of the previous run in this state folder, else a free one. */
  port?: number;
  /** The address clients are told (kubeconfig, `kubernetes` endpoints); default `host`. */
  advertiseAddress?: string;
  /** More names/IPs for the serving certificate. */
  extraSans?: string[];
  /** ClusterIP range (default 10.96.0.0/16). */
  serviceCidr?: string;
  nodePortRange?: [number, number];
  clusterDomain?: string;
  /** Watch events kept per resource for resuming watches (default 1000). */
  historySize?: number;
  /** Watches without timeoutSeconds end after a random [min, 2×min] seconds (default 1800, as upstream). */
  minRequestTimeoutSeconds?: number;
  log?: Logger;
  now?: () => number;
}

export interface IssueTokenOptions {
  namespace: string;
  serviceAccount: string;
  /** Default: the API server's own audience. */
  audiences?: string[];
  /** Default 3600; at least 600. */
  expirationSeconds?: number;
  /** Bind the token to this pod (and so to its node), as a projected volume token is. */
  pod?: string;
}

export interface InProcessResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body: unknown;
}

export interface InProcessRequest {
  method: string;
  /** Path and query, e.g. `/api/v1/namespaces/default/pods?labelSelector=app%3Dweb`. */
  path: string;
  body?: unknown;
  /** Content-Type of `body` (default application/json; patches need theirs). */
  contentType?: string;
  headers?: Record<string, string>;
  /** Act as this user instead of the admin. */
  user?: UserInfo;
}

const ADDRESS_FILE = 'address.json';
const LOCK_FILE = 'lock';
const DEFAULT_SERVICE_CIDR = '10.96.0.0/16';
/** How long stop() lets in-flight responses finish before cutting connections. */
const STOP_GRACE_MS = 1000;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the state folder's lock file (a dead holder's lock is taken over). */
function lockState(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  if (existsSync(path)) {
    const holder = Number(readFileSync(path, 'utf8').trim());
    if (Number.isInteger(holder) && holder !== process.pid && pidAlive(holder)) {
      throw new AmbitError('AMBIT_ERR_APISERVER_START', `the API server state folder ${dir} is in use by process ${holder}; stop it first`);
    }
  }
  writeFileSync(path, String(process.pid), { mode: 0o600 });
  return () => {
    try {
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
    } catch {
      // Already gone.
    }
  };
}

export class ApiServer {
  private readonly sockets = new Set<Socket>();
  private closing = false;

  private constructor(
    private readonly server: Server,
    private readonly handler: ApiHandler,
    private readonly store: Store,
    private readonly file: StateFile,
    private readonly controllers: Controllers,
    private readonly pki: ApiServerPki,
    private readonly signer: TokenSigner,
    private readonly authenticator: Authenticator,
    private readonly unlock: () => void,
    private readonly log: Logger,
    readonly host: string,
    readonly port: number,
    readonly advertiseAddress: string,
    private readonly now: () => number,
  ) {
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => this.sockets.delete(s));
    });
    server.on('secureConnection', (s) => s.setNoDelay(true));
  }

  static async start(opts: ApiServerOptions): Promise<ApiServer> {
    const log = (opts.log ?? createLogger({ name: 'ambit-apiserver' })).child({ component: 'apiserver' });
    const now = opts.now ?? Date.now;
    const host = opts.host ?? '127.0.0.1';
    const advertise = opts.advertiseAddress ?? (host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host);
    const serviceCidr = opts.serviceCidr ?? DEFAULT_SERVICE_CIDR;
    const clusterDomain = opts.clusterDomain ?? 'cluster.local';
    const { file, snapshot, records } = StateFile.open(opts.stateDir);
    let unlock: () => void = () => {};
    try {
      unlock = lockState(opts.stateDir);
      let port = opts.port;
      const addrPath = join(opts.stateDir, ADDRESS_FILE);
      if (port === undefined && existsSync(addrPath)) {
        const saved = JSON.parse(readFileSync(addrPath, 'utf8')) as { port?: unknown };
        if (typeof saved.port === 'number') port = saved.port;
      }
      let serviceIp: string;
      try {
        serviceIp = kubernetesServiceIp(serviceCidr);
      } catch (e) {
        throw new AmbitError('AMBIT_ERR_APISERVER_START', `invalid service CIDR ${serviceCidr}: ${errorMessage(e)}`, { cause: e });
      }
      const pki = loadOrCreatePki(opts.stateDir, servingHosts([host, advertise, ...(opts.extraSans ?? [])], clusterDomain, serviceIp), now());
      const store = new Store(file, {
        historySize: opts.historySize ?? 1000,
        onListenerError: (err) => log.error({ err }, 'a store listener failed'),
      });
      store.load(snapshot, records);
      const issuer = `https://kubernetes.default.svc.${clusterDomain}`;
      const signer = new TokenSigner(pki.saKeyPem, pki.saPublicKeyPem, issuer);
      const authenticator = new Authenticator(store, signer, pki.adminToken, [issuer], now);
      const settings = { serviceCidr, nodePortRange: opts.nodePortRange ?? ([30000, 32767] as [number, number]), rootCaPem: pki.caCertPem };
      const registry = new Registry(store, settings, now);
      const types = new ResourceTypes();
      const controllers = new Controllers(registry, types, log);
      let ready = false;
      let boundPort = 0;
      const handler = new ApiHandler({
        registry,
        types,
        authenticator,
        signer,
        serverAddress: () => `${advertise.includes(':') ? `[${advertise}]` : advertise}:${boundPort}`,
        now,
        log,
        ready: () => ready,
        minRequestTimeoutSeconds: opts.minRequestTimeoutSeconds ?? DEFAULT_MIN_REQUEST_TIMEOUT_S,
      });
      const server = createServer({ key: pki.servingKeyPem, cert: pki.servingCertPem, ALPNProtocols: ['http/1.1'] });
      server.requestTimeout = 0;
      server.timeout = 0;
      server.keepAliveTimeout = 60_000;
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e: NodeJS.ErrnoException) =>
          reject(new AmbitError('AMBIT_ERR_APISERVER_START', `cannot listen on ${host}:${port ?? 0} (${e.code ?? errorMessage(e)}); is another API server running there?`, { cause: e })),
        );
        server.listen(port ?? 0, host, () => resolve());
      });
      const addr = server.address();
      boundPort = typeof addr === 'object' && addr !== null ? addr.port : 0;
      writeAtomic(addrPath, JSON.stringify({ host, port: boundPort, advertiseAddress: advertise }), 0o644);
      const api = new ApiServer(server, handler, store, file, controllers, pki, signer, authenticator, unlock, log, host, boundPort, advertise, now);
      server.on('request', (req, res) => api.serve(req, res));
      server.on('clientError', (_e, socket) => {
        if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        socket.destroy();
      });
      controllers.start();
      bootstrap(registry, types, { clusterIp: serviceIp, endpointIp: isIP(advertise) ? advertise : '127.0.0.1', port: boundPort });
      ready = true;
      log.info({ url: api.url, stateDir: opts.stateDir, resourceVersion: store.rv }, 'api server listening');
      return api;
    } catch (e) {
      file.close();
      unlock();
      throw e;
    }
  }

  /** `https://<advertise>:<port>`. */
  get url(): string {
    const h = this.advertiseAddress.includes(':') ? `[${this.advertiseAddress}]` : this.advertiseAddress;
    return `https://${h}:${this.port}`;
  }

  get caCertPem(): string {
    return this.pki.caCertPem;
  }

  /** The admin bearer token (user ambit-admin, group system:masters). Never log it. */
  get adminToken(): string {
    return this.pki.adminToken;
  }

  /** The latest resourceVersion (for tests and status). */
  get resourceVersion(): number {
    return this.store.rv;
  }

  /** The operator's kubeconfig (admin) as YAML text. */
  kubeconfig(namespace?: string): string {
    return kubeconfigYaml({ server: this.url, caCertPem: this.pki.caCertPem, token: this.pki.adminToken, ...(namespace ? { namespace } : {}) });
  }

  writeKubeconfig(path: string, namespace?: string): void {
    writeKubeconfig(path, { server: this.url, caCertPem: this.pki.caCertPem, token: this.pki.adminToken, ...(namespace ? { namespace } : {}) });
  }

  /** A kubeconfig that authenticates as a service account (for controllers and agents in tests). */
  serviceAccountKubeconfig(token: string, namespace: string, serviceAccount: string): string {
    return kubeconfigYaml({ server: this.url, caCertPem: this.pki.caCertPem, token, user: `${namespace}-${serviceAccount}`, namespace });
  }

  /** Mints a service-account token as TokenRequest does (the node runtime's projected tokens). */
  issueServiceAccountToken(o: IssueTokenOptions): { token: string; expirationTimestamp: string } {
    const body: JsonMap = { spec: { ...(o.audiences ? { audiences: o.audiences } : {}), ...(o.expirationSeconds !== undefined ? { expirationSeconds: o.expirationSeconds } : {}) } };
    if (o.pod !== undefined) (body['spec'] as JsonMap)['boundObjectRef'] = { kind: 'Pod', apiVersion: 'v1', name: o.pod };
    const r = tokenRequest({ store: this.store, authenticator: this.authenticator, signer: this.signer, now: this.now }, o.namespace, o.serviceAccount, body);
    const status = r['status'] as JsonMap;
    return { token: String(status['token']), expirationTimestamp: String(status['expirationTimestamp']) };
  }

  /**
   * One request through the full pipeline without HTTP (as the admin, or `user`); watches are not
   * served here. Rejects only on a bug; API failures are Status bodies with their code.
   */
  async request(r: InProcessRequest): Promise<InProcessResponse> {
    const bodyBuf = r.body === undefined ? Buffer.alloc(0) : Buffer.from(typeof r.body === 'string' ? r.body : JSON.stringify(r.body));
    const headers: Record<string, string> = { accept: 'application/json', ...(r.headers ?? {}) };
    if (r.body !== undefined) headers['content-type'] = r.contentType ?? 'application/json';
    const req: ApiRequest = { method: r.method, url: r.path, headers, body: () => Promise.resolve(bodyBuf) };
    let status = 0;
    let outHeaders: Record<string, string | string[]> = {};
    let text = '';
    await this.handler.handle(
      req,
      {
        head: (code, h) => {
          status = code;
          outHeaders = h;
        },
        write: (c) => {
          text += c;
        },
        end: (c) => {
          if (c !== undefined) text += c;
        },
        onClose: () => {},
      },
      r.user ?? { username: ADMIN_USER, uid: randomUUID(), groups: [MASTERS_GROUP, AUTHENTICATED_GROUP] },
    );
    let body: unknown = text;
    try {
      body = JSON.parse(text) as unknown;
    } catch {
      // Plain text (health endpoints).
    }
    return { status, headers: outHeaders, body };
  }

  /**
   * `request()` that returns the body of a 2xx answer and throws AMBIT_ERR_APISERVER_REQUEST
   * (naming method, path, code, reason and message) otherwise.
   */
  async requestOk<T = unknown>(r: InProcessRequest): Promise<T> {
    const res = await this.request(r);
    if (res.status >= 200 && res.status < 300) return res.body as T;
    const st = (typeof res.body === 'object' && res.body !== null ? res.body : {}) as { reason?: string; message?: string };
    throw new AmbitError('AMBIT_ERR_APISERVER_REQUEST', `${r.method} ${r.path}: ${res.status} ${st.reason ?? ''}: ${st.message ?? String(res.body)}`, {
      details: { status: res.status, reason: st.reason, body: res.body },
    });
  }

  private serve(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
    const started = this.now();
    const apiReq: ApiRequest = { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body: () => readBody(req) };
    let closed = false;
    const closeCbs: Array<() => void> = [];
    res.on('close', () => {
      closed = true;
      for (const cb of closeCbs) cb();
    });
    const apiRes: ApiResponse = {
      head: (code, headers) => {
        if (res.headersSent || closed) return;
        res.writeHead(code, headers);
        res.flushHeaders();
      },
      write: (chunk) => {
        if (!closed) res.write(chunk);
      },
      end: (chunk) => {
        if (!closed) res.end(chunk);
      },
      onClose: (cb) => {
        if (closed) cb();
        else closeCbs.push(cb);
      },
      started: () => res.headersSent,
    };
    void this.handler.handle(apiReq, apiRes).then(() => {
      this.log.debug({ method: req.method, path: (req.url ?? '').split('?')[0], code: res.statusCode, durationMs: this.now() - started }, 'request');
    });
  }

  /** Stops serving: watches end, connections close, controllers stop, state is flushed. */
  async stop(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.controllers.stop();
    this.handler.closeWatches();
    await new Promise<void>((resolve) => {
      // Watches just ended cleanly; connections still busy after a grace period are cut.
      const force = setTimeout(() => {
        this.server.closeAllConnections();
        for (const s of this.sockets) s.destroy();
      }, STOP_GRACE_MS);
      this.server.close(() => {
        clearTimeout(force);
        resolve();
      });
      this.server.closeIdleConnections();
    });
    this.store.compact();
    this.file.close();
    this.unlock();
    this.log.info({ resourceVersion: this.store.rv }, 'api server stopped');
  }
}

