/**
 * The waypoint's dispatch stack: one request to a chosen backend travels through layers, each a
 * function that wraps the next `ProxyDispatch` (as undici's interceptors wrap `dispatch`):
 *
 *   withDeadline (deadline.ts) → withPoolGate (balance/pool-gate.ts) → withMirror (route/mirror.ts)
 *     → withRetries (retry.ts) → balance (balance/balance.ts: endpoint choice, outlier
 *     detection) → endpoint Dispatch (endpoint/upstream.ts)
 *
 * A layer either resolves with the upstream response (its body still streaming) or rejects with a
 * DispatchFailure; the server turns a failure into the local reply Envoy would send. Layers that
 * hold something for the life of the response (a pool slot, a deadline timer, an endpoint's
 * in-flight count) let go of it when the response body closes.
 */
import type * as http from 'node:http';
import { AmbitError, type ErrorCode } from '../../shared/errors.js';
import type { MirrorPolicy, RetryPolicy } from '../../shared/routes.js';
import type { DestinationState } from '../balance/destinations.js';
import type { Endpoint, UpstreamResponse } from '../endpoint/upstream.js';
import type { ReplayableBody } from './replay-body.js';
import type { Deadline } from './timeout.js';

/** A backend of a route: the service (or pod) and service port, and the subset's labels. */
export interface BackendTarget {
  host: string;
  port: number;
  subset?: string;
  subsetLabels?: Record<string, string>;
}

/** What the layers note about a request for its access-log line and metrics. */
export interface ExchangeRecord {
  /** The endpoint of the latest try. */
  endpoint?: Endpoint;
  retries: number;
  /** Endpoint keys tried so far; a retry prefers another one. */
  tried: Set<string>;
  /** Envoy response flags (shared with the request's own list). */
  flags: string[];
}

/** One proxied request as the dispatch layers see it. */
export interface ProxyRequest {
  /** The request's id in logs. */
  reqId: string;
  target: BackendTarget;
  /** Per-destination state: pool gate, outlier detector, retry budget, in-flight counts. */
  destination: DestinationState;
  method: string;
  /** Path with query, after any rewrite. */
  path: string;
  authority: string;
  headers: http.OutgoingHttpHeaders;
  /** The downstream body, replayable for retries while small; undefined when there is none. */
  body: ReplayableBody | undefined;
  http2: boolean;
  /** Route name and service hostname, for metric labels. */
  route: string;
  service: string;
  /** The route's timeout (ms), the caller's grpc-timeout already folded in. */
  timeoutMs: number | undefined;
  retryPolicy: RetryPolicy | undefined;
  /** The route's mirror, sent by withMirror. */
  mirror: MirrorPolicy | undefined;
  /** Aborted when the request must stop: the downstream went away or its deadline passed. */
  overall: AbortSignal;
  /** What the current try obeys: `overall`, or a per-try signal with its own timeout. */
  signal: AbortSignal;
  /** Set by withDeadline. */
  deadline?: Deadline;
  record: ExchangeRecord;
}

export type ProxyDispatch = (req: ProxyRequest) => Promise<UpstreamResponse>;

/**
 * Why a request got no upstream response. `overflow`: the destination's pool is full;
 * `no-healthy-upstream`: the backend has no endpoints; `timeout`: the request's deadline passed
 * (`perTry` when its last try's own timeout did); `connect-failure`, `reset`, `refused-stream`:
 * the last try's failure; `cancelled`: the downstream went away.
 */
export type DispatchFailureKind = 'overflow' | 'no-healthy-upstream' | 'timeout' | 'connect-failure' | 'reset' | 'refused-stream' | 'cancelled';

const CODES: Record<DispatchFailureKind, ErrorCode> = {
  overflow: 'AMBIT_ERR_UPSTREAM_OVERFLOW',
  'no-healthy-upstream': 'AMBIT_ERR_NO_ENDPOINT',
  timeout: 'AMBIT_ERR_UPSTREAM_TIMEOUT',
  'connect-failure': 'AMBIT_ERR_UPSTREAM_CONNECT',
  reset: 'AMBIT_ERR_UPSTREAM_CONNECT',
  'refused-stream': 'AMBIT_ERR_UPSTREAM_CONNECT',
  cancelled: 'AMBIT_ERR_REQUEST_CANCELLED',
};

export class DispatchFailure extends AmbitError {
  constructor(
    readonly kind: DispatchFailureKind,
    message: string,
    readonly detail: { perTry?: boolean; retryLimit?: boolean } = {},
    cause?: unknown,
  ) {
    super(CODES[kind], message, cause === undefined ? {} : { cause });
  }
}

/** Release callbacks waiting for a response body's end, in the order the layers registered them. */
const bodyReleases = new WeakMap<object, Array<() => void>>();

/**
 * Calls `release` once, when `resp`'s body has been read to its end or closed (destroyed, failed).
 * The layers of one request share one pair of listeners on the body (several layers each holding
 * their own would add and remove two listeners apiece per request).
 */
export function onResponseDone(resp: UpstreamResponse, release: () => void): void {
  const body = resp.body;
  if (body.readableEnded || body.closed) return release();
  const waiting = bodyReleases.get(body);
  if (waiting) {
    waiting.push(release);
    return;
  }
  const list = [release];
  bodyReleases.set(body, list);
  const done = (): void => {
    body.removeListener('end', done);
    body.removeListener('close', done);
    bodyReleases.delete(body);
    for (const r of list) r();
  };
  body.on('end', done);
  body.on('close', done);
}

/** Throws the failure an aborted request gets: the layer that aborted it (withDeadline) renames it. */
export function cancelled(): DispatchFailure {
  return new DispatchFailure('cancelled', 'request cancelled before a response: the downstream went away');
}
