/**
 * The retry budget of one destination (Istio/Envoy retry budgets): a token bucket so retries
 * cannot amplify an outage. withRetries asks it before every retry.
 */
import type { RetryBudget as RetryBudgetPolicy } from '../../shared/routes.js';

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
