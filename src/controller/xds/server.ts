/**
 * The config stream server: per-subscriber delta streams (ConfigDiscovery.DeltaConfig) — stream
 * admission (authentication, authorization of the node a caller subscribes as, limits on streams
 * that have not subscribed yet and per caller), requests in order per stream, debounced pushes of
 * snapshot differences. The parts live beside it: snapshot.ts (what to send, validated and
 * encoded), scope.ts (what each role holds), subscription.ts (one type's subscription and its
 * ACK/NACK state), status.ts (the subscriber view and waiting for sync).
 *
 * Invariant: nothing a subscriber sends can throw out of a handler: bad input ends that stream
 * with INVALID_ARGUMENT or is ignored and logged.
 */
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { ALL_RESOURCE_TYPES, type ResourceType } from '../../shared/resources.js';
import { validateResource } from '../../shared/validate-resource.js';
import { isRecord, type Issue } from '../../shared/validate.js';
import { roleFromMessage, workloadStatusFromMessage, type NodeInfo, type NodeRole, type WorkloadStatus, NODE_ROLES } from '../../shared/xds/node.js';
import { configServiceDefinition, type DeltaConfigRequestMessage, type DeltaConfigResponseMessage } from '../../shared/xds/proto.js';
import { typeLabel } from '../../shared/xds/resource-codec.js';
import { bearerToken, callerKey, type Caller } from '../callers.js';
import { createConfigServerMetrics, type ConfigServerMetrics, type StreamRefusal } from './metrics.js';
import { SnapshotEncoder, type Snapshot, type SnapshotProvider } from './snapshot.js';
import { SyncWaiters, type SubscriberState, type SyncView } from './status.js';
import { applySubscriptionChange, boundedNames, isTypeNackedAtTarget, isTypeSynced, markDirty, newTypeSub, nextResponse, recordReply, typeState, type TypeSub } from './subscription.js';


export interface ConfigServerOptions {
  log: Logger;
  registry: Registry;
  /**
   * Coalescing window: a notify() after a quiet period (no notify() for this long) pushes at once,
   * on the next turn of the event loop; notify() calls within this long of the previous one wait
   * for this long of quiet (decision 65).
   */
  debounceMs?: number;
  /** Upper bound on how long a stream of notify() calls can delay a push (default 10×debounceMs). */
  maxDebounceMs?: number;
  now?: () => number;
  /** Validator run on every resource before sending (default validateResource). */
  validate?: (typeUrl: ResourceType, name: string, body: unknown) => Issue[];
  /**
   * Authenticates a stream from its bearer token (`authorization` metadata) when it opens, before
   * the stream is registered or any request is read; undefined refuses it with UNAUTHENTICATED.
   * Without this option every stream is anonymous and `authorize` is not consulted (tests only).
   */
  authenticate?: (token: string) => Promise<Caller | undefined>;
  /** Why an authenticated caller may not subscribe as `node`, or undefined when it may (PERMISSION_DENIED). */
  authorize?: (caller: Caller, node: NodeInfo) => string | undefined;
  /** Bounds on streams that have not subscribed yet and on streams per caller. */
  limits?: Partial<StreamLimits>;
}

export interface StreamLimits {
  /** A stream must authenticate and send its first request within this (DEADLINE_EXCEEDED after). */
  identifyTimeoutMs: number;
  /** Streams not yet subscribed, in all. */
  maxPending: number;
  /** Streams not yet subscribed, from one peer address. */
  maxPendingPerPeer: number;
  /** Subscribed streams of one caller (an agent needs one; a restart briefly makes two). */
  maxStreamsPerCaller: number;
  /** Requests a stream may queue before it has subscribed. */
  maxQueuedBeforeIdentify: number;
  /**
   * Bytes of first responses (a subscription's whole state) in flight at once; later
   * subscriptions wait for an ACK or NACK (one is always let through). Bounds the memory of many
   * agents syncing at once: each first response is its own buffer of the whole state, megabytes
   * at 10,000 pods.
   */
  maxInitialSyncBytes: number;
}

export const DEFAULT_STREAM_LIMITS: Readonly<StreamLimits> = {
  identifyTimeoutMs: 10_000,
  maxPending: 1024,
  maxPendingPerPeer: 32,
  maxStreamsPerCaller: 8,
  maxQueuedBeforeIdentify: 4,
  maxInitialSyncBytes: 64 * 1024 * 1024,
};

