/**
 * The controller: object store → translation → config streams, plus the certificate authority,
 * served on one gRPC-over-TLS port (15012). The same class runs in local mode (store fed by
 * manifests through `ambit local`) and, later, on Kubernetes (store fed by informers).
 * Invariants: translation is pure (incremental, with translateAll's output) and runs on every store change; a translation that fails
 * validation is not pushed (the config server keeps what subscribers already hold).
 */
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import { AmbitError } from '../shared/errors.js';
import { DEFAULT_CLUSTER_ID } from '../shared/env.js';
import type { Logger } from '../shared/log.js';
import { createRegistry } from '../shared/metrics.js';
import { ambitVersion } from '../shared/version.js';
import type { Workload } from '../shared/model.js';
import { AdminServer } from './admin.js';
import { CertificateAuthority } from './ca/authority.js';
import { createCaService } from './ca/service.js';
import { refuseIdentity, refuseSubscription, StaticTokenAuthenticator, type AccessView, type CallerAuthenticator, type PodRecord } from './callers.js';
import { ObjectStore } from './store.js';
import { DnsAnswers } from './dns-answers.js';
import { CONDITION_WARNING } from './translate/field-warnings.js';
import { serviceEntryDnsNames } from './translate/service-entries.js';
import { keepUnchanged } from './translate/stable.js';
import { IncrementalTranslator } from './translate/incremental.js';
import { type MeshTranslation, type TranslateOptions, type TranslateResult } from './translate/translate.js';
import type { TranslateRoutesResult } from './translate/routes.js';
import type { GatewayListener } from '../shared/routes.js';
import { RoleScopes } from './xds/scope.js';
import { ConfigServer, type StreamLimits } from './xds/server.js';

export interface WorkloadCaptureState {
  captured: boolean;
  mode: string;
  node: string;
  message?: string;
}

export interface ControllerOptions {
  /** Where the CA root lives (created on first start, reused after). */
  stateDir: string;
  host: string;
  port: number;
  trustDomain: string;
  /**
   * Who may call: node tokens (token → node name) for a StaticTokenAuthenticator, or an
   * authenticator of the caller's own (local mode registers pod tokens on one it keeps).
   */
  auth: { nodeTokens: Map<string, string> } | { authenticator: CallerAuthenticator };
  log: Logger;
  registry?: Registry;
  debounceMs?: number;
  /** Lifetime of issued workload certificates (default the CA service's, 24h). */
  certTtlMs?: number;
  /** The longest lifetime the CA signs whatever a request asks (default certTtlMs). */
  certMaxTtlMs?: number;
  /** Bearer token /debug/* on the admin port requires (undefined: loopback callers only). */
  adminToken?: string;
  /** Bounds on config streams before they subscribe and per caller (defaults: DEFAULT_STREAM_LIMITS). */
  streamLimits?: Partial<StreamLimits>;
  /** Resolves ServiceEntry host names (default: the system resolver). */
  resolveHost?: (name: string) => Promise<string[]>;
  /** Also serve the HTTP admin endpoints (/metrics, /ready, /debug/syncz, /debug/config_dump) here. */
  admin?: { host: string; port: number };
  /** The CA to sign with (Kubernetes mode: from the cluster's Secret); default: loaded or created under stateDir. */
  ca?: CertificateAuthority;
  /** The store to translate (Kubernetes mode: the one its source already filled); default a new empty one. */
  store?: ObjectStore;
  /** DNS names of the serving certificate (default ambit-controller, ambit-controller.ambit-system.svc). */
  servingDnsNames?: string[];
  /** Called after every translation (Kubernetes mode writes status from it). */
  onTranslated?: () => void;
  /** Cluster id, cluster domain and root namespace of translation (trustDomain comes from above). */
  translate?: Partial<Omit<TranslateOptions, 'trustDomain'>>;
}

