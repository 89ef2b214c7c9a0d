/**
 * The create-only review APIs and the token subresource: TokenReview (bound service-account
 * tokens checked for signature, expiry, audience and bound objects), serviceaccounts/token
 * (TokenRequest, as a kubelet mints projected tokens), SubjectAccessReview and its self/local
 * forms, SelfSubjectRulesReview and SelfSubjectReview.
 */
import type { Authenticator, UserInfo } from './authn.js';
import { authorize, rulesFor, type Attributes } from './authz.js';
import type { ResourceDef } from './resources.js';
import type { RequestContext } from './registry.js';
import { badRequest, conflict, fieldError, invalid, notFound, type FieldError } from './status.js';
import type { Store } from './store.js';
import type { TokenSigner } from './tokens.js';
import { isMap, rfc3339, type JsonMap, type KubeObject } from './types.js';

export interface ReviewDeps {
  store: Store;
  authenticator: Authenticator;
  signer: TokenSigner;
  now: () => number;
}

/** Shortest TokenRequest lifetime (10 min) and the default (1 h). */
const MIN_EXPIRATION_S = 600;
const DEFAULT_EXPIRATION_S = 3600;
const MAX_EXPIRATION_S = 2 ** 32;
/** kubelet-requested API tokens of this lifetime are extended to a year (--service-account-extend-token-expiration). */
const KUBELET_TOKEN_S = 3607;
const EXTENDED_S = 365 * 24 * 3600;

function reviewShell(kind: string, apiVersion: string, body: JsonMap): JsonMap {
  return { kind, apiVersion, metadata: { creationTimestamp: null }, spec: isMap(body['spec']) ? body['spec'] : {} };
}

function userInfoJson(u: UserInfo): JsonMap {
  const out: JsonMap = { username: u.username };
  if (u.uid) out['uid'] = u.uid;
  out['groups'] = u.groups;
  if (u.extra && Object.keys(u.extra).length > 0) out['extra'] = u.extra;
  return out;
}

export function tokenReview(deps: ReviewDeps, body: JsonMap): JsonMap {
  const out = reviewShell('TokenReview', 'authentication.k8s.io/v1', body);
  const spec = out['spec'] as JsonMap;
  const token = spec['token'];
  if (typeof token !== 'string' || token === '') throw badRequest('token is required for TokenReview in authentication');
  const audiences = Array.isArray(spec['audiences']) ? spec['audiences'].map(String) : [];
  const r = deps.authenticator.authenticateToken(token, audiences);
  if (r.ok) out['status'] = { authenticated: true, user: userInfoJson(r.user), audiences: r.audiences };
  else out['status'] = { user: {}, error: `[${r.error}]` };
  return out;
}

/** POST serviceaccounts/<name>/token. */
export function tokenRequest(deps: ReviewDeps, namespace: string, saName: string, body: JsonMap): JsonMap {
  const sa = deps.store.get('/serviceaccounts', namespace, saName);
  if (sa === undefined) throw notFound({ group: '', resource: 'serviceaccounts' }, saName);
  const spec: JsonMap = isMap(body['spec']) ? { ...body['spec'] } : {};
  const errs: FieldError[] = [];
  const exp = spec['expirationSeconds'] ?? DEFAULT_EXPIRATION_S;
  if (typeof exp !== 'number' || !Number.isInteger(exp)) errs.push(fieldError('Invalid', 'spec.expirationSeconds', exp, 'must be an integer'));
  else if (exp < MIN_EXPIRATION_S) errs.push(fieldError('Invalid', 'spec.expirationSeconds', exp, 'may not specify a duration less than 10 minutes'));
  else if (exp > MAX_EXPIRATION_S) errs.push(fieldError('Invalid', 'spec.expirationSeconds', exp, 'may not specify a duration larger than 2^32 seconds'));
  const audiences = Array.isArray(spec['audiences']) && spec['audiences'].length > 0 ? spec['audiences'].map(String) : deps.authenticator.apiAudiences;
  const ref = isMap(spec['boundObjectRef']) ? spec['boundObjectRef'] : undefined;
  if (ref !== undefined) {
    if (!['Pod', 'Secret', 'Node'].includes(String(ref['kind']))) {
      errs.push(fieldError('NotSupported', 'spec.boundObjectRef.kind', ref['kind'] ?? '', 'supported values: "Node", "Pod", "Secret"'));
    }
    if ((ref['apiVersion'] ?? 'v1') !== 'v1') errs.push(fieldError('Invalid', 'spec.boundObjectRef.apiVersion', ref['apiVersion'], 'must be v1'));
    if (typeof ref['name'] !== 'string' || ref['name'] === '') errs.push(fieldError('Required', 'spec.boundObjectRef.name', undefined));
  }
  if (errs.length > 0) throw invalid({ group: 'authentication.k8s.io', kind: 'TokenRequest' }, saName, errs);
  const claims = { pod: undefined as { name: string; uid: string } | undefined, secret: undefined as { name: string; uid: string } | undefined, node: undefined as { name: string; uid: string } | undefined };
  if (ref !== undefined) {
    const kind = String(ref['kind']);
    const name = String(ref['name']);
    const resource = kind === 'Pod' ? '/pods' : kind === 'Secret' ? '/secrets' : '/nodes';
    const target: KubeObject | undefined = deps.store.get(resource, kind === 'Node' ? undefined : namespace, name);
    const gr = { group: '', resource: resource.slice(1) };
    if (target === undefined) throw notFound(gr, name);
    if (typeof ref['uid'] === 'string' && ref['uid'] !== '' && ref['uid'] !== target.metadata.uid) {
      throw conflict(gr, name, `the UID in the bound object reference (${ref['uid']}) does not match the UID in record. The object might have been deleted and then recreated`);
    }
    const claim = { name, uid: target.metadata.uid! };
    if (kind === 'Pod') {
      const podSa = isMap(target['spec']) ? target['spec']['serviceAccountName'] : undefined;
      if (podSa !== saName) {
        throw conflict({ group: '', resource: 'serviceaccounts' }, saName, `cannot bind token for serviceaccount "${saName}" to pod running with different serviceaccount name.`);
      }
      claims.pod = claim;
      const nodeName = isMap(target['spec']) ? target['spec']['nodeName'] : undefined;
      if (typeof nodeName === 'string' && nodeName !== '') {
        const node = deps.store.get('/nodes', undefined, nodeName);
        if (node !== undefined) claims.node = { name: nodeName, uid: node.metadata.uid! };
      }
    } else if (kind === 'Secret') claims.secret = claim;
    else claims.node = claim;
  }
  const now = deps.now();
  const requested = exp as number;
  const extend = requested === KUBELET_TOKEN_S && claims.pod !== undefined && audiences.every((a) => deps.authenticator.apiAudiences.includes(a));
  const { token } = deps.signer.issue({
    namespace,
    serviceAccount: { name: saName, uid: sa.metadata.uid! },
    audiences,
    expirationSeconds: extend ? EXTENDED_S : requested,
    ...(claims.pod ? { pod: claims.pod } : {}),
    ...(claims.secret ? { secret: claims.secret } : {}),
    ...(claims.node ? { node: claims.node } : {}),
    ...(extend ? { warnAfterSeconds: requested } : {}),
    now,
  });
  spec['audiences'] = audiences;
  spec['expirationSeconds'] = requested;
  if (ref !== undefined) spec['boundObjectRef'] = ref;
  return {
    kind: 'TokenRequest',
    apiVersion: 'authentication.k8s.io/v1',
    metadata: { name: saName, namespace, creationTimestamp: rfc3339(now) },
    spec,
    status: { token, expirationTimestamp: rfc3339(now + requested * 1000) },
  };
}

