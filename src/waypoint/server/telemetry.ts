/**
 * What the waypoint records about one request, and what it writes when the request closes: one
 * access-log line (`scope: access`), Istio's request metrics with their labels (source from the
 * tunnel, destination from the endpoint that answered), and a span when tracing is on.
 */
import { infoLineWriter, rawLineWriter, type Logger } from '../../shared/log.js';
import { parseAccessLogFormat, renderLabels, renderText, type AccessLogRecord, type FormatPart } from '../../shared/access-log-format.js';
import { UNKNOWN, type CounterCell, type HistogramCell } from '../../shared/metrics.js';
import type { ExchangeRecord } from '../dispatch/dispatch.js';
import type { ReplayableBody } from '../dispatch/replay-body.js';
import { ISTIO_HTTP_LABELS, istioHttpLabels, labelKey, peerLabels, serviceLabelsOfHost, type IstioHttpLabels, type PeerInput } from '../../shared/istio-metrics.js';
import type { Service } from '../../shared/model.js';
import { OVERRIDABLE_METRICS, type MetricOverride, type RouteTelemetry } from '../../shared/routes.js';
import { evalAccessFilter, evalAccessFilterValue, parseAccessFilter, type AccessFilterAttributes, type AccessFilterExpr } from '../../shared/access-filter.js';
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
  /** What access-log filters, metric tag expressions and log formats read: set only when the route config has some. */
  scheme?: string;
  requestHeaders?: Record<string, string | string[] | undefined>;
  /** The upstream response's headers as relayed (only when requestHeaders is kept). */
  responseHeaders?: Record<string, string | string[] | number | undefined>;
  /** The downstream peer's and local address (`ip:port`), and the service port: for log formats. */
  peer?: string;
  local?: string;
  port?: number;
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
  const cells = st.telemetry?.metricOverrides ? overriddenCells(deps, st, st.telemetry.metricOverrides, status, flags, durationMs) : requestCells(deps, st, status, flags);
  const m = deps.metrics;
  if (cells.requests) cells.requests.value++;
  if (cells.duration) m.duration.observe(cells.duration, durationMs);
  if (cells.requestBytes) m.requestBytes.observe(cells.requestBytes, st.headerBytes + st.bytesIn);
  if (cells.responseBytes) m.responseBytes.observe(cells.responseBytes, st.bytesOut);
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
  if (st.telemetry?.accessLogFilters && !passesAccessFilters(st.telemetry.accessLogFilters, st, status, flags, durationMs)) return;
  if (st.telemetry?.accessLogFormat) return writeFormatted(deps.accessLog, st.telemetry.accessLogFormat, st, status, flags, durationMs);
  accessLine(deps.accessLog)(
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
  );
}

/** Parsed Telemetry filter expressions by text (the texts come from validated route configs). */
const compiledFilters = new Map<string, AccessFilterExpr | null>();

function compiledFilter(text: string): AccessFilterExpr | null {
  let e = compiledFilters.get(text);
  if (e === undefined) {
    try {
      e = parseAccessFilter(text);
    } catch {
      e = null;
    }
    if (compiledFilters.size >= 1024) compiledFilters.clear();
    compiledFilters.set(text, e);
  }
  return e;
}

/** True when one of the Telemetry's access-log filters holds for the finished request. */
function passesAccessFilters(filters: readonly string[], st: RequestState, status: number, flags: string, durationMs: number): boolean {
  const attrs = requestAttributes(st, status, flags, durationMs);
  return filters.some((f) => {
    const e = compiledFilter(f);
    return e !== null && evalAccessFilter(e, attrs);
  });
}

