import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';
import { buildCsr, der } from '../../../src/shared/certs/csr.js';

test('DER lengths: short form below 128, long form with the fewest bytes above', () => {
  assert.deepEqual([...der(0x04, Buffer.alloc(127)).subarray(0, 2)], [0x04, 127]);
  assert.deepEqual([...der(0x04, Buffer.alloc(128)).subarray(0, 3)], [0x04, 0x81, 128]);
  assert.deepEqual([...der(0x04, Buffer.alloc(256)).subarray(0, 4)], [0x04, 0x82, 1, 0]);
  assert.deepEqual([...der(0x04, Buffer.alloc(70_000)).subarray(0, 5)], [0x04, 0x83, 0x01, 0x11, 0x70]);
});

test('the node:crypto CSR is byte for byte the one node-forge builds (empty subject, critical URI SAN, SHA-256 RSA)', () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  for (const id of ['spiffe://cluster.local/ns/a/sa/b', `spiffe://cluster.local/ns/default/sa/${'x'.repeat(200)}`]) {
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = forge.pki.publicKeyFromPem(publicKey);
    csr.setSubject([]);
    csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', critical: true, altNames: [{ type: 6, value: id }] }] }]);
    csr.sign(forge.pki.privateKeyFromPem(privateKey), forge.md.sha256.create());
    const mine = buildCsr(id, privateKey, publicKey);
    assert.equal(mine, forge.pki.certificationRequestToPem(csr).replace(/\r\n/g, '\n'));
    assert.ok(forge.pki.certificationRequestFromPem(mine).verify(), 'signature verifies');
  }
});

test('a CSR for something that is not a SPIFFE id is refused before signing', () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  assert.throws(() => buildCsr('https://example.com/x', privateKey, publicKey));
});
