/**
 * Registry of live inbound connections with the attributes policy was decided on, so a policy
 * change can re-check them and close the ones it now denies (Istio's late rejection).
 * Invariant: an entry is present from the moment its upstream is connected until it closes.
 */
import type { Logger } from '../../shared/log.js';
import type { AuthzDecision, ConnAttributes } from '../policy/authorize.js';
import type { WorkloadIndex } from '../../shared/state/workloads.js';
import type { Duplex } from 'node:stream';
import type { ConnectionTelemetry, ProxyMetrics } from './metrics.js';
import { copyBidirectional, type CopyHandle } from '../../shared/hbone/copy.js';

export interface LiveConnection {
  connId: number;
  direction: 'inbound' | 'outbound';
  /** uid of the local workload the connection belongs to. */
  workloadUid: string;
  attrs: ConnAttributes;
  mtls: boolean;
  startedAt: number;
  /** Re-runs authorization against a new config. */
  check(index: WorkloadIndex): AuthzDecision;
  /** Closes the connection now, with the reason for the access log. */
  close(reason: string): void;
  /** Live byte counts, for /debug/connections. */
  bytes(): { sent: number; received: number };
}

export class ConnectionRegistry {
  private readonly live = new Map<number, LiveConnection>();
  private readonly log: Logger;

  constructor(
    log: Logger,
    private readonly metrics: ProxyMetrics,
  ) {
    this.log = log.child({ component: 'connections' });
  }

  /** Adds a connection; the returned function removes it (call on close). */
  add(c: LiveConnection): () => void {
    this.live.set(c.connId, c);
    return () => this.live.delete(c.connId);
  }

  list(): LiveConnection[] {
    return [...this.live.values()];
  }

  get size(): number {
    return this.live.size;
  }

  /** Re-authorizes every live connection against `index`; closes and counts the denied. Returns how many closed. */
  reevaluate(index: WorkloadIndex): number {
    let closed = 0;
    for (const c of [...this.live.values()]) {
      let decision: AuthzDecision;
      try {
        decision = c.check(index);
      } catch (e) {
        this.log.error({ err: e, connId: c.connId }, 'policy re-evaluation failed; keeping connection');
        continue;
      }
      if (decision.allowed) continue;
      closed++;
      this.metrics.policyDenials.inc({ reason: `late_${decision.reason}` });
      this.log.warn(
        { connId: c.connId, workloadUid: c.workloadUid, reason: decision.reason, policy: decision.policy, src: { addr: c.attrs.srcIp, identity: c.attrs.srcPrincipal } },
        'live connection closed by policy change',
      );
      this.live.delete(c.connId);
      c.close('policy_late_deny');
    }
    return closed;
  }

  /** Closes every connection of one workload (pod removed). */
  closeWorkload(uid: string, reason: string): void {
    for (const c of [...this.live.values()]) {
      if (c.workloadUid !== uid) continue;
      this.live.delete(c.connId);
      c.close(reason);
    }
  }
}

/**
 * Pipes an authorized inbound connection to the app: bytes are counted into `telemetry`, the
 * connection is registered for late policy re-checks until it closes, and its access-log line is
 * written at close with the reason (a late policy close names its own).
 */
export function pipeTracked(o: {
  downstream: Duplex;
  upstream: Duplex;
  telemetry: ConnectionTelemetry;
  pipes: Set<CopyHandle>;
  connections: ConnectionRegistry;
  entry: Omit<LiveConnection, 'close' | 'bytes' | 'startedAt'>;
  /**
   * The source side of a same-node connection (its outbound proxy's telemetry and pipe set): it
   * sees the same bytes and closes with the same reason, as the two agents' halves would.
   */
  source?: { telemetry: ConnectionTelemetry; pipes: Set<CopyHandle> };
}): void {
  const { telemetry, source } = o;
  telemetry.open();
  source?.telemetry.open();
  let lateReason: string | undefined;
  const handle = copyBidirectional(o.downstream, o.upstream, {
    onDownstreamBytes: source
      ? (n) => {
          telemetry.addReceived(n);
          source.telemetry.addReceived(n);
        }
      : (n) => telemetry.addReceived(n),
    onUpstreamBytes: source
      ? (n) => {
          telemetry.addSent(n);
          source.telemetry.addSent(n);
        }
      : (n) => telemetry.addSent(n),
    onClose: (r) => {
      remove();
      o.pipes.delete(handle);
      source?.pipes.delete(handle);
      const reason = lateReason ?? (r.clean ? 'closed' : r.error ? 'error' : 'reset');
      telemetry.finish(reason);
      source?.telemetry.finish(reason);
    },
  });
  o.pipes.add(handle);
  source?.pipes.add(handle);
  const remove = o.connections.add({
    ...o.entry,
    startedAt: Date.now(),
    close: (reason) => {
      lateReason = reason;
      handle.destroy();
    },
    // Live from the pipe (its callbacks are batched).
    bytes: () => ({ sent: handle.bytesFromUpstream, received: handle.bytesFromDownstream }),
  });
}