/** What Telemetry expressions read of a finished request (src/shared/access-filter.ts attributes). */
function requestAttributes(st: RequestState, status: number, flags: string, durationMs: number): AccessFilterAttributes {
  let headers: Map<string, string> | undefined;
  const q = st.path.indexOf('?');
  const header = (name: string): string | undefined => {
    const v = st.requestHeaders?.[name];
    return Array.isArray(v) ? v.join(',') : v;
  };
  const attrs = (name: string): unknown => {
    switch (name) {
      case 'request.method':
        return st.method;
      case 'request.path':
        return st.path;
      case 'request.url_path':
        return q < 0 ? st.path : st.path.slice(0, q);
      case 'request.host':
        return st.authority;
      case 'request.scheme':
        return st.scheme;
      case 'request.protocol':
        return st.http2 ? 'HTTP/2' : 'HTTP/1.1';
      case 'request.id':
        return header('x-request-id');
      case 'request.useragent':
        return header('user-agent');
      case 'request.referer':
        return header('referer');
      case 'request.headers':
        headers ??= new Map(Object.keys(st.requestHeaders ?? {}).map((k) => [k, header(k)!]));
        return headers;
      case 'request.size':
        return st.bytesIn;
      case 'request.duration':
        return durationMs;
      case 'response.code':
        return status;
      case 'response.grpc_status':
        return st.grpcStatus !== undefined ? Number(st.grpcStatus) : undefined;
      case 'response.size':
        return st.bytesOut;
      case 'response.flags':
        return flags;
      default:
        return undefined;
    }
  };
  return attrs;
}

/** The longest label value an expression may set (request text must not grow series without bound in size). */
const MAX_TAG_VALUE = 256;

/**
 * The series of a request whose config has Telemetry metrics overrides: the standard labels, then
 * each override that matches this proxy's reports, in order (disabled families get no series;
 * removed labels are recorded empty, which Prometheus reads as absent; set labels take their
 * expression's value). The slow path: only configs with overrides take it.
 */
function overriddenCells(deps: TelemetryDeps, st: RequestState, overrides: readonly MetricOverride[], status: number, flags: string, durationMs: number): Partial<RequestCells> {
  const base = requestLabels(deps, st, status, flags);
  const side = deps.reporter === 'source' ? 'CLIENT' : 'SERVER';
  let attrs: AccessFilterAttributes | undefined;
  const out: Partial<RequestCells> = {};
  const m = deps.metrics;
  for (const family of OVERRIDABLE_METRICS) {
    let labels: IstioHttpLabels = base;
    let disabled = false;
    for (const o of overrides) {
      if (!o.metrics.includes(family) || (o.mode !== 'CLIENT_AND_SERVER' && o.mode !== side)) continue;
      if (o.disabled !== undefined) disabled = o.disabled;
      if (!o.tags) continue;
      if (labels === base) labels = { ...base };
      for (const [name, t] of Object.entries(o.tags)) {
        let value = '';
        if (!('remove' in t)) {
          attrs ??= requestAttributes(st, status, flags, durationMs);
          const e = compiledFilter(t.value);
          const v = e ? evalAccessFilterValue(e, attrs) : undefined;
          value = v === undefined || v === null || typeof v === 'object' ? UNKNOWN : String(v).slice(0, MAX_TAG_VALUE);
        }
        labels[name as keyof IstioHttpLabels] = value;
      }
    }
    if (disabled) continue;
    const l = labels;
    const key = labelKey(l, ISTIO_HTTP_LABELS);
    const get = (): IstioHttpLabels => l;
    if (family === 'requests') out.requests = m.requests.cell(key, get);
    else out[family] = m[family].cell(key, get);
  }
  return out;
}

/** Parsed access-log formats by their text (from validated route configs). */
const parsedFormats = new Map<string, FormatPart[]>();

function parsedFormat(text: string): FormatPart[] {
  let p = parsedFormats.get(text);
  if (!p) {
    try {
      p = parseAccessLogFormat(text);
    } catch {
      p = [text];
    }
    if (parsedFormats.size >= 256) parsedFormats.clear();
    parsedFormats.set(text, p);
  }
  return p;
}

const rawLines = new WeakMap<Logger, (line: string) => void>();

