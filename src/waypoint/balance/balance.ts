/**
 * Endpoint choice as the innermost dispatch layer: the backend's endpoints (resolveEndpoints),
 * less those outlier detection ejected, less those this request already tried (a retry goes
 * elsewhere when it can), then least request (shared/balancer.ts) over the in-flight counts. The
 * try goes to the endpoint `Dispatch`; its result feeds outlier detection, and the endpoint's
 * in-flight count drops when the response body is done.
 */
import { pickLeastRequest } from '../../shared/balancer.js';
import { DispatchFailure, onResponseDone, type BackendTarget, type ProxyDispatch, type ProxyRequest } from '../dispatch/dispatch.js';
import { isUpstreamFailure, type Dispatch, type Endpoint, type UpstreamResponse } from '../endpoint/upstream.js';
import type { RandomSource } from '../route/weighted.js';
import { classifyResult } from './breaker.js';

export interface BalanceDeps {
  resolveEndpoints: (target: BackendTarget) => Endpoint[];
  random: RandomSource;
  /** An endpoint was just ejected by outlier detection. */
  onEjection: (req: ProxyRequest, endpoint: Endpoint) => void;
  /** A try failed before a response (for a debug line). */
  onTryFailed: (req: ProxyRequest, endpoint: Endpoint, err: unknown) => void;
}

export function balance(dispatch: Dispatch, deps: BalanceDeps): ProxyDispatch {
  return async (req) => {
    const dest = req.destination;
    const all = deps.resolveEndpoints(req.target);
    const healthy = dest.outlier ? dest.outlier.filter(all, (e) => e.key) : all;
    if (healthy.length === 0) throw new DispatchFailure('no-healthy-upstream', `no healthy upstream for ${req.target.host}:${req.target.port}`);
    const fresh = healthy.filter((e) => !req.record.tried.has(e.key));
    const endpoint = pickLeastRequest(fresh.length > 0 ? fresh : healthy, dest.active, deps.random)!;
    req.record.tried.add(endpoint.key);
    req.record.endpoint = endpoint;
    dest.active.set(endpoint.key, (dest.active.get(endpoint.key) ?? 0) + 1);
    const endpointDone = (): void => {
      const n = (dest.active.get(endpoint.key) ?? 1) - 1;
      if (n <= 0) dest.active.delete(endpoint.key);
      else dest.active.set(endpoint.key, n);
    };
    const record = (result: Parameters<typeof classifyResult>[0]): void => {
      // A request cut short (downstream gone, deadline passed) says nothing about the endpoint.
      if (!dest.outlier || req.overall.aborted) return;
      if (dest.outlier.record(endpoint.key, classifyResult(result), all.map((e) => e.key))) deps.onEjection(req, endpoint);
    };
    let resp: UpstreamResponse;
    try {
      resp = await dispatch(endpoint, { method: req.method, path: req.path, authority: req.authority, headers: req.headers, body: req.body?.open(), http2: req.http2, signal: req.signal });
    } catch (e) {
      endpointDone();
      deps.onTryFailed(req, endpoint, e);
      const kind = req.signal.aborted ? 'timeout' : isUpstreamFailure(e) ? e.kind : 'reset';
      record(kind === 'refused-stream' ? 'reset' : kind);
      throw new DispatchFailure(kind, `try to ${endpoint.key} failed: ${kind}`, {}, e);
    }
    record(resp.status);
    onResponseDone(resp, endpointDone);
    return resp;
  };
}
