/**
 * Authentication: bearer tokens (the admin token of the operator's kubeconfig, or a
 * service-account JWT whose bound objects still exist), anonymous requests, and impersonation
 * headers. Yields the user info TokenReview and RBAC see, with the groups and extras the real
 * server adds.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Store } from './store.js';
import type { TokenClaims, TokenSigner } from './tokens.js';

export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

export const ADMIN_USER = 'ambit-admin';
export const MASTERS_GROUP = 'system:masters';
export const AUTHENTICATED_GROUP = 'system:authenticated';
export const ANONYMOUS: UserInfo = { username: 'system:anonymous', groups: ['system:unauthenticated'] };
/** The user the server's own controllers act as. */
export const SYSTEM_USER: UserInfo = { username: 'system:apiserver', groups: [MASTERS_GROUP, AUTHENTICATED_GROUP] };

/** A deleted pod's tokens stay valid this long (the real server's leeway). */
const DELETED_LEEWAY_MS = 60_000;

export type TokenResult = { ok: true; user: UserInfo; audiences: string[] } | { ok: false; error: string };

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Groups of a service account user. */
export function serviceAccountGroups(namespace: string): string[] {
  return ['system:serviceaccounts', `system:serviceaccounts:${namespace}`];
}

const SA_PREFIX = 'system:serviceaccount:';

/** Splits `system:serviceaccount:<ns>:<name>`; undefined for other users. */
export function parseServiceAccountUser(username: string): { namespace: string; name: string } | undefined {
  if (!username.startsWith(SA_PREFIX)) return undefined;
  const rest = username.slice(SA_PREFIX.length).split(':');
  if (rest.length !== 2 || rest[0] === '' || rest[1] === '') return undefined;
  return { namespace: rest[0]!, name: rest[1]! };
}

export class Authenticator {
  constructor(
    private readonly store: Store,
    private readonly signer: TokenSigner,
    private readonly adminToken: string,
    /** Audiences a token must name to authenticate to the API itself. */
    readonly apiAudiences: string[],
    private readonly now: () => number,
  ) {}

  /** A bearer token as TokenReview checks it: against `audiences` (the API's when empty). */
  authenticateToken(token: string, audiences: string[]): TokenResult {
    const want = audiences.length > 0 ? audiences : this.apiAudiences;
    if (sameSecret(token, this.adminToken)) {
      return { ok: true, user: { username: ADMIN_USER, groups: [MASTERS_GROUP, AUTHENTICATED_GROUP] }, audiences: want };
    }
    const v = this.signer.verify(token, want, this.now());
    if (!v.ok) return { ok: false, error: v.error };
    const bound = this.checkBound(v.claims);
    if (bound !== undefined) return { ok: false, error: `invalid bearer token, ${bound}` };
    return { ok: true, user: this.userOf(v.claims), audiences: want.filter((a) => v.claims.aud.includes(a)) };
  }

  /** Why the token's bound objects no longer back it, or undefined when they do. */
  private checkBound(c: TokenClaims): string | undefined {
    const k = c['kubernetes.io'];
    const ns = k.namespace;
    const sa = this.store.get('/serviceaccounts', ns, k.serviceaccount.name);
    if (sa === undefined) return `serviceaccounts "${k.serviceaccount.name}" not found`;
    if (sa.metadata.uid !== k.serviceaccount.uid) return `service account UID (${sa.metadata.uid}) does not match claim (${k.serviceaccount.uid})`;
    const now = this.now();
    const deletedLongAgo = (ts: string | undefined): boolean => ts !== undefined && Date.parse(ts) + DELETED_LEEWAY_MS < now;
    if (k.pod !== undefined) {
      const pod = this.store.get('/pods', ns, k.pod.name);
      if (pod === undefined) return `pods "${k.pod.name}" not found`;
      if (pod.metadata.uid !== k.pod.uid) return `pod UID (${pod.metadata.uid}) does not match claim (${k.pod.uid})`;
      if (deletedLongAgo(pod.metadata.deletionTimestamp)) return `pod "${k.pod.name}" is being deleted`;
    }
    if (k.secret !== undefined) {
      const secret = this.store.get('/secrets', ns, k.secret.name);
      if (secret === undefined) return `secrets "${k.secret.name}" not found`;
      if (secret.metadata.uid !== k.secret.uid) return `secret UID (${secret.metadata.uid}) does not match claim (${k.secret.uid})`;
    }
    if (k.node !== undefined && k.pod === undefined) {
      const node = this.store.get('/nodes', undefined, k.node.name);
      if (node === undefined) return `nodes "${k.node.name}" not found`;
      if (node.metadata.uid !== k.node.uid) return `node UID (${node.metadata.uid}) does not match claim (${k.node.uid})`;
    }
    return undefined;
  }

  private userOf(c: TokenClaims): UserInfo {
    const k = c['kubernetes.io'];
    const extra: Record<string, string[]> = {};
    if (k.pod) {
      extra['authentication.kubernetes.io/pod-name'] = [k.pod.name];
      extra['authentication.kubernetes.io/pod-uid'] = [k.pod.uid];
    }
    if (k.node) {
      extra['authentication.kubernetes.io/node-name'] = [k.node.name];
      extra['authentication.kubernetes.io/node-uid'] = [k.node.uid];
    }
    extra['authentication.kubernetes.io/credential-id'] = [`JTI=${c.jti}`];
    return {
      username: `system:serviceaccount:${k.namespace}:${k.serviceaccount.name}`,
      uid: k.serviceaccount.uid,
      groups: [...serviceAccountGroups(k.namespace), AUTHENTICATED_GROUP],
      extra,
    };
  }

  /**
   * The user of a request from its Authorization header: anonymous without one; undefined when a
   * token is given but invalid (a 401).
   */
  authenticateHeader(authorization: string | undefined): UserInfo | undefined {
    if (authorization === undefined || authorization === '') return ANONYMOUS;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!m) return undefined;
    const r = this.authenticateToken(m[1]!, this.apiAudiences);
    return r.ok ? r.user : undefined;
  }
}

/** Impersonation headers of a request, when any is present. */
export interface ImpersonationRequest {
  user?: string;
  uid?: string;
  groups: string[];
  extra: Record<string, string[]>;
}

export function readImpersonation(headers: Record<string, string | string[] | undefined>): ImpersonationRequest | undefined {
  const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);
  const many = (v: string | string[] | undefined): string[] =>
    v === undefined ? [] : (Array.isArray(v) ? v : [v]).flatMap((x) => x.split(',').map((s) => s.trim())).filter((s) => s !== '');
  const user = one(headers['impersonate-user']);
  const uid = one(headers['impersonate-uid']);
  const groups = many(headers['impersonate-group']);
  const extra: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith('impersonate-extra-')) extra[decodeURIComponent(k.slice('impersonate-extra-'.length))] = many(v);
  }
  if (user === undefined && groups.length === 0 && uid === undefined && Object.keys(extra).length === 0) return undefined;
  const r: ImpersonationRequest = { groups, extra };
  if (user !== undefined) r.user = user;
  if (uid !== undefined) r.uid = uid;
  return r;
}
