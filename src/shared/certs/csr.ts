/**
 * Workload keys and CSRs: a fresh key per fetch and a PKCS#10 request (RFC 2986) whose only SAN is
 * the workload's SPIFFE URI, as ztunnel sends, both with node:crypto. The request is a handful of
 * fixed DER structures around the key's SubjectPublicKeyInfo, so it is encoded here rather than
 * with node-forge (whose pure-JS RSA signing took tens of ms of the agent's thread per identity and
 * whose modules cost ~8 MB of agent memory). RSA-2048: see the note on key algorithm in
 * src/controller/ca/authority.ts (the CA parses requests with node-forge, which reads only RSA).
 */
import { createPrivateKey, createPublicKey, generateKeyPair, generateKeyPairSync, sign } from 'node:crypto';
import { promisify } from 'node:util';
import { parseSpiffeId } from '../identity.js';

export interface KeyAndCsr {
  /** PKCS#8 PEM. Never log it. */
  keyPem: string;
  csrPem: string;
}

const generateKeyPairAsync = promisify(generateKeyPair);
const RSA_OPTIONS = {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
} as const;

/** One DER element: tag, definite length (short or long form), content. */
export function der(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  const n = body.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

const SEQUENCE = 0x30;
const SET = 0x31;
const OID_EXTENSION_REQUEST = Buffer.from('06092a864886f70d01090e', 'hex'); // 1.2.840.113549.1.9.14
const OID_SUBJECT_ALT_NAME = Buffer.from('0603551d11', 'hex'); // 2.5.29.17
const SHA256_WITH_RSA = Buffer.from('300d06092a864886f70d01010b0500', 'hex'); // { 1.2.840.113549.1.1.11, NULL }
const VERSION_1 = Buffer.from('020100', 'hex'); // INTEGER 0
const EMPTY_NAME = Buffer.from('3000', 'hex');
const CRITICAL = Buffer.from('0101ff', 'hex'); // BOOLEAN TRUE

function pem(label: string, body: Buffer): string {
  const b64 = body.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Builds and signs (SHA-256 with RSA, PKCS#1 v1.5) the CSR for `spiffeId` with the given key pair. */
export function buildCsr(spiffeId: string, keyPem: string, publicKeyPem: string): string {
  parseSpiffeId(spiffeId);
  const spki = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  // GeneralNames { uniformResourceIdentifier [6] IMPLICIT IA5String }
  const sans = der(SEQUENCE, der(0x86, Buffer.from(spiffeId, 'ascii')));
  const extension = der(SEQUENCE, OID_SUBJECT_ALT_NAME, CRITICAL, der(0x04, sans));
  const extensionRequest = der(SEQUENCE, OID_EXTENSION_REQUEST, der(SET, der(SEQUENCE, extension)));
  // attributes [0] IMPLICIT SET OF Attribute
  const info = der(SEQUENCE, VERSION_1, EMPTY_NAME, spki, der(0xa0, extensionRequest));
  const signature = sign('sha256', info, createPrivateKey(keyPem));
  const csr = der(SEQUENCE, info, SHA256_WITH_RSA, der(0x03, Buffer.from([0]), signature));
  return pem('CERTIFICATE REQUEST', csr);
}

/** A new RSA-2048 key and a CSR for `spiffeId`; blocks for the key generation (tens of ms). */
export function createKeyAndCsr(spiffeId: string): KeyAndCsr {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', RSA_OPTIONS);
  return { keyPem: privateKey, csrPem: buildCsr(spiffeId, privateKey, publicKey) };
}

/** As createKeyAndCsr, with the key generated on the thread pool so the event loop keeps running. */
export async function createKeyAndCsrAsync(spiffeId: string): Promise<KeyAndCsr> {
  parseSpiffeId(spiffeId);
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', RSA_OPTIONS);
  return { keyPem: privateKey, csrPem: buildCsr(spiffeId, privateKey, publicKey) };
}