interface Subscriber {
  streamId: string;
  call: grpc.ServerDuplexStream<DeltaConfigRequestMessage, DeltaConfigResponseMessage>;
  peer: string;
  /** Peer address without the port: the unit of the pending-stream limit. */
  peerHost: string;
  /** Who the bearer token says is calling; undefined until authenticated (or without authentication). */
  caller: Caller | undefined;
  node: NodeInfo | undefined;
  /** Until the stream subscribes: ends it when it takes longer than identifyTimeoutMs. */
  identifyTimer: NodeJS.Timeout | undefined;
  /** Requests received and not yet handled. */
  queued: number;
  connectedAt: number;
  types: Map<ResourceType, TypeSub>;
  workloadStatus: WorkloadStatus[];
  statusAt: number | undefined;
  /** Requests are handled one at a time, in order. */
  queue: Promise<void>;
  closed: boolean;
  log: Logger;
}

const MAX_STATUS_ENTRIES = 10_000;
const MAX_MESSAGE_CHARS = 4096;

/** Serves ConfigDiscovery.DeltaConfig to agents, waypoints and gateways. */
export class ConfigServer {
  private readonly log: Logger;
  private readonly metrics: ConfigServerMetrics;
  private readonly debounceMs: number;
  private readonly maxDebounceMs: number;
  private readonly now: () => number;
  private readonly encoder: SnapshotEncoder;
  private readonly authenticate: ConfigServerOptions['authenticate'];
  private readonly authorize: ConfigServerOptions['authorize'];
  private readonly limits: StreamLimits;
  /** Streams that have not subscribed yet (authenticating or waiting for their first request). */
  private readonly pending = new Set<Subscriber>();
  private provider: SnapshotProvider = () => ({ resources: {} });
  private readonly subs = new Map<string, Subscriber>();
  private readonly waiters = new SyncWaiters();
  private debounceTimer: NodeJS.Timeout | undefined;
  /** A leading-edge push (notify() after a quiet period), due on the next turn of the event loop. */
  private pushImmediate: NodeJS.Immediate | undefined;
  /** Subscriptions whose first response is in flight, with its nonce and body bytes (maxInitialSyncBytes in all). */
  private readonly initialSyncs = new Map<TypeSub, { nonce: string; bytes: number }>();
  private initialSyncBytes = 0;
  /** Subscriptions waiting to send their first response, in arrival order (pushes skip them). */
  private readonly initialQueue = new Map<TypeSub, Subscriber>();
  private firstNotifyAt: number | undefined;
  /** When notify() was last called: one debounceMs or more later pushes at once. */
  private lastNotifyAt: number | undefined;
  private nextStreamId = 1;
  private nextNonce = 1;
  private closed = false;

  constructor(opts: ConfigServerOptions) {
    this.log = opts.log.child({ component: 'config-server' });
    this.metrics = createConfigServerMetrics(opts.registry);
    this.debounceMs = opts.debounceMs ?? 100;
    this.maxDebounceMs = opts.maxDebounceMs ?? Math.max(this.debounceMs * 10, this.debounceMs);
    this.now = opts.now ?? Date.now;
    this.encoder = new SnapshotEncoder(opts.validate ?? ((t, n, b) => validateResource(t, n, b).issues), (t) => this.metrics.invalid.inc({ type: typeLabel(t) }));
    this.authenticate = opts.authenticate;
    this.authorize = opts.authorize;
    this.limits = { ...DEFAULT_STREAM_LIMITS, ...opts.limits };
    for (const role of NODE_ROLES) this.metrics.subscribers.set({ role }, 0);
  }

  /** Registers the DeltaConfig handler on a grpc Server (before bindAsync/start). */
  addToServer(server: grpc.Server): void {
    server.addService(configServiceDefinition(), {
      DeltaConfig: (call: grpc.ServerDuplexStream<DeltaConfigRequestMessage, DeltaConfigResponseMessage>) => this.handleStream(call),
    });
  }

  /** Serves the same snapshot to every subscriber, and schedules a push. */
  setSnapshot(snapshot: Snapshot): void {
    this.setSnapshotProvider(() => snapshot);
  }

