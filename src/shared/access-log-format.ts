/**
 * Envoy access-log formats as Istio's `envoyFileAccessLog` providers declare them
 * (`logFormat.text`, or `logFormat.labels` for a JSON object): a format is parsed once into
 * literal text and command operators (`%RESPONSE_CODE%`, `%REQ(X-REQUEST-ID)%`,
 * `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):64%`), then rendered per request from what the waypoint
 * recorded. Operators Ambit has no value for render `-`, as Envoy renders a missing value;
 * `unsupportedOperators` names them so the controller can say so.
 */

export type FormatPart = string | { op: string; arg?: string; fallback?: string; max?: number };

/** The operators a waypoint or gateway renders from a request's record. */
export const SUPPORTED_OPERATORS: readonly string[] = [
  'START_TIME',
  'REQ',
  'RESP',
  'PROTOCOL',
  'RESPONSE_CODE',
  'RESPONSE_FLAGS',
  'BYTES_RECEIVED',
  'BYTES_SENT',
  'DURATION',
  'UPSTREAM_HOST',
  'UPSTREAM_CLUSTER',
  'DOWNSTREAM_REMOTE_ADDRESS',
  'DOWNSTREAM_LOCAL_ADDRESS',
  'ROUTE_NAME',
  'REQUESTED_SERVER_NAME',
  'GRPC_STATUS',
  // Envoy details Ambit does not record: always `-` (Envoy's value when there is none).
  'RESPONSE_CODE_DETAILS',
  'CONNECTION_TERMINATION_DETAILS',
  'UPSTREAM_TRANSPORT_FAILURE_REASON',
  'UPSTREAM_LOCAL_ADDRESS',
];

/** Istio's default text format (MeshConfig accessLogFormat unset). */
export const ISTIO_DEFAULT_TEXT_FORMAT =
  '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n';

/** Parses a format; throws an Error naming the offset of an unclosed or malformed operator. */
export function parseAccessLogFormat(text: string): FormatPart[] {
  if (text.length > 8192) throw new Error('is longer than 8192 characters');
  const out: FormatPart[] = [];
  let lit = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c !== '%') {
      lit += c;
      i++;
      continue;
    }
    if (text[i + 1] === '%') {
      lit += '%';
      i += 2;
      continue;
    }
    const end = text.indexOf('%', i + 1);
    if (end < 0) throw new Error(`an operator opened at offset ${i} is not closed with %`);
    const m = /^([A-Z_]+)(?:\(([^)]*)\))?(?::(\d+))?$/.exec(text.slice(i + 1, end));
    if (!m) throw new Error(`${JSON.stringify(text.slice(i, end + 1))} at offset ${i} is not a command operator`);
    if (lit) out.push(lit);
    lit = '';
    const [arg, fallback] = m[2] !== undefined ? m[2].split('?') : [];
    out.push({ op: m[1]!, ...(arg !== undefined && arg !== '' ? { arg: arg.toLowerCase() } : {}), ...(fallback ? { fallback: fallback.toLowerCase() } : {}), ...(m[3] ? { max: Number(m[3]) } : {}) });
    i = end + 1;
  }
  if (lit) out.push(lit);
  return out;
}

/** Operators of a parsed format Ambit does not render (sorted, unique). */
export function unsupportedOperators(parts: readonly FormatPart[]): string[] {
  const bad = new Set<string>();
  for (const p of parts) if (typeof p !== 'string' && !SUPPORTED_OPERATORS.includes(p.op)) bad.add(p.op);
  return [...bad].sort();
}

/** What one finished request offers a format. */
export interface AccessLogRecord {
  startMs: number;
  method: string;
  path: string;
  authority: string;
  protocol: string;
  status: number;
  flags: string;
  grpcStatus?: string;
  bytesReceived: number;
  bytesSent: number;
  durationMs: number;
  requestHeader: (name: string) => string | undefined;
  responseHeader: (name: string) => string | undefined;
  upstreamHost?: string;
  upstreamCluster?: string;
  downstreamRemote?: string;
  downstreamLocal?: string;
  route?: string;
  sni?: string;
}

function header(r: AccessLogRecord, name: string, response: boolean): string | undefined {
  if (!response) {
    if (name === ':method') return r.method;
    if (name === ':path') return r.path;
    if (name === ':authority' || name === 'host') return r.authority;
  }
  return (response ? r.responseHeader : r.requestHeader)(name);
}

function value(p: Exclude<FormatPart, string>, r: AccessLogRecord): string | number | undefined {
  switch (p.op) {
    case 'START_TIME':
      return new Date(r.startMs).toISOString();
    case 'REQ':
    case 'RESP': {
      const resp = p.op === 'RESP';
      return (p.arg !== undefined ? header(r, p.arg, resp) : undefined) ?? (p.fallback !== undefined ? header(r, p.fallback, resp) : undefined);
    }
    case 'PROTOCOL':
      return r.protocol;
    case 'RESPONSE_CODE':
      return r.status;
    case 'RESPONSE_FLAGS':
      return r.flags;
    case 'GRPC_STATUS':
      return r.grpcStatus;
    case 'BYTES_RECEIVED':
      return r.bytesReceived;
    case 'BYTES_SENT':
      return r.bytesSent;
    case 'DURATION':
      return Math.round(r.durationMs);
    case 'UPSTREAM_HOST':
      return r.upstreamHost;
    case 'UPSTREAM_CLUSTER':
      return r.upstreamCluster;
    case 'DOWNSTREAM_REMOTE_ADDRESS':
      return r.downstreamRemote;
    case 'DOWNSTREAM_LOCAL_ADDRESS':
      return r.downstreamLocal;
    case 'ROUTE_NAME':
      return r.route;
    case 'REQUESTED_SERVER_NAME':
      return r.sni;
    default:
      return undefined;
  }
}

function rendered(p: Exclude<FormatPart, string>, r: AccessLogRecord): string | number | null {
  const v = value(p, r);
  if (v === undefined || v === '') return null;
  if (typeof v === 'number') return v;
  return p.max !== undefined ? v.slice(0, p.max) : v;
}

/** A text format's line for the request (a missing value is `-`, as Envoy writes it). */
export function renderText(parts: readonly FormatPart[], r: AccessLogRecord): string {
  let out = '';
  for (const p of parts) {
    if (typeof p === 'string') out += p;
    else {
      const v = rendered(p, r);
      out += v === null ? '-' : String(v);
    }
  }
  return out.endsWith('\n') ? out : out + '\n';
}

/**
 * A labels format's JSON object for the request: a value that is one operator keeps its type
 * (numbers stay numbers, a missing value is null, as Envoy's JSON formatter does); a value mixing
 * text and operators is a string.
 */
export function renderLabels(labels: ReadonlyArray<readonly [string, readonly FormatPart[]]>, r: AccessLogRecord): string {
  const obj: Record<string, unknown> = {};
  for (const [k, parts] of labels) {
    const only = parts.length === 1 && typeof parts[0] !== 'string' ? parts[0]! : undefined;
    obj[k] = only && typeof only !== 'string' ? rendered(only, r) : renderText(parts, r).slice(0, -1);
  }
  return JSON.stringify(obj) + '\n';
}
