/**
 * Retry decisions (Envoy retry_on semantics as Istio configures them) and a retry budget so retries
 * cannot amplify an outage. Pure except RetryBudget's counters.
 */
import { DEFAULT_RETRY_BUDGET, type RetryBudget as RetryBudgetPolicy, type RetryPolicy } from '../../shared/routes.js';
import type { RandomSource } from './weighted.js';

/** What one try ended with. */
export type TryOutcome =
  | { kind: 'response'; status: number; grpcStatus?: number }
  | { kind: 'reset' }
  | { kind: 'connect-failure' }
  | { kind: 'refused-stream' }
  | { kind: 'timeout' };

export interface RetryInput {
  policy: RetryPolicy | undefined;
  method: string;
  /** Retries already made (0 after the first try). */
  retriesDone: number;
  outcome: TryOutcome;
  /** False when the request body was too large to keep for a replay. */
  bodyReplayable: boolean;
}

export type RetryDecision =
  | { retry: true; reason: string }
  | { retry: false; reason: 'success' | 'no-policy' | 'not-retryable' | 'attempts-exhausted' | 'non-idempotent' | 'body-not-replayable' };

/** Istio's default when a route sets no retries: 2 retries on connection-level failures only. */
export function defaultRetryPolicy(): RetryPolicy {
  return {
    attempts: 2,
    retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'],
    retriableStatusCodes: [503],
    budget: { ...DEFAULT_RETRY_BUDGET },
  };
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method.toUpperCase());
}

const GRPC_TOKENS: Record<string, number> = {
  cancelled: 1,
  'deadline-exceeded': 4,
  'resource-exhausted': 8,
  internal: 13,
  unavailable: 14,
};

/** The retry_on condition the outcome satisfies, or undefined. */
export function matchRetryOn(policy: Pick<RetryPolicy, 'retryOn' | 'retriableStatusCodes'>, outcome: TryOutcome): string | undefined {
  const on = new Set(policy.retryOn);
  switch (outcome.kind) {
    case 'connect-failure':
      if (on.has('connect-failure')) return 'connect-failure';
      if (on.has('5xx')) return '5xx';
      return undefined;
    case 'refused-stream':
      if (on.has('refused-stream')) return 'refused-stream';
      if (on.has('reset')) return 'reset';
      if (on.has('5xx')) return '5xx';
      return undefined;
    case 'reset':
      if (on.has('reset')) return 'reset';
      if (on.has('5xx')) return '5xx';
      return undefined;
    case 'timeout':
      // Envoy retries a per-try timeout under 5xx and gateway-error (it counts as a 504).
      if (on.has('5xx')) return '5xx';
      if (on.has('gateway-error')) return 'gateway-error';
      return undefined;
    case 'response': {
      const s = outcome.status;
      if (s >= 500 && on.has('5xx')) return '5xx';
      if ((s === 502 || s === 503 || s === 504) && on.has('gateway-error')) return 'gateway-error';
      if (s === 409 && on.has('retriable-4xx')) return 'retriable-4xx';
      if (on.has('retriable-status-codes') && policy.retriableStatusCodes.includes(s)) return 'retriable-status-codes';
      if (outcome.grpcStatus !== undefined) {
        for (const [token, code] of Object.entries(GRPC_TOKENS)) if (outcome.grpcStatus === code && on.has(token)) return token;
      }
      return undefined;
    }
  }
}

function isFailure(outcome: TryOutcome): boolean {
  if (outcome.kind !== 'response') return true;
  return outcome.status >= 500 || (outcome.grpcStatus !== undefined && outcome.grpcStatus !== 0);
}

/**
 * Whether to try again. Non-idempotent methods are retried only when the request never reached
 * the server (connect failure, refused stream) or the policy says retryNonIdempotent.
 */
export function isRetryable(i: RetryInput): RetryDecision {
  const failure = isFailure(i.outcome);
  if (!i.policy || i.policy.attempts <= 0) return { retry: false, reason: failure ? 'no-policy' : 'success' };
  const reason = matchRetryOn(i.policy, i.outcome);
  if (!reason) return { retry: false, reason: failure ? 'not-retryable' : 'success' };
  if (i.retriesDone >= i.policy.attempts) return { retry: false, reason: 'attempts-exhausted' };
  const neverSent = i.outcome.kind === 'connect-failure' || i.outcome.kind === 'refused-stream';
  if (!neverSent && !i.policy.retryNonIdempotent && !isIdempotent(i.method)) return { retry: false, reason: 'non-idempotent' };
  if (!i.bodyReplayable) return { retry: false, reason: 'body-not-replayable' };
  return { retry: true, reason };
}

/** Envoy-style backoff: full jitter in [0, base * 2^n), capped at 10x base. */
export function retryBackoffMs(retriesDone: number, baseMs: number, random: RandomSource): number {
  if (baseMs <= 0) return 0;
  const ceiling = Math.min(baseMs * 10, baseMs * 2 ** Math.min(retriesDone, 20));
  return Math.floor(random() * ceiling);
}

/**
 * Token bucket shared by all requests to one destination: every request deposits percent/100 of a
 * token (up to a cap), every retry withdraws one; up to `minConcurrency` retries may run at once
 * regardless, so a quiet service still retries. Under a full outage retries stay near
 * `percent`% of requests instead of multiplying load by the attempt count.
 */
export class RetryBudget {
  private tokens = 0;
  private active = 0;
  private readonly cap: number;

  constructor(private readonly policy: RetryBudgetPolicy) {
    this.cap = Math.max(1, policy.percent);
  }

  /** Call once per original request. */
  deposit(): void {
    this.tokens = Math.min(this.cap, this.tokens + this.policy.percent / 100);
  }

  /** True when a retry may start; pair every true with finish(). */
  tryStart(): boolean {
    if (this.active < this.policy.minConcurrency) {
      this.active++;
      return true;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      this.active++;
      return true;
    }
    return false;
  }

  finish(): void {
    if (this.active > 0) this.active--;
  }

  get activeRetries(): number {
    return this.active;
  }

  get availableTokens(): number {
    return this.tokens;
  }
}
