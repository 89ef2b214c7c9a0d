/**
 * Checks built-in Kubernetes objects against the API's schemas as @kubernetes/client-node's
 * generated models carry them (each model's attribute map was generated from the official
 * OpenAPI document): every field must exist in its type and have the JSON type it declares.
 * Used by the manifest tests; strict like `kubectl apply --validate=strict`.
 */
import * as k8s from '@kubernetes/client-node';

type Model = { getAttributeTypeMap(): Array<{ baseName: string; type: string }> };

const GROUP_PREFIX: Record<string, string> = {
  '': 'V1',
  apps: 'V1',
  policy: 'V1',
  'rbac.authorization.k8s.io': 'V1',
  'apiextensions.k8s.io': 'V1',
  'admissionregistration.k8s.io': 'V1',
  'coordination.k8s.io': 'V1',
  'discovery.k8s.io': 'V1',
};

/** The model name of a built-in kind (`apps/v1` DaemonSet → V1DaemonSet), or undefined. */
export function modelName(apiVersion: string, kind: string): string | undefined {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  if (version !== 'v1' || GROUP_PREFIX[group!] === undefined) return undefined;
  const name = `${GROUP_PREFIX[group!]}${kind}`;
  return model(name) ? name : undefined;
}

function model(name: string): Model | undefined {
  const m = (k8s as unknown as Record<string, unknown>)[name] as Partial<Model> | undefined;
  return typeof m?.getAttributeTypeMap === 'function' ? (m as Model) : undefined;
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** Problems of `value` against the model type `type`, each `path: problem`. */
export function checkAgainstType(value: unknown, type: string, path: string): string[] {
  if (value === null || value === undefined) return [];
  const problems: string[] = [];
  const mismatch = (want: string): string[] => [`${path}: must be ${want} (got ${jsonType(value)} ${JSON.stringify(value)})`];
  if (type === 'any') return [];
  if (type === 'string') return typeof value === 'string' ? [] : mismatch('a string');
  if (type === 'Date') return typeof value === 'string' && !Number.isNaN(Date.parse(value)) ? [] : mismatch('a timestamp');
  if (type === 'number') return typeof value === 'number' ? [] : mismatch('a number');
  if (type === 'boolean') return typeof value === 'boolean' ? [] : mismatch('a boolean');
  if (type === 'IntOrString') return typeof value === 'string' || (typeof value === 'number' && Number.isInteger(value)) ? [] : mismatch('an integer or a string');
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (!Array.isArray(value)) return mismatch('a list');
    value.forEach((item, i) => problems.push(...checkAgainstType(item, array[1]!, `${path}[${i}]`)));
    return problems;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (jsonType(value) !== 'object') return mismatch('a map');
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) problems.push(...checkAgainstType(v, map[1]!, `${path}.${k}`));
    return problems;
  }
  const m = model(type);
  if (!m) return [`${path}: unknown schema type ${type}`];
  if (jsonType(value) !== 'object') return mismatch(`an object (${type})`);
  const attrs = new Map(m.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const t = attrs.get(k);
    if (t === undefined) problems.push(`${path}.${k}: unknown field in ${type}`);
    else problems.push(...checkAgainstType(v, t, `${path}.${k}`));
  }
  return problems;
}

/** Problems of a whole built-in object; undefined when its kind is not a built-in v1 kind. */
export function checkBuiltinObject(obj: Record<string, unknown>): string[] | undefined {
  const name = modelName(String(obj['apiVersion']), String(obj['kind']));
  if (!name) return undefined;
  const meta = obj['metadata'] as { name?: string; namespace?: string } | undefined;
  return checkAgainstType(obj, name, `${String(obj['kind'])} ${meta?.namespace ? meta.namespace + '/' : ''}${meta?.name ?? '?'}`);
}
