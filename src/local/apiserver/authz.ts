/**
 * RBAC authorization over the stored Roles, ClusterRoles, RoleBindings and ClusterRoleBindings,
 * evaluated per request as the real RBAC authorizer does (system:masters bypasses it), plus the
 * rule list SelfSubjectRulesReview reports. Deny messages are the real server's.
 */
import { MASTERS_GROUP, parseServiceAccountUser, type UserInfo } from './authn.js';
import type { Store } from './store.js';
import { isMap, type JsonMap, type KubeObject } from './types.js';

export interface Attributes {
  user: UserInfo;
  verb: string;
  resourceRequest: boolean;
  /** Non-resource requests: the URL path. */
  path?: string;
  apiGroup?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

export interface Decision {
  allowed: boolean;
  reason: string;
}

const RBAC = 'rbac.authorization.k8s.io';

function subjectMatches(s: unknown, user: UserInfo, bindingNamespace: string | undefined): boolean {
  if (!isMap(s)) return false;
  const name = s['name'];
  switch (s['kind']) {
    case 'User':
      return name === user.username;
    case 'Group':
      return typeof name === 'string' && user.groups.includes(name);
    case 'ServiceAccount': {
      const sa = parseServiceAccountUser(user.username);
      const ns = typeof s['namespace'] === 'string' && s['namespace'] !== '' ? s['namespace'] : bindingNamespace;
      return sa !== undefined && sa.name === name && sa.namespace === ns;
    }
    default:
      return false;
  }
}

function has(list: unknown, value: string): boolean {
  return Array.isArray(list) && (list.includes('*') || list.includes(value));
}

export function ruleAllows(rule: unknown, a: Attributes): boolean {
  if (!isMap(rule)) return false;
  if (!has(rule['verbs'], a.verb)) return false;
  if (!a.resourceRequest) {
    const urls = rule['nonResourceURLs'];
    if (!Array.isArray(urls)) return false;
    return urls.some((u) => typeof u === 'string' && (u === '*' || u === a.path || (u.endsWith('*') && (a.path ?? '').startsWith(u.slice(0, -1)))));
  }
  if (!has(rule['apiGroups'], a.apiGroup ?? '')) return false;
  const resources = rule['resources'];
  if (!Array.isArray(resources)) return false;
  const combined = a.subresource ? `${a.resource}/${a.subresource}` : (a.resource ?? '');
  const resOk = resources.some((r) => r === '*' || r === combined || (a.subresource !== undefined && a.subresource !== '' && r === `*/${a.subresource}`));
  if (!resOk) return false;
  const names = rule['resourceNames'];
  if (Array.isArray(names) && names.length > 0) return a.name !== undefined && a.name !== '' && names.includes(a.name);
  return true;
}

function describeSubject(user: UserInfo): string {
  return `User "${user.username}"`;
}

/** The rules a role reference grants (a Role in `namespace`, or a ClusterRole). */
function rulesOf(store: Store, ref: unknown, namespace: string | undefined): unknown[] {
  if (!isMap(ref) || ref['apiGroup'] !== RBAC) return [];
  const name = String(ref['name'] ?? '');
  let role: KubeObject | undefined;
  if (ref['kind'] === 'ClusterRole') role = store.get(`${RBAC}/clusterroles`, undefined, name);
  else if (ref['kind'] === 'Role' && namespace !== undefined) role = store.get(`${RBAC}/roles`, namespace, name);
  return role !== undefined && Array.isArray(role['rules']) ? role['rules'] : [];
}

interface Grant {
  rules: unknown[];
  how: string;
}

/** Every grant the user holds where `namespace` applies (cluster-wide ones always). */
function grantsFor(store: Store, user: UserInfo, namespace: string | undefined): Grant[] {
  const out: Grant[] = [];
  for (const b of store.list(`${RBAC}/clusterrolebindings`)) {
    const subjects = Array.isArray(b['subjects']) ? b['subjects'] : [];
    if (!subjects.some((s) => subjectMatches(s, user, undefined))) continue;
    const ref = b['roleRef'] as JsonMap | undefined;
    out.push({ rules: rulesOf(store, ref, undefined), how: `ClusterRoleBinding "${b.metadata.name}" of ClusterRole "${String(ref?.['name'])}"` });
  }
  if (namespace !== undefined && namespace !== '') {
    for (const b of store.list(`${RBAC}/rolebindings`, namespace)) {
      const subjects = Array.isArray(b['subjects']) ? b['subjects'] : [];
      if (!subjects.some((s) => subjectMatches(s, user, namespace))) continue;
      const ref = b['roleRef'] as JsonMap | undefined;
      out.push({
        rules: rulesOf(store, ref, namespace),
        how: `RoleBinding "${b.metadata.name}/${namespace}" of ${String(ref?.['kind'])} "${String(ref?.['name'])}"`,
      });
    }
  }
  return out;
}

export function authorize(store: Store, a: Attributes): Decision {
  if (a.user.groups.includes(MASTERS_GROUP)) return { allowed: true, reason: '' };
  for (const g of grantsFor(store, a.user, a.resourceRequest ? a.namespace : undefined)) {
    if (g.rules.some((r) => ruleAllows(r, a))) return { allowed: true, reason: `RBAC: allowed by ${g.how} to ${describeSubject(a.user)}` };
  }
  return { allowed: false, reason: denyText(a) };
}

/** `User "x" cannot list resource "pods" in API group "" in the namespace "default"`. */
export function denyText(a: Attributes): string {
  const who = describeSubject(a.user);
  if (!a.resourceRequest) return `${who} cannot ${a.verb} path "${a.path}"`;
  const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const scope = a.namespace ? `in the namespace "${a.namespace}"` : 'at the cluster scope';
  return `${who} cannot ${a.verb} resource "${res}" in API group "${a.apiGroup ?? ''}" ${scope}`;
}

/** The rules in force for `user` in `namespace` (SelfSubjectRulesReview). */
export function rulesFor(store: Store, user: UserInfo, namespace: string): { resourceRules: JsonMap[]; nonResourceRules: JsonMap[] } {
  if (user.groups.includes(MASTERS_GROUP)) {
    return {
      resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }],
      nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }],
    };
  }
  const resourceRules: JsonMap[] = [];
  const nonResourceRules: JsonMap[] = [];
  for (const g of grantsFor(store, user, namespace)) {
    for (const r of g.rules) {
      if (!isMap(r)) continue;
      if (Array.isArray(r['nonResourceURLs']) && r['nonResourceURLs'].length > 0) {
        nonResourceRules.push({ verbs: r['verbs'], nonResourceURLs: r['nonResourceURLs'] });
      } else {
        const rr: JsonMap = { verbs: r['verbs'], apiGroups: r['apiGroups'], resources: r['resources'] };
        if (Array.isArray(r['resourceNames']) && r['resourceNames'].length > 0) rr['resourceNames'] = r['resourceNames'];
        resourceRules.push(rr);
      }
    }
  }
  return { resourceRules, nonResourceRules };
}
