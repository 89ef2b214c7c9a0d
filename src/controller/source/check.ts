/**
 * Small field checkers for object validation: each reads one value, records a path-qualified
 * issue when it is wrong and returns the typed value (or undefined) so callers keep going.
 */
import { isIP } from 'node:net';
import type { Issue } from '../../shared/validate.js';
import { tryParseDuration } from '../../shared/duration.js';

/** Collects issues for one object; `path` values are field paths such as `spec.http[0].timeout`. */
export class Check {
  constructor(
    readonly issues: Issue[],
    /** Names the file/document and the object, e.g. `app.yaml#1: Pod default/web`. */
    readonly subject: string,
  ) {}

  add(field: string, problem: string, ...value: [unknown?]): void {
    const path = `${this.subject}: ${field}`;
    if (value.length > 0) this.issues.push({ path, problem, value: value[0] });
    else this.issues.push({ path, problem });
  }
}

export function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function rec(c: Check, v: unknown, path: string, required = false): Record<string, unknown> | undefined {
  if (v === undefined || v === null) {
    if (required) c.add(path, 'is required');
    return undefined;
  }
  if (!isObj(v)) {
    c.add(path, 'must be an object', v);
    return undefined;
  }
  return v;
}

export function arr(c: Check, v: unknown, path: string, opts: { required?: boolean; nonEmpty?: boolean } = {}): unknown[] | undefined {
  if (v === undefined || v === null) {
    if (opts.required) c.add(path, 'is required');
    return undefined;
  }
  if (!Array.isArray(v)) {
    c.add(path, 'must be a list', v);
    return undefined;
  }
  if (opts.nonEmpty && v.length === 0) c.add(path, 'must not be empty', v);
  return v;
}

/** Each element of a list that is an object, with its path; non-objects are reported. */
export function recs(c: Check, v: unknown, path: string, opts: { required?: boolean; nonEmpty?: boolean } = {}): Array<[Record<string, unknown>, string]> {
  const list = arr(c, v, path, opts) ?? [];
  const out: Array<[Record<string, unknown>, string]> = [];
  list.forEach((item, i) => {
    const r = rec(c, item, `${path}[${i}]`, true);
    if (r) out.push([r, `${path}[${i}]`]);
  });
  return out;
}

export function str(
  c: Check,
  v: unknown,
  path: string,
  opts: { required?: boolean; oneOf?: readonly string[]; test?: (s: string) => boolean; expect?: string } = {},
): string | undefined {
  if (v === undefined || v === null) {
    if (opts.required) c.add(path, 'is required');
    return undefined;
  }
  if (typeof v !== 'string') {
    c.add(path, opts.expect ? `must be a string: ${opts.expect}` : 'must be a string', v);
    return undefined;
  }
  if (opts.required && v.length === 0) {
    c.add(path, 'must not be empty', v);
    return undefined;
  }
  if (opts.oneOf && !opts.oneOf.includes(v)) {
    c.add(path, `must be one of ${opts.oneOf.join(', ')}`, v);
    return undefined;
  }
  if (opts.test && !opts.test(v)) {
    c.add(path, `must be ${opts.expect ?? 'valid'}`, v);
    return undefined;
  }
  return v;
}

export function int(c: Check, v: unknown, path: string, opts: { required?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (v === undefined || v === null) {
    if (opts.required) c.add(path, 'is required');
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    c.add(path, 'must be an integer', v);
    return undefined;
  }
  if (opts.min !== undefined && v < opts.min) {
    c.add(path, `must be at least ${opts.min}`, v);
    return undefined;
  }
  if (opts.max !== undefined && v > opts.max) {
    c.add(path, `must be at most ${opts.max}`, v);
    return undefined;
  }
  return v;
}

export function num(c: Check, v: unknown, path: string, opts: { min?: number; max?: number } = {}): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    c.add(path, 'must be a number', v);
    return undefined;
  }
  if ((opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    c.add(path, `must be between ${opts.min ?? '-inf'} and ${opts.max ?? 'inf'}`, v);
    return undefined;
  }
  return v;
}

export function bool(c: Check, v: unknown, path: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') {
    c.add(path, 'must be true or false', v);
    return undefined;
  }
  return v;
}

export function port(c: Check, v: unknown, path: string, required = false): number | undefined {
  return int(c, v, path, { required, min: 1, max: 65535 });
}

export function strList(c: Check, v: unknown, path: string, opts: { nonEmpty?: boolean; required?: boolean } = {}): string[] | undefined {
  const list = arr(c, v, path, opts);
  if (!list) return undefined;
  const out: string[] = [];
  list.forEach((item, i) => {
    const s = str(c, item, `${path}[${i}]`, { required: true });
    if (s !== undefined) out.push(s);
  });
  return out;
}

