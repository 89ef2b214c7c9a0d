/**
 * Trace context propagation through the waypoint: W3C `traceparent` and B3 (multi-header and
 * single `b3`). Keeps the caller's trace id, makes a new span id for the waypoint's hop (the
 * caller's span becomes the parent), and starts a trace when the request carries none.
 */
import type { RandomSource } from './route/weighted.js';
import type { RequestHeaders } from './route/router.js';

export interface TraceContext {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  sampled: boolean;
}

function hex(random: RandomSource, chars: number): string {
  let s = '';
  while (s.length < chars) s += Math.floor(random() * 0x100000000).toString(16).padStart(8, '0');
  s = s.slice(0, chars);
  return /^0+$/.test(s) ? s.slice(0, -1) + '1' : s;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** Reads the incoming context: traceparent first, then b3, then x-b3-*. */
export function readTraceContext(headers: RequestHeaders): TraceContext | undefined {
  const tp = one(headers['traceparent'])?.trim().toLowerCase();
  const m = tp ? TRACEPARENT.exec(tp) : null;
  if (m && m[1] !== 'ff' && !/^0+$/.test(m[2]!) && !/^0+$/.test(m[3]!)) {
    return { traceId: m[2]!, spanId: m[3]!, sampled: (parseInt(m[4]!, 16) & 1) === 1 };
  }
  const b3 = one(headers['b3'])?.trim().toLowerCase();
  if (b3 && b3 !== '0' && b3 !== '1' && b3 !== 'd') {
    const [traceId, spanId, flag] = b3.split('-');
    if (traceId && spanId && /^[0-9a-f]{16,32}$/.test(traceId) && /^[0-9a-f]{16}$/.test(spanId)) {
      return { traceId: traceId.padStart(32, '0'), spanId, sampled: flag !== '0' };
    }
  }
  const xt = one(headers['x-b3-traceid'])?.trim().toLowerCase();
  const xs = one(headers['x-b3-spanid'])?.trim().toLowerCase();
  if (xt && xs && /^[0-9a-f]{16,32}$/.test(xt) && /^[0-9a-f]{16}$/.test(xs)) {
    return { traceId: xt.padStart(32, '0'), spanId: xs, sampled: one(headers['x-b3-sampled']) !== '0' };
  }
  return undefined;
}

/**
 * The waypoint's span for this request and the headers to send upstream. B3 headers are written
 * only when the request used B3 (keeps upstream requests small); traceparent always. A request
 * that carries a sampling decision keeps it; a new trace is sampled with `samplingPercent`
 * (Telemetry `randomSamplingPercentage`, default 100).
 */
export function propagateTrace(headers: RequestHeaders, random: RandomSource, samplingPercent = 100): { context: TraceContext; set: Record<string, string>; remove: string[] } {
  const incoming = readTraceContext(headers);
  const context: TraceContext = incoming
    ? { traceId: incoming.traceId, spanId: hex(random, 16), parentSpanId: incoming.spanId, sampled: incoming.sampled }
    : { traceId: hex(random, 32), spanId: hex(random, 16), sampled: samplingPercent >= 100 || random() * 100 < samplingPercent };
  const flags = context.sampled ? '01' : '00';
  const set: Record<string, string> = { traceparent: `00-${context.traceId}-${context.spanId}-${flags}` };
  const remove: string[] = [];
  if (headers['b3'] !== undefined) set['b3'] = `${context.traceId}-${context.spanId}-${context.sampled ? '1' : '0'}${context.parentSpanId ? '-' + context.parentSpanId : ''}`;
  if (headers['x-b3-traceid'] !== undefined) {
    const shortId = one(headers['x-b3-traceid'])!.trim().length === 16;
    set['x-b3-traceid'] = shortId ? context.traceId.slice(16) : context.traceId;
    set['x-b3-spanid'] = context.spanId;
    set['x-b3-sampled'] = context.sampled ? '1' : '0';
    if (context.parentSpanId) set['x-b3-parentspanid'] = context.parentSpanId;
    else remove.push('x-b3-parentspanid');
  }
  return { context, set, remove };
}

/** One finished waypoint span (one per request, as Istio waypoints report). */
export interface FinishedSpan {
  context: TraceContext;
  name: string;
  startUnixMs: number;
  durationMs: number;
  attributes: Record<string, string | number>;
  error: boolean;
}

export interface OtlpExporterOptions {
  /** OTLP/HTTP JSON traces endpoint, e.g. http://collector:4318/v1/traces. */
  url: string;
  serviceName: string;
  /** Spans per POST; a full batch is sent at once. */
  maxBatch?: number;
  /** Longest a span waits before a POST. */
  flushIntervalMs?: number;
  /** Spans kept while the collector is slow; beyond this new spans are dropped. */
  maxQueue?: number;
  /** Called with a lowercase message when a POST fails (for logging); never throws. */
  onError?: (message: string) => void;
}

function otlpValue(v: string | number): Record<string, unknown> {
  return typeof v === 'number' ? (Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v }) : { stringValue: v };
}

function unixNanos(ms: number): string {
  return (BigInt(Math.round(ms * 1000)) * 1000n).toString();
}

/** Batches sampled spans and POSTs them as OTLP/HTTP JSON. */
export class OtlpSpanExporter {
  private queue: FinishedSpan[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inflight = new Set<Promise<void>>();
  dropped = 0;

  constructor(private readonly opts: OtlpExporterOptions) {}

  export(span: FinishedSpan): void {
    if (!span.context.sampled) return;
    if (this.queue.length >= (this.opts.maxQueue ?? 2048)) {
      this.dropped++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= (this.opts.maxBatch ?? 256)) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.opts.flushIntervalMs ?? 1000);
  }

  /** The OTLP JSON body for a batch. */
  encode(spans: readonly FinishedSpan[]): string {
    return JSON.stringify({
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: this.opts.serviceName } }] },
          scopeSpans: [
            {
              scope: { name: 'ambit-waypoint' },
              spans: spans.map((s) => ({
                traceId: s.context.traceId,
                spanId: s.context.spanId,
                ...(s.context.parentSpanId ? { parentSpanId: s.context.parentSpanId } : {}),
                name: s.name,
                kind: 2,
                startTimeUnixNano: unixNanos(s.startUnixMs),
                endTimeUnixNano: unixNanos(s.startUnixMs + s.durationMs),
                attributes: Object.entries(s.attributes).map(([key, v]) => ({ key, value: otlpValue(v) })),
                status: { code: s.error ? 2 : 1 },
              })),
            },
          ],
        },
      ],
    });
  }

  /** Sends everything queued; resolves when the POST finished (failures are reported, not thrown). */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queue.length === 0) return Promise.all(this.inflight).then(() => undefined);
    const batch = this.queue;
    this.queue = [];
    const p = this.post(this.encode(batch)).catch((e: unknown) => this.opts.onError?.(`span export to ${this.opts.url} failed: ${e instanceof Error ? e.message : String(e)}`));
    this.inflight.add(p);
    await p;
    this.inflight.delete(p);
  }

  private async post(body: string): Promise<void> {
    const http = await import('node:http');
    const url = new URL(this.opts.url);
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ hostname: url.hostname, port: url.port || 80, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.once('end', () => ((res.statusCode ?? 500) < 300 ? resolve() : reject(new Error(`collector answered ${res.statusCode}`))));
      });
      req.setTimeout(10_000, () => req.destroy(new Error('collector timed out after 10000 ms')));
      req.once('error', reject);
      req.end(body);
    });
  }

  async close(): Promise<void> {
    await this.flush();
  }
}
