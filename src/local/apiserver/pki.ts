/**
 * The API server's key material, created once in its state folder and reused on restart: a local
 * CA (10 years), a serving certificate it signs for the addresses and names clients use, the
 * service-account signing key, and the admin bearer token. Keys come from node:crypto; the
 * certificates are built with node-forge (RSA, as src/controller/ca/authority.ts explains).
 * Files are 0600 in a 0700 folder; nothing here is ever logged.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import { writeAtomic } from './state-file.js';

const DAY_MS = 86_400_000;
const CA_DAYS = 3650;
const SERVING_DAYS = 365;
/** A serving certificate this close to its end is replaced at start. */
const RENEW_BEFORE_MS = 30 * DAY_MS;

export interface ApiServerPki {
  caCertPem: string;
  caKeyPem: string;
  servingCertPem: string;
  servingKeyPem: string;
  /** PKCS#8 PEM of the RSA key that signs service-account tokens. */
  saKeyPem: string;
  /** SPKI PEM of the same key (TokenReview, JWKS). */
  saPublicKeyPem: string;
  adminToken: string;
}

function rsaKeyPair(): { keyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { keyPem: privateKey, publicKeyPem: publicKey };
}

function serial(): string {
  // Positive 16-byte serial (top bit cleared).
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString('hex');
}

function makeCa(now: number): { certPem: string; keyPem: string } {
  const { keyPem, publicKeyPem } = rsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(now - 60_000);
  cert.validity.notAfter = new Date(now + CA_DAYS * DAY_MS);
  const subject = [{ name: 'commonName', value: 'ambit-local-apiserver-ca' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

function makeServing(caCertPem: string, caKeyPem: string, hosts: string[], now: number): { certPem: string; keyPem: string } {
  const { keyPem, publicKeyPem } = rsaKeyPair();
  const ca = forge.pki.certificateFromPem(caCertPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(now - 60_000);
  cert.validity.notAfter = new Date(now + SERVING_DAYS * DAY_MS);
  cert.setSubject([{ name: 'commonName', value: 'kube-apiserver' }]);
  cert.setIssuer(ca.subject.attributes);
  const altNames = hosts.map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h }));
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(caKeyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

/** The names a serving certificate must carry: the given hosts plus the in-cluster names. */
export function servingHosts(hosts: string[], clusterDomain: string, serviceIp: string): string[] {
  const all = [
    ...hosts,
    'localhost',
    '127.0.0.1',
    serviceIp,
    'kubernetes',
    'kubernetes.default',
    'kubernetes.default.svc',
    `kubernetes.default.svc.${clusterDomain}`,
  ];
  return [...new Set(all.filter((h) => h !== ''))];
}

function certCovers(certPem: string, hosts: string[], now: number): boolean {
  try {
    const x = new X509Certificate(certPem);
    if (Date.parse(x.validTo) - now < RENEW_BEFORE_MS) return false;
    const san = x.subjectAltName ?? '';
    return hosts.every((h) => (isIP(h) ? san.includes(`IP Address:${h}`) : san.includes(`DNS:${h}`)));
  } catch {
    return false;
  }
}

const FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  servingCert: 'serving.crt',
  servingKey: 'serving.key',
  saKey: 'sa.key',
  adminToken: 'admin.token',
};

/**
 * Loads the key material from `dir` (creating what is missing); a serving certificate that does
 * not cover `hosts` or is near its end is reissued from the same CA.
 */
export function loadOrCreatePki(dir: string, hosts: string[], now = Date.now()): ApiServerPki {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const read = (f: string): string | undefined => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : undefined);
    let caCertPem = read(FILES.caCert);
    let caKeyPem = read(FILES.caKey);
    if (caCertPem === undefined || caKeyPem === undefined) {
      const ca = makeCa(now);
      caCertPem = ca.certPem;
      caKeyPem = ca.keyPem;
      writeAtomic(join(dir, FILES.caKey), caKeyPem);
      writeAtomic(join(dir, FILES.caCert), caCertPem, 0o644);
    }
    let servingCertPem = read(FILES.servingCert);
    let servingKeyPem = read(FILES.servingKey);
    if (servingCertPem === undefined || servingKeyPem === undefined || !certCovers(servingCertPem, hosts, now)) {
      const s = makeServing(caCertPem, caKeyPem, hosts, now);
      servingCertPem = s.certPem;
      servingKeyPem = s.keyPem;
      writeAtomic(join(dir, FILES.servingKey), servingKeyPem);
      writeAtomic(join(dir, FILES.servingCert), servingCertPem, 0o644);
    }
    let saKeyPem = read(FILES.saKey);
    if (saKeyPem === undefined) {
      saKeyPem = rsaKeyPair().keyPem;
      writeAtomic(join(dir, FILES.saKey), saKeyPem);
    }
    const saPublicKeyPem = createPublicKey(createPrivateKey(saKeyPem)).export({ type: 'spki', format: 'pem' }).toString();
    let adminToken = read(FILES.adminToken)?.trim();
    if (adminToken === undefined || adminToken === '') {
      adminToken = randomBytes(32).toString('base64url');
      writeAtomic(join(dir, FILES.adminToken), adminToken);
    }
    return { caCertPem, caKeyPem, servingCertPem, servingKeyPem, saKeyPem, saPublicKeyPem, adminToken };
  } catch (e) {
    if (e instanceof AmbitError) throw e;
    throw new AmbitError('AMBIT_ERR_APISERVER_STATE', `cannot load or create the API server's keys in ${dir}: ${errorMessage(e)}`, { cause: e });
  }
}

/** The `kid` the real server puts in token headers: SHA-256 of the DER public key, base64url. */
export function keyId(publicKeyPem: string): string {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64url');
}
