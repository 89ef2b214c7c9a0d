/** A throwaway CA for tests: issues SPIFFE certificates for Node TLS (`key`, `cert`, `ca`). */
import { X509Certificate } from 'node:crypto';
import { CertificateAuthority } from '../../src/controller/ca/authority.js';
import { createKeyAndCsr } from '../../src/shared/certs/csr.js';

export interface TestCa {
  ca: CertificateAuthority;
  rootPem: string;
  /** Key + chain (leaf first, root last) for `spiffeId`; default ttl 1 h. */
  issue(spiffeId: string, ttlMs?: number): { certChainPem: string[]; keyPem: string };
  /** As issue, but signed as if the clock read `atMs` (expired or not-yet-valid leaves). */
  issueAt(spiffeId: string, atMs: number, ttlMs?: number): { certChainPem: string[]; keyPem: string };
  /** A fresh certificate for `spiffeId` in the shape an agent's getCertificate answers (roots and expiry added). */
  workloadCert(spiffeId: string): { certChainPem: string[]; keyPem: string; rootsPem: string[]; notAfter: Date };
}

export function createTestCa(trustDomain = 'cluster.local'): TestCa {
  let shiftMs = 0;
  const ca = CertificateAuthority.generate({ trustDomain, ttlDays: 30, now: () => Date.now() + shiftMs });
  const issue = (spiffeId: string, ttlMs = 3_600_000): { certChainPem: string[]; keyPem: string } => {
    const { keyPem, csrPem } = createKeyAndCsr(spiffeId);
    return { certChainPem: ca.signCsr(csrPem, { identity: spiffeId, ttlMs }), keyPem };
  };
  return {
    ca,
    rootPem: ca.rootCertPem,
    issue,
    workloadCert(spiffeId) {
      const c = issue(spiffeId);
      return { ...c, rootsPem: [ca.rootCertPem], notAfter: new Date(new X509Certificate(c.certChainPem[0]!).validTo) };
    },
    issueAt(spiffeId, atMs, ttlMs) {
      shiftMs = atMs - Date.now();
      try {
        return issue(spiffeId, ttlMs);
      } finally {
        shiftMs = 0;
      }
    },
  };
}
