/** Graceful close with a deadline, then force: the lifecycle of long-lived objects. */

export interface Closable {
  /** Stop accepting, let in-flight work finish, resolve when done or when the deadline forces it. */
  close(deadlineMs: number): Promise<void>;
  /** Tear everything down now. */
  destroy(err?: Error): void;
}

/**
 * Runs `graceful()`; if it has not settled within `deadlineMs`, calls `force()` and resolves.
 * Never rejects: close paths must not throw over a half-closed object.
 */
export async function drain(graceful: () => Promise<void>, force: () => void, deadlineMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), Math.max(0, deadlineMs));
    timer.unref?.();
  });
  try {
    const outcome = await Promise.race([graceful().then(() => 'done' as const, () => 'failed' as const), deadline]);
    if (outcome !== 'done') force();
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/** Sleeps `ms`; with an AbortSignal it resolves early when aborted. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Exponential backoff with full jitter, capped: attempt 0 → [0, baseMs), attempt n → [0, min(cap, base·2^n)). */
export function backoffMs(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(ceiling / 2 + (random() * ceiling) / 2);
}
