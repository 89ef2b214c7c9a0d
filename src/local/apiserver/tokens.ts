/**
 * Service-account tokens: RS256 JWTs with the bound-token claims of the real server
 * (`kubernetes.io`: namespace, serviceaccount, pod, secret, node, warnafter), signed with the
 * API server's key, and their checks (signature, issuer, times, audiences). Whether the bound
 * objects still exist is checked by the caller (token-review.ts), which has the store.
 */
import { createPrivateKey, createPublicKey, randomUUID, sign, verify, type KeyObject } from 'node:crypto';
import { keyId } from './pki.js';

export interface ObjectRefClaim {
  name: string;
  uid: string;
}

export interface KubernetesClaims {
  namespace: string;
  serviceaccount: ObjectRefClaim;
  pod?: ObjectRefClaim;
  secret?: ObjectRefClaim;
  node?: ObjectRefClaim;
  /** Set on extended kubelet tokens: after this time a use is reported as stale. */
  warnafter?: number;
}

export interface TokenClaims {
  iss: string;
  sub: string;
  aud: string[];
  exp: number;
  iat: number;
  nbf: number;
  jti: string;
  'kubernetes.io': KubernetesClaims;
}

export interface IssueOptions {
  namespace: string;
  serviceAccount: ObjectRefClaim;
  audiences: string[];
  /** Lifetime of the token itself. */
  expirationSeconds: number;
  pod?: ObjectRefClaim;
  secret?: ObjectRefClaim;
  node?: ObjectRefClaim;
  warnAfterSeconds?: number;
  now: number;
}

/** What verification yields: the claims, or the reason the token is not valid. */
export type VerifyResult = { ok: true; claims: TokenClaims } | { ok: false; error: string };

/** Allowed clock skew when checking `exp`/`nbf`/`iat` (the real server's leeway is 60 s). */
const LEEWAY_S = 60;

function b64json(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url');
}

export class TokenSigner {
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;
  readonly kid: string;

  constructor(
    privateKeyPem: string,
    readonly publicKeyPem: string,
    readonly issuer: string,
  ) {
    this.privateKey = createPrivateKey(privateKeyPem);
    this.publicKey = createPublicKey(publicKeyPem);
    this.kid = keyId(publicKeyPem);
  }

  /** Signs a bound service-account token; returns the JWT and its claims. */
  issue(o: IssueOptions): { token: string; claims: TokenClaims } {
    const iat = Math.floor(o.now / 1000);
    const k8s: KubernetesClaims = { namespace: o.namespace, serviceaccount: o.serviceAccount };
    if (o.pod) k8s.pod = o.pod;
    if (o.secret) k8s.secret = o.secret;
    if (o.node) k8s.node = o.node;
    if (o.warnAfterSeconds !== undefined) k8s.warnafter = iat + o.warnAfterSeconds;
    const claims: TokenClaims = {
      aud: o.audiences,
      exp: iat + o.expirationSeconds,
      iat,
      iss: this.issuer,
      jti: randomUUID(),
      'kubernetes.io': k8s,
      nbf: iat,
      sub: `system:serviceaccount:${o.namespace}:${o.serviceAccount.name}`,
    };
    const signingInput = `${b64json({ alg: 'RS256', kid: this.kid })}.${b64json(claims)}`;
    const sig = sign('RSA-SHA256', Buffer.from(signingInput), this.privateKey).toString('base64url');
    return { token: `${signingInput}.${sig}`, claims };
  }

  /**
   * Checks format, signature, issuer and validity times, then that the token names at least one
   * of `audiences`. Messages are the real server's TokenReview errors.
   */
  verify(token: string, audiences: string[], now: number): VerifyResult {
    const parts = token.split('.');
    if (parts.length !== 3) return { ok: false, error: 'invalid bearer token' };
    let header: { alg?: unknown };
    let claims: TokenClaims;
    try {
      header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as { alg?: unknown };
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as TokenClaims;
    } catch {
      return { ok: false, error: 'invalid bearer token' };
    }
    if (typeof claims !== 'object' || claims === null || claims.iss !== this.issuer) return { ok: false, error: 'invalid bearer token' };
    if (header.alg !== 'RS256') return { ok: false, error: 'invalid bearer token, unexpected signature algorithm' };
    const ok = verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), this.publicKey, Buffer.from(parts[2]!, 'base64url'));
    if (!ok) return { ok: false, error: 'invalid bearer token, square/go-jose: error in cryptographic primitive' };
    const t = Math.floor(now / 1000);
    if (typeof claims.exp !== 'number' || t > claims.exp + LEEWAY_S) return { ok: false, error: 'invalid bearer token, service account token has expired' };
    if (typeof claims.nbf === 'number' && t < claims.nbf - LEEWAY_S) return { ok: false, error: 'invalid bearer token, service account token is not valid yet' };
    if (typeof claims.iat === 'number' && t < claims.iat - LEEWAY_S) return { ok: false, error: 'invalid bearer token, service account token is issued in the future' };
    const k8s = claims['kubernetes.io'];
    if (typeof k8s !== 'object' || k8s === null || typeof k8s.namespace !== 'string' || typeof k8s.serviceaccount?.name !== 'string') {
      return { ok: false, error: 'invalid bearer token, service account token claims are malformed' };
    }
    const aud = Array.isArray(claims.aud) ? claims.aud : typeof claims.aud === 'string' ? [claims.aud as string] : [];
    if (!aud.some((a) => audiences.includes(a))) {
      return { ok: false, error: `invalid bearer token, token audiences ${JSON.stringify(aud)} is invalid for the target audiences ${JSON.stringify(audiences)}` };
    }
    return { ok: true, claims: { ...claims, aud } };
  }
}
