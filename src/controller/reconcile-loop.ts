/**
 * Drives one reconciler (status writer, owned objects, root publisher): triggers are debounced,
 * at most one pass runs at a time (a trigger during a pass runs one more pass after it), a pass
 * that fails is retried with backoff, and a periodic resync repairs what no event reported. Passes
 * run only while `active()` (the leader); becoming active should be followed by trigger().
 */
import type { Logger } from '../shared/log.js';
import type { ResourceInformer } from './source/informer.js';

export interface ReconcileLoopOptions {
  name: string;
  /** One pass; throw to have it retried. */
  run: () => Promise<void>;
  /** Passes run only while this is true. */
  active: () => boolean;
  log: Logger;
  /** Quiet time after a trigger (default 50 ms). */
  debounceMs?: number;
  /** A pass at least this often while active (default 5 min). */
  resyncMs?: number;
  /** First retry delay after a failed pass, doubling to 30 s (default 500 ms). */
  retryMs?: number;
}

export class ReconcileLoop {
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private failures = 0;
  private closed = false;

  constructor(private readonly opts: ReconcileLoopOptions) {
    this.log = opts.log.child({ component: opts.name });
    this.armResync();
  }

  /** Asks for a pass soon. */
  trigger(delayMs = this.opts.debounceMs ?? 50): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.pass().finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.trigger();
        }
      });
    }, delayMs);
    this.timer.unref();
  }

  /** Resolves once no pass is running or scheduled (tests; shutdown). */
  async idle(): Promise<void> {
    while (this.running || this.timer) {
      if (this.running) await this.running;
      else await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.resync) clearInterval(this.resync);
    this.timer = undefined;
    await this.running;
  }

  private armResync(): void {
    this.resync = setInterval(() => this.trigger(0), this.opts.resyncMs ?? 300_000);
    this.resync.unref();
  }

  private async pass(): Promise<void> {
    if (this.closed || !this.opts.active()) return;
    try {
      await this.opts.run();
      this.failures = 0;
    } catch (e) {
      const delay = Math.min(30_000, (this.opts.retryMs ?? 500) * 2 ** this.failures);
      this.failures = Math.min(this.failures + 1, 20);
      this.log.warn({ err: e, retryInMs: delay }, 'reconcile pass failed; retrying');
      if (!this.closed) {
        // Retried after this pass settles (trigger() during a running pass only marks `again`).
        setTimeout(() => this.trigger(0), delay).unref();
      }
    }
  }
}

/** A reconciler driven by a ReconcileLoop over the state of some informers: start, trigger, idle, close. */
export abstract class InformedReconciler {
  protected abstract readonly informers: readonly ResourceInformer[];
  protected abstract readonly loop: ReconcileLoop;

  /** True once every informer delivered its first list. */
  protected get synced(): boolean {
    return this.informers.every((i) => i.synced);
  }

  /** Starts the informers; the first pass follows once they listed (and the loop is active). */
  async start(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.start()));
    this.loop.trigger();
  }

  /** What the passes read changed (objects, leadership). */
  trigger(): void {
    this.loop.trigger();
  }

  idle(): Promise<void> {
    return this.loop.idle();
  }

  async close(): Promise<void> {
    await this.loop.close();
    await Promise.all(this.informers.map((i) => i.stop()));
  }
}