  /** Serves per-subscriber snapshots, and schedules a push. */
  setSnapshotProvider(provider: SnapshotProvider): void {
    this.provider = provider;
    this.notify();
  }

  /**
   * Something changed: recompute every subscriber's snapshot and push the differences — at once
   * (next event-loop turn) when no notify() came for debounceMs, else once debounceMs pass without
   * one. Calls in one turn, and calls closer together than debounceMs, coalesce.
   */
  notify(): void {
    if (this.closed) return;
    const now = this.now();
    const quiet = this.lastNotifyAt === undefined || now - this.lastNotifyAt >= this.debounceMs;
    this.lastNotifyAt = now;
    if (this.pushImmediate) return; // the push about to run carries this change
    if (!this.debounceTimer && quiet) {
      this.firstNotifyAt = now;
      this.pushImmediate = setImmediate(() => this.flush());
      return;
    }
    this.firstNotifyAt ??= now;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    const waited = now - this.firstNotifyAt;
    const wait = Math.max(0, Math.min(this.debounceMs, this.maxDebounceMs - waited));
    this.debounceTimer = setTimeout(() => this.flush(), wait);
  }

  /** Pushes pending changes now instead of waiting for the debounce period. */
  flush(): void {
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.debounceTimer = undefined;
    if (this.pushImmediate) clearImmediate(this.pushImmediate);
    this.pushImmediate = undefined;
    const notifiedAt = this.firstNotifyAt;
    this.firstNotifyAt = undefined;
    if (this.closed) return;
    this.encoder.beginRound();
    let complete = true;
    for (const sub of this.subs.values()) {
      if (!sub.node || sub.closed || sub.types.size === 0) continue;
      const snapshot = this.snapshotFor(sub);
      if (!snapshot) {
        complete = false;
        continue;
      }
      for (const ts of sub.types.values()) {
        if (ts.inflight) complete = false; // its snapshot is computed later, when the ACK arrives
        this.push(sub, ts, { snapshot, notifiedAt, force: false });
      }
    }
    this.encoder.endRound(complete);
    this.lastFlushAt = this.now();
    this.checkWaiters();
  }

  /** When the last push round to every subscriber finished writing (ms, from `now`; the bench reads it). */
  lastFlushAt: number | undefined;

  /** The state of every connected subscriber, for proxy-status. */
  subscribers(): SubscriberState[] {
    const out: SubscriberState[] = [];
    for (const sub of this.subs.values()) {
      if (!sub.node) continue;
      out.push({
        streamId: sub.streamId,
        nodeId: sub.node.id,
        nodeName: sub.node.nodeName,
        role: sub.node.role,
        metadata: { ...(sub.node.metadata ?? {}) },
        peer: sub.peer,
        connectedAt: sub.connectedAt,
        types: [...sub.types.values()].map(typeState),
        workloadStatus: sub.workloadStatus.map((s) => ({ ...s })),
        statusAt: sub.statusAt,
      });
    }
    return out;
  }

  /**
   * Resolves once every subscriber matching `predicate` (at least `minSubscribers` of them) has
   * ACKed the current version of every type it subscribes to and no push is pending. Rejects with
   * AMBIT_ERR_XDS_NACK when a matching subscriber NACKs the current version, and with
   * AMBIT_ERR_XDS_SYNC_TIMEOUT after `timeoutMs`. With no matching subscriber and
   * minSubscribers 0 it resolves as soon as no push is pending.
   */
  waitForSync(predicate: (s: SubscriberState) => boolean = () => true, timeoutMs = 10_000, opts: { minSubscribers?: number } = {}): Promise<void> {
    return this.waiters.wait(predicate, timeoutMs, opts.minSubscribers ?? 0, () => this.syncView());
  }

