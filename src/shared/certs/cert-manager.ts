/**
 * Workload certificates held by the agent: one per SPIFFE identity (service account), fetched on
 * demand or ahead of time, renewed at half life, retried with capped jittered backoff.
 *
 * Invariants:
 * - at most one fetch per identity is in flight; concurrent callers share it;
 * - a certificate still valid is served while its renewal is in flight or backing off, and is only
 *   replaced by a newer one that verified (identity, key match, chain to the roots);
 * - an entry's state changes only through `transition`, which refuses moves not in its `from` list;
 * - key material is never logged.
 */
import { Counter, Gauge, Registry } from '../metrics.js';
import { AmbitError, errorMessage } from '../errors.js';
import { parseSpiffeId } from '../identity.js';
import { silentLogger, type Logger } from '../log.js';
import { backoffMs } from '../drain.js';
import { keyMatchesCertificate, readCertificateFacts, verifyChain } from '../tls.js';
import { createKeyAndCsrAsync, type KeyAndCsr } from './csr.js';
import type { CertificateFetcher } from './ca-client.js';

export interface WorkloadCertificate {
  identity: string;
  /** Leaf first, root last (as the CA returned it). */
  certChainPem: string[];
  /** PKCS#8 PEM. Never log it. */
  keyPem: string;
  rootsPem: string[];
  notBefore: Date;
  notAfter: Date;
}

export type CertState = 'idle' | 'fetching' | 'valid' | 'renewing' | 'backoff' | 'closed';

export interface TimerHandle {
  cancel(): void;
}

export interface CertManagerOptions {
  fetcher: CertificateFetcher;
  /** Trust roots to verify fetched chains against; default: the last certificate of each chain. */
  rootsPem?: string[] | (() => string[]);
  /** Requested validity; default 24 h (the CA may shorten it). */
  ttlSec?: number;
  /** First retry delay; default 1 s. Doubles per failure, with jitter. */
  backoffBaseMs?: number;
  /** Retry delay cap; default 150 s, as ztunnel. */
  backoffCapMs?: number;
  registry?: Registry;
  log?: Logger;
  /** Seams for tests. */
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => TimerHandle;
  random?: () => number;
  createKeyAndCsr?: (spiffeId: string) => Promise<KeyAndCsr>;
}

export interface CertStatus {
  identity: string;
  state: CertState;
  notBefore?: string;
  notAfter?: string;
  /** When the next renewal or retry is due (ISO), if one is scheduled. */
  nextAttemptAt?: string;
  failures: number;
}

/** setTimeout holds at most 2^31-1 ms; longer waits re-arm on wake-up. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function defaultSetTimer(fn: () => void, ms: number): TimerHandle {
  const t = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS));
  t.unref();
  return { cancel: () => clearTimeout(t) };
}

/** `notBefore + (notAfter - notBefore) / 2`, as ztunnel refreshes. */
export function refreshAt(cert: Pick<WorkloadCertificate, 'notBefore' | 'notAfter'>): number {
  const nb = cert.notBefore.getTime();
  return nb + (cert.notAfter.getTime() - nb) / 2;
}

interface Entry {
  identity: string;
  state: CertState;
  cert?: WorkloadCertificate;
  inflight?: Promise<WorkloadCertificate>;
  timer?: TimerHandle;
  dueAt?: number;
  /** Consecutive failures; resets on success. */
  attempt: number;
}

export interface CertManagerMetrics {
  expiry: Gauge;
  rotations: Counter;
  failures: Counter;
}

export class CertManager {
  readonly #entries = new Map<string, Entry>();
  readonly #fetcher: CertificateFetcher;
  readonly #roots: (() => string[]) | undefined;
  readonly #ttlSec: number;
  readonly #baseMs: number;
  readonly #capMs: number;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #setTimer: (fn: () => void, ms: number) => TimerHandle;
  readonly #random: () => number;
  readonly #createKeyAndCsr: (spiffeId: string) => Promise<KeyAndCsr>;
  readonly metrics: CertManagerMetrics;
  #closed = false;

