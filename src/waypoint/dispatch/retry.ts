/**
 * Retries: the decisions (Envoy retry_on semantics as Istio configures them; pure) and withRetries,
 * the dispatch layer that runs them, asking the destination's retry budget (budget.ts) so retries
 * cannot amplify an outage.
 */
import { DEFAULT_RETRY_BUDGET, type RetryPolicy } from '../../shared/routes.js';
import { retryBudgetOf } from '../balance/destinations.js';
import type { UpstreamResponse } from '../endpoint/upstream.js';
import type { RandomSource } from '../route/weighted.js';
import { cancelled, DispatchFailure, type ProxyDispatch, type ProxyRequest } from './dispatch.js';
import { createDeadline, tryTimeoutMs } from './timeout.js';

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

/** The retry_on conditions of a policy as a set, made once per policy object. */
const retryOnSets = new WeakMap<object, ReadonlySet<string>>();

function retryOnSet(policy: Pick<RetryPolicy, 'retryOn'>): ReadonlySet<string> {
  let on = retryOnSets.get(policy);
  if (!on) retryOnSets.set(policy, (on = new Set(policy.retryOn)));
  return on;
}

/** The retry_on condition the outcome satisfies, or undefined. */
export function matchRetryOn(policy: Pick<RetryPolicy, 'retryOn' | 'retriableStatusCodes'>, outcome: TryOutcome): string | undefined {
  const on = retryOnSet(policy);
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

export interface RetryDeps {
  now: () => number;
  random: RandomSource;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  /** A retry is about to start (metric `retries`, reason is the retry_on condition). */
  onRetry: (req: ProxyRequest, reason: string) => void;
  /** A try ran out of its own time (per-try timeout). */
  onTryTimeout: (req: ProxyRequest) => void;
  /** The retry budget refused a retry. */
  onBudgetExhausted: (req: ProxyRequest) => void;
}

/** Outcomes of a try that failed before a response, as the layer below reports them. */
const TRY_FAILURES: ReadonlySet<string> = new Set(['timeout', 'connect-failure', 'reset', 'refused-stream']);

/**
 * Retries as a dispatch layer (undici's retry interceptor, Envoy's retry policy): each try gets
 * the per-try timeout (bounded by what is left of the request deadline) on a signal of its own;
 * after a retryable outcome (isRetryable) and a token from the destination's retry budget, the
 * response is drained, the body rewound and the next try starts after a jittered backoff. The
 * last try's response is returned, or its failure thrown with `retryLimit` when retries ran out.
 */
export function withRetries(next: ProxyDispatch, deps: RetryDeps): ProxyDispatch {
  return async (req) => {
    const policy = req.retryPolicy;
    const budget = policy?.budget ? retryBudgetOf(req.destination, policy.budget) : undefined;
    budget?.deposit();
    const deadline = req.deadline ?? createDeadline(undefined, deps.now());
    for (let attempt = 0; ; attempt++) {
      const perTry = policy?.perTryTimeoutMs !== undefined ? tryTimeoutMs(deadline, policy.perTryTimeoutMs, deps.now()) : undefined;
      // A try has its own signal only when it has its own timeout; otherwise the request's.
      const tryCtl = perTry !== undefined && perTry !== Infinity ? new AbortController() : undefined;
      const onOverall = (): void => tryCtl?.abort();
      if (tryCtl) req.overall.addEventListener('abort', onOverall, { once: true });
      const tryTimer = tryCtl ? setTimeout(() => tryCtl.abort(), perTry) : undefined;
      let resp: UpstreamResponse | undefined;
      let failure: DispatchFailure | undefined;
      let outcome: TryOutcome;
      try {
        const signal = tryCtl?.signal ?? req.overall;
        resp = await next(signal === req.signal ? req : { ...req, signal });
        const gs = headerText(resp.headers['grpc-status']);
        outcome = { kind: 'response', status: resp.status, ...(gs !== undefined ? { grpcStatus: Number(gs) } : {}) };
      } catch (e) {
        if (!(e instanceof DispatchFailure) || !TRY_FAILURES.has(e.kind)) {
          if (attempt > 0) budget?.finish(); // the retry it started is over
          throw e;
        }
        failure = e;
        outcome = { kind: e.kind as 'timeout' | 'connect-failure' | 'reset' | 'refused-stream' };
      } finally {
        if (tryTimer) clearTimeout(tryTimer);
        if (tryCtl) req.overall.removeEventListener('abort', onOverall);
      }
      if (attempt > 0) budget?.finish();
      if (req.overall.aborted) {
        resp?.body.destroy();
        throw cancelled();
      }
      if (outcome.kind === 'timeout') deps.onTryTimeout(req);

      const verdict = isRetryable({ policy, method: req.method, retriesDone: attempt, outcome, bodyReplayable: req.body ? req.body.replayable : true });
      if (verdict.retry) {
        if (budget && !budget.tryStart()) deps.onBudgetExhausted(req);
        else {
          if (resp) drainForReuse(resp);
          req.body?.detachAll();
          req.record.retries++;
          deps.onRetry(req, verdict.reason);
          const wait = retryBackoffMs(attempt, policy?.backoffMs ?? 25, deps.random);
          if (wait > 0) await deps.sleep(Math.min(wait, Math.max(0, deadline.endsAt - deps.now())), req.overall);
          if (req.overall.aborted) {
            budget?.finish();
            throw cancelled();
          }
          continue;
        }
      }
      if (resp) return resp;
      const retryLimit = req.record.retries > 0 && verdict.reason === 'attempts-exhausted';
      throw new DispatchFailure(failure!.kind, failure!.message, { perTry: outcome.kind === 'timeout', retryLimit }, failure!.cause);
    }
  };
}

/** Small error bodies are read to the end so the connection can be reused; large ones are reset. */
function drainForReuse(resp: UpstreamResponse): void {
  const len = Number(headerText(resp.headers['content-length']) ?? NaN);
  if (Number.isFinite(len) && len <= 65_536) resp.body.resume();
  else resp.body.destroy();
}

function headerText(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}
