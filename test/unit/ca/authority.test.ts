import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, stat, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { CertificateAuthority, controllerIdentity, readCsr, generateRsaKeyPair, ROOT_KEY_FILE, ROOT_CERT_FILE } from '../../../src/controller/ca/authority.js';
import { createKeyAndCsr, createKeyAndCsrAsync, buildCsr } from '../../../src/shared/certs/csr.js';
import { readCertificateFacts, verifyChain, keyMatchesCertificate } from '../../../src/shared/tls.js';
import { isAmbitError } from '../../../src/shared/errors.js';
import { createTestCa } from '../../helpers/test-ca.js';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/default/sa/web`;
const ca = CertificateAuthority.generate({ trustDomain: TD });

test('signed leaf carries only the requested SPIFFE URI SAN and the workload usages', () => {
  const { keyPem, csrPem } = createKeyAndCsr(ID);
  const chain = ca.signCsr(csrPem, { identity: ID, ttlMs: 3_600_000 });
  const leaf = new X509Certificate(chain[0]!);
  assert.equal(leaf.subjectAltName, `URI:${ID}`);
  assert.equal(leaf.ca, false);
  assert.deepEqual(leaf.keyUsage?.slice().sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  const facts = readCertificateFacts(leaf);
  assert.equal(facts.spiffeId, ID);
  assert.ok(keyMatchesCertificate(keyPem, leaf), 'leaf holds the CSR key');
  const forgeLeaf = forge.pki.certificateFromPem(chain[0]!);
  const ku = forgeLeaf.getExtension('keyUsage') as Record<string, boolean>;
  assert.equal(ku.digitalSignature, true);
  assert.equal(ku.keyEncipherment, true);
  assert.equal(ku.keyCertSign, false);
});

test('chain is leaf first and root last, and verifies to the root', () => {
  const { csrPem } = createKeyAndCsr(ID);
  const chain = ca.signCsr(csrPem, { identity: ID, ttlMs: 3_600_000 });
  assert.equal(chain.length, 2);
  assert.equal(chain[chain.length - 1], ca.rootCertPem);
  const leaf = new X509Certificate(chain[0]!);
  const root = new X509Certificate(chain[1]!);
  assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey));
  assert.equal(root.ca, true);
  verifyChain(chain, [ca.rootCertPem]);
  const other = CertificateAuthority.generate({ trustDomain: TD });
  assert.throws(() => verifyChain(chain, [other.rootCertPem]), (e) => isAmbitError(e, 'AMBIT_ERR_TUNNEL_IDENTITY'));
});

test('a CSR naming a foreign SAN is refused', () => {
  const { csrPem } = createKeyAndCsr(`spiffe://${TD}/ns/kube-system/sa/admin`);
  assert.throws(
    () => ca.signCsr(csrPem, { identity: ID, ttlMs: 60_000 }),
    (e) => isAmbitError(e, 'AMBIT_ERR_CA_CSR_INVALID') && e.message.includes('kube-system'),
  );
});

test('a CSR with an extra DNS SAN is refused', () => {
  const { keyPem, publicKeyPem } = generateRsaKeyPair();
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  csr.setSubject([]);
  csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: ID }, { type: 2, value: 'evil.example' }] }] }]);
  csr.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  const pem = forge.pki.certificationRequestToPem(csr);
  assert.deepEqual(readCsr(pem), { uris: [ID], otherSans: ['2:evil.example'] });
  assert.throws(() => ca.signCsr(pem, { identity: ID, ttlMs: 60_000 }), (e) => isAmbitError(e, 'AMBIT_ERR_CA_CSR_INVALID'));
});

test('a tampered CSR (signature mismatch) and garbage are refused', () => {
  const a = createKeyAndCsr(ID);
  const b = generateRsaKeyPair();
  // CSR built with b's public key but signed by a's private key.
  const bad = buildCsr(ID, a.keyPem, b.publicKeyPem);
  assert.throws(() => ca.signCsr(bad, { identity: ID, ttlMs: 60_000 }), (e) => isAmbitError(e, 'AMBIT_ERR_CA_CSR_INVALID') && /signature/.test(e.message));
  assert.throws(() => ca.signCsr('hello', { identity: ID, ttlMs: 60_000 }), (e) => isAmbitError(e, 'AMBIT_ERR_CA_CSR_INVALID'));
});

test('a CSR without SAN is signed with the requested identity only', () => {
  const { keyPem, publicKeyPem } = generateRsaKeyPair();
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  csr.setSubject([{ name: 'commonName', value: 'whatever' }]);
  csr.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  const chain = ca.signCsr(forge.pki.certificationRequestToPem(csr), { identity: ID, ttlMs: 60_000 });
  assert.equal(new X509Certificate(chain[0]!).subjectAltName, `URI:${ID}`);
});