/** The access-log line of an `envoyFileAccessLog` provider's format (Envoy text, or a JSON object of labels). */
function writeFormatted(log: Logger, format: NonNullable<RouteTelemetry['accessLogFormat']>, st: RequestState, status: number, flags: string, durationMs: number): void {
  let write = rawLines.get(log);
  if (!write) rawLines.set(log, (write = rawLineWriter(log)));
  const reqHeader = (name: string): string | undefined => {
    const v = st.requestHeaders?.[name];
    return Array.isArray(v) ? v.join(',') : v;
  };
  const endpoint = st.record.endpoint;
  const record: AccessLogRecord = {
    startMs: Date.now() - durationMs,
    method: st.method,
    path: st.path,
    authority: st.authority,
    protocol: st.http2 ? 'HTTP/2' : 'HTTP/1.1',
    status,
    flags,
    ...(st.grpcStatus !== undefined ? { grpcStatus: st.grpcStatus } : {}),
    bytesReceived: st.bytesIn,
    bytesSent: st.bytesOut,
    durationMs,
    requestHeader: reqHeader,
    responseHeader: (name) => {
      const v = st.responseHeaders?.[name];
      return v === undefined ? undefined : Array.isArray(v) ? v.join(',') : String(v);
    },
    ...(endpoint?.key !== undefined ? { upstreamHost: endpoint.key } : {}),
    ...(st.service !== undefined ? { upstreamCluster: `outbound|${st.port ?? ''}||${st.service}` } : {}),
    ...(st.peer !== undefined ? { downstreamRemote: st.peer } : {}),
    ...(st.local !== undefined ? { downstreamLocal: st.local } : {}),
    ...(st.route !== undefined ? { route: st.route } : {}),
  };
  write('text' in format ? renderText(parsedFormat(format.text), record) : renderLabels(Object.entries(format.labels).map(([k, t]) => [k, parsedFormat(t)] as const), record));
}

/** Per access logger: its `request` line writer (log.ts infoLineWriter), made once. */
const accessLines = new WeakMap<Logger, (fields: Record<string, unknown>) => void>();

function accessLine(log: Logger): (fields: Record<string, unknown>) => void {
  let w = accessLines.get(log);
  if (!w) accessLines.set(log, (w = infoLineWriter(log, 'request')));
  return w;
}

/** The four series of one label set of Istio's request metrics. */
interface RequestCells {
  requests: CounterCell;
  duration: HistogramCell;
  requestBytes: HistogramCell;
  responseBytes: HistogramCell;
}

/** Per metrics object: a request's short key (below) → its four series, resolved once per label set. */
const cellCache = new WeakMap<WaypointMetrics, Map<string, RequestCells>>();
/** Per source (a tunnel's) or endpoint object: what of it goes into labels, joined once. */
const peerKeys = new WeakMap<object, string>();
const NO_PEER: PeerInput = Object.freeze({});

function peerKey(p: PeerInput): string {
  let k = peerKeys.get(p);
  if (k === undefined) {
    k = `${p.workload}\u0001${p.namespace}\u0001${p.principal}\u0001${p.canonicalService}\u0001${p.canonicalRevision}\u0001${p.cluster}`;
    peerKeys.set(p, k);
  }
  return k;
}

/**
 * The series of a request: found by a short key (source and endpoint joined once per object, the
 * service's labels, protocol, flags, codes) instead of building and joining all 25 labels per
 * request; the labels are built only for a key not seen before. Bounded as the series are: the key
 * is made of label values only.
 */
function requestCells(deps: TelemetryDeps, st: RequestState, status: number, flags: string): RequestCells {
  const m = deps.metrics;
  let cache = cellCache.get(m);
  if (!cache) cellCache.set(m, (cache = new Map()));
  const svc = serviceLabelsOfHost(st.service, deps.serviceOf, st.serviceNamespace);
  const key = `${peerKey(st.source)}\u0002${peerKey(st.record.endpoint ?? NO_PEER)}\u0002${svc.service}\u0001${svc.name}\u0001${svc.namespace}\u0002${st.protocol}\u0001${flags}\u0001${status}\u0001${st.grpcStatus ?? ''}`;
  let cells = cache.get(key);
  if (!cells) {
    const labels = requestLabels(deps, st, status, flags);
    const full = labelKey(labels, ISTIO_HTTP_LABELS);
    const get = (): IstioHttpLabels => labels;
    cells = { requests: m.requests.cell(full, get), duration: m.duration.cell(full, get), requestBytes: m.requestBytes.cell(full, get), responseBytes: m.responseBytes.cell(full, get) };
    cache.set(key, cells);
  }
  return cells;
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
