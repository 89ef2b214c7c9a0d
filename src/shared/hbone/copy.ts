/**
 * Bidirectional pipe between a downstream and an upstream duplex with backpressure (stream.pipe),
 * half-close carried each way, live byte counts, and exactly one close callback.
 * Byte counters are reported by batch, not per chunk: a chunk only adds to a local number; the
 * byte callbacks get what accumulated at each flush — every COUNTER_FLUSH_MS (one timer for all
 * pipes), when a reader asks (flushCopyCounters, before /metrics), and before onClose.
 * Invariants: a FIN from either side becomes end() on the other; an error or reset on either side
 * destroys both (a tunnel stream cut off by its session's end counts as reset); `onClose` runs
 * once, after both sides have closed.
 */
import type { Duplex } from 'node:stream';

export interface CopyResult {
  /** Bytes read from the downstream and written upstream. */
  bytesFromDownstream: number;
  /** Bytes read from the upstream and written downstream. */
  bytesFromUpstream: number;
  /** The first error either side raised, if any. */
  error?: Error;
  /** True when both directions ended with a FIN (no reset, no destroy). */
  clean: boolean;
}

export interface CopyOptions {
  /** Bytes read from the downstream since the last flush (called only with n > 0). */
  onDownstreamBytes?: (n: number) => void;
  /** Bytes read from the upstream since the last flush (called only with n > 0). */
  onUpstreamBytes?: (n: number) => void;
  /** Runs once, after the last flush. */
  onClose: (result: CopyResult) => void;
  /**
   * The upstream's go-ahead (a tunnel's CONNECT reply). Until it resolves true the downstream's
   * bytes already flow up, but nothing is read from the upstream: a refusal's END_STREAM must not
   * reach the client as a FIN. False (or a rejection) tears both sides down.
   */
  upstreamReady?: Promise<boolean>;
}

/** How often live pipes hand their byte counts to the callbacks. */
export const COUNTER_FLUSH_MS = 1000;

/** Flushes of the live pipes; one interval serves them all while any is live. */
const liveFlushes = new Set<() => void>();
let flushTimer: NodeJS.Timeout | undefined;

/** Hands every live pipe's accumulated byte counts to its callbacks now (call before reading metrics). */
export function flushCopyCounters(): void {
  for (const f of liveFlushes) f();
}

function trackFlush(f: () => void): void {
  liveFlushes.add(f);
  if (!flushTimer) {
    flushTimer = setInterval(flushCopyCounters, COUNTER_FLUSH_MS);
    flushTimer.unref();
  }
}

function untrackFlush(f: () => void): void {
  liveFlushes.delete(f);
  if (liveFlushes.size === 0 && flushTimer) {
    clearInterval(flushTimer);
    flushTimer = undefined;
  }
}

export interface CopyHandle {
  /** Tears both sides down now (policy late-deny, shutdown). */
  destroy(err?: Error): void;
  readonly bytesFromDownstream: number;
  readonly bytesFromUpstream: number;
}