  /** Ends every stream (clients reconnect elsewhere or later) and stops pushing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.debounceTimer = undefined;
    if (this.pushImmediate) clearImmediate(this.pushImmediate);
    this.pushImmediate = undefined;
    for (const sub of [...this.subs.values(), ...this.pending]) this.endStream(sub, grpc.status.UNAVAILABLE, 'config server shutting down');
    this.waiters.rejectAll(new AmbitError('AMBIT_ERR_XDS_STREAM', 'config server closed while waiting for subscribers to sync'));
  }

  // ---- streams ----

  private handleStream(call: grpc.ServerDuplexStream<DeltaConfigRequestMessage, DeltaConfigResponseMessage>): void {
    const streamId = String(this.nextStreamId++);
    let peer = 'unknown';
    try {
      peer = call.getPeer();
    } catch {
      // peer is informational only
    }
    const sub: Subscriber = {
      streamId,
      call,
      peer,
      peerHost: peerHostOf(peer),
      caller: undefined,
      node: undefined,
      identifyTimer: undefined,
      queued: 0,
      connectedAt: this.now(),
      types: new Map(),
      workloadStatus: [],
      statusAt: undefined,
      queue: Promise.resolve(),
      closed: this.closed,
      log: this.log.child({ streamId }),
    };
    if (this.closed) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'config server shutting down' });
      return;
    }
    // Bound what an unauthenticated peer can hold before anything else is done for it.
    let samePeer = 0;
    for (const p of this.pending) if (p.peerHost === sub.peerHost) samePeer++;
    if (samePeer >= this.limits.maxPendingPerPeer) {
      this.refuse(sub, 'peer_limit', grpc.status.RESOURCE_EXHAUSTED, `too many config streams from ${sub.peerHost} that have not subscribed yet (limit ${this.limits.maxPendingPerPeer})`);
      return;
    }
    if (this.pending.size >= this.limits.maxPending) {
      this.refuse(sub, 'pending_limit', grpc.status.RESOURCE_EXHAUSTED, `too many config streams that have not subscribed yet (limit ${this.limits.maxPending}); retry later`);
      return;
    }
    this.pending.add(sub);
    sub.identifyTimer = setTimeout(() => {
      this.refuse(sub, 'identify_timeout', grpc.status.DEADLINE_EXCEEDED, `no authenticated first request within ${this.limits.identifyTimeoutMs}ms`);
    }, this.limits.identifyTimeoutMs);
    sub.identifyTimer.unref?.();
    if (this.authenticate) sub.queue = this.authenticateStream(sub);
    sub.log.debug({ peer }, 'config stream opened');
    call.on('data', (req: DeltaConfigRequestMessage) => {
      if (sub.closed) return;
      if (!sub.node && ++sub.queued > this.limits.maxQueuedBeforeIdentify) {
        this.refuse(sub, 'flood', grpc.status.RESOURCE_EXHAUSTED, `more than ${this.limits.maxQueuedBeforeIdentify} requests before the stream subscribed`);
        return;
      }
      sub.queue = sub.queue
        .then(() => {
          if (!sub.node) sub.queued--;
          return this.handleRequest(sub, req);
        })
        .catch((e: unknown) => {
          sub.log.warn({ err: e }, 'config request rejected');
          this.endStream(sub, grpc.status.INVALID_ARGUMENT, errorMessage(e));
        });
    });
    const gone = (why: string): void => this.dropSubscriber(sub, why);
    call.on('end', () => {
      gone('client closed the stream');
      try {
        call.end();
      } catch {
        // already ended
      }
    });
    call.on('cancelled', () => gone('stream cancelled'));
    call.on('error', (e: unknown) => gone(`stream error: ${errorMessage(e)}`));
    call.on('close', () => gone('stream closed'));
  }

  /** Resolves the stream's caller from its bearer token, or refuses the stream. Never throws. */
  private async authenticateStream(sub: Subscriber): Promise<void> {
    let caller: Caller | undefined;
    try {
      const token = bearerToken(sub.call.metadata);
      caller = token === undefined ? undefined : await (this.authenticate as NonNullable<ConfigServerOptions['authenticate']>)(token);
    } catch (e) {
      sub.log.warn({ err: e, peer: sub.peer }, 'config stream authentication failed');
    }
    if (sub.closed) return;
    if (!caller) {
      this.refuse(sub, 'unauthenticated', grpc.status.UNAUTHENTICATED, 'config stream without a valid bearer token');
      return;
    }
    sub.caller = caller;
    sub.log = sub.log.child({ caller: callerKey(caller) });
  }

  /** Ends a stream that never subscribed, counting why. */
  private refuse(sub: Subscriber, reason: StreamRefusal, code: grpc.status, details: string): void {
    if (sub.closed) return;
    this.metrics.refused.inc({ reason });
    sub.log.warn({ peer: sub.peer, reason, ...(sub.caller ? { caller: callerKey(sub.caller) } : {}) }, `config stream refused: ${details}`);
    this.endStream(sub, code, details);
  }

