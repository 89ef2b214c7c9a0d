/**
 * CustomResourceDefinition (apiextensions.k8s.io/v1) objects: their shape, the checks the API
 * server applies when one is created (names, one storage version, structural schemas, printer
 * columns, status subresource), and the schema an apiVersion of a CRD validates against.
 */
import type { Issue } from './validate.js';
import { checkStructuralSchema, validateValue, type JsonSchemaProps } from './openapi-schema.js';

export interface CrdPrinterColumn {
  name: string;
  type: 'integer' | 'number' | 'string' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  format?: string;
  priority?: number;
}

export interface CrdVersion {
  name: string;
  served: boolean;
  storage: boolean;
  deprecated?: boolean;
  deprecationWarning?: string;
  schema: { openAPIV3Schema: JsonSchemaProps };
  subresources?: { status?: Record<string, never>; scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath?: string } };
  additionalPrinterColumns?: CrdPrinterColumn[];
}

export interface CrdNames {
  plural: string;
  singular?: string;
  kind: string;
  listKind?: string;
  shortNames?: string[];
  categories?: string[];
}

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: {
    group: string;
    names: CrdNames;
    scope: 'Namespaced' | 'Cluster';
    versions: CrdVersion[];
    conversion?: { strategy: 'None' | 'Webhook' };
    preserveUnknownFields?: boolean;
  };
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const KIND = /^[A-Z][A-Za-z0-9]*$/;
const VERSION = /^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$/;
const COLUMN_TYPES = ['integer', 'number', 'string', 'boolean', 'date'];
/** A simple JSONPath as printer columns use: `.spec.host`, `.status.conditions[?(@.type=="Ready")].status`. */
const COLUMN_PATH = /^(\.[A-Za-z_][A-Za-z0-9_-]*(\[[^\]]+\])?)+$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Problems the API server (or a careful reviewer) would raise about a CRD object; `subject` prefixes paths. */
export function checkCrd(obj: unknown, subject = 'CustomResourceDefinition'): Issue[] {
  const issues: Issue[] = [];
  const add = (path: string, problem: string, ...value: [unknown?]): void => {
    issues.push(value.length > 0 ? { path: `${subject}: ${path}`, problem, value: value[0] } : { path: `${subject}: ${path}`, problem });
  };
  if (!isRecord(obj)) {
    add('(root)', 'must be an object', obj);
    return issues;
  }
  if (obj['apiVersion'] !== 'apiextensions.k8s.io/v1') add('apiVersion', 'must be apiextensions.k8s.io/v1', obj['apiVersion']);
  if (obj['kind'] !== 'CustomResourceDefinition') add('kind', 'must be CustomResourceDefinition', obj['kind']);
  const spec = obj['spec'];
  const meta = obj['metadata'];
  if (!isRecord(spec) || !isRecord(meta)) {
    add('spec', 'metadata and spec must be objects');
    return issues;
  }
  const group = spec['group'];
  if (typeof group !== 'string' || !DNS_SUBDOMAIN.test(group) || !group.includes('.')) add('spec.group', 'must be a DNS subdomain with at least one dot', group);
  const names = isRecord(spec['names']) ? (spec['names'] as unknown as CrdNames) : undefined;
  if (!names) add('spec.names', 'is required');
  else {
    if (typeof names.plural !== 'string' || !DNS_LABEL.test(names.plural)) add('spec.names.plural', 'must be a lowercase DNS label', names.plural);
    if (names.singular !== undefined && !DNS_LABEL.test(names.singular)) add('spec.names.singular', 'must be a lowercase DNS label', names.singular);
    if (typeof names.kind !== 'string' || !KIND.test(names.kind)) add('spec.names.kind', 'must be a CamelCase identifier', names.kind);
    if (names.listKind !== undefined && names.listKind !== `${names.kind}List`) add('spec.names.listKind', `should be ${names.kind}List`, names.listKind);
    for (const s of names.shortNames ?? []) if (!DNS_LABEL.test(s)) add('spec.names.shortNames', 'must be lowercase DNS labels', s);
    if (meta['name'] !== `${names.plural}.${String(group)}`) add('metadata.name', `must be <plural>.<group> (${names.plural}.${String(group)})`, meta['name']);
  }
  if (spec['scope'] !== 'Namespaced' && spec['scope'] !== 'Cluster') add('spec.scope', 'must be Namespaced or Cluster', spec['scope']);
  if (spec['preserveUnknownFields'] === true) add('spec.preserveUnknownFields', 'must be false in apiextensions.k8s.io/v1');
  const versions = Array.isArray(spec['versions']) ? (spec['versions'] as CrdVersion[]) : [];
  if (versions.length === 0) add('spec.versions', 'must list at least one version');
  const seen = new Set<string>();
  versions.forEach((v, i) => {
    const p = `spec.versions[${i}]`;
    if (typeof v.name !== 'string' || !VERSION.test(v.name)) add(`${p}.name`, 'must be a Kubernetes version name such as v1, v1beta1, v1alpha3', v.name);
    if (seen.has(v.name)) add(`${p}.name`, 'duplicates another version', v.name);
    seen.add(v.name);
    if (typeof v.served !== 'boolean') add(`${p}.served`, 'must be true or false', v.served);
    if (typeof v.storage !== 'boolean') add(`${p}.storage`, 'must be true or false', v.storage);
    const schema = v.schema?.openAPIV3Schema;
    if (schema === undefined) add(`${p}.schema.openAPIV3Schema`, 'is required in apiextensions.k8s.io/v1');
    else for (const issue of checkStructuralSchema(schema, `${p}.schema.openAPIV3Schema`)) issues.push({ ...issue, path: `${subject}: ${issue.path}` });
    if (v.subresources?.status !== undefined && schema?.properties?.['status'] === undefined) {
      add(`${p}.subresources.status`, 'is enabled but the schema has no status field (it would be pruned)');
    }
    (v.additionalPrinterColumns ?? []).forEach((c, j) => {
      const cp = `${p}.additionalPrinterColumns[${j}]`;
      if (typeof c.name !== 'string' || c.name.length === 0) add(`${cp}.name`, 'is required', c.name);
      if (!COLUMN_TYPES.includes(c.type)) add(`${cp}.type`, `must be one of ${COLUMN_TYPES.join(', ')}`, c.type);
      if (typeof c.jsonPath !== 'string' || !COLUMN_PATH.test(c.jsonPath)) add(`${cp}.jsonPath`, 'must be a simple JSON path such as .spec.host', c.jsonPath);
    });
  });
  const storage = versions.filter((v) => v.storage === true);
  if (versions.length > 0 && storage.length !== 1) add('spec.versions', `exactly one version must be the storage version (found ${storage.length})`, storage.map((v) => v.name));
  if (storage.length === 1 && storage[0]!.served !== true) add('spec.versions', 'the storage version must be served', storage[0]!.name);
  return issues;
}

/**
 * Problems of a custom resource against the CRD that serves its apiVersion: the version must be
 * served, and the object must validate against that version's schema (unknown fields reported).
 */
export function validateCustomResource(obj: Record<string, unknown>, crd: CustomResourceDefinition): Issue[] {
  const apiVersion = String(obj['apiVersion'] ?? '');
  const slash = apiVersion.indexOf('/');
  const group = slash < 0 ? '' : apiVersion.slice(0, slash);
  const version = apiVersion.slice(slash + 1);
  if (group !== crd.spec.group || obj['kind'] !== crd.spec.names.kind) {
    return [{ path: 'apiVersion', problem: `${crd.metadata.name} serves ${crd.spec.group} ${crd.spec.names.kind}`, value: `${apiVersion} ${String(obj['kind'])}` }];
  }
  const v = crd.spec.versions.find((x) => x.name === version);
  if (!v || !v.served) {
    return [{ path: 'apiVersion', problem: `version ${version} is not served (served: ${crd.spec.versions.filter((x) => x.served).map((x) => x.name).join(', ')})`, value: apiVersion }];
  }
  return validateValue(obj, v.schema.openAPIV3Schema);
}