export function copyBidirectional(downstream: Duplex, upstream: Duplex, opts: CopyOptions): CopyHandle {
  let fromDown = 0;
  let fromUp = 0;
  let error: Error | undefined;
  let downEnded = false;
  let upEnded = false;
  let closedCount = 0;
  let done = false;
  let forced = false;
  let reportedDown = 0;
  let reportedUp = 0;
  const flush = (): void => {
    if (fromDown > reportedDown) {
      const n = fromDown - reportedDown;
      reportedDown = fromDown;
      opts.onDownstreamBytes?.(n);
    }
    if (fromUp > reportedUp) {
      const n = fromUp - reportedUp;
      reportedUp = fromUp;
      opts.onUpstreamBytes?.(n);
    }
  };
  trackFlush(flush);

  const onError = (e: Error): void => {
    error ??= e;
    destroyBoth();
  };
  const destroyBoth = (): void => {
    forced = true;
    abort(downstream);
    abort(upstream);
  };
  const onClosed = (side: Duplex): void => {
    closedCount++;
    if (closedCount === 1) {
      // One side closed. If it did not finish both halves cleanly, nothing more will flow: tear down.
      const ended = side === downstream ? downEnded : upEnded;
      if (!ended || !side.writableFinished) destroyBoth();
    }
    if (closedCount === 2 && !done) {
      done = true;
      untrackFlush(flush);
      flush();
      opts.onClose({ bytesFromDownstream: fromDown, bytesFromUpstream: fromUp, clean: !forced && !error && downEnded && upEnded, ...(error ? { error } : {}) });
    }
  };

  downstream.on('data', (c: Buffer) => void (fromDown += c.length));
  downstream.once('end', () => (downEnded = true));
  upstream.once('end', () => (upEnded = true));
  downstream.on('error', onError);
  upstream.on('error', onError);
  // An HTTP/2 stream reset with CANCEL ends quietly ('aborted', then EOF): it is not a half-close.
  // Our own close() also emits 'aborted' on the stream: only a peer's reset counts here.
  const onAborted = (): void => {
    if (!forced) onError(new Error('tunnel stream reset by the peer'));
  };
  downstream.once('aborted', onAborted);
  upstream.once('aborted', onAborted);
  // A tunnel stream whose session died (peer gone, liveness) reads a synthetic EOF, after its
  // destroy and without 'aborted' when we had already ended our side: that is not the peer's
  // END_STREAM, and passing it on as a FIN would show the app a clean end of truncated data.
  for (const side of [downstream, upstream]) {
    if ((side as { session?: unknown }).session === undefined) continue;
    side.once('end', () => {
      if (side.destroyed && !forced) onError(new Error('tunnel session ended before the stream did'));
    });
  }
  for (const side of [downstream, upstream]) {
    // A side that closed before the pipe started (the client gave up while the tunnel opened).
    if (side.closed) queueMicrotask(() => onClosed(side));
    else side.once('close', () => onClosed(side));
  }
  // pipe() ends the destination when the source ends: that is the half-close.
  downstream.pipe(upstream);
  // A 'data' listener starts the flow, so the upstream's counter is attached with its pipe.
  const readUpstream = (): void => {
    upstream.on('data', (c: Buffer) => void (fromUp += c.length));
    upstream.pipe(downstream);
  };
  if (!opts.upstreamReady) readUpstream();
  else {
    opts.upstreamReady.then(
      (ok) => {
        if (done || forced) return;
        if (ok) readUpstream();
        else destroyBoth();
      },
      () => destroyBoth(),
    );
  }

  return {
    destroy(err?: Error) {
      if (err) error ??= err;
      destroyBoth();
    },
    get bytesFromDownstream() {
      return fromDown;
    },
    get bytesFromUpstream() {
      return fromUp;
    },
  };
}

/**
 * Tears one side down so the peer sees a reset, not an orderly end. An HTTP/2 stream is destroyed
 * with an error: Node then sends RST_STREAM(INTERNAL_ERROR) and no END_STREAM (close(CANCEL) would
 * send END_STREAM first, and a bare destroy() sends RST_STREAM(NO_ERROR): the peer reads both as a
 * clean EOF). A socket gets a TCP RST unless we already sent FIN (libuv refuses a reset after
 * shutdown), in which case it is closed.
 */
export function abort(side: Duplex): void {
  if (side.destroyed) return;
  const s = side as Duplex & { session?: unknown; resetAndDestroy?: () => void };
  if (s.session !== undefined) {
    side.destroy(new Error('connection aborted by the proxy'));
    return;
  }
  if (typeof s.resetAndDestroy === 'function' && !side.writableEnded) {
    try {
      s.resetAndDestroy();
      return;
    } catch {
      // Not a TCP handle: fall back to a plain destroy.
    }
  }
  side.destroy();
}
