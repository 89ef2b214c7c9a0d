/** A throwaway CA for tests: issues SPIFFE certificates for Node TLS (`key`, `cert`, `ca`). */
import { CertificateAuthority } from '../../src/controller/ca/authority.js';
import { createKeyAndCsr } from '../../src/shared/certs/csr.js';

export interface TestCa {
  ca: CertificateAuthority;
  rootPem: string;
  /** Key + chain (leaf first, root last) for `spiffeId`; default ttl 1 h. */
  issue(spiffeId: string, ttlMs?: number): { certChainPem: string[]; keyPem: string };
}

export function createTestCa(trustDomain = 'cluster.local'): TestCa {
  const ca = CertificateAuthority.generate({ trustDomain, ttlDays: 30 });
  return {
    ca,
    rootPem: ca.rootCertPem,
    issue(spiffeId: string, ttlMs = 3_600_000) {
      const { keyPem, csrPem } = createKeyAndCsr(spiffeId);
      return { certChainPem: ca.signCsr(csrPem, { identity: spiffeId, ttlMs }), keyPem };
    },
  };
}
