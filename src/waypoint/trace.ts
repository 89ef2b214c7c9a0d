/**
 * Trace context propagation through the waypoint: W3C `traceparent` and B3 (multi-header and
 * single `b3`). Keeps the caller's trace id, makes a new span id for the waypoint's hop (the
 * caller's span becomes the parent), and starts a trace when the request carries none.
 */
import type { RandomSource } from './route/weighted.js';
import type { RequestHeaders } from './router.js';

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
 * only when the request used B3 (keeps upstream requests small); traceparent always.
 */
export function propagateTrace(headers: RequestHeaders, random: RandomSource): { context: TraceContext; set: Record<string, string>; remove: string[] } {
  const incoming = readTraceContext(headers);
  const context: TraceContext = incoming
    ? { traceId: incoming.traceId, spanId: hex(random, 16), parentSpanId: incoming.spanId, sampled: incoming.sampled }
    : { traceId: hex(random, 32), spanId: hex(random, 16), sampled: true };
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
