/**
 * What the config server says about its subscribers: the per-stream view `ambit proxy-status`
 * and /debug/syncz read, and waiting until the matching subscribers acknowledged the current
 * config (`ambit local apply` returns only then). Works on views only; the stream server
 * (server.ts) supplies them.
 */
import { AmbitError } from '../../shared/errors.js';
import type { ResourceType } from '../../shared/resources.js';
import type { NodeRole, WorkloadStatus } from '../../shared/xds/node.js';
import { typeLabel } from '../../shared/xds/resource-codec.js';

export interface NackRecord {
  nonce: string;
  /** system_version_info of the rejected response. */
  version: string;
  code: number;
  message: string;
  at: number;
}

export interface TypeSubscriptionState {
  typeUrl: ResourceType;
  /** Subscribed to every resource of the type. */
  wildcard: boolean;
  /** Explicitly subscribed names (besides the wildcard). */
  names: string[];
  /** Version of the set the subscriber holds (or will once the in-flight response is ACKed). */
  sentVersion: string;
  /** Version of the set the server wants the subscriber to hold. */
  targetVersion: string;
  /** Version of the last ACKed response; undefined before the first ACK. */
  ackedVersion: string | undefined;
  /** Nonce of the response awaiting ACK/NACK. */
  pending: string | undefined;
  /** Number of resources the subscriber holds. */
  resourceCount: number;
  lastAckAt: number | undefined;
  lastNack: NackRecord | undefined;
  nackCount: number;
}

export interface SubscriberState {
  /** Server-assigned id of this stream. */
  streamId: string;
  nodeId: string;
  nodeName: string;
  role: NodeRole;
  metadata: Record<string, string>;
  peer: string;
  connectedAt: number;
  types: TypeSubscriptionState[];
  /** Per-pod capture state last reported (agents). */
  workloadStatus: WorkloadStatus[];
  statusAt: number | undefined;
}

/** The server's state as the waiters judge it. */
export interface SyncView {
  /** Built when first read (a check that a blocker decides does not read it). */
  readonly states: SubscriberState[];
  /** A push is scheduled: the state it will produce is not known yet. */
  pushPending: boolean;
  /** Every type of the stream acknowledged at its target version, nothing in flight. */
  synced(streamId: string): boolean;
  /** The stream is still connected and not synced. */
  unsynced(streamId: string): boolean;
  /** The stream's last answer for `typeUrl` NACKed the current target version. */
  nackedAtTarget(streamId: string, typeUrl: ResourceType): boolean;
}

interface SyncWaiter {
  predicate: (s: SubscriberState) => boolean;
  minSubscribers: number;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  /** A matching subscriber that was not synced at the last full check: while it still is not, the waiter cannot settle. */
  blocker: string | undefined;
}

/** Pending waitForSync calls. */
export class SyncWaiters {
  private readonly waiters = new Set<SyncWaiter>();

  get size(): number {
    return this.waiters.size;
  }

  /**
   * Resolves once every subscriber matching `predicate` (at least `minSubscribers` of them) is
   * synced; rejects with AMBIT_ERR_XDS_NACK when one NACKs the current version and with
   * AMBIT_ERR_XDS_SYNC_TIMEOUT after `timeoutMs`. `view` is read again whenever `check` runs.
   */
  wait(predicate: (s: SubscriberState) => boolean, timeoutMs: number, minSubscribers: number, view: () => SyncView): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: SyncWaiter = {
        predicate,
        minSubscribers,
        resolve,
        reject,
        blocker: undefined,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new AmbitError('AMBIT_ERR_XDS_SYNC_TIMEOUT', `config not acknowledged within ${timeoutMs}ms; not synced: ${describeUnsynced(view(), predicate)}`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
      this.check(view());
    });
  }

  /**
   * Settles every waiter the current state decides. `quick` (decision 65): the only news is that
   * some subscriber became synced (a plain ACK), so a waiter whose blocker is still not synced
   * cannot settle and is skipped without reading every subscriber's state (each ACK of a push to
   * 100 subscribers would otherwise build 100 states). A NACK, a status report, a subscription
   * change or a subscriber coming or going is never quick.
   */
  check(view: SyncView, quick = false): void {
    if (view.pushPending) return; // judge only the state the pending push will produce
    for (const w of [...this.waiters]) {
      if (quick && w.blocker !== undefined && view.unsynced(w.blocker)) continue;
      const matching = view.states.filter((s) => safePredicate(w.predicate, s));
      const nacked = matching.flatMap((s) => s.types.filter((t) => view.nackedAtTarget(s.streamId, t.typeUrl)).map((t) => ({ s, t })));
      if (nacked.length > 0) {
        const { s, t } = nacked[0]!;
        this.settle(w, new AmbitError('AMBIT_ERR_XDS_NACK', `node ${JSON.stringify(s.nodeId)} rejected ${typeLabel(t.typeUrl)} config version ${t.targetVersion}: ${t.lastNack?.message ?? ''}`, {
          details: { nodeId: s.nodeId, typeUrl: t.typeUrl, nack: t.lastNack },
        }));
        continue;
      }
      if (matching.length < w.minSubscribers) continue;
      // The last one not synced: pushes go out, and ACKs mostly come back, in subscriber order.
      w.blocker = matching.findLast((s) => !view.synced(s.streamId))?.streamId;
      if (w.blocker === undefined) this.settle(w);
    }
  }

  /** Rejects every waiter (the server is closing). */
  rejectAll(err: Error): void {
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.waiters.clear();
  }

  private settle(w: SyncWaiter, err?: Error): void {
    this.waiters.delete(w);
    clearTimeout(w.timer);
    if (err) w.reject(err);
    else w.resolve();
  }
}

/** Node ids of the matching subscribers that are not synced, for a timeout message. */
export function describeUnsynced(view: SyncView, predicate: (s: SubscriberState) => boolean): string {
  const names = view.states.filter((s) => safePredicate(predicate, s) && !view.synced(s.streamId)).map((s) => s.nodeId);
  if (view.pushPending) names.push('(push pending)');
  return names.length > 0 ? names.slice(0, 20).join(', ') : 'too few subscribers connected';
}

function safePredicate(p: (s: SubscriberState) => boolean, s: SubscriberState): boolean {
  try {
    return p(s);
  } catch {
    return false;
  }
}