  constructor(opts: CertManagerOptions) {
    this.#fetcher = opts.fetcher;
    const roots = opts.rootsPem;
    this.#roots = roots === undefined ? undefined : typeof roots === 'function' ? roots : () => roots;
    this.#ttlSec = opts.ttlSec ?? 86_400;
    this.#baseMs = opts.backoffBaseMs ?? 1000;
    this.#capMs = opts.backoffCapMs ?? 150_000;
    this.#log = (opts.log ?? silentLogger()).child({ component: 'cert-manager' });
    this.#now = opts.now ?? Date.now;
    this.#setTimer = opts.setTimer ?? defaultSetTimer;
    this.#random = opts.random ?? Math.random;
    this.#createKeyAndCsr = opts.createKeyAndCsr ?? createKeyAndCsrAsync;
    const registry = opts.registry ?? new Registry();
    const entries = this.#entries;
    const now = this.#now;
    this.metrics = {
      expiry: new Gauge({
        name: 'ambit_cert_expiry_seconds',
        help: 'Seconds until the soonest-expiring workload certificate held by this agent expires (NaN when none).',
        registers: [registry],
        collect() {
          let soonest = Infinity;
          for (const e of entries.values()) if (e.cert) soonest = Math.min(soonest, e.cert.notAfter.getTime());
          this.set(soonest === Infinity ? NaN : (soonest - now()) / 1000);
        },
      }),
      rotations: new Counter({
        name: 'ambit_cert_rotations_total',
        help: 'Workload certificates replaced by a renewed one.',
        registers: [registry],
      }),
      failures: new Counter({
        name: 'ambit_cert_fetch_failures_total',
        help: 'Failed workload certificate fetches (each is retried with backoff).',
        registers: [registry],
      }),
    };
  }

  /**
   * The certificate for `spiffeId`: the held one while valid, else the in-flight fetch, else a new
   * fetch now. Rejects with AMBIT_ERR_CERT_UNAVAILABLE when no valid certificate can be had.
   */
  async getCertificate(spiffeId: string): Promise<WorkloadCertificate> {
    if (this.#closed) throw new AmbitError('AMBIT_ERR_CERT_UNAVAILABLE', `certificate for ${spiffeId} requested after the cert manager closed`);
    const entry = this.#entry(spiffeId);
    if (entry.cert && entry.cert.notAfter.getTime() > this.#now()) return entry.cert;
    if (entry.inflight) return entry.inflight;
    return this.#startFetch(entry);
  }

  /** Fetches certificates for identities not yet held, in the background (failures back off). */
  prefetch(ids: Iterable<string>): void {
    if (this.#closed) return;
    for (const id of ids) {
      if (this.#entries.has(id)) continue;
      let entry: Entry;
      try {
        entry = this.#entry(id);
      } catch (e) {
        this.#log.warn({ identity: id, err: e }, 'prefetch skipped an invalid identity');
        continue;
      }
      this.#startFetch(entry).catch(() => undefined);
    }
  }

  /** Drops the certificate and any timer for `spiffeId` (no pod on this node uses it any more). */
  forget(spiffeId: string): void {
    const entry = this.#entries.get(spiffeId);
    if (!entry) return;
    this.#drop(entry);
    this.#entries.delete(spiffeId);
  }

  /** Identities held, for admin/debug output (no key material). */
  status(): CertStatus[] {
    return [...this.#entries.values()].map((e) => ({
      identity: e.identity,
      state: e.state,
      ...(e.cert ? { notBefore: e.cert.notBefore.toISOString(), notAfter: e.cert.notAfter.toISOString() } : {}),
      ...(e.dueAt !== undefined ? { nextAttemptAt: new Date(e.dueAt).toISOString() } : {}),
      failures: e.attempt,
    }));
  }

  /** Cancels every timer; in-flight fetches finish but their results are discarded. */
  async close(_deadlineMs = 0): Promise<void> {
    this.destroy();
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const e of this.#entries.values()) this.#drop(e);
    this.#entries.clear();
  }

  #entry(spiffeId: string): Entry {
    let entry = this.#entries.get(spiffeId);
    if (!entry) {
      parseSpiffeId(spiffeId);
      entry = { identity: spiffeId, state: 'idle', attempt: 0 };
      this.#entries.set(spiffeId, entry);
    }
    return entry;
  }

  #drop(entry: Entry): void {
    entry.timer?.cancel();
    entry.timer = undefined;
    entry.dueAt = undefined;
    this.#transition(entry, ['idle', 'fetching', 'valid', 'renewing', 'backoff'], 'closed');
  }

