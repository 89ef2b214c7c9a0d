/**
 * Authenticates callers on Kubernetes: each bearer token is posted to the API server as a
 * TokenReview for audience `istio-ca`, and the answer is mapped to a node or pod caller by
 * callerFromTokenReview (callers.ts). Positive answers are cached briefly (bounded); a TokenReview
 * that fails (API server down, 5xx, no permission) refuses the caller: fail closed.
 *
 * Invariants: tokens are never logged nor kept (the cache is keyed by their SHA-256); concurrent
 * requests with the same token share one TokenReview; every outcome is counted once in
 * `ambit_token_reviews_total{result, cached}`.
 */
import { createHash } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/log.js';
import { Counter } from '../shared/metrics.js';
import { registerOnce } from '../shared/xds/metric-util.js';
import { callerFromTokenReview, callerKey, type Caller, type CallerAuthenticator, type TokenReviewPolicy, type TokenReviewStatus } from './callers.js';
import type { KubeClient } from './source/kube-client.js';
import { collectionPath, RESOURCES } from './source/kube-paths.js';

export const ISTIO_CA_AUDIENCE = 'istio-ca';
export const DEFAULT_AGENT_SERVICE_ACCOUNT = { namespace: 'istio-system', serviceAccount: 'ambit-agent' } as const;

export interface TokenReviewAuthenticatorOptions {
  client: KubeClient;
  log: Logger;
  registry: Registry;
  /** The agents' service account (default istio-system/ambit-agent). */
  agent?: TokenReviewPolicy['agent'];
  /** Audience a token must carry (default istio-ca). */
  audience?: string;
  /** How long a positive answer is reused (default 30 s). */
  cacheTtlMs?: number;
  /** Most answers kept (default 4096; the oldest go first). */
  cacheMax?: number;
  /** How long one TokenReview may take (default 5 s). */
  timeoutMs?: number;
  now?: () => number;
}

type Result = 'node' | 'pod' | 'refused' | 'error';

export class TokenReviewAuthenticator implements CallerAuthenticator {
  private readonly log: Logger;
  private readonly policy: TokenReviewPolicy;
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, { caller: Caller; expiresAt: number }>();
  private readonly inflight = new Map<string, Promise<Caller | undefined>>();
  private readonly outcomes: Counter<'result' | 'cached'>;

  constructor(private readonly opts: TokenReviewAuthenticatorOptions) {
    this.log = opts.log.child({ component: 'token-review' });
    this.policy = { agent: opts.agent ?? DEFAULT_AGENT_SERVICE_ACCOUNT, audience: opts.audience ?? ISTIO_CA_AUDIENCE };
    this.ttlMs = opts.cacheTtlMs ?? 30_000;
    this.max = opts.cacheMax ?? 4096;
    this.now = opts.now ?? Date.now;
    const registry = opts.registry;
    this.outcomes = registerOnce(registry, 'ambit_token_reviews_total', () => new Counter({
      name: 'ambit_token_reviews_total',
      help: 'Caller tokens checked with TokenReview, by result (node, pod, refused, error: TokenReview failed, refused) and whether a cached answer was used.',
      labelNames: ['result', 'cached'] as const,
      registers: [registry],
    }));
  }

  async authenticate(token: string): Promise<Caller | undefined> {
    const key = createHash('sha256').update(token).digest('hex');
    const hit = this.cache.get(key);
    if (hit && hit.expiresAt > this.now()) {
      this.count(hit.caller.kind, true);
      return hit.caller;
    }
    if (hit) this.cache.delete(key);
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.review(key, token).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  /** Forgets every cached answer (tests; a rotated agent service account). */
  clear(): void {
    this.cache.clear();
  }

  private async review(key: string, token: string): Promise<Caller | undefined> {
    let status: TokenReviewStatus;
    try {
      const answer = await this.opts.client.request<{ status?: TokenReviewStatus }>({
        method: 'POST',
        path: collectionPath(RESOURCES.tokenReviews),
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.policy.audience] } },
        timeoutMs: this.opts.timeoutMs ?? 5_000,
      });
      status = answer?.status ?? {};
    } catch (e) {
      this.count('error', false);
      this.log.warn({ code: 'AMBIT_ERR_TOKEN_REVIEW', err: e }, 'TokenReview failed; the caller is refused (fail closed)');
      return undefined;
    }
    const mapped = callerFromTokenReview(status, this.policy);
    if ('refused' in mapped) {
      this.count('refused', false);
      this.log.warn({ code: 'AMBIT_ERR_CA_UNAUTHENTICATED', reason: mapped.refused }, `caller token refused: ${mapped.detail}`);
      return undefined;
    }
    this.count(mapped.caller.kind, false);
    this.log.debug({ caller: callerKey(mapped.caller) }, 'caller token reviewed');
    if (this.cache.size >= this.max) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, { caller: mapped.caller, expiresAt: this.now() + this.ttlMs });
    return mapped.caller;
  }

  private count(result: Result, cached: boolean): void {
    this.outcomes.inc({ result, cached: String(cached) });
  }
}
