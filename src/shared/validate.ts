/** Validators that collect path-qualified issues instead of throwing at the first one. */
import { AmbitError, type ErrorCode } from './errors.js';

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

/** Collects issues; `throwIfAny` raises one AmbitError listing them all. */
export class Issues {
  readonly list: Issue[] = [];

  add(path: string, problem: string, ...value: [unknown?]): void {
    if (value.length > 0) this.list.push({ path, problem, value: value[0] });
    else this.list.push({ path, problem });
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

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads a required string field; records an issue and returns undefined when absent or not a string. */
export function reqString(obj: Record<string, unknown>, key: string, path: string, issues: Issues): string | undefined {
  const v = obj[key];
  if (typeof v !== 'string' || v.length === 0) {
    issues.add(`${path}.${key}`, 'must be a non-empty string', v);
    return undefined;
  }
  return v;
}

export function optString(obj: Record<string, unknown>, key: string, path: string, issues: Issues): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') {
    issues.add(`${path}.${key}`, 'must be a string', v);
    return undefined;
  }
  return v;
}

export function optInt(
  obj: Record<string, unknown>,
  key: string,
  path: string,
  issues: Issues,
  range: { min?: number; max?: number } = {},
): number | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    issues.add(`${path}.${key}`, 'must be an integer', v);
    return undefined;
  }
  if (range.min !== undefined && v < range.min) {
    issues.add(`${path}.${key}`, `must be at least ${range.min}`, v);
    return undefined;
  }
  if (range.max !== undefined && v > range.max) {
    issues.add(`${path}.${key}`, `must be at most ${range.max}`, v);
    return undefined;
  }
  return v;
}

export function optStringMap(obj: Record<string, unknown>, key: string, path: string, issues: Issues): Record<string, string> {
  const v = obj[key];
  if (v === undefined || v === null) return {};
  if (!isRecord(v)) {
    issues.add(`${path}.${key}`, 'must be a map of strings', v);
    return {};
  }
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') issues.add(`${path}.${key}.${k}`, 'must be a string', val);
    else out[k] = val;
  }
  return out;
}

/** Port number 1..65535. */
export function isPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

/** Kubernetes DNS-1123 label (names of namespaces, service accounts, pods' parts). */
export function isDnsLabel(v: string): boolean {
  return /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v);
}

/** Kubernetes DNS-1123 subdomain (object names). */
export function isDnsSubdomain(v: string): boolean {
  return v.length <= 253 && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v);
}

/** Deep-freezes a plain object tree, returning it typed as readonly. */
export function deepFreeze<T>(o: T): Readonly<T> {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as Record<string, unknown>)) deepFreeze(v);
  }
  return o;
}
