/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's LeaseLock does it: get the
 * Lease, take it when it is free or expired, renew it while leading, and give it up on close.
 * Every write is a create or an update carrying the resourceVersion that was read, so two
 * replicas can never both win (the API server answers the slower one 409 Conflict).
 *
 * Invariants:
 * - Expiry is judged on this replica's clock from when it last saw the Lease change, never from
 *   the holder's renewTime (clocks of replicas differ).
 * - A leader that cannot renew for `renewDeadlineMs` (shorter than the lease duration) stops
 *   leading before any other replica may take over, and says so ('stopped').
 * - 'leading' and 'stopped' alternate, starting with 'leading'.
 */
import { EventEmitter } from 'node:events';
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/log.js';
import { Counter, Gauge } from '../shared/metrics.js';
import { registerOnce } from '../shared/xds/metric-util.js';
import { isAlreadyExists, isConflict, isNotFound, type KubeClient } from './source/kube-client.js';
import { collectionPath, objectPath, RESOURCES } from './source/kube-paths.js';

export const DEFAULT_LEASE_NAME = 'ambit-controller';

export interface LeaderElectorOptions {
  client: KubeClient;
  namespace: string;
  /** Lease name (default ambit-controller). */
  name?: string;
  /** This replica's holder identity (unique per process: pod name plus a random suffix). */
  identity: string;
  /** How long a Lease is valid after its last renewal (default 15 s; whole seconds). */
  leaseDurationMs?: number;
  /** A leader that could not renew for this long stops leading (default 10 s; less than the duration). */
  renewDeadlineMs?: number;
  /** Between attempts to acquire or renew (default 2 s). */
  retryPeriodMs?: number;
  log: Logger;
  registry: Registry;
  now?: () => number;
}

interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  spec?: LeaseSpec;
}

interface Events {
  leading: [];
  stopped: [];
}

/** A MicroTime as the API server writes it: RFC 3339 with six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector extends EventEmitter<Events> {
  private readonly log: Logger;
  private readonly name: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly now: () => number;
  private readonly leaderGauge: Gauge<string>;
  private readonly transitions: Counter<string>;
  private leading = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** The Lease spec as last seen, and when (local clock) it last changed. */
  private observed: { key: string; at: number } | undefined;
  private lastRenewAt = 0;

  constructor(private readonly opts: LeaderElectorOptions) {
    super();
    this.name = opts.name ?? DEFAULT_LEASE_NAME;
    this.log = opts.log.child({ component: 'leader-election', lease: `${opts.namespace}/${this.name}`, identity: opts.identity });
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    this.now = opts.now ?? Date.now;
    if (this.renewDeadlineMs >= this.leaseDurationMs) throw new Error('renewDeadlineMs must be shorter than leaseDurationMs');
    const registry = opts.registry;
    this.leaderGauge = registerOnce(registry, 'ambit_controller_leader', () => new Gauge({ name: 'ambit_controller_leader', help: '1 while this controller replica holds the leader Lease (writes status and owned objects), else 0.', registers: [registry] }));
    this.transitions = registerOnce(registry, 'ambit_controller_leader_changes_total', () => new Counter({ name: 'ambit_controller_leader_changes_total', help: 'Times this replica started or stopped leading.', registers: [registry] }));
    this.leaderGauge.set(0);
  }

  get isLeader(): boolean {
    return this.leading && !this.closed;
  }

  /** Starts campaigning (and renewing once leading) in the background. */
  start(): void {
    if (this.timer || this.running || this.closed) return;
    this.schedule(0);
  }

  /** Stops campaigning; a leader gives the Lease up so another replica takes over at once. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    if (!this.leading) return;
    try {
      const lease = await this.opts.client.get<Lease>(this.path());
      if (lease.spec?.holderIdentity === this.opts.identity) {
        const spec: LeaseSpec = { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(this.now()) };
        await this.opts.client.replace(this.path(), { ...lease, spec });
        this.log.info('leader lease released');
      }
    } catch (e) {
      this.log.warn({ err: e }, 'cannot release the leader lease; another replica takes over once it expires');
    }
    this.setLeading(false);
  }

  /** One request may not use up the renew deadline. */
  private attemptTimeoutMs(): number {
    return Math.max(500, Math.floor(this.renewDeadlineMs / 2));
  }

  private path(): string {
    return objectPath(RESOURCES.leases, this.opts.namespace, this.name);
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.tick().finally(() => {
        this.running = undefined;
        // Jitter only while campaigning, so followers do not retry in step.
        this.schedule(this.leading ? this.retryPeriodMs : Math.round(this.retryPeriodMs * (1 + Math.random() * 0.2)));
      });
    }, ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
    } catch (e) {
      this.log.debug({ err: e }, 'lease attempt failed');
    }
    if (this.closed) return;
    if (ok) {
      this.lastRenewAt = this.now();
      this.setLeading(true);
    } else if (this.leading && this.now() - this.lastRenewAt >= this.renewDeadlineMs) {
      this.log.warn({ renewDeadlineMs: this.renewDeadlineMs }, 'could not renew the leader lease in time; no longer leading');
      this.setLeading(false);
    }
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.leaderGauge.set(leading ? 1 : 0);
    this.transitions.inc();
    this.log.info(leading ? 'started leading' : 'stopped leading');
    this.emit(leading ? 'leading' : 'stopped');
  }

  /** One attempt: true when this replica holds the Lease afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = this.now();
    const durationSec = Math.max(1, Math.round(this.leaseDurationMs / 1000));
    const fresh: LeaseSpec = { holderIdentity: this.opts.identity, leaseDurationSeconds: durationSec, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 };
    let lease: Lease;
    try {
      lease = await this.opts.client.request<Lease>({ method: 'GET', path: this.path(), timeoutMs: this.attemptTimeoutMs() });
    } catch (e) {
      if (!isNotFound(e)) throw e;
      try {
        await this.opts.client.request({
          method: 'POST',
          path: collectionPath(RESOURCES.leases, this.opts.namespace),
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.name, namespace: this.opts.namespace }, spec: fresh },
          timeoutMs: this.attemptTimeoutMs(),
        });
        return true;
      } catch (err) {
        if (isAlreadyExists(err)) return false;
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const seen = `${holder}|${spec.renewTime ?? ''}|${spec.leaseTransitions ?? 0}`;
    if (this.observed?.key !== seen) this.observed = { key: seen, at: now };
    const validMs = (spec.leaseDurationSeconds ?? durationSec) * 1000;
    if (holder !== '' && holder !== this.opts.identity && this.observed.at + validMs > now) return false;
    const next: LeaseSpec =
      holder === this.opts.identity
        ? { ...spec, leaseDurationSeconds: durationSec, renewTime: microTime(now) }
        : { ...fresh, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 };
    try {
      await this.opts.client.request({ method: 'PUT', path: this.path(), body: { ...lease, apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', spec: next }, timeoutMs: this.attemptTimeoutMs() });
    } catch (e) {
      if (isConflict(e)) return false;
      throw e;
    }
    if (holder !== this.opts.identity) this.log.info({ previous: holder || '(none)' }, 'leader lease acquired');
    return true;
  }
}