  private async handleRequest(sub: Subscriber, req: DeltaConfigRequestMessage): Promise<void> {
    if (sub.closed) return;
    if (!isRecord(req)) throw new AmbitError('AMBIT_ERR_XDS_STREAM', 'request is not a message');
    if (!sub.node) await this.identify(sub, req);
    if (sub.closed || !sub.node) return;

    if (req.status) this.recordStatus(sub, req.status.workloads);

    const typeUrl = req.typeUrl;
    if (typeUrl === '' && req.status) return; // status-only report
    if (!(ALL_RESOURCE_TYPES as readonly string[]).includes(typeUrl)) {
      throw new AmbitError('AMBIT_ERR_XDS_STREAM', `unknown type_url ${JSON.stringify(String(typeUrl).slice(0, 200))}; expected one of ${ALL_RESOURCE_TYPES.join(', ')}`);
    }
    const type = typeUrl as ResourceType;
    const subscribe = boundedNames(req.resourceNamesSubscribe, 'resource_names_subscribe');
    const unsubscribe = boundedNames(req.resourceNamesUnsubscribe, 'resource_names_unsubscribe');
    let ts = sub.types.get(type);

    if (!ts) {
      // First request of the type on this stream (a new connection or a reconnect): the client
      // tells us what it holds; answer with exactly what differs, even if that is nothing.
      ts = newTypeSub(type, subscribe, req.initialResourceVersions, ts);
      sub.types.set(type, ts);
      applySubscriptionChange(ts, [], unsubscribe);
      this.initialQueue.set(ts, sub);
      this.startInitialSyncs();
      this.checkWaiters();
      return;
    }

    if (req.responseNonce !== '') this.handleReply(sub, ts, req);
    const changed = applySubscriptionChange(ts, subscribe, unsubscribe);
    if (changed) this.push(sub, ts, { snapshot: undefined, notifiedAt: undefined, force: false });
    // A plain reply that leaves its subscriber unsynced and not rejecting cannot settle a waiter
    // (nothing else changed since the last check): skip the check, which reads every subscriber.
    // One that only made its subscriber synced is a quick check (status.ts).
    const full = changed || req.responseNonce === '' || !!req.status || isTypeNackedAtTarget(ts);
    if (full) this.checkWaiters();
    else if ([...sub.types.values()].every(isTypeSynced)) this.checkWaiters(true);
  }

  /**
   * Reads the node of the first request and decides whether this caller may subscribe as it. A
   * newer stream replaces an older one only when both are the same caller with the same node id,
   * so no credential can take over another identity's stream.
   */
  private async identify(sub: Subscriber, req: DeltaConfigRequestMessage): Promise<void> {
    const n = req.node;
    const role = roleFromMessage(n?.role);
    if (!n || typeof n.id !== 'string' || n.id.length === 0 || n.id.length > 253 || !role) {
      throw new AmbitError('AMBIT_ERR_XDS_STREAM', 'the first request must carry node.id (1..253 chars) and node.role (agent, waypoint or gateway)');
    }
    const node: NodeInfo = {
      id: n.id,
      nodeName: typeof n.nodeName === 'string' ? n.nodeName.slice(0, 253) : '',
      role,
      metadata: isRecord(n.metadata) ? stringRecord(n.metadata) : {},
    };
    if (this.authenticate && !sub.caller) return; // refused while authenticating
    if (sub.caller && this.authorize) {
      const refusal = this.authorize(sub.caller, node);
      if (refusal !== undefined) {
        this.refuse(sub, 'forbidden', grpc.status.PERMISSION_DENIED, `node ${JSON.stringify(node.id)} refused: ${refusal}`);
        return;
      }
    }
    const key = sub.caller ? callerKey(sub.caller) : undefined;
    let sameCaller = 0;
    for (const other of this.subs.values()) {
      if (other === sub || !other.node || (other.caller ? callerKey(other.caller) : undefined) !== key) continue;
      if (other.node.id === node.id) {
        other.log.warn({ nodeId: node.id }, 'config stream superseded by a newer stream of the same caller and node');
        this.endStream(other, grpc.status.ABORTED, `superseded by a newer stream from node ${JSON.stringify(node.id)}`);
      } else {
        sameCaller++;
      }
    }
    if (key !== undefined && sameCaller >= this.limits.maxStreamsPerCaller) {
      this.refuse(sub, 'caller_limit', grpc.status.RESOURCE_EXHAUSTED, `${key} already holds ${sameCaller} config streams (limit ${this.limits.maxStreamsPerCaller})`);
      return;
    }
    this.pending.delete(sub);
    clearTimeout(sub.identifyTimer);
    sub.identifyTimer = undefined;
    sub.node = node;
    this.subs.set(sub.streamId, sub);
    sub.log = sub.log.child({ nodeId: node.id, role: node.role });
    sub.log.info({ peer: sub.peer, nodeName: node.nodeName }, 'config subscriber connected');
    this.updateSubscriberGauge();
  }

