/**
 * What the waypoint's upstream clients share: an endpoint, one request to it and its response,
 * the Dispatch and ConnectFn seams, and the failure a try that got no response ends with.
 */
import type * as http from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { AmbitError } from '../../shared/errors.js';

/** One address of a backend, with what telemetry needs to know about the pod behind it. */
export interface Endpoint {
  /** Stable key for outlier detection and pools, e.g. `10.0.0.5:9080`. */
  key: string;
  address: string;
  port: number;
  labels?: Record<string, string>;
  workload?: string;
  namespace?: string;
  canonicalService?: string;
  canonicalRevision?: string;
  /** SPIFFE id the endpoint presents. */
  principal?: string;
  cluster?: string;
}

export interface UpstreamRequest {
  method: string;
  /** Path with query. */
  path: string;
  authority: string;
  /** Lowercase names; no pseudo-headers and no hop-by-hop headers. */
  headers: http.OutgoingHttpHeaders;
  /** Undefined when the request has no body. */
  body: Readable | undefined;
  http2: boolean;
  signal: AbortSignal;
}

export interface UpstreamResponse {
  status: number;
  /** Lowercase names, no pseudo-headers. */
  headers: http.IncomingHttpHeaders;
  body: Readable;
  /** Resolves with the trailers (empty when none) once the body has ended. */
  trailers: Promise<Record<string, string | string[]>>;
}

/** Sends one request to one endpoint. Rejects with UpstreamFailure on connect failure or reset. */
export type Dispatch = (endpoint: Endpoint, req: UpstreamRequest) => Promise<UpstreamResponse>;

/** Opens a byte stream to an endpoint (plain TCP, or an HBONE tunnel stream). */
export type ConnectFn = (endpoint: Endpoint) => Promise<Duplex>;

export type UpstreamFailureKind = 'connect-failure' | 'reset' | 'refused-stream';

/** A try that produced no response; `kind` drives retry and outlier decisions. */
export class UpstreamFailure extends AmbitError {
  constructor(
    readonly kind: UpstreamFailureKind,
    endpoint: Endpoint,
    cause: unknown,
  ) {
    super(
      'AMBIT_ERR_UPSTREAM_CONNECT',
      kind === 'connect-failure'
        ? `connect to upstream ${endpoint.key} failed; is the pod running and listening on ${endpoint.port}?`
        : `upstream ${endpoint.key} ${kind === 'refused-stream' ? 'refused the stream' : 'reset the request'} before a response`,
      { cause, details: { endpoint: endpoint.key, kind } },
    );
  }
}

export function isUpstreamFailure(e: unknown): e is UpstreamFailure {
  return e instanceof UpstreamFailure;
}

/** The error an aborted signal carries (as `signal:` on http.request would raise it). */
export function abortError(signal: AbortSignal): Error {
  const e = new Error('The operation was aborted', { cause: signal.reason });
  e.name = 'AbortError';
  return e;
}
