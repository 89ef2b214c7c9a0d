/**
 * Results of benchmark sections, checks against the targets, and their renderings: a plain text
 * table for the terminal, a markdown table for README's benchmark section, and JSON.
 */

export type PathName = 'direct' | 'stunnel' | 'node' | 'ambit';
export const PATH_LABELS: Record<PathName, string> = { direct: 'direct', stunnel: 'stunnel pair', node: 'plain Node pair', ambit: 'Ambit' };

export interface Metric {
  key: string;
  label: string;
  unit: string;
  /** Digits after the decimal point when shown. */
  digits: number;
  values: Partial<Record<string, number>>;
}

export type Verdict = 'PASS' | 'MISS' | 'n/a';

export interface Check {
  label: string;
  /** e.g. "≥ 1.00×" */
  target: string;
  measured?: number;
  threshold?: number;
  unit: string;
  /** Digits after the decimal point when shown. */
  digits: number;
  verdict: Verdict;
  /** By how much it passed or missed, or why it was not evaluated. */
  note: string;
}

export interface SectionResult {
  name: string;
  title: string;
  /** Column keys of `metrics[].values`, in display order, with their headings. */
  /** `digits`: decimals of this column's values when they differ from the metric's (a ratio column). */
  columns: Array<{ key: string; label: string; digits?: number }>;
  metrics: Metric[];
  checks: Check[];
  details: Record<string, unknown>;
}

/** Median of a non-empty list (mean of the middle two for an even count); undefined when empty. */
export function median(values: number[]): number | undefined {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function fmt(n: number | undefined, digits: number): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/**
 * Compares `measured` with `threshold` (`op` says which side passes). The note gives the margin in
 * the metric's unit and, when the threshold is positive, in percent of it.
 */
export function evaluate(label: string, measured: number | undefined, op: '>=' | '<=', threshold: number | undefined, unit: string, digits: number, missingWhy = 'not measured'): Check {
  const target = threshold === undefined ? `${op === '>=' ? '≥' : '≤'} ?` : `${op === '>=' ? '≥' : '≤'} ${fmt(threshold, digits)}${unit}`;
  if (measured === undefined || threshold === undefined || !Number.isFinite(measured) || !Number.isFinite(threshold)) {
    return { label, target, unit, digits, verdict: 'n/a', note: missingWhy, ...(measured !== undefined ? { measured } : {}), ...(threshold !== undefined ? { threshold } : {}) };
  }
  const pass = op === '>=' ? measured >= threshold : measured <= threshold;
  const diff = Math.abs(measured - threshold);
  const pct = threshold > 0 ? ` (${fmt((diff / threshold) * 100, 0)}%)` : '';
  const word = pass ? 'margin' : op === '>=' ? 'short by' : 'over by';
  return { label, target, measured, threshold, unit, digits, verdict: pass ? 'PASS' : 'MISS', note: `${word} ${fmt(diff, digits)}${unit}${pct}` };
}

function pad(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd()).join('\n');
}

function measuredText(c: Check): string {
  return c.measured === undefined ? '-' : `${fmt(c.measured, c.digits)}${c.unit}`;
}

/** Terminal rendering of one section: the metric table, then one line per target. */
export function renderText(s: SectionResult): string {
  const head = ['', ...s.columns.map((c) => c.label)];
  const rows = s.metrics.map((m) => [`${m.label} (${m.unit})`, ...s.columns.map((c) => fmt(m.values[c.key], c.digits ?? m.digits))]);
  const lines = [`== ${s.title} ==`, pad([head, ...rows]), ''];
  const checkRows = s.checks.map((c) => [c.verdict, c.label, measuredText(c), `target ${c.target}`, c.note]);
  if (checkRows.length > 0) lines.push(pad(checkRows.map((r) => r)), '');
  return lines.join('\n');
}

/** Markdown rendering of one section, ready to paste into README. */
export function renderMarkdown(s: SectionResult): string {
  const lines = [`| ${['metric', ...s.columns.map((c) => c.label)].join(' | ')} |`, `|${' --- |'.repeat(s.columns.length + 1)}`];
  for (const m of s.metrics) lines.push(`| ${[`${m.label} (${m.unit})`, ...s.columns.map((c) => fmt(m.values[c.key], c.digits ?? m.digits))].join(' | ')} |`);
  lines.push('', '| target | measured | result |', '| --- | --- | --- |');
  for (const c of s.checks) lines.push(`| ${c.label} ${c.target} | ${measuredText(c)} | ${c.verdict}${c.verdict === 'n/a' ? ` (${c.note})` : `, ${c.note}`} |`);
  return lines.join('\n') + '\n';
}
