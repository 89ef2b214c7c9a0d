/**
 * A minimal OpenAPI v3 (kube-openapi handler3 layout): the root lists one document per group
 * version, and each document declares the operations of its resources with the query
 * parameters kubectl checks for (fieldValidation, dryRun) and the patch media types. That is
 * what `kubectl apply` (default --validate=strict) and `--dry-run=server` need to send
 * fieldValidation=Strict and dryRun=All. No component schemas are served (no `kubectl explain`).
 */
import { createHash } from 'node:crypto';
import type { ResourceDef, ResourceTypes } from './resources.js';
import type { JsonMap } from './types.js';

function gvPath(group: string, version: string): string {
  return group === '' ? `api/${version}` : `apis/${group}/${version}`;
}

const QUERY_PARAMS = ['dryRun', 'fieldManager', 'fieldValidation', 'pretty'].map((name) => ({
  name,
  in: 'query',
  description: name,
  schema: { type: 'string', uniqueItems: true },
}));

function operation(def: ResourceDef, version: string, action: string, patchTypes: string[]): JsonMap {
  const op: JsonMap = {
    operationId: `${action}${def.kind}`,
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': { group: def.group, version, kind: def.kind },
    parameters: action === 'get' || action === 'list' ? [] : QUERY_PARAMS,
    responses: { '200': { description: 'OK' } },
  };
  if (action === 'patch') op['requestBody'] = { content: Object.fromEntries(patchTypes.map((t) => [t, { schema: { type: 'object' } }])), required: true };
  if (action === 'post' || action === 'put') op['requestBody'] = { content: { '*/*': { schema: { type: 'object' } } }, required: true };
  return op;
}

/** The OpenAPI document of one group version, or undefined when nothing is served there. */
export function openApiDocument(types: ResourceTypes, group: string, version: string, patchTypesOf: (d: ResourceDef) => string[]): JsonMap | undefined {
  const defs = types.all().filter((d) => d.group === group && d.versions.some((v) => v.name === version));
  if (defs.length === 0) return undefined;
  const prefix = `/${gvPath(group, version)}`;
  const paths: JsonMap = {};
  for (const d of defs) {
    const base = d.namespaced ? `${prefix}/namespaces/{namespace}/${d.plural}` : `${prefix}/${d.plural}`;
    if (d.review) {
      paths[base] = { post: operation(d, version, 'post', []) };
      continue;
    }
    paths[base] = { get: operation(d, version, 'list', []), post: operation(d, version, 'post', []) };
    paths[`${base}/{name}`] = {
      get: operation(d, version, 'get', []),
      put: operation(d, version, 'put', []),
      patch: operation(d, version, 'patch', patchTypesOf(d)),
      delete: operation(d, version, 'delete', []),
    };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes', version: 'v1.32.4' }, paths, components: { schemas: {} } };
}

/** `/openapi/v3`: one entry per group version, each URL carrying a hash of its document. */
export function openApiRoot(types: ResourceTypes, patchTypesOf: (d: ResourceDef) => string[]): JsonMap {
  const paths: JsonMap = {};
  for (const g of types.groups()) {
    for (const v of g.versions) {
      const doc = openApiDocument(types, g.group, v, patchTypesOf);
      const hash = createHash('sha512').update(JSON.stringify(doc)).digest('hex').slice(0, 64).toUpperCase();
      paths[gvPath(g.group, v)] = { serverRelativeURL: `/openapi/v3/${gvPath(g.group, v)}?hash=${hash}` };
    }
  }
  return { paths };
}
