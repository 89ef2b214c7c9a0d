/**
 * What the waypoint records about one request, and what it writes when the request closes: one
 * access-log line (`scope: access`), Istio's request metrics with their labels (source from the
 * tunnel, destination from the endpoint that answered), and a span when tracing is on.
 */
import type { Logger } from '../../shared/log.js';
import { UNKNOWN } from '../../shared/metrics.js';
import type { ExchangeRecord } from '../dispatch/dispatch.js';
import type { ReplayableBody } from '../dispatch/replay-body.js';
import { istioHttpLabels, peerLabels, recordIstioRequest, serviceLabelsOfHost, type IstioHttpLabels } from '../../shared/istio-metrics.js';
import type { Service } from '../../shared/model.js';
import type { RouteTelemetry } from '../../shared/routes.js';
import { RESPONSE_FLAGS, type WaypointMetrics } from '../metrics.js';
import { hostOfAuthority } from '../route/router.js';
import type { OtlpSpanExporter, TraceContext } from '../trace.js';
import type { ServerResponse } from './headers.js';

/** The calling workload, as the tunnel (HBONE peer certificate, its workload by address) tells it; labelled by peerLabels. */
export interface SourceInfo {
  principal?: string;
  workload?: string;
  namespace?: string;
  canonicalService?: string;
  canonicalRevision?: string;
  cluster?: string;
}

/** One request's record, filled in as it goes; `record` is what the dispatch layers add. */
export interface RequestState {
  reqId: string;
  started: number;
  method: string;
  authority: string;
  path: string;
  protocol: 'http' | 'grpc';
  http2: boolean;
  status?: number;
  grpcStatus?: string;
  flags: string[];
  route?: string;
  service?: string;
  serviceNamespace?: string;
  record: ExchangeRecord;
  bytesIn: number;
  bytesOut: number;
  traceId?: string;
  trace?: TraceContext;
  source: SourceInfo;
  headerBytes: number;
  body?: ReplayableBody;
  /** The route config's Telemetry knobs (absent: log, sample and report). */
  telemetry?: RouteTelemetry;
}

export interface TelemetryDeps {
  metrics: WaypointMetrics;
  accessLog: Logger;
  now: () => number;
  /** `source` for an ingress gateway (it reports as the source, as Istio's gateways do), else `waypoint`. */
  reporter: 'waypoint' | 'source';
  /** The Service of a hostname, for destination_service_name and _namespace (the waypoint's config index). */
  serviceOf?: (host: string) => Service | undefined;
  spanExporter: Pick<OtlpSpanExporter, 'export'> | undefined;
}

/** Writes the metrics, span and access-log line of a request whose response closed. */
export function finishRequest(deps: TelemetryDeps, st: RequestState, res: ServerResponse): void {
  const durationMs = deps.now() - st.started;
  if (st.body) st.bytesIn = st.body.bytes;
  if (!res.writableFinished && !st.flags.includes(RESPONSE_FLAGS.DOWNSTREAM_RESET) && st.status === undefined) st.flags.push(RESPONSE_FLAGS.DOWNSTREAM_RESET);
  const status = st.status ?? 0;
  const flags = st.flags.length > 0 ? [...new Set(st.flags)].join(',') : RESPONSE_FLAGS.NONE;
  const endpoint = st.record.endpoint;
  recordIstioRequest(deps.metrics, requestLabels(deps, st, status, flags), { durationMs, requestBytes: st.headerBytes + st.bytesIn, responseBytes: st.bytesOut });
  if (deps.spanExporter && st.trace && st.telemetry?.reportSpans !== false) {
    deps.spanExporter.export({
      context: st.trace,
      name: `${st.service ?? hostOfAuthority(st.authority)}/*`,
      startUnixMs: Date.now() - durationMs,
      durationMs,
      attributes: {
        'http.method': st.method,
        'http.url': st.path,
        'http.status_code': status,
        'upstream_cluster': st.service ?? UNKNOWN,
        'response_flags': flags,
        'istio.canonical_service': endpoint?.canonicalService ?? UNKNOWN,
        'ambit.req_id': st.reqId,
        ...(st.grpcStatus !== undefined ? { 'grpc.status_code': Number(st.grpcStatus) } : {}),
      },
      error: status >= 500 || status === 0,
    });
  }
  // Nothing is built for a line nobody writes (turned off by Telemetry, or the level is off).
  if (st.telemetry?.accessLog === false || !deps.accessLog.isLevelEnabled('info')) return;
  deps.accessLog.info(
    {
      reqId: st.reqId,
      method: st.method,
      authority: st.authority,
      path: st.path,
      protocol: st.http2 ? 'HTTP/2' : 'HTTP/1.1',
      status,
      responseFlags: flags,
      ...(st.grpcStatus !== undefined ? { grpcStatus: st.grpcStatus } : {}),
      route: st.route,
      dst: { service: st.service, endpoint: endpoint?.key, workload: endpoint?.workload },
      src: { identity: st.source.principal, workload: st.source.workload, namespace: st.source.namespace },
      retries: st.record.retries,
      durationMs: Math.round(durationMs * 1000) / 1000,
      bytesReceived: st.bytesIn,
      bytesSent: st.bytesOut,
      traceId: st.traceId,
    },
    'request',
  );
}

/** The request's Istio labels: source from the tunnel, destination from the endpoint that answered, service from the route. */
function requestLabels(deps: TelemetryDeps, st: RequestState, status: number, flags: string): IstioHttpLabels {
  const ep = st.record.endpoint;
  return istioHttpLabels({
    reporter: deps.reporter,
    source: peerLabels(st.source),
    destination: peerLabels(ep ?? {}),
    service: serviceLabelsOfHost(st.service, deps.serviceOf, st.serviceNamespace),
    protocol: st.protocol,
    responseFlags: flags,
    // A gateway reports as the source, where Istio leaves the policy unknown; a waypoint knows its caller's mTLS.
    mtls: deps.reporter === 'waypoint' && st.source.principal !== undefined,
    responseCode: status,
    ...(st.grpcStatus !== undefined ? { grpcStatus: st.grpcStatus } : {}),
  });
}
