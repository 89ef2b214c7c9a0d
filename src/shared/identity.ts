/** SPIFFE identities of workloads: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. */
import { AmbitError } from './errors.js';

export interface SpiffeId {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Parses a SPIFFE URI; exactly `ns/<ns>/sa/<sa>` after the trust domain, as ztunnel requires. */
export function parseSpiffeId(uri: string): SpiffeId {
  const fail = (why: string): never => {
    throw new AmbitError('AMBIT_ERR_SPIFFE_INVALID', `invalid SPIFFE id ${JSON.stringify(uri)}: ${why}`);
  };
  if (typeof uri !== 'string') fail('not a string');
  if (!uri.startsWith('spiffe://')) fail('must start with spiffe://');
  const rest = uri.slice('spiffe://'.length);
  const parts = rest.split('/');
  if (parts.length !== 5) fail('must be spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>');
  const [trustDomain, nsLit, namespace, saLit, serviceAccount] = parts as [string, string, string, string, string];
  if (!TRUST_DOMAIN.test(trustDomain)) fail(`bad trust domain ${JSON.stringify(trustDomain)}`);
  if (nsLit !== 'ns' || saLit !== 'sa') fail('path must be /ns/<namespace>/sa/<service-account>');
  if (!SEGMENT.test(namespace)) fail(`bad namespace ${JSON.stringify(namespace)}`);
  if (!SEGMENT.test(serviceAccount)) fail(`bad service account ${JSON.stringify(serviceAccount)}`);
  return { trustDomain, namespace, serviceAccount };
}

export function tryParseSpiffeId(uri: string): SpiffeId | undefined {
  try {
    return parseSpiffeId(uri);
  } catch {
    return undefined;
  }
}

export function formatSpiffeId(id: SpiffeId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** The AuthorizationPolicy principal form: the SPIFFE id without `spiffe://`. */
export function principalOf(id: SpiffeId): string {
  return `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

export function sameSpiffeId(a: SpiffeId, b: SpiffeId): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}