  #current(entry: Entry): boolean {
    return !this.#closed && this.#entries.get(entry.identity) === entry && entry.state !== 'closed';
  }

  #transition(entry: Entry, from: readonly CertState[], to: CertState): boolean {
    if (!from.includes(entry.state)) {
      this.#log.error({ identity: entry.identity, from: entry.state, to }, 'illegal certificate state change refused');
      return false;
    }
    this.#log.debug({ identity: entry.identity }, `${entry.state} -> ${to}`);
    entry.state = to;
    return true;
  }

  #schedule(entry: Entry, dueAt: number, fn: () => void): void {
    entry.timer?.cancel();
    entry.dueAt = dueAt;
    const arm = (): void => {
      entry.timer = this.#setTimer(() => {
        if (!this.#current(entry)) return;
        // Timers are clamped (2^31-1 ms) and may wake early: re-arm until due.
        if (this.#now() < dueAt) return arm();
        entry.timer = undefined;
        entry.dueAt = undefined;
        fn();
      }, dueAt - this.#now());
    };
    arm();
  }

  #startFetch(entry: Entry): Promise<WorkloadCertificate> {
    const holding = entry.cert !== undefined && entry.cert.notAfter.getTime() > this.#now();
    if (!this.#transition(entry, ['idle', 'valid', 'backoff'], holding ? 'renewing' : 'fetching')) {
      return Promise.reject(new AmbitError('AMBIT_ERR_CERT_UNAVAILABLE', `certificate for ${entry.identity} cannot be fetched in state ${entry.state}`));
    }
    entry.timer?.cancel();
    entry.timer = undefined;
    entry.dueAt = undefined;
    const p = this.#fetchOnce(entry.identity).then(
      (cert) => {
        if (!this.#current(entry)) return cert;
        const replaced = entry.cert !== undefined;
        entry.cert = cert;
        entry.attempt = 0;
        entry.inflight = undefined;
        this.#transition(entry, ['fetching', 'renewing'], 'valid');
        if (replaced) this.metrics.rotations.inc();
        this.#log.info({ identity: entry.identity, notAfter: cert.notAfter.toISOString(), rotated: replaced }, 'certificate ready');
        this.#schedule(entry, refreshAt(cert), () => {
          this.#startFetch(entry).catch(() => undefined);
        });
        return cert;
      },
      (e: unknown) => {
        const err = new AmbitError('AMBIT_ERR_CERT_UNAVAILABLE', `no certificate for ${entry.identity}: ${errorMessage(e)}`, { cause: e });
        if (!this.#current(entry)) throw err;
        entry.inflight = undefined;
        this.metrics.failures.inc();
        const delayMs = backoffMs(entry.attempt, this.#baseMs, this.#capMs, this.#random);
        entry.attempt++;
        this.#transition(entry, ['fetching', 'renewing'], 'backoff');
        this.#log.warn({ identity: entry.identity, err: e, retryInMs: delayMs, failures: entry.attempt }, 'certificate fetch failed');
        this.#schedule(entry, this.#now() + delayMs, () => {
          this.#startFetch(entry).catch(() => undefined);
        });
        throw err;
      },
    );
    entry.inflight = p;
    // Background fetches have no caller; their failure is handled above.
    p.catch(() => undefined);
    return p;
  }

  async #fetchOnce(identity: string): Promise<WorkloadCertificate> {
    const { keyPem, csrPem } = await this.#createKeyAndCsr(identity);
    const chain = await this.#fetcher.fetchCertificate(identity, csrPem, this.#ttlSec);
    if (chain.length === 0) throw new AmbitError('AMBIT_ERR_CERT_FETCH', `ca returned an empty chain for ${identity}`);
    const facts = readCertificateFacts(chain[0]!);
    if (facts.spiffeId !== identity) {
      throw new AmbitError('AMBIT_ERR_CERT_FETCH', `ca returned a certificate for ${facts.spiffeId ?? 'no SPIFFE id'} when ${identity} was requested`);
    }
    if (!keyMatchesCertificate(keyPem, chain[0]!)) {
      throw new AmbitError('AMBIT_ERR_CERT_FETCH', `ca returned a certificate for ${identity} that does not match the CSR key`);
    }
    const rootsPem = this.#roots ? this.#roots() : [chain[chain.length - 1]!];
    try {
      verifyChain(chain, rootsPem, new Date(this.#now()));
    } catch (e) {
      throw new AmbitError('AMBIT_ERR_CERT_FETCH', `certificate for ${identity} from the ca does not verify: ${errorMessage(e)}`, { cause: e });
    }
    return { identity, certChainPem: chain, keyPem, rootsPem, notBefore: facts.notBefore, notAfter: facts.notAfter };
  }
}