export class Controller {
  readonly store: ObjectStore;
  readonly registry: Registry;
  readonly configServer: ConfigServer;
  /** The current translation; its listeners hold TLS key material, so they are never logged or dumped. */
  private translated: MeshTranslation = {
    model: { workloads: [], services: [], authorizations: [], conditions: [] },
    routes: { routes: [], gateways: [], conditions: [] },
    listeners: { byPod: new Map(), conditions: [] },
  };
  /** Translation of the store, re-deriving per change only what it touched (translate/incremental.ts). */
  private readonly translator = new IncrementalTranslator();
  /** What each subscriber holds, by role (xds/scope.ts). */
  private scopes = new RoleScopes(this.translated);
  private unsubscribe: () => void = () => undefined;
  /** Addresses of the hosts DNS ServiceEntries name; a changed answer translates again. */
  private readonly dnsAnswers: DnsAnswers;
  /** When the controller came up (ms since epoch; after the CA loaded). */
  readonly startedAt = Date.now();
  /** The admin server when `admin` was given. */
  adminServer: AdminServer | undefined;

  private constructor(
    private readonly opts: ControllerOptions,
    readonly ca: CertificateAuthority,
    private readonly server: grpc.Server,
    readonly address: string,
    private readonly authenticator: CallerAuthenticator,
  ) {
    this.registry = opts.registry ?? createRegistry({ build: { component: 'pilot', tag: ambitVersion() } });
    this.store = opts.store ?? new ObjectStore();
    this.dnsAnswers = new DnsAnswers({ log: opts.log, onChange: () => this.retranslate(), ...(opts.resolveHost ? { resolve: opts.resolveHost } : {}) });
    this.configServer = new ConfigServer({
      log: opts.log,
      registry: this.registry,
      debounceMs: opts.debounceMs ?? 50,
      authenticate: (token) => this.authenticator.authenticate(token),
      authorize: (caller, node) => refuseSubscription(caller, node, this.access),
      ...(opts.streamLimits ? { limits: opts.streamLimits } : {}),
    });
  }