  /** Sends first responses from the queue while fewer than maxInitialSyncBytes are in flight. */
  private startInitialSyncs(): void {
    for (const [ts, sub] of this.initialQueue) {
      if (this.initialSyncs.size > 0 && this.initialSyncBytes >= this.limits.maxInitialSyncBytes) return;
      this.initialQueue.delete(ts);
      if (sub.closed) continue;
      const bytes = this.push(sub, ts, { snapshot: undefined, notifiedAt: undefined, force: true });
      if (ts.inflight && !sub.closed) {
        this.initialSyncs.set(ts, { nonce: ts.inflight.nonce, bytes });
        this.initialSyncBytes += bytes;
      }
    }
  }

  /** A first response was answered or its stream ended: let the next ones go. */
  private endInitialSync(ts: TypeSub): boolean {
    const entry = this.initialSyncs.get(ts);
    if (!entry) return false;
    this.initialSyncs.delete(ts);
    this.initialSyncBytes -= entry.bytes;
    return true;
  }

  private handleReply(sub: Subscriber, ts: TypeSub, req: DeltaConfigRequestMessage): void {
    const label = typeLabel(ts.typeUrl);
    const outcome = recordReply(ts, req, this.now(), grpc.status.UNKNOWN);
    if (this.initialSyncs.get(ts)?.nonce === req.responseNonce && this.endInitialSync(ts)) this.startInitialSyncs();
    if (outcome.nack) {
      this.metrics.nacks.inc({ type: label });
      this.metrics.istioRejects.inc({ type: label });
      sub.log.warn({ type: label, nonce: outcome.nack.nonce, version: outcome.nack.version, nack: outcome.nack.message }, 'config rejected by subscriber');
    }
    if (outcome.acked) {
      if (outcome.acked.notifiedAt !== undefined) this.metrics.pushLatency.observe(Math.max(0, this.now() - outcome.acked.notifiedAt) / 1000);
      sub.log.debug({ type: label, version: outcome.acked.version }, 'config acknowledged');
    }
    if (outcome.pushNow) this.push(sub, ts, { snapshot: undefined, notifiedAt: outcome.pushNow.notifiedAt, force: false });
  }

  private recordStatus(sub: Subscriber, workloads: unknown): void {
    if (!Array.isArray(workloads)) return;
    sub.workloadStatus = workloads.slice(0, MAX_STATUS_ENTRIES).filter(isRecord).map((w) => {
      const s = workloadStatusFromMessage(w as never);
      return { ...s, uid: s.uid.slice(0, 1024), mode: s.mode.slice(0, 64), message: s.message.slice(0, MAX_MESSAGE_CHARS) };
    });
    sub.statusAt = this.now();
  }

  // ---- pushing ----

  private snapshotFor(sub: Subscriber): Snapshot | undefined {
    try {
      return this.provider(sub.node as NodeInfo);
    } catch (e) {
      sub.log.error({ err: e }, 'snapshot provider failed; subscriber keeps its current config');
      return undefined;
    }
  }

