/**
 * The one validator kit: every check of untrusted data (environment, manifests and Kubernetes
 * objects, pushed config on both ends) collects path-qualified issues in an Issues and keeps
 * going, so one pass reports every problem as `path: problem (got value)`. Readers take the
 * collector, the value and its path, record what is wrong and return the typed value or
 * undefined; predicates answer yes or no.
 */
import { isIP } from 'node:net';
import { AmbitError, type ErrorCode } from './errors.js';
import { tryParseDuration } from './duration.js';

/** One problem in one place: `path` names the file/object/field, `value` is what was found. */
export interface Issue {
  path: string;
  problem: string;
  value?: unknown;
}

/** Renders `path: problem (got value)` as STYLE.md asks. */
export function formatIssue(issue: Issue): string {
  if (!('value' in issue)) return `${issue.path}: ${issue.problem}`;
  return `${issue.path}: ${issue.problem} (got ${renderValue(issue.value)})`;
}

function renderValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  try {
    const s = JSON.stringify(v);
    return s.length > 120 ? s.slice(0, 117) + '...' : s;
  } catch {
    return String(v);
  }
}

/**
 * Collects issues; `throwIfAny` raises one AmbitError listing them all. With a `subject` (the
 * file and object, e.g. `app.yaml#1: Pod default/web`) every path is recorded as
 * `<subject>: <path>`; `at(subject)` gives such a view onto the same list.
 */
export class Issues {
  constructor(
    readonly subject?: string,
    readonly list: Issue[] = [],
  ) {}

  /** A collector writing into this one's list, its paths prefixed with `subject`. */
  at(subject: string): Issues {
    return new Issues(subject, this.list);
  }

  add(path: string, problem: string, ...value: [unknown?]): void {
    const p = this.subject === undefined ? path : `${this.subject}: ${path}`;
    if (value.length > 0) this.list.push({ path: p, problem, value: value[0] });
    else this.list.push({ path: p, problem });
  }

  merge(other: Issues | Issue[]): void {
    this.list.push(...(Array.isArray(other) ? other : other.list));
  }

  get ok(): boolean {
    return this.list.length === 0;
  }

  throwIfAny(code: ErrorCode, subject: string): void {
    if (this.list.length === 0) return;
    const lines = this.list.map((i) => '  ' + formatIssue(i)).join('\n');
    throw new AmbitError(code, `${subject}: ${this.list.length} problem(s)\n${lines}`, {
      details: { issues: this.list },
    });
  }
}

// ---- predicates ----

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An integer in [min, max]. */
export function isInt(v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

/** A number 0..100. */
export function isPercent(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 100;
}

/** Port number 1..65535. */
export function isPort(v: unknown): v is number {
  return isInt(v, 1, 65535);
}

/** Kubernetes DNS-1123 label (names of namespaces, service accounts, pods' parts). */
export function isDnsLabel(v: string): boolean {
  return /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v);
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Kubernetes DNS-1123 subdomain (object names): dot-separated labels, at most 253 characters. */
export function isDnsSubdomain(v: string): boolean {
  return v.length <= 253 && DNS_SUBDOMAIN.test(v);
}

/** RFC 1035 label (Service names): starts with a letter. */
export function isDns1035Label(v: string): boolean {
  return /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v);
}

/** What is wrong with a CIDR (`10.0.0.0/8`, `fd00::/64`) or bare address; undefined when nothing. */
export function cidrProblem(s: string): string | undefined {
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) return 'must be an IP address or CIDR';
  if (slash < 0) return undefined;
  const len = s.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(len) || Number(len) > max) return `must have a prefix length 0..${max}`;
  return undefined;
}

/** An address or a CIDR (`10.0.0.0/8`, `::1`, `fd00::/8`). */
export function isCidr(v: string): boolean {
  return cidrProblem(v) === undefined;
}

// ---- readers: record what is wrong, return the typed value or undefined ----

export function rec(issues: Issues, v: unknown, path: string, required = false): Record<string, unknown> | undefined {
  if (v === undefined || v === null) {
    if (required) issues.add(path, 'is required');
    return undefined;
  }
  if (!isRecord(v)) {
    issues.add(path, 'must be an object', v);
    return undefined;
  }
  return v;
}

export function arr(issues: Issues, v: unknown, path: string, opts: { required?: boolean; nonEmpty?: boolean } = {}): unknown[] | undefined {
  if (v === undefined || v === null) {
    if (opts.required) issues.add(path, 'is required');
    return undefined;
  }
  if (!Array.isArray(v)) {
    issues.add(path, 'must be a list', v);
    return undefined;
  }
  if (opts.nonEmpty && v.length === 0) issues.add(path, 'must not be empty', v);
  return v;
}

/** Each element of a list that is an object, with its path; non-objects are reported. */
export function recs(issues: Issues, v: unknown, path: string, opts: { required?: boolean; nonEmpty?: boolean } = {}): Array<[Record<string, unknown>, string]> {
  const list = arr(issues, v, path, opts) ?? [];
  const out: Array<[Record<string, unknown>, string]> = [];
  list.forEach((item, i) => {
    const r = rec(issues, item, `${path}[${i}]`, true);
    if (r) out.push([r, `${path}[${i}]`]);
  });
  return out;
}

