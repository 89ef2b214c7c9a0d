/** The destination's connection-pool limits (DestinationRule connectionPool) as a dispatch layer. */
import { cancelled, DispatchFailure, onResponseDone, type ProxyDispatch, type ProxyRequest } from '../dispatch/dispatch.js';
import type { UpstreamResponse } from '../endpoint/upstream.js';
import type { GateEntry, Release } from './breaker.js';

/**
 * The destination's connection pool as a dispatch layer: a request takes a slot (waiting in the
 * pending queue when all are busy) for as long as its response streams; when the queue is full
 * too it fails at once with `overflow` (503 UO), counted by `onOverflow`.
 */
export function withPoolGate(next: ProxyDispatch, onOverflow: (req: ProxyRequest) => void): ProxyDispatch {
  return async (req) => {
    const entry = req.destination.gate.enter();
    if (!entry.ok) {
      onOverflow(req);
      throw new DispatchFailure('overflow', 'upstream connect error or disconnect/reset before headers. reset reason: overflow');
    }
    const release = entry.immediate ?? (await waitForSlot(entry, req.signal));
    if (!release) throw cancelled();
    let resp: UpstreamResponse;
    try {
      resp = await next(req);
    } catch (e) {
      release();
      throw e;
    }
    onResponseDone(resp, release);
    return resp;
  };
}

/** The slot, or undefined when `signal` aborts first (the place in the queue is given up). */
function waitForSlot(entry: Extract<GateEntry, { ok: true }>, signal: AbortSignal): Promise<Release | undefined> {
  return new Promise<Release | undefined>((resolve) => {
    if (signal.aborted) {
      entry.cancel();
      return resolve(undefined);
    }
    const onAbort = (): void => {
      entry.cancel();
      resolve(undefined);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    entry.ready.then(
      (r) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) {
          r();
          resolve(undefined);
        } else resolve(r);
      },
      () => resolve(undefined),
    );
  });
}