test('identities of another trust domain or malformed ids are refused', () => {
  const other = 'spiffe://other.domain/ns/default/sa/web';
  const { csrPem } = createKeyAndCsr(other);
  assert.throws(() => ca.signCsr(csrPem, { identity: other, ttlMs: 60_000 }), (e) => isAmbitError(e, 'AMBIT_ERR_CA_IDENTITY_DENIED'));
  assert.throws(() => ca.signCsr(csrPem, { identity: 'spiffe://cluster.local/web', ttlMs: 60_000 }), (e) => isAmbitError(e, 'AMBIT_ERR_CA_CSR_INVALID'));
});

test('leaf validity follows ttl and the injected clock, and never outlives the root', () => {
  const t0 = Date.UTC(2030, 0, 1);
  const short = CertificateAuthority.generate({ trustDomain: TD, now: () => t0, ttlDays: 1 });
  const { csrPem } = createKeyAndCsr(ID);
  const facts = readCertificateFacts(short.signCsr(csrPem, { identity: ID, ttlMs: 3_600_000 })[0]!);
  assert.equal(facts.notAfter.getTime(), t0 + 3_600_000);
  assert.ok(facts.notBefore.getTime() <= t0);
  const long = readCertificateFacts(short.signCsr(csrPem, { identity: ID, ttlMs: 10 * 86_400_000 })[0]!);
  assert.equal(long.notAfter.getTime(), short.notAfter.getTime(), 'capped at the root expiry');
});

test('loadOrCreate persists the root with 0600 files and reloads the same root', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-ca-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const caDir = join(dir, 'ca');
  const first = await CertificateAuthority.loadOrCreate({ dir: caDir, trustDomain: TD });
  for (const f of [ROOT_CERT_FILE, ROOT_KEY_FILE]) {
    assert.equal((await stat(join(caDir, f))).mode & 0o777, 0o600, `${f} is 0600`);
  }
  const second = await CertificateAuthority.loadOrCreate({ dir: caDir, trustDomain: TD });
  assert.equal(second.rootCertPem, first.rootCertPem);
  const { csrPem } = createKeyAndCsr(ID);
  verifyChain(second.signCsr(csrPem, { identity: ID, ttlMs: 60_000 }), [first.rootCertPem]);
  const keyPem = await readFile(join(caDir, ROOT_KEY_FILE), 'utf8');
  assert.match(keyPem, /BEGIN PRIVATE KEY/);
  await rm(join(caDir, ROOT_KEY_FILE));
  await assert.rejects(CertificateAuthority.loadOrCreate({ dir: caDir, trustDomain: TD }), (e) => isAmbitError(e, 'AMBIT_ERR_CA_INIT'));
});

test('fromPem refuses a key that does not match the certificate and a non-CA certificate', () => {
  const other = generateRsaKeyPair();
  assert.throws(() => CertificateAuthority.fromPem({ certPem: ca.rootCertPem, keyPem: other.keyPem, trustDomain: TD }), (e) => isAmbitError(e, 'AMBIT_ERR_CA_INIT'));
  const tc = createTestCa();
  const leaf = tc.issue(ID);
  assert.throws(() => CertificateAuthority.fromPem({ certPem: leaf.certChainPem[0]!, keyPem: leaf.keyPem, trustDomain: TD }), (e) => isAmbitError(e, 'AMBIT_ERR_CA_INIT'));
});

test('issueServingCert names the controller identity plus DNS and IP SANs', () => {
  const { certChainPem, keyPem } = ca.issueServingCert({ dnsNames: ['ambit-controller.ambit-system.svc'], ips: ['127.0.0.1', '::1'], ttlMs: 3_600_000 });
  const facts = readCertificateFacts(certChainPem[0]!);
  assert.deepEqual(facts.uris, [controllerIdentity(TD)]);
  assert.deepEqual(facts.dnsNames, ['ambit-controller.ambit-system.svc']);
  assert.deepEqual(facts.ips, ['127.0.0.1', '0:0:0:0:0:0:0:1']);
  assert.ok(keyMatchesCertificate(keyPem, certChainPem[0]!));
  verifyChain(certChainPem, [ca.rootCertPem]);
});

test('createKeyAndCsrAsync yields a CSR the CA signs', async () => {
  const { csrPem } = await createKeyAndCsrAsync(ID);
  assert.deepEqual(readCsr(csrPem).uris, [ID]);
});
