/**
 * The config stream client shared by the agent and the waypoint: subscribes to the controller's
 * ConfigDiscovery.DeltaConfig, validates every response, hands the new state to `onUpdate`, ACKs
 * or NACKs, and reconnects with jittered backoff, resyncing through initial_resource_versions.
 *
 * Invariants:
 * - `state` is the last good config: a response is applied all-or-nothing; any invalid resource
 *   or a failing `onUpdate` NACKs it and `state` stays what it was.
 * - Responses are processed one at a time, in order; responses of a stream that has ended are
 *   dropped unapplied, and a new stream starts only after the one being applied is done, so the
 *   versions it announces are exactly what `state` holds.
 * - Losing the controller never clears `state`: the data plane keeps serving with what it has.
 */
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { backoffMs } from '../drain.js';
import { AmbitError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { GatewayListener, RouteConfig } from '../routes.js';
import { ALL_RESOURCE_TYPES, RESOURCE_TYPES, TYPE_AUTHORIZATION, TYPE_GATEWAY_LISTENER, TYPE_ROUTE_CONFIG, TYPE_SERVICE, TYPE_WORKLOAD, type Resource, type ResourceType } from '../resources.js';
import { type Authorization, type Service, type Workload } from '../model.js';
import { PersistentMap } from '../state/persistent-map.js';
import { validateResource } from '../validate-resource.js';
import { deepFreeze, formatIssue, type Issue } from '../validate.js';
import { createConfigClientMetrics, type ConfigClientMetrics, type StreamTermination } from './metrics.js';
import { nodeToMessage, type NodeInfo, type WorkloadStatus } from './node.js';
import {
  CONFIG_SERVICE_PATH,
  type DeltaConfigRequestMessage,
  type DeltaConfigResponseMessage,
  type StatusMessage,
} from './proto.js';
import { typeLabel } from './resource-codec.js';
import { decodeDeltaConfigResponse, encodeDeltaConfigRequest } from '../api/wire.js';

/**
 * The last good config, immutable: every applied update makes a new state. Its maps are
 * PersistentMaps (an update costs its own size, not the map's: decision 65); post them to a
 * worker thread through `transferableState`.
 */
export interface ConfigState {
  readonly workloads: ReadonlyMap<string, Workload>;
  readonly services: ReadonlyMap<string, Service>;
  readonly authorizations: ReadonlyMap<string, Authorization>;
  /** Route configs (waypoints and gateways subscribe to them; absent until one arrives). */
  readonly routes?: ReadonlyMap<string, RouteConfig>;
  /** Ingress listeners by port (gateways subscribe to them; absent until one arrives). */
  readonly listeners?: ReadonlyMap<string, GatewayListener>;
  /** Per type URL: resource name → version. */
  readonly versions: ReadonlyMap<ResourceType, ReadonlyMap<string, string>>;
  /** Per type URL: system_version_info of the last applied response. */
  readonly systemVersions: ReadonlyMap<ResourceType, string>;
}

/** What one applied response changed. */
export interface ConfigChange {
  typeUrl: ResourceType;
  /** Names added or replaced (sorted). */
  updated: string[];
  /** Names removed (sorted; only names that were present). */
  removed: string[];
  systemVersion: string;
  /** First response of this type since start(): consumers may treat it as the initial sync. */
  initial: boolean;
}

export interface ConfigClientOptions {
  /** `host:port` of the controller's gRPC endpoint. */
  address: string;
  credentials: grpc.ChannelCredentials;
  /** Metadata for each stream (e.g. a bearer token); a function is called on every (re)connect. */
  callMetadata?: grpc.Metadata | (() => grpc.Metadata | Promise<grpc.Metadata>);
  channelOptions?: grpc.ChannelOptions;
  node: NodeInfo;
  /** Types to subscribe to (default all three). */
  types?: readonly ResourceType[];
  /** Applies a new state; throw or reject to NACK it (the state then stays the previous one). */
  onUpdate: (state: ConfigState, changed: ConfigChange) => void | Promise<void>;
  /** Per-pod capture state sent with every ACK and with reportStatus() (agents). */
  statusProvider?: () => WorkloadStatus[];
  log: Logger;
  registry: Registry;
  backoff?: { baseMs?: number; capMs?: number };
  random?: () => number;
  now?: () => number;
}

const EMPTY_STATE: ConfigState = Object.freeze({
  workloads: PersistentMap.of<string, Workload>(),
  services: PersistentMap.of<string, Service>(),
  authorizations: PersistentMap.of<string, Authorization>(),
  versions: new Map<ResourceType, ReadonlyMap<string, string>>(),
  systemVersions: new Map<ResourceType, string>(),
});

/** The resources of one type in a state. */
export function resourcesOf(state: ConfigState, typeUrl: ResourceType): ReadonlyMap<string, Resource> {
  if (typeUrl === TYPE_WORKLOAD) return state.workloads;
  if (typeUrl === TYPE_SERVICE) return state.services;
  if (typeUrl === TYPE_ROUTE_CONFIG) return state.routes ?? new Map<string, RouteConfig>();
  if (typeUrl === TYPE_GATEWAY_LISTENER) return state.listeners ?? new Map<string, GatewayListener>();
  return state.authorizations;
}

/**
 * `state` with every map a plain Map, for a structured clone (postMessage to a worker thread);
 * each PersistentMap is folded at most once, so posting the same state again costs no copy.
 */
export function transferableState(state: ConfigState): ConfigState {
  const plain = <V>(m: ReadonlyMap<string, V>): ReadonlyMap<string, V> => (m instanceof PersistentMap ? m.toMap() : m);
  return {
    workloads: plain(state.workloads),
    services: plain(state.services),
    authorizations: plain(state.authorizations),
    ...(state.routes ? { routes: plain(state.routes) } : {}),
    ...(state.listeners ? { listeners: plain(state.listeners) } : {}),
    versions: new Map([...state.versions].map(([t, v]) => [t, plain(v)])),
    systemVersions: state.systemVersions,
  };
}

const persistent = <V>(m: ReadonlyMap<string, V>): PersistentMap<string, V> => (m instanceof PersistentMap ? (m as PersistentMap<string, V>) : PersistentMap.of(m));

function withResources(state: ConfigState, typeUrl: ResourceType, resources: ReadonlyMap<string, Resource>, versions: ReadonlyMap<string, string>, systemVersion: string): ConfigState {
  const allVersions = new Map(state.versions);
  allVersions.set(typeUrl, versions);
  const systemVersions = new Map(state.systemVersions);
  systemVersions.set(typeUrl, systemVersion);
  return Object.freeze({
    workloads: typeUrl === TYPE_WORKLOAD ? (resources as ReadonlyMap<string, Workload>) : state.workloads,
    services: typeUrl === TYPE_SERVICE ? (resources as ReadonlyMap<string, Service>) : state.services,
    authorizations: typeUrl === TYPE_AUTHORIZATION ? (resources as ReadonlyMap<string, Authorization>) : state.authorizations,
    ...(typeUrl === TYPE_ROUTE_CONFIG ? { routes: resources as ReadonlyMap<string, RouteConfig> } : state.routes ? { routes: state.routes } : {}),
    ...(typeUrl === TYPE_GATEWAY_LISTENER ? { listeners: resources as ReadonlyMap<string, GatewayListener> } : state.listeners ? { listeners: state.listeners } : {}),
    versions: allVersions,
    systemVersions,
  });
}

const MAX_NACK_ISSUES = 5;
const GRPC_INVALID_ARGUMENT = 3;
const GRPC_INTERNAL = 13;

type Call = grpc.ClientDuplexStream<DeltaConfigRequestMessage, DeltaConfigResponseMessage>;

interface Reply {
  nonce: string;
  errorDetail: StatusMessage | null;
}

/** Subscribes to the controller's config stream and keeps the last good config. */
export class ConfigClient {
  private readonly opts: ConfigClientOptions;
  private readonly log: Logger;
  private readonly metrics: ConfigClientMetrics;
  private readonly types: readonly ResourceType[];
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly random: () => number;
  private client: grpc.Client | undefined;
  private call: Call | undefined;
  private current: ConfigState = EMPTY_STATE;
  private queue: Promise<void> = Promise.resolve();
  private readonly lastReply = new Map<ResourceType, Reply>();
  private readonly applied = new Set<ResourceType>();
  private syncWaiters: Array<() => void> = [];
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  /** Types whose last apply failed; a resubscribe after backoff retries them. */
  private readonly failedApply = new Set<ResourceType>();
  private applyFailures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private started = false;
  private readonly now: () => number;
  private appliedAt: number | undefined;
  private closed = false;
  private connected = false;

  constructor(opts: ConfigClientOptions) {
    this.opts = opts;
    this.log = opts.log.child({ component: 'config-client' });
    this.metrics = createConfigClientMetrics(opts.registry);
    this.types = [...new Set(opts.types ?? RESOURCE_TYPES)];
    const unknown = this.types.filter((t) => !(ALL_RESOURCE_TYPES as readonly string[]).includes(t));
    if (unknown.length > 0 || this.types.length === 0) {
      throw new AmbitError('AMBIT_ERR_XDS_STREAM', `config client types ${JSON.stringify(unknown)} are not among ${ALL_RESOURCE_TYPES.join(', ')} (or none given)`);
    }
    this.baseMs = opts.backoff?.baseMs ?? 500;
    this.capMs = opts.backoff?.capMs ?? 15_000;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.metrics.connected.set(0);
    for (const t of this.types) this.metrics.synced.set({ type: typeLabel(t) }, 0);
  }

  /** The last good config (immutable). */
  get state(): ConfigState {
    return this.current;
  }

  /** True while a stream is up and has delivered at least one response. */
  get isConnected(): boolean {
    return this.connected;
  }

  /** When the last update was applied (ms since epoch, from `now`); undefined before the first. */
  get lastAppliedAt(): number | undefined {
    return this.appliedAt;
  }

  /** True once every subscribed type has been applied at least once since start(). */
  get isSynced(): boolean {
    return this.types.every((t) => this.applied.has(t));
  }

  /** Resolves once every subscribed type has been applied at least once (readiness). */
  whenSynced(): Promise<void> {
    if (this.isSynced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.client = new grpc.Client(this.opts.address, this.opts.credentials, {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.initial_reconnect_backoff_ms': this.baseMs,
      'grpc.max_reconnect_backoff_ms': this.capMs,
      ...(this.opts.channelOptions ?? {}),
    });
    this.connectSafely();
  }

  /** Ends the stream and stops reconnecting; `state` stays readable. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.client?.close();
    this.setConnected(false);
  }

  /**
   * Sends the current statusProvider() report now (e.g. after capture changed), riding on a repeat
   * of the last ACK/NACK. Before the first response of a stream it is a no-op: the first ACK
   * carries the report.
   */
  reportStatus(): void {
    const call = this.call;
    if (!call || !this.opts.statusProvider) return;
    for (const type of this.types) {
      const reply = this.lastReply.get(type);
      if (!reply) continue;
      this.write(call, { typeUrl: type, responseNonce: reply.nonce, errorDetail: reply.errorDetail, withStatus: true });
      return;
    }
  }

  // ---- stream lifecycle ----

  private connectSafely(): void {
    this.connect().catch((e: unknown) => {
      this.log.error({ err: e }, 'config stream could not be opened; retrying');
      this.scheduleReconnect();
    });
  }

  private async connect(): Promise<void> {
    this.reconnectTimer = undefined;
    if (this.closed || !this.client) return;
    // Announce versions only after any response still being applied has settled.
    await this.queue;
    if (this.closed) return;
    let metadata: grpc.Metadata;
    try {
      const m = this.opts.callMetadata;
      metadata = m === undefined ? new grpc.Metadata() : typeof m === 'function' ? await m() : m.clone();
    } catch (e) {
      this.log.warn({ err: e }, 'cannot build config stream metadata; retrying');
      this.scheduleReconnect();
      return;
    }
    if (this.closed) return;
    const call = this.client.makeBidiStreamRequest<DeltaConfigRequestMessage, DeltaConfigResponseMessage>(
      CONFIG_SERVICE_PATH,
      encodeDeltaConfigRequest,
      decodeDeltaConfigResponse,
      metadata,
    );
    this.call = call;
    this.lastReply.clear();
    call.on('data', (resp: DeltaConfigResponseMessage) => {
      this.queue = this.queue.then(() => this.handleResponse(call, resp)).catch((e: unknown) => {
        this.log.error({ err: e }, 'config response handling failed');
      });
    });
    call.on('error', (e: unknown) => {
      // Reported through 'status'; the listener keeps the error from being thrown.
      this.log.debug({ err: e }, 'config stream error');
    });
    call.on('status', (s: grpc.StatusObject) => this.onStreamEnd(call, s));
    this.log.info({ address: this.opts.address, attempt: this.attempt }, 'config stream opening');
    for (const type of this.types) {
      const versions = this.current.versions.get(type) ?? new Map<string, string>();
      const req: DeltaConfigRequestMessage = {
        node: nodeToMessage(this.opts.node),
        typeUrl: type,
        resourceNamesSubscribe: [],
        resourceNamesUnsubscribe: [],
        initialResourceVersions: Object.fromEntries(versions),
        responseNonce: '',
        errorDetail: null,
        status: null,
      };
      try {
        call.write(req);
      } catch (e) {
        this.log.warn({ err: e }, 'config subscribe failed');
        return;
      }
    }
  }

  private onStreamEnd(call: Call, status: grpc.StatusObject): void {
    if (call !== this.call) return;
    this.call = undefined;
    this.setConnected(false);
    for (const t of this.types) this.metrics.synced.set({ type: typeLabel(t) }, 0);
    if (this.closed) return;
    this.metrics.terminations.inc({ reason: terminationReason(status.code, this.failedApply.size > 0) });
    const fields = { code: grpc.status[status.code] ?? status.code, details: status.details };
    if (status.code === grpc.status.CANCELLED && this.failedApply.size > 0) this.log.info('config stream restarted to retry a failed apply');
    else if (status.code === grpc.status.OK) this.log.info(fields, 'config stream ended by the controller; reconnecting');
    else this.log.warn(fields, 'config stream failed; reconnecting, the last good config stays in force');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const wait = backoffMs(this.attempt, this.baseMs, this.capMs, this.random);
    this.attempt++;
    this.metrics.reconnects.inc();
    this.log.debug({ waitMs: wait, attempt: this.attempt }, 'config stream reconnect scheduled');
    this.reconnectTimer = setTimeout(() => this.connectSafely(), wait);
  }

  private setConnected(up: boolean): void {
    this.connected = up;
    this.metrics.connected.set(up ? 1 : 0);
  }

  // ---- responses ----

  private async handleResponse(call: Call, resp: DeltaConfigResponseMessage): Promise<void> {
    if (call !== this.call || this.closed) return; // a response of an ended stream is not applied
    if (!this.connected) {
      this.setConnected(true);
      this.attempt = 0;
      this.log.info({ address: this.opts.address }, 'config stream established');
    }
    const nonce = typeof resp.nonce === 'string' ? resp.nonce : '';
    const typeUrl = resp.typeUrl as ResourceType;
    if (!this.types.includes(typeUrl)) {
      this.log.warn({ typeUrl: String(resp.typeUrl).slice(0, 200) }, 'config response for a type not subscribed to');
      this.write(call, { typeUrl: resp.typeUrl, responseNonce: nonce, errorDetail: { code: GRPC_INVALID_ARGUMENT, message: `not subscribed to type_url ${JSON.stringify(String(resp.typeUrl).slice(0, 200))}` }, withStatus: false });
      return;
    }
    const label = typeLabel(typeUrl);
    this.metrics.messages.inc({ url: typeUrl });
    this.metrics.messageBytes.inc({ url: typeUrl }, resp.wireBytes ?? 0);
    const systemVersion = typeof resp.systemVersionInfo === 'string' ? resp.systemVersionInfo : '';

    const { decoded, removed, issues } = decodeResponse(typeUrl, resp);
    if (issues.length > 0) {
      const shown = issues.slice(0, MAX_NACK_ISSUES).map(formatIssue).join('; ');
      const more = issues.length > MAX_NACK_ISSUES ? `; and ${issues.length - MAX_NACK_ISSUES} more` : '';
      const message = `rejected ${label} config version ${systemVersion} (nonce ${nonce}): ${issues.length} invalid field(s): ${shown}${more}`;
      this.reject(call, typeUrl, nonce, GRPC_INVALID_ARGUMENT, message, { issues: issues.slice(0, 20).map(formatIssue) });
      return;
    }

    // Only what the response names is touched: the maps are persistent (no copy of the rest).
    const prevResources = persistent(resourcesOf(this.current, typeUrl));
    const prevVersions = persistent(this.current.versions.get(typeUrl) ?? PersistentMap.of<string, string>());
    const gone = [...new Set(removed.filter((name) => prevResources.has(name)))];
    const updated = [...decoded.keys()];
    const resources = prevResources.withChanges(removed, [...decoded].map(([name, r]) => [name, r.value] as const));
    const versions = prevVersions.withChanges(removed, [...decoded].map(([name, r]) => [name, r.version] as const));
    const next = withResources(this.current, typeUrl, resources, versions, systemVersion);
    const initial = !this.applied.has(typeUrl);
    const change: ConfigChange = { typeUrl, updated: updated.sort(), removed: gone.sort(), systemVersion, initial };
    if (initial || updated.length > 0 || gone.length > 0) {
      try {
        await this.opts.onUpdate(next, change);
      } catch (e) {
        this.reject(call, typeUrl, nonce, GRPC_INTERNAL, `applying ${label} config version ${systemVersion} failed: ${errorMessage(e)}`, { err: e });
        this.scheduleApplyRetry(call, typeUrl);
        return;
      }
    }
    this.current = next;
    this.appliedAt = this.now();
    this.applied.add(typeUrl);
    if (this.failedApply.delete(typeUrl) && this.failedApply.size === 0) {
      this.applyFailures = 0;
      if (this.retryTimer) clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.metrics.updates.inc({ type: label });
    this.metrics.synced.set({ type: label }, 1);
    this.log.debug({ type: label, version: systemVersion, updated: updated.length, removed: gone.length }, 'config applied');
    if (this.isSynced && this.syncWaiters.length > 0) {
      const waiters = this.syncWaiters;
      this.syncWaiters = [];
      for (const w of waiters) w();
    }
    if (call === this.call) this.write(call, { typeUrl, responseNonce: nonce, errorDetail: null, withStatus: true });
  }

  /**
   * An apply failure is often transient (a pod's cgroup not there yet), while the server only
   * resends on the next change: so after a backoff the stream is restarted, and the resync through
   * initial_resource_versions delivers again exactly what was not applied. Invalid resources are
   * not retried this way; they wait for the controller to send something new.
   */
  private scheduleApplyRetry(call: Call, typeUrl: ResourceType): void {
    this.failedApply.add(typeUrl);
    if (this.closed || this.retryTimer) return;
    const wait = backoffMs(this.applyFailures++, this.baseMs, this.capMs, this.random);
    this.log.info({ waitMs: wait, type: typeLabel(typeUrl) }, 'config apply failed; resubscribing after backoff to retry');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (call === this.call && !this.closed && this.failedApply.size > 0) call.cancel();
    }, wait);
  }

  private reject(call: Call, typeUrl: ResourceType, nonce: string, code: number, message: string, fields: Record<string, unknown>): void {
    const label = typeLabel(typeUrl);
    this.metrics.rejected.inc({ type: label });
    this.metrics.synced.set({ type: label }, 0);
    this.log.warn({ type: label, nonce, ...fields }, 'config update rejected; keeping the last good config');
    if (call === this.call) this.write(call, { typeUrl, responseNonce: nonce, errorDetail: { code, message: message.slice(0, 4096) }, withStatus: true });
  }

  private write(call: Call, r: { typeUrl: string; responseNonce: string; errorDetail: StatusMessage | null; withStatus: boolean }): void {
    let status: DeltaConfigRequestMessage['status'] = null;
    if (r.withStatus && this.opts.statusProvider) {
      try {
        status = { workloads: this.opts.statusProvider().map((s) => ({ uid: s.uid, captured: s.captured, mode: s.mode, message: s.message })) };
      } catch (e) {
        this.log.warn({ err: e }, 'status provider failed; sending the reply without status');
      }
    }
    const req: DeltaConfigRequestMessage = {
      node: null,
      typeUrl: r.typeUrl,
      resourceNamesSubscribe: [],
      resourceNamesUnsubscribe: [],
      initialResourceVersions: {},
      responseNonce: r.responseNonce,
      errorDetail: r.errorDetail,
      status,
    };
    try {
      call.write(req);
      if ((ALL_RESOURCE_TYPES as readonly string[]).includes(r.typeUrl)) {
        this.lastReply.set(r.typeUrl as ResourceType, { nonce: r.responseNonce, errorDetail: r.errorDetail });
      }
    } catch (e) {
      this.log.warn({ err: e }, 'config reply could not be sent');
    }
  }
}

interface Decoded {
  decoded: Map<string, { value: Resource; version: string }>;
  removed: string[];
  issues: Issue[];
}

/** Parses and validates every resource of a response; any issue rejects the whole response. */
export function decodeResponse(typeUrl: ResourceType, resp: DeltaConfigResponseMessage): Decoded {
  const decoded = new Map<string, { value: Resource; version: string }>();
  const issues: Issue[] = [];
  const label = typeLabel(typeUrl);
  const resources = Array.isArray(resp.resources) ? resp.resources : [];
  resources.forEach((r, i) => {
    const name = r?.name;
    if (typeof name !== 'string' || name.length === 0) {
      issues.push({ path: `${label}.resources[${i}].name`, problem: 'must be a non-empty string', value: name });
      return;
    }
    if (decoded.has(name)) {
      issues.push({ path: `${label}[${name}]`, problem: 'appears twice in one response', value: name });
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(Buffer.isBuffer(r.body) ? r.body.toString('utf8') : String(r.body));
    } catch (e) {
      issues.push({ path: `${label}[${name}].body`, problem: `is not valid JSON: ${errorMessage(e)}` });
      return;
    }
    const v = validateResource(typeUrl, name, body);
    if (v.issues.length > 0 || !v.value) {
      issues.push(...v.issues);
      return;
    }
    decoded.set(name, { value: deepFreeze(v.value) as Resource, version: typeof r.version === 'string' ? r.version : '' });
  });
  const removed = (Array.isArray(resp.removedResources) ? resp.removedResources : []).filter((n): n is string => typeof n === 'string');
  for (const n of removed) {
    if (decoded.has(n)) issues.push({ path: `${label}[${n}]`, problem: 'is both updated and removed in one response', value: n });
  }
  return { decoded, removed, issues };
}

/** ztunnel's reason for a config stream's end: OK is the server's Complete; our own cancel to retry an apply a Reconnect. */
export function terminationReason(code: grpc.status, restarting: boolean): StreamTermination {
  if (code === grpc.status.OK) return 'Complete';
  if (code === grpc.status.CANCELLED && restarting) return 'Reconnect';
  if (code === grpc.status.UNAVAILABLE) return 'ConnectionError';
  return 'Error';
}