function attributesFrom(spec: JsonMap, user: UserInfo, namespaceOverride?: string): Attributes {
  const ra = spec['resourceAttributes'];
  const nra = spec['nonResourceAttributes'];
  if (isMap(ra)) {
    const a: Attributes = {
      user,
      verb: String(ra['verb'] ?? ''),
      resourceRequest: true,
      apiGroup: String(ra['group'] ?? ''),
      resource: String(ra['resource'] ?? ''),
      subresource: String(ra['subresource'] ?? ''),
      namespace: namespaceOverride ?? String(ra['namespace'] ?? ''),
      name: String(ra['name'] ?? ''),
    };
    return a;
  }
  if (isMap(nra)) return { user, verb: String(nra['verb'] ?? ''), resourceRequest: false, path: String(nra['path'] ?? '') };
  throw invalid({ group: 'authorization.k8s.io', kind: 'SubjectAccessReview' }, '', [
    fieldError('Invalid', 'spec.resourceAttributes', null, 'exactly one of nonResourceAttributes or resourceAttributes must be specified'),
  ]);
}

function decided(out: JsonMap, store: Store, a: Attributes): JsonMap {
  const d = authorize(store, a);
  out['status'] = d.allowed ? { allowed: true, ...(d.reason ? { reason: d.reason } : {}) } : { allowed: false };
  return out;
}

/** SubjectAccessReview / SelfSubjectAccessReview / LocalSubjectAccessReview / SelfSubjectRulesReview / SelfSubjectReview. */
export function accessReview(deps: ReviewDeps, def: ResourceDef, namespace: string, body: JsonMap, ctx: RequestContext): JsonMap {
  const apiVersion = `${def.group}/v1`;
  const out = reviewShell(def.kind, apiVersion, body);
  const spec = out['spec'] as JsonMap;
  switch (def.kind) {
    case 'SubjectAccessReview':
    case 'LocalSubjectAccessReview': {
      const user = typeof spec['user'] === 'string' ? spec['user'] : '';
      const groups = Array.isArray(spec['groups']) ? spec['groups'].map(String) : [];
      if (user === '' && groups.length === 0) {
        throw invalid({ group: 'authorization.k8s.io', kind: def.kind }, '', [fieldError('Invalid', 'spec.user', '', 'at least one of user or group must be specified')]);
      }
      const subject: UserInfo = { username: user, groups, ...(isMap(spec['extra']) ? { extra: spec['extra'] as Record<string, string[]> } : {}) };
      if (def.kind === 'LocalSubjectAccessReview') {
        const ra = spec['resourceAttributes'];
        if (isMap(ra) && ra['namespace'] !== undefined && ra['namespace'] !== namespace) {
          throw invalid({ group: 'authorization.k8s.io', kind: def.kind }, '', [fieldError('Invalid', 'spec.resourceAttributes.namespace', ra['namespace'], 'must match metadata.namespace')]);
        }
        out['metadata'] = { namespace, creationTimestamp: null };
        return decided(out, deps.store, attributesFrom(spec, subject, namespace));
      }
      return decided(out, deps.store, attributesFrom(spec, subject));
    }
    case 'SelfSubjectAccessReview':
      return decided(out, deps.store, attributesFrom(spec, ctx.user));
    case 'SelfSubjectRulesReview': {
      const ns = typeof spec['namespace'] === 'string' ? spec['namespace'] : '';
      out['status'] = { ...rulesFor(deps.store, ctx.user, ns), incomplete: false };
      return out;
    }
    case 'SelfSubjectReview':
      delete out['spec'];
      out['status'] = { userInfo: userInfoJson(ctx.user) };
      return out;
    default:
      throw notFound({ group: def.group, resource: def.plural }, '');
  }
}