export function str(
  issues: Issues,
  v: unknown,
  path: string,
  opts: { required?: boolean; allowEmpty?: boolean; oneOf?: readonly string[]; test?: (s: string) => boolean; expect?: string } = {},
): string | undefined {
  if (v === undefined || v === null) {
    if (opts.required) issues.add(path, 'is required');
    return undefined;
  }
  if (typeof v !== 'string') {
    issues.add(path, opts.expect ? `must be a string: ${opts.expect}` : 'must be a string', v);
    return undefined;
  }
  if (opts.required && !opts.allowEmpty && v.length === 0) {
    issues.add(path, 'must not be empty', v);
    return undefined;
  }
  if (opts.oneOf && !opts.oneOf.includes(v)) {
    issues.add(path, `must be one of ${opts.oneOf.join(', ')}`, v);
    return undefined;
  }
  if (opts.test && !opts.test(v)) {
    issues.add(path, `must be ${opts.expect ?? 'valid'}`, v);
    return undefined;
  }
  return v;
}

export function int(issues: Issues, v: unknown, path: string, opts: { required?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (v === undefined || v === null) {
    if (opts.required) issues.add(path, 'is required');
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    issues.add(path, 'must be an integer', v);
    return undefined;
  }
  if (opts.min !== undefined && v < opts.min) {
    issues.add(path, `must be at least ${opts.min}`, v);
    return undefined;
  }
  if (opts.max !== undefined && v > opts.max) {
    issues.add(path, `must be at most ${opts.max}`, v);
    return undefined;
  }
  return v;
}

export function num(issues: Issues, v: unknown, path: string, opts: { min?: number; max?: number } = {}): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    issues.add(path, 'must be a number', v);
    return undefined;
  }
  if ((opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    issues.add(path, `must be between ${opts.min ?? '-inf'} and ${opts.max ?? 'inf'}`, v);
    return undefined;
  }
  return v;
}

export function bool(issues: Issues, v: unknown, path: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') {
    issues.add(path, 'must be true or false', v);
    return undefined;
  }
  return v;
}

export function port(issues: Issues, v: unknown, path: string, required = false): number | undefined {
  return int(issues, v, path, { required, min: 1, max: 65535 });
}

/**
 * A list of non-empty strings; `check` says what is wrong with one (undefined when nothing),
 * `unique` reports repeats.
 */
export function strList(
  issues: Issues,
  v: unknown,
  path: string,
  opts: { nonEmpty?: boolean; required?: boolean; check?: (s: string) => string | undefined; unique?: boolean } = {},
): string[] | undefined {
  const list = arr(issues, v, path, opts);
  if (!list) return undefined;
  const out: string[] = [];
  const seen = new Set<string>();
  list.forEach((item, i) => {
    const p = `${path}[${i}]`;
    const s = str(issues, item, p, { required: true });
    if (s === undefined) return;
    const problem = opts.check?.(s);
    if (problem) return issues.add(p, problem, s);
    if (opts.unique && seen.has(s)) return issues.add(p, 'is a duplicate', s);
    seen.add(s);
    out.push(s);
  });
  return out;
}

/** Map whose values must be strings (annotations). */
export function stringMap(issues: Issues, v: unknown, path: string, required = false): Record<string, string> | undefined {
  const r = rec(issues, v, path, required);
  if (!r) return undefined;
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(r)) {
    if (typeof val !== 'string') issues.add(`${path}.${k}`, 'must be a string (quote numbers and booleans in YAML)', val);
    else out[k] = val;
  }
  return out;
}

/** Istio/protobuf duration ("5s", "1.5s", "250ms", "1h30m"). */
export function duration(issues: Issues, v: unknown, path: string, opts: { required?: boolean; minMs?: number } = {}): number | undefined {
  const s = str(issues, v, path, { required: opts.required, expect: 'a duration such as "5s" or "250ms"' });
  if (s === undefined) return undefined;
  const ms = tryParseDuration(s);
  if (ms === undefined) {
    issues.add(path, 'must be a duration such as "5s", "1.5s" or "250ms"', s);
    return undefined;
  }
  if (opts.minMs !== undefined && ms < opts.minMs) {
    issues.add(path, `must be at least ${opts.minMs}ms`, s);
    return undefined;
  }
  return ms;
}

/**
 * Reports fields not in `allowed` (typos such as `form:` for `from:` would otherwise silently
 * change meaning; kubectl's strict field validation rejects them too).
 */
export function knownFields(issues: Issues, obj: Record<string, unknown>, path: string, allowed: readonly string[]): void {
  for (const [k, v] of Object.entries(obj)) {
    if (v !== undefined && !allowed.includes(k)) issues.add(`${path}.${k}`, `is not a known field (expected one of ${allowed.join(', ')})`, v);
  }
}

/** Deep-freezes a plain object tree, returning it typed as readonly. */
export function deepFreeze<T>(o: T): Readonly<T> {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as Record<string, unknown>)) deepFreeze(v);
  }
  return o;
}
