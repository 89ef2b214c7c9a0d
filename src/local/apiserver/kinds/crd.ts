/**
 * CustomResourceDefinitions: defaults, validation (names, versions, structural schemas), name
 * acceptance against the other CRDs of the group, and the status the real server's controllers
 * write (NamesAccepted, Established, acceptedNames, storedVersions) computed on every write, so a
 * CRD is served as soon as it is stored. Custom resources get their strategy from their CRD.
 */
import { checkStructural } from '../structural-schema.js';
import { fieldError, type FieldError } from '../status.js';
import type { KindStrategy, StrategyContext } from '../strategy.js';
import { clone, isMap, rfc3339, type JsonMap, type KubeObject } from '../types.js';
import { dns1035Label, dns1123Label, dns1123Subdomain } from './names.js';

export const CRD_CLEANUP_FINALIZER = 'customresourcecleanup.apiextensions.k8s.io';
export const CRD_RESOURCE = 'apiextensions.k8s.io/customresourcedefinitions';

export interface CrdNames {
  plural: string;
  singular: string;
  kind: string;
  listKind: string;
  shortNames: string[];
  categories: string[];
}

export function crdNames(crd: KubeObject): CrdNames {
  const spec = isMap(crd['spec']) ? crd['spec'] : {};
  const n = isMap(spec['names']) ? spec['names'] : {};
  const kind = String(n['kind'] ?? '');
  return {
    plural: String(n['plural'] ?? ''),
    singular: String(n['singular'] ?? kind.toLowerCase()),
    kind,
    listKind: String(n['listKind'] ?? `${kind}List`),
    shortNames: Array.isArray(n['shortNames']) ? n['shortNames'].map(String) : [],
    categories: Array.isArray(n['categories']) ? n['categories'].map(String) : [],
  };
}

function setCondition(status: JsonMap, type: string, value: 'True' | 'False', reason: string, message: string, now: number): void {
  const conds = Array.isArray(status['conditions']) ? (status['conditions'] as JsonMap[]) : [];
  const cur = conds.find((c) => c['type'] === type);
  if (cur !== undefined && cur['status'] === value && cur['reason'] === reason) return;
  const next = { type, status: value, lastTransitionTime: rfc3339(now), reason, message };
  if (cur !== undefined) Object.assign(cur, next);
  else conds.push(next);
  status['conditions'] = conds;
}

/** Why this CRD's names collide with another CRD of the same group, or undefined. */
function nameConflict(crd: KubeObject, ctx: StrategyContext): { reason: string; message: string } | undefined {
  const spec = crd['spec'] as JsonMap;
  const mine = crdNames(crd);
  for (const other of ctx.store.list(CRD_RESOURCE)) {
    if (other.metadata.name === crd.metadata.name) continue;
    const os = isMap(other['spec']) ? other['spec'] : {};
    if (os['group'] !== spec['group']) continue;
    const theirs = crdNames(other);
    if (theirs.plural === mine.plural) return { reason: 'PluralConflict', message: `"${mine.plural}" is already in use` };
    if (theirs.singular === mine.singular) return { reason: 'SingularConflict', message: `"${mine.singular}" is already in use` };
    if (theirs.kind === mine.kind) return { reason: 'KindConflict', message: `"${mine.kind}" is already in use` };
    if (theirs.listKind === mine.listKind) return { reason: 'ListKindConflict', message: `"${mine.listKind}" is already in use` };
    const short = mine.shortNames.find((s) => theirs.shortNames.includes(s));
    if (short !== undefined) return { reason: 'ShortNamesConflict', message: `"${short}" is already in use` };
  }
  return undefined;
}

function computeStatus(crd: KubeObject, ctx: StrategyContext, old: KubeObject | undefined): void {
  const status: JsonMap = isMap(crd['status']) ? crd['status'] : old && isMap(old['status']) ? clone(old['status']) : {};
  const conflict = nameConflict(crd, ctx);
  if (conflict === undefined) {
    const names = crdNames(crd);
    status['acceptedNames'] = {
      plural: names.plural,
      singular: names.singular,
      kind: names.kind,
      listKind: names.listKind,
      ...(names.shortNames.length ? { shortNames: names.shortNames } : {}),
      ...(names.categories.length ? { categories: names.categories } : {}),
    };
    setCondition(status, 'NamesAccepted', 'True', 'NoConflicts', 'no conflicts found', ctx.now);
    setCondition(status, 'Established', 'True', 'InitialNamesAccepted', 'the initial names have been accepted', ctx.now);
  } else {
    status['acceptedNames'] ??= { plural: '', kind: '' };
    setCondition(status, 'NamesAccepted', 'False', conflict.reason, conflict.message, ctx.now);
    setCondition(status, 'Established', 'False', 'NotAccepted', 'not all names are accepted', ctx.now);
  }
  const stored = new Set<string>(Array.isArray(status['storedVersions']) ? status['storedVersions'].map(String) : []);
  const versions = Array.isArray((crd['spec'] as JsonMap)['versions']) ? ((crd['spec'] as JsonMap)['versions'] as JsonMap[]) : [];
  const storage = versions.find((v) => isMap(v) && v['storage'] === true);
  if (storage !== undefined) stored.add(String(storage['name']));
  status['storedVersions'] = [...stored];
  crd['status'] = status;
}

/** True when the CRD is Established (and so served). */
export function crdEstablished(crd: KubeObject): boolean {
  const conds = isMap(crd['status']) && Array.isArray(crd['status']['conditions']) ? crd['status']['conditions'] : [];
  return conds.some((c) => isMap(c) && c['type'] === 'Established' && c['status'] === 'True');
}

