/**
 * Workload keys and CSRs: a fresh key per fetch (node:crypto), a PKCS#10 request (node-forge)
 * whose only SAN is the workload's SPIFFE URI, as ztunnel sends. RSA-2048: see the note on key
 * algorithm in src/controller/ca/authority.ts (node-forge cannot sign with EC keys).
 */
import { generateKeyPair, generateKeyPairSync } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { parseSpiffeId } from '../../shared/identity.js';

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

/** Builds and signs the CSR for `spiffeId` with the given key pair. */
export function buildCsr(spiffeId: string, keyPem: string, publicKeyPem: string): string {
  parseSpiffeId(spiffeId);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  csr.setSubject([]);
  csr.setAttributes([
    { name: 'extensionRequest', extensions: [{ name: 'subjectAltName', critical: true, altNames: [{ type: 6, value: spiffeId }] }] },
  ]);
  csr.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr).replace(/\r\n/g, '\n');
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
