/**
 * Field rules of Kubernetes-shaped objects on the validator kit (shared/validate.ts): labels and
 * label selectors, qualified names, named ports, Gateway API durations.
 */
import { Issues, rec, recs, str, strList } from '../../shared/validate.js';

const GATEWAY_API_DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Gateway API duration (GEP-2257): up to four `<1-5 digits><h|m|s|ms>` parts, e.g. "1h30m", "500ms". */
export function gatewayDuration(c: Issues, v: unknown, path: string): void {
  const s = str(c, v, path, { expect: 'a duration such as "10s"' });
  if (s === undefined) return;
  if (!GATEWAY_API_DURATION.test(s)) c.add(path, 'must be a Gateway API duration such as "10s", "500ms" or "1h30m"', s);
}

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
export function labels(c: Issues, v: unknown, path: string, required = false): Record<string, string> | undefined {
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

/** IANA service name (named ports): at most 15 lowercase alphanumerics or "-", at least one letter. */
export function isPortName(v: string): boolean {
  return v.length <= 15 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v) && /[a-z]/.test(v) && !v.includes('--');
}

/** Label selector with matchLabels/matchExpressions. */
export function labelSelector(c: Issues, v: unknown, path: string, required = false): Record<string, unknown> | undefined {
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