/** Istio/protobuf duration ("5s", "1.5s", "250ms", "1h30m"). */
export function duration(c: Check, v: unknown, path: string, opts: { required?: boolean; minMs?: number } = {}): number | undefined {
  const s = str(c, v, path, { required: opts.required, expect: 'a duration such as "5s" or "250ms"' });
  if (s === undefined) return undefined;
  const ms = tryParseDuration(s);
  if (ms === undefined) {
    c.add(path, 'must be a duration such as "5s", "1.5s" or "250ms"', s);
    return undefined;
  }
  if (opts.minMs !== undefined && ms < opts.minMs) {
    c.add(path, `must be at least ${opts.minMs}ms`, s);
    return undefined;
  }
  return ms;
}

const GATEWAY_API_DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;

/** Gateway API duration (GEP-2257): up to four `<1-5 digits><h|m|s|ms>` parts, e.g. "1h30m", "500ms". */
export function gatewayDuration(c: Check, v: unknown, path: string): void {
  const s = str(c, v, path, { expect: 'a duration such as "10s"' });
  if (s === undefined) return;
  if (!GATEWAY_API_DURATION.test(s)) c.add(path, 'must be a Gateway API duration such as "10s", "500ms" or "1h30m"', s);
}

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isLabelValue(v: string): boolean {
  return v.length <= 63 && LABEL_VALUE.test(v);
}

/** Qualified name: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters. */
export function isQualifiedName(key: string): boolean {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return false;
  return name.length <= 63 && LABEL_NAME.test(name);
}

/** Label map: qualified-name keys, label-syntax string values. */
export function labels(c: Check, v: unknown, path: string, required = false): Record<string, string> | undefined {
  const r = rec(c, v, path, required);
  if (!r) return undefined;
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(r)) {
    if (!isQualifiedName(k)) c.add(`${path}.${k}`, 'is not a valid label key (optional DNS prefix and "/", then at most 63 letters, digits, "-", "_", ".")', k);
    if (typeof val !== 'string') {
      c.add(`${path}.${k}`, 'must be a string (quote numbers and booleans in YAML)', val);
      continue;
    }
    if (!isLabelValue(val)) {
      c.add(`${path}.${k}`, 'is not a valid label value (at most 63 letters, digits, "-", "_", ".", starting and ending alphanumeric)', val);
      continue;
    }
    out[k] = val;
  }
  return out;
}

/** Map whose values must be strings (annotations). */
export function stringMap(c: Check, v: unknown, path: string): Record<string, string> | undefined {
  const r = rec(c, v, path);
  if (!r) return undefined;
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(r)) {
    if (typeof val !== 'string') c.add(`${path}.${k}`, 'must be a string (quote numbers and booleans in YAML)', val);
    else out[k] = val;
  }
  return out;
}

export function isDnsSubdomainName(v: string): boolean {
  return v.length <= 253 && DNS_SUBDOMAIN.test(v);
}

export function isDnsLabelName(v: string): boolean {
  return /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v);
}

/** RFC 1035 label (Service names): starts with a letter. */
export function isDns1035Label(v: string): boolean {
  return /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v);
}

/** IANA service name (named ports): at most 15 lowercase alphanumerics or "-", at least one letter. */
export function isPortName(v: string): boolean {
  return v.length <= 15 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v) && /[a-z]/.test(v) && !v.includes('--');
}

/** An address or a CIDR (`10.0.0.0/8`, `::1`, `fd00::/8`). */
export function isCidr(v: string): boolean {
  const slash = v.indexOf('/');
  const addr = slash >= 0 ? v.slice(0, slash) : v;
  const family = isIP(addr);
  if (family === 0) return false;
  if (slash < 0) return true;
  const len = v.slice(slash + 1);
  if (!/^\d{1,3}$/.test(len)) return false;
  return Number(len) <= (family === 4 ? 32 : 128);
}

/** Label selector with matchLabels/matchExpressions. */
export function labelSelector(c: Check, v: unknown, path: string, required = false): Record<string, unknown> | undefined {
  const r = rec(c, v, path, required);
  if (!r) return undefined;
  labels(c, r['matchLabels'], `${path}.matchLabels`);
  for (const [e, p] of recs(c, r['matchExpressions'], `${path}.matchExpressions`)) {
    str(c, e['key'], `${p}.key`, { required: true });
    const op = str(c, e['operator'], `${p}.operator`, { required: true, oneOf: ['In', 'NotIn', 'Exists', 'DoesNotExist'] });
    const values = strList(c, e['values'], `${p}.values`);
    if ((op === 'In' || op === 'NotIn') && (!values || values.length === 0)) c.add(`${p}.values`, `must not be empty for operator ${op}`, e['values']);
    if ((op === 'Exists' || op === 'DoesNotExist') && values && values.length > 0) c.add(`${p}.values`, `must be empty for operator ${op}`, values);
  }
  return r;
}

/**
 * Reports fields not in `allowed` (typos such as `form:` for `from:` would otherwise silently
 * change meaning; kubectl's strict field validation rejects them too).
 */
export function knownFields(c: Check, obj: Record<string, unknown>, path: string, allowed: readonly string[]): void {
  for (const [k, v] of Object.entries(obj)) {
    if (v !== undefined && !allowed.includes(k)) c.add(`${path}.${k}`, `is not a known field (expected one of ${allowed.join(', ')})`, v);
  }
}