  /** Loads (or creates) the CA, starts gRPC on host:port with TLS and serves CA + config streams. */
  static async start(opts: ControllerOptions): Promise<Controller> {
    const ca = opts.ca ?? (await CertificateAuthority.loadOrCreate({ dir: join(opts.stateDir, 'ca'), trustDomain: opts.trustDomain }));
    await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
    await writeFile(join(opts.stateDir, 'root-cert.pem'), ca.rootCertPem);
    const dnsNames = opts.servingDnsNames ?? ['ambit-controller', 'ambit-controller.ambit-system.svc'];
    const serving = ca.issueServingCert({ ips: [opts.host], dnsNames, ttlMs: 365 * 24 * 3_600_000 });
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
    const creds = grpc.ServerCredentials.createSsl(Buffer.from(ca.rootCertPem), [
      { cert_chain: Buffer.from(serving.certChainPem.join('\n')), private_key: Buffer.from(serving.keyPem) },
    ], false);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${opts.host}:${opts.port}`, creds, (err, p) => (err ? reject(new AmbitError('AMBIT_ERR_CA_INIT', `controller cannot listen on ${opts.host}:${opts.port}: ${err.message}`, { cause: err })) : resolve(p))),
    );
    const authenticator = 'authenticator' in opts.auth ? opts.auth.authenticator : new StaticTokenAuthenticator(opts.auth.nodeTokens);
    const c = new Controller(opts, ca, server, `${opts.host}:${port}`, authenticator);
    const caService = createCaService({
      authority: ca,
      authenticator,
      authorize: (caller, spiffe) => refuseIdentity(caller, spiffe, c.access),
      registry: c.registry,
      log: opts.log,
      ...(opts.certTtlMs !== undefined ? { defaultTtlMs: opts.certTtlMs } : {}),
      ...(opts.certMaxTtlMs !== undefined ? { maxTtlMs: opts.certMaxTtlMs } : {}),
    });
    server.addService(caService.definition, caService.implementation);
    c.configServer.addToServer(server);
    c.configServer.setSnapshotProvider((node) => c.scopes.for(node));
    c.unsubscribe = c.store.subscribe(() => c.retranslate());
    c.retranslate();
    opts.log.info({ address: c.address }, 'controller serving CA and config streams');
    if (opts.admin) {
      try {
        c.adminServer = await AdminServer.start({ source: c, host: opts.admin.host, port: opts.admin.port, log: opts.log, startedAt: c.startedAt, ...(opts.adminToken !== undefined ? { debugToken: opts.adminToken } : {}) });
      } catch (err) {
        await c.close();
        throw err;
      }
    }
    return c;
  }

  /** Translates the store and notifies subscribers (debounced by the config server). */
  retranslate(): void {
    try {
      const { objects, byKind } = this.store.snapshot();
      this.dnsAnswers.want(serviceEntryDnsNames(byKind.get('ServiceEntry') ?? []));
      // The cluster id defaults to Istio's, the one agents and waypoints default to.
      const next = this.translator.translate(objects, { clusterId: DEFAULT_CLUSTER_ID, ...this.opts.translate, trustDomain: this.opts.trustDomain, dnsAnswers: this.dnsAnswers.current() }, byKind);
      // Unchanged resources keep their identity, so the config server encodes only what changed.
      this.translated = keepUnchanged(this.translated, next);
      this.scopes = new RoleScopes(this.translated, this.scopes);
      // Rebuilt when next read (callers' authorization), not on every change.
      if (this.translated.model.workloads !== this.podIndexOf) this.podIndexCache = undefined;
      this.writeConditions();
      this.configServer.notify();
      this.opts.onTranslated?.();
    } catch (err) {
      this.opts.log.error({ err: err }, 'translation failed; subscribers keep the last config');
    }
  }

  private lastConditions = new Map<string, string>();
  /** The condition lists last written (unchanged lists are kept as the same arrays: translate/stable.ts). */
  private conditionsWritten: readonly unknown[] = [];

  /** Writes translation conditions into each object's status; logs only the ones that changed. */
  private writeConditions(): void {
    const lists = [this.translated.model.conditions, this.translated.routes.conditions, this.translated.listeners.conditions];
    if (lists.every((l, i) => l === this.conditionsWritten[i])) return;
    this.conditionsWritten = lists;
    const byObject = new Map<string, TranslateResult['conditions']>();
    for (const c of [...this.translated.model.conditions, ...this.translated.routes.conditions, ...this.translated.listeners.conditions]) byObject.set(c.objectKey, [...(byObject.get(c.objectKey) ?? []), c]);
    const next = new Map<string, string>();
    for (const [key, conds] of byObject) {
      const text = JSON.stringify(conds);
      next.set(key, text);
      if (this.lastConditions.get(key) === text) continue;
      const [kind, namespace, ...rest] = key.split('/');
      const obj = this.store.get(kind!, namespace || undefined, rest.join('/'));
      if (!obj) continue;
      const conditions = conds.map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message }));
      this.store.setStatus(kind!, namespace || undefined, rest.join('/'), { ...(obj.status ?? {}), conditions });
      for (const c of conds) {
        const level = c.status === 'True' && c.reason === 'Accepted' ? 'debug' : 'warn';
        this.opts.log[level]({ object: key, type: c.type, reason: c.reason }, c.message);
      }
    }
    this.lastConditions = next;
  }

  /** The current route translation (what waypoints and gateways are being served). */
  routeTranslation(): TranslateRoutesResult {
    return this.translated.routes;
  }

  /** The current ingress listener translation (holds TLS key material: never log or dump it). */
  listenerTranslation(): MeshTranslation['listeners'] {
    return this.translated.listeners;
  }

  /** Ports each ingress gateway pod (`ns/name`) listens on, with their protocol (no TLS material). */
  gatewayPorts(): Map<string, Array<{ port: number; protocol: GatewayListener['protocol']; hosts: string[]; gateways: string[] }>> {
    const out = new Map<string, Array<{ port: number; protocol: GatewayListener['protocol']; hosts: string[]; gateways: string[] }>>();
    for (const [pod, ls] of this.translated.listeners.byPod) out.set(pod, ls.map((l) => ({ port: l.port, protocol: l.protocol, hosts: [...l.hosts], gateways: [...l.gateways] })));
    return out;
  }

  /** Why some Istio Gateway servers are not served by the gateway pods they select (condition messages). */
  gatewayProblems(): string[] {
    return this.translated.listeners.conditions.map((c) => c.message);
  }

  /**
   * Every translation condition that says something is not served as written: refused (status
   * False), partly applied, or a field warning (field-warnings.ts). Sorted by object. Gateway
   * listener conditions are not among them: gatewayProblems() lists those.
   */
  objectProblems(): TranslateResult['conditions'] {
    const all = [...this.translated.model.conditions, ...this.translated.routes.conditions];
    return all.filter(isProblem).sort((a, b) => (a.objectKey < b.objectKey ? -1 : a.objectKey > b.objectKey ? 1 : 0));
  }

  /** The current translation (what subscribers are being served). */
  translation(): TranslateResult {
    return this.translated.model;
  }

  /** Pods by `namespace/name`, rebuilt with each translation: what callers are authorized against. */
  private podIndexCache: Map<string, PodRecord> | undefined;
  /** The workloads podIndexCache was built from. */
  private podIndexOf: readonly Workload[] | undefined;

  private get podIndex(): Map<string, PodRecord> {
    if (!this.podIndexCache) {
      const workloads = this.translated.model.workloads;
      // Pods only: ServiceEntry endpoints are workloads too, but no caller may act as one.
      this.podIndexCache = new Map(workloads.filter((w) => w.uid.includes('/v1/Pod/')).map((w) => [`${w.namespace}/${w.name}`, { namespace: w.namespace, name: w.name, serviceAccount: w.serviceAccount, node: w.node, labels: w.labels }]));
      this.podIndexOf = workloads;
    }
    return this.podIndexCache;
  }

  /** The controller's current view as caller authorization reads it (callers.ts). */
  get access(): AccessView {
    return {
      trustDomain: this.opts.trustDomain,
      podsOnNode: (node) => this.translated.model.workloads.filter((w) => w.node === node),
      pod: (namespace, name) => this.podIndex.get(`${namespace}/${name}`),
    };
  }

  enrolledWorkloads(): Workload[] {
    return this.translated.model.workloads.filter((w) => w.tunnelProtocol === 'HBONE');
  }

  agentConnected(node: string): boolean {
    return this.configServer.subscribers().some((s) => s.role === 'agent' && s.nodeName === node);
  }

  /** Capture state of each workload as its node's agent last reported it. */
  captureStatus(): Map<string, WorkloadCaptureState> {
    const out = new Map<string, WorkloadCaptureState>();
    for (const s of this.configServer.subscribers()) {
      if (s.role !== 'agent') continue;
      for (const w of s.workloadStatus) {
        out.set(w.uid, { captured: w.captured, mode: w.mode, node: s.nodeName, ...(w.message ? { message: w.message } : {}) });
      }
    }
    return out;
  }

  /** Resolves once `agents` agents are connected and every subscriber acknowledged the current config. */
  async waitForSync(agents: number, timeoutMs: number): Promise<void> {
    this.configServer.flush();
    await this.configServer.waitForSync(() => true, timeoutMs, { minSubscribers: agents });
  }

  async close(): Promise<void> {
    this.unsubscribe();
    this.dnsAnswers.close();
    await this.adminServer?.close();
    this.configServer.close();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

/** Whether a condition reports something not served as written (see Controller.objectProblems). */
export function isProblem(c: { type: string; status: string; reason: string }): boolean {
  return c.status !== 'True' || c.type === CONDITION_WARNING || c.reason === 'PartiallyApplied';
}
