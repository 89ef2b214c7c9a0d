/** Defensive readers over loosely typed object fields, label selection and ordering helpers. */
import type { KubeObject } from '../objects.js';

export function asRecord(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

export function asString(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function asStrings(v: unknown): string[] {
  return asArray(v).filter((x): x is string => typeof x === 'string');
}

export function labelsOf(obj: KubeObject | undefined): Record<string, string> {
  return (obj?.metadata.labels ?? {}) as Record<string, string>;
}

export function annotationsOf(obj: KubeObject | undefined): Record<string, string> {
  return (obj?.metadata.annotations ?? {}) as Record<string, string>;
}

/**
 * Istio `exportTo` values of an object in `ns` → the namespaces that see it: `.` is `ns`, `~` is
 * none; undefined (everyone) when the list is empty or holds `*`.
 */
export function exportNamespaces(values: readonly string[], ns: string): string[] | undefined {
  if (values.length === 0 || values.includes('*')) return undefined;
  return sortedUnique(values.filter((v) => v !== '~').map((v) => (v === '.' ? ns : v)));
}

/** The `networking.istio.io/exportTo` annotation of a Service (comma-separated), as exportTo values. */
export const ANNOTATION_EXPORT_TO = 'networking.istio.io/exportTo';

export function nsOf(obj: KubeObject): string {
  return obj.metadata.namespace ?? '';
}

/** Every key/value of `selector` is present in `labels`. An empty selector selects everything. */
export function matchesLabels(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** `spec.selector.matchLabels` of a policy, or undefined when there is none or it is empty. */
export function policySelector(obj: KubeObject): Record<string, string> | undefined {
  const ml = asRecord(asRecord(obj.spec?.['selector'])['matchLabels']);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(ml)) if (typeof v === 'string') out[k] = v;
  return Object.keys(out).length > 0 ? out : undefined;
}

export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function sortedUnique(values: Iterable<string>): string[] {
  return [...new Set(values)].sort(compareStrings);
}

/** Oldest first (creationTimestamp), then by namespace/name, as Istio breaks policy ties. */
export function compareAge(a: KubeObject, b: KubeObject): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return compareStrings(ta, tb);
  return compareStrings(`${nsOf(a)}/${a.metadata.name}`, `${nsOf(b)}/${b.metadata.name}`);
}
