/** The request deadline (Istio route `timeout`, or a gRPC caller's `grpc-timeout`) as a dispatch layer. */
import type { UpstreamResponse } from '../endpoint/upstream.js';
import { RESPONSE_FLAGS } from '../metrics.js';
import { DispatchFailure, onResponseDone, type ProxyDispatch, type ProxyRequest } from './dispatch.js';
import { createDeadline } from './timeout.js';

export interface DeadlineDeps {
  now: () => number;
  /** Counts a request that ran out of time (`istio`-style timeouts metric, kind `request`). */
  onTimeout: (req: ProxyRequest) => void;
}

/**
 * The request deadline as a layer: arms the route's timeout (min of route and grpc-timeout), gives
 * the layers below a signal that aborts when it passes or the downstream goes away, and turns
 * their failure into `timeout` when it passed first. The deadline also covers the response body:
 * one still streaming when it passes is cut (flag UT), as Envoy's route timeout does.
 */
export function withDeadline(next: ProxyDispatch, deps: DeadlineDeps): ProxyDispatch {
  return async (req) => {
    // No timeout: nothing to arm; the layers below obey the request's own signal (and the retry
    // layer makes its own unbounded deadline).
    if (req.timeoutMs === undefined) return next(req.signal === req.overall ? req : { ...req, signal: req.overall });
    const deadline = createDeadline(req.timeoutMs, deps.now());
    const ctl = new AbortController();
    let timedOut = false;
    let resp: UpstreamResponse | undefined;
    const onOverall = (): void => ctl.abort();
    if (req.overall.aborted) ctl.abort();
    else req.overall.addEventListener('abort', onOverall, { once: true });
    const timer =
      req.timeoutMs !== undefined
        ? setTimeout(() => {
            timedOut = true;
            deps.onTimeout(req);
            if (resp) {
              req.record.flags.push(RESPONSE_FLAGS.UPSTREAM_TIMEOUT);
              resp.body.destroy();
            }
            ctl.abort();
          }, req.timeoutMs)
        : undefined;
    const done = (): void => {
      if (timer) clearTimeout(timer);
      req.overall.removeEventListener('abort', onOverall);
    };
    try {
      resp = await next({ ...req, deadline, overall: ctl.signal, signal: ctl.signal });
    } catch (e) {
      done();
      if (timedOut) throw new DispatchFailure('timeout', 'upstream request timeout', {}, e);
      throw e;
    }
    onResponseDone(resp, done);
    return resp;
  };
}