  /**
   * Sends what differs between what the subscriber holds and the snapshot (always answers when
   * `force`); returns the body bytes written (0 when nothing was).
   */
  private push(sub: Subscriber, ts: TypeSub, o: { snapshot: Snapshot | undefined; notifiedAt: number | undefined; force: boolean }): number {
    if (sub.closed) return 0;
    if (this.initialQueue.has(ts)) return 0; // its first response, when its turn comes, is the current state
    if (ts.inflight) {
      markDirty(ts, o.notifiedAt);
      return 0;
    }
    const snapshot = o.snapshot ?? this.snapshotFor(sub);
    if (!snapshot) return 0;
    const next = nextResponse(ts, this.encoder.visible(ts, snapshot, sub.log), { force: o.force, notifiedAt: o.notifiedAt, nonce: () => String(this.nextNonce++) });
    if (!next) return 0;
    try {
      sub.call.write(next.response);
    } catch (e) {
      sub.log.warn({ err: e }, 'config push failed; dropping stream');
      this.endStream(sub, grpc.status.INTERNAL, 'write failed');
      return 0;
    }
    this.metrics.pushes.inc({ type: typeLabel(ts.typeUrl) });
    this.metrics.istioPushes.inc({ type: typeLabel(ts.typeUrl) });
    sub.log.debug({ type: typeLabel(ts.typeUrl), nonce: next.response.nonce, version: ts.targetVersion, updated: next.updated, removed: next.removed }, 'config pushed');
    let bytes = 0;
    for (const r of next.response.resources) bytes += r.body.length;
    return bytes;
  }

  // ---- bookkeeping ----

  private endStream(sub: Subscriber, code: grpc.status, details: string): void {
    if (sub.closed) return;
    this.dropSubscriber(sub, details);
    try {
      sub.call.emit('error', { code, details: details.slice(0, MAX_MESSAGE_CHARS) });
    } catch {
      // the stream is already gone
    }
  }

  private dropSubscriber(sub: Subscriber, why: string): void {
    if (sub.closed) return;
    sub.closed = true;
    this.pending.delete(sub);
    clearTimeout(sub.identifyTimer);
    sub.identifyTimer = undefined;
    this.subs.delete(sub.streamId);
    let freed = false;
    for (const ts of sub.types.values()) {
      this.initialQueue.delete(ts);
      freed = this.endInitialSync(ts) || freed;
    }
    if (freed) this.startInitialSyncs();
    if (sub.node) sub.log.info({ why }, 'config subscriber disconnected');
    this.updateSubscriberGauge();
    this.checkWaiters();
  }

  private updateSubscriberGauge(): void {
    const counts = new Map<NodeRole, number>(NODE_ROLES.map((r) => [r, 0]));
    for (const s of this.subs.values()) if (s.node) counts.set(s.node.role, (counts.get(s.node.role) ?? 0) + 1);
    for (const [role, n] of counts) this.metrics.subscribers.set({ role }, n);
    this.metrics.istioConnected.set([...counts.values()].reduce((a, b) => a + b, 0));
  }

  private checkWaiters(quick = false): void {
    if (this.waiters.size > 0) this.waiters.check(this.syncView(), quick);
  }

  private syncView(): SyncView {
    const subscribers = (): SubscriberState[] => this.subscribers();
    let states: SubscriberState[] | undefined;
    const synced = (streamId: string): boolean => {
      const sub = this.subs.get(streamId);
      return !!sub && sub.types.size > 0 && [...sub.types.values()].every(isTypeSynced);
    };
    return {
      get states(): SubscriberState[] {
        return (states ??= subscribers());
      },
      pushPending: this.debounceTimer !== undefined || this.pushImmediate !== undefined,
      synced,
      unsynced: (streamId) => this.subs.has(streamId) && !synced(streamId),
      nackedAtTarget: (streamId, type) => {
        const ts = this.subs.get(streamId)?.types.get(type);
        return !!ts && isTypeNackedAtTarget(ts);
      },
    };
  }
}

/** `ipv4:10.0.0.1:5000` / `ipv6:[::1]:5000` / `10.0.0.1:5000` → the address without the port. */
export function peerHostOf(peer: string): string {
  const text = peer.replace(/^ipv[46]:/, '');
  const bracket = /^\[([^\]]+)\]:\d+$/.exec(text);
  if (bracket) return bracket[1]!;
  const m = /^(.*):\d+$/.exec(text);
  return m && !m[1]!.includes(':') ? m[1]! : text;
}

function stringRecord(o: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  let n = 0;
  for (const [k, v] of Object.entries(o)) {
    if (n++ >= 64) break;
    if (typeof v === 'string') out[k.slice(0, 253)] = v.slice(0, 1024);
  }
  return out;
}
