/** Local rate limiting (Envoy local_ratelimit): one token bucket per route config → 429 when empty. */
import type { LocalRateLimit } from '../../shared/routes.js';

export class TokenBucket {
  private tokens: number;
  private lastFill: number;

  constructor(
    private readonly policy: LocalRateLimit,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = policy.maxTokens;
    this.lastFill = now();
  }

  private refill(): void {
    const t = this.now();
    const intervals = Math.floor((t - this.lastFill) / this.policy.fillIntervalMs);
    if (intervals <= 0) return;
    this.tokens = Math.min(this.policy.maxTokens, this.tokens + intervals * this.policy.tokensPerFill);
    this.lastFill += intervals * this.policy.fillIntervalMs;
  }

  /** Takes one token; false means the request is rate limited. */
  tryTake(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  get available(): number {
    this.refill();
    return this.tokens;
  }
}