function validateCrd(obj: KubeObject): FieldError[] {
  const errs: FieldError[] = [];
  const spec = isMap(obj['spec']) ? obj['spec'] : {};
  const group = typeof spec['group'] === 'string' ? spec['group'] : '';
  const names = crdNames(obj);
  if (group === '') errs.push(fieldError('Required', 'spec.group', undefined));
  else if (!group.includes('.')) errs.push(fieldError('Invalid', 'spec.group', group, 'should be a domain with at least one dot'));
  else if (dns1123Subdomain(group) !== undefined) errs.push(fieldError('Invalid', 'spec.group', group, dns1123Subdomain(group)));
  if (names.plural === '') errs.push(fieldError('Required', 'spec.names.plural', undefined));
  else if (dns1123Label(names.plural) !== undefined) errs.push(fieldError('Invalid', 'spec.names.plural', names.plural, dns1123Label(names.plural)));
  if (names.kind === '') errs.push(fieldError('Required', 'spec.names.kind', undefined));
  if (names.singular !== '' && dns1123Label(names.singular) !== undefined) errs.push(fieldError('Invalid', 'spec.names.singular', names.singular, dns1123Label(names.singular)));
  if (obj.metadata.name !== `${names.plural}.${group}`) {
    errs.push(fieldError('Invalid', 'metadata.name', obj.metadata.name ?? '', 'must be spec.names.plural+"."+spec.group'));
  }
  const scope = spec['scope'];
  if (scope !== 'Namespaced' && scope !== 'Cluster') errs.push(fieldError('NotSupported', 'spec.scope', scope ?? '', 'supported values: "Cluster", "Namespaced"'));
  const versions = Array.isArray(spec['versions']) ? spec['versions'] : [];
  if (versions.length === 0) errs.push(fieldError('Invalid', 'spec.versions', versions, 'must have exactly one version marked as storage version'));
  let storage = 0;
  const seen = new Set<string>();
  versions.forEach((v, i) => {
    const p = `spec.versions[${i}]`;
    if (!isMap(v)) return;
    const name = String(v['name'] ?? '');
    if (name === '') errs.push(fieldError('Required', `${p}.name`, undefined));
    else if (dns1035Label(name) !== undefined) errs.push(fieldError('Invalid', `${p}.name`, name, dns1035Label(name)));
    if (seen.has(name)) errs.push(fieldError('Duplicate', `${p}.name`, name));
    seen.add(name);
    if (v['storage'] === true) storage++;
    const schema = isMap(v['schema']) ? v['schema']['openAPIV3Schema'] : undefined;
    if (schema === undefined) errs.push(fieldError('Required', `${p}.schema.openAPIV3Schema`, undefined, 'schemas are required'));
    else errs.push(...checkStructural(schema, `${p}.schema.openAPIV3Schema`));
    const sub = isMap(v['subresources']) ? v['subresources'] : {};
    const scale = sub['scale'];
    if (isMap(scale)) {
      for (const k of ['specReplicasPath', 'statusReplicasPath']) {
        const path = scale[k];
        if (typeof path !== 'string' || !path.startsWith('.')) errs.push(fieldError('Invalid', `${p}.subresources.scale.${k}`, path ?? '', 'should be a json path under .spec or .status'));
      }
    }
    const cols = Array.isArray(v['additionalPrinterColumns']) ? v['additionalPrinterColumns'] : [];
    cols.forEach((c, j) => {
      if (!isMap(c)) return;
      const cp = `${p}.additionalPrinterColumns[${j}]`;
      if (typeof c['name'] !== 'string' || c['name'] === '') errs.push(fieldError('Required', `${cp}.name`, undefined));
      if (!['integer', 'number', 'string', 'boolean', 'date'].includes(String(c['type']))) {
        errs.push(fieldError('NotSupported', `${cp}.type`, c['type'] ?? '', 'supported values: "boolean", "date", "integer", "number", "string"'));
      }
      if (typeof c['jsonPath'] !== 'string' || c['jsonPath'] === '') errs.push(fieldError('Required', `${cp}.jsonPath`, undefined));
    });
  });
  if (versions.length > 0 && storage !== 1) {
    errs.push(fieldError('Invalid', 'spec.versions', versions.map((v) => (isMap(v) ? v['name'] : v)), 'must have exactly one version marked as storage version'));
  }
  return errs;
}

export const crdStrategy: KindStrategy = {
  generation: true,
  defaults(obj) {
    const spec = isMap(obj['spec']) ? obj['spec'] : (obj['spec'] = {});
    const names = isMap(spec['names']) ? spec['names'] : (spec['names'] = {});
    if (typeof names['kind'] === 'string') {
      names['singular'] ??= names['kind'].toLowerCase();
      names['listKind'] ??= `${names['kind']}List`;
    }
    spec['conversion'] ??= { strategy: 'None' };
  },
  prepareForCreate(obj, ctx) {
    const f = obj.metadata.finalizers ?? [];
    if (!f.includes(CRD_CLEANUP_FINALIZER)) f.push(CRD_CLEANUP_FINALIZER);
    obj.metadata.finalizers = f;
    delete obj['status'];
    computeStatus(obj, ctx, undefined);
  },
  prepareForUpdate(obj, old, ctx) {
    obj['status'] = clone(old['status']);
    computeStatus(obj, ctx, old);
  },
  validate: validateCrd,
  validateUpdate(obj, old) {
    const a = isMap(obj['spec']) ? obj['spec'] : {};
    const b = isMap(old['spec']) ? old['spec'] : {};
    const errs: FieldError[] = [];
    if (a['scope'] !== b['scope']) errs.push(fieldError('Invalid', 'spec.scope', a['scope'], 'field is immutable'));
    if (a['group'] !== b['group']) errs.push(fieldError('Invalid', 'spec.group', a['group'], 'field is immutable'));
    return errs;
  },
};
