/** rbac.authorization.k8s.io/v1 Roles, ClusterRoles and their bindings: validation only. */
import { fieldError, type FieldError } from '../status.js';
import type { KindStrategy } from '../strategy.js';
import { isMap, jsonEqual, type KubeObject } from '../types.js';

const RBAC_GROUP = 'rbac.authorization.k8s.io';

function validateRules(obj: KubeObject, namespaced: boolean): FieldError[] {
  const errs: FieldError[] = [];
  const rules = Array.isArray(obj['rules']) ? obj['rules'] : [];
  rules.forEach((r, i) => {
    const p = `rules[${i}]`;
    if (!isMap(r)) return;
    const verbs = r['verbs'];
    if (!Array.isArray(verbs) || verbs.length === 0) errs.push(fieldError('Required', `${p}.verbs`, undefined, 'verbs must contain at least one value'));
    const nonResource = Array.isArray(r['nonResourceURLs']) ? r['nonResourceURLs'] : [];
    const resources = Array.isArray(r['resources']) ? r['resources'] : [];
    if (nonResource.length > 0) {
      if (namespaced) errs.push(fieldError('Invalid', `${p}.nonResourceURLs`, nonResource, 'namespaced rules cannot apply to non-resource URLs'));
      if (resources.length > 0 || (Array.isArray(r['apiGroups']) && r['apiGroups'].length > 0)) {
        errs.push(fieldError('Invalid', `${p}.nonResourceURLs`, nonResource, 'rules cannot apply to both regular resources and non-resource URLs'));
      }
    } else {
      if (!Array.isArray(r['apiGroups']) || r['apiGroups'].length === 0) {
        errs.push(fieldError('Required', `${p}.apiGroups`, undefined, 'resource rules must supply at least one api group'));
      }
      if (resources.length === 0) errs.push(fieldError('Required', `${p}.resources`, undefined, 'resource rules must supply at least one resource'));
    }
  });
  return errs;
}

function validateBinding(obj: KubeObject, namespaced: boolean): FieldError[] {
  const errs: FieldError[] = [];
  const ref = obj['roleRef'];
  if (!isMap(ref)) {
    errs.push(fieldError('Required', 'roleRef', undefined));
  } else {
    if (ref['apiGroup'] !== RBAC_GROUP) errs.push(fieldError('NotSupported', 'roleRef.apiGroup', ref['apiGroup'] ?? '', `supported values: "${RBAC_GROUP}"`));
    const kinds = namespaced ? ['Role', 'ClusterRole'] : ['ClusterRole'];
    if (!kinds.includes(String(ref['kind']))) errs.push(fieldError('NotSupported', 'roleRef.kind', ref['kind'] ?? '', `supported values: ${kinds.map((k) => `"${k}"`).join(', ')}`));
    if (typeof ref['name'] !== 'string' || ref['name'] === '') errs.push(fieldError('Required', 'roleRef.name', undefined));
  }
  const subjects = Array.isArray(obj['subjects']) ? obj['subjects'] : [];
  subjects.forEach((s, i) => {
    const p = `subjects[${i}]`;
    if (!isMap(s)) return;
    if (typeof s['name'] !== 'string' || s['name'] === '') errs.push(fieldError('Required', `${p}.name`, undefined));
    const kind = s['kind'];
    if (kind === 'ServiceAccount') {
      if (s['apiGroup'] !== undefined && s['apiGroup'] !== '') errs.push(fieldError('NotSupported', `${p}.apiGroup`, s['apiGroup'], 'supported values: ""'));
      if (!namespaced && (typeof s['namespace'] !== 'string' || s['namespace'] === '')) errs.push(fieldError('Required', `${p}.namespace`, undefined));
    } else if (kind === 'User' || kind === 'Group') {
      if (s['apiGroup'] !== RBAC_GROUP) errs.push(fieldError('NotSupported', `${p}.apiGroup`, s['apiGroup'] ?? '', `supported values: "${RBAC_GROUP}"`));
    } else {
      errs.push(fieldError('NotSupported', `${p}.kind`, kind ?? '', 'supported values: "Group", "ServiceAccount", "User"'));
    }
  });
  return errs;
}

function roleRefUnchanged(obj: KubeObject, old: KubeObject): FieldError[] {
  return jsonEqual(obj['roleRef'], old['roleRef']) ? [] : [fieldError('Invalid', 'roleRef', obj['roleRef'], 'cannot change roleRef')];
}

export const roleStrategy: KindStrategy = { validate: (o) => validateRules(o, true) };
export const clusterRoleStrategy: KindStrategy = { validate: (o) => validateRules(o, false) };
export const roleBindingStrategy: KindStrategy = { validate: (o) => validateBinding(o, true), validateUpdate: roleRefUnchanged };
export const clusterRoleBindingStrategy: KindStrategy = { validate: (o) => validateBinding(o, false), validateUpdate: roleRefUnchanged };
