/**
 * Certificate facts for every component, read with node:crypto's X509Certificate: SPIFFE URI SAN,
 * validity window, and chain verification to a set of roots. No key material passes through here.
 */
import { X509Certificate, createPublicKey } from 'node:crypto';
import { AmbitError } from './errors.js';
import { tryParseSpiffeId } from './identity.js';

export interface SubjectAltNames {
  uris: string[];
  dnsNames: string[];
  ips: string[];
}

export interface CertificateFacts extends SubjectAltNames {
  /** The SPIFFE URI SAN when there is exactly one URI SAN and it parses as a SPIFFE id. */
  spiffeId: string | undefined;
  notBefore: Date;
  notAfter: Date;
  serialNumber: string;
  fingerprint256: string;
  isCa: boolean;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Splits concatenated PEM certificates into an array (each ends with a newline). */
export function splitPemChain(text: string): string[] {
  return (text.match(PEM_CERT) ?? []).map((p) => p + '\n');
}

function toX509(cert: X509Certificate | string | Buffer): X509Certificate {
  return cert instanceof X509Certificate ? cert : new X509Certificate(cert);
}

/**
 * Parses Node's `subjectAltName` text (`URI:spiffe://..., DNS:a, IP Address:1.2.3.4`). Node quotes
 * a value as a JSON string when it contains separators, so those are decoded, not split.
 */
export function parseSubjectAltName(text: string | undefined): SubjectAltNames {
  const out: SubjectAltNames = { uris: [], dnsNames: [], ips: [] };
  if (!text) return out;
  let i = 0;
  // Bounded: every iteration consumes at least one character.
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon).trim();
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        value = text.slice(colon + 2, j);
      }
      const sep = text.indexOf(', ', j);
      next = sep < 0 ? text.length : sep + 2;
    } else {
      const sep = text.indexOf(', ', colon + 1);
      value = text.slice(colon + 1, sep < 0 ? text.length : sep);
      next = sep < 0 ? text.length : sep + 2;
    }
    if (type === 'URI') out.uris.push(value);
    else if (type === 'DNS') out.dnsNames.push(value);
    else if (type === 'IP Address') out.ips.push(value);
    i = Math.max(next, colon + 1);
  }
  return out;
}

/** The SPIFFE id a certificate carries, or undefined when it has none or more than one URI SAN. */
export function spiffeIdOf(cert: X509Certificate | string | Buffer): string | undefined {
  const { uris } = parseSubjectAltName(toX509(cert).subjectAltName);
  if (uris.length !== 1) return undefined;
  return tryParseSpiffeId(uris[0]!) ? uris[0] : undefined;
}

export function readCertificateFacts(cert: X509Certificate | string | Buffer): CertificateFacts {
  const x = toX509(cert);
  const sans = parseSubjectAltName(x.subjectAltName);
  return {
    ...sans,
    spiffeId: sans.uris.length === 1 && tryParseSpiffeId(sans.uris[0]!) ? sans.uris[0] : undefined,
    notBefore: new Date(x.validFromDate.getTime()),
    notAfter: new Date(x.validToDate.getTime()),
    serialNumber: x.serialNumber,
    fingerprint256: x.fingerprint256,
    isCa: x.ca,
  };
}

/** True when `keyPem` is the private key for the certificate's public key. */
export function keyMatchesCertificate(keyPem: string, cert: X509Certificate | string | Buffer): boolean {
  const a = createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
  const b = toX509(cert).publicKey.export({ type: 'spki', format: 'der' });
  return a.equals(b);
}

/**
 * Checks that `chainPem` (leaf first) links, by issuer name and signature, to one of `rootsPem`,
 * and that every certificate is valid at `now`. Throws AMBIT_ERR_TUNNEL_IDENTITY naming the break.
 * The chain may or may not include the root itself.
 */
export function verifyChain(chainPem: readonly string[], rootsPem: readonly string[], now: Date = new Date()): void {
  const fail = (why: string): never => {
    throw new AmbitError('AMBIT_ERR_TUNNEL_IDENTITY', `certificate chain does not verify: ${why}`);
  };
  if (chainPem.length === 0) fail('the chain is empty');
  if (rootsPem.length === 0) fail('no trust roots configured');
  const chain = chainPem.map((p) => toX509(p));
  const roots = rootsPem.map((p) => toX509(p));
  const t = now.getTime();
  for (const [i, c] of chain.entries()) {
    if (c.validFromDate.getTime() > t) fail(`certificate ${i} is not valid before ${c.validFromDate.toISOString()}`);
    if (c.validToDate.getTime() <= t) fail(`certificate ${i} expired at ${c.validToDate.toISOString()}`);
  }
  const isRoot = (c: X509Certificate): boolean => roots.some((r) => r.fingerprint256 === c.fingerprint256);
  for (let i = 0; i < chain.length; i++) {
    const c = chain[i]!;
    if (isRoot(c)) return;
    const anchor = roots.find((r) => c.checkIssued(r) && c.verify(r.publicKey));
    if (anchor) {
      if (anchor.validToDate.getTime() <= t) fail(`root ${anchor.subject} expired`);
      return;
    }
    const parent = chain[i + 1];
    if (!parent) fail(`certificate ${i} (${c.subject || c.subjectAltName || 'no subject'}) is not issued by any trusted root`);
    if (!parent!.ca) fail(`certificate ${i + 1} is not a CA but is used as issuer`);
    if (!c.checkIssued(parent!) || !c.verify(parent!.publicKey)) fail(`certificate ${i + 1} did not issue certificate ${i}`);
  }
  fail('no trusted root reached');
}
