/**
 * A small vocabulary for writing CRD schemas in TypeScript (typed, reviewable, one source for
 * daemonset/crds/) and the builder that turns a kind's description into a
 * CustomResourceDefinition object with one schema shared by every served version.
 */
import type { JsonSchemaProps } from '../shared/openapi-schema.js';
import type { CrdPrinterColumn, CustomResourceDefinition } from '../shared/crd.js';

export type Schema = JsonSchemaProps;
type Extra = Partial<Schema>;

export const str = (extra: Extra = {}): Schema => ({ type: 'string', ...extra });
export const int = (extra: Extra = {}): Schema => ({ type: 'integer', ...extra });
export const int32 = (extra: Extra = {}): Schema => ({ type: 'integer', format: 'int32', ...extra });
export const int64 = (extra: Extra = {}): Schema => ({ type: 'integer', format: 'int64', ...extra });
export const num = (extra: Extra = {}): Schema => ({ type: 'number', ...extra });
export const bool = (extra: Extra = {}): Schema => ({ type: 'boolean', ...extra });
export const oneOfStrings = (values: readonly string[], extra: Extra = {}): Schema => ({ type: 'string', enum: [...values], ...extra });
export const list = (items: Schema, extra: Extra = {}): Schema => ({ type: 'array', items, ...extra });
export const strs = (extra: Extra = {}): Schema => list(str(), extra);
export const obj = (properties: Record<string, Schema>, extra: Extra = {}): Schema => ({ type: 'object', properties, ...extra });
export const mapOf = (values: Schema = str(), extra: Extra = {}): Schema => ({ type: 'object', additionalProperties: values, ...extra });
/** A port number 1..65535. */
export const portNumber = (extra: Extra = {}): Schema => int32({ minimum: 1, maximum: 65535, ...extra });
/** A subtree Ambit does not interpret: kept exactly as written (never pruned). */
export const opaque = (description?: string): Schema => ({
  type: 'object',
  'x-kubernetes-preserve-unknown-fields': true,
  ...(description ? { description } : {}),
});
/** Any JSON value, kept as written. */
export const anyValue = (): Schema => ({ 'x-kubernetes-preserve-unknown-fields': true });
export const intOrString = (extra: Extra = {}): Schema => ({
  'x-kubernetes-int-or-string': true,
  anyOf: [{ type: 'integer' }, { type: 'string' }],
  ...extra,
});
export const described = (description: string, s: Schema): Schema => ({ ...s, description });

/** A printer column for `.metadata.creationTimestamp`, as every kind shows. */
export const AGE_COLUMN: CrdPrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

export interface KindSpec {
  group: string;
  kind: string;
  plural: string;
  scope: 'Namespaced' | 'Cluster';
  shortNames?: string[];
  categories: string[];
  /** Served versions in the order the upstream CRD lists them. */
  versions: string[];
  /** The one version objects are stored in (the upstream project's choice). */
  storage: string;
  /** Served but marked deprecated (the API server warns on use). */
  deprecated?: string[];
  printerColumns: CrdPrinterColumn[];
  spec: Schema;
  /** Status schema; with it the status subresource is enabled. */
  status?: Schema;
  /** Fields of the object that must be present (e.g. `spec`). */
  required?: string[];
  description: string;
}

export const CRD_LABELS: Readonly<Record<string, string>> = {
  'app.kubernetes.io/part-of': 'ambit',
  'app.kubernetes.io/component': 'crds',
};

/** The CustomResourceDefinition for one kind: every version served with the same schema. */
export function buildCrd(k: KindSpec): CustomResourceDefinition {
  const properties: Record<string, Schema> = { spec: k.spec };
  if (k.status) properties['status'] = k.status;
  const schema: Schema = {
    type: 'object',
    description: k.description,
    properties,
    ...(k.required && k.required.length > 0 ? { required: k.required } : {}),
  };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${k.plural}.${k.group}`, labels: { ...CRD_LABELS } },
    spec: {
      group: k.group,
      names: {
        plural: k.plural,
        singular: k.kind.toLowerCase(),
        kind: k.kind,
        listKind: `${k.kind}List`,
        ...(k.shortNames && k.shortNames.length > 0 ? { shortNames: k.shortNames } : {}),
        categories: k.categories,
      },
      scope: k.scope,
      versions: k.versions.map((name) => ({
        name,
        served: true,
        storage: name === k.storage,
        ...(k.deprecated?.includes(name) ? { deprecated: true } : {}),
        schema: { openAPIV3Schema: schema },
        ...(k.status ? { subresources: { status: {} } } : {}),
        additionalPrinterColumns: k.printerColumns,
      })),
    },
  };
}
