import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { CertificateAuthority } from '../../src/controller/ca/authority.js';
import { createCaService, createNodeAuthorizer, StaticTokenAuthenticator, generateNodeToken, type PodIdentityRef } from '../../src/controller/ca/service.js';
import { createCaClient, type CaClient } from '../../src/shared/certs/ca-client.js';
import { createKeyAndCsr } from '../../src/shared/certs/csr.js';
import { CertManager } from '../../src/shared/certs/cert-manager.js';
import { readCertificateFacts, verifyChain } from '../../src/shared/tls.js';
import { isAmbitError, type AmbitError } from '../../src/shared/errors.js';

const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/default/sa/web`;
const DB = `spiffe://${TD}/ns/default/sa/db`;

async function startCa(t: import('node:test').TestContext) {
  const ca = CertificateAuthority.generate({ trustDomain: TD });
  const tokenA = generateNodeToken();
  const pods = new Map<string, PodIdentityRef[]>([
    ['node-a', [{ namespace: 'default', serviceAccount: 'web' }]],
    ['node-b', [{ namespace: 'default', serviceAccount: 'db' }]],
  ]);
  const registry = new Registry();
  const svc = createCaService({
    authority: ca,
    authenticator: new StaticTokenAuthenticator({ [tokenA]: 'node-a' }),
    authorizer: createNodeAuthorizer((node) => pods.get(node) ?? []),
    defaultTtlMs: 2 * 3_600_000,
    maxTtlMs: 3 * 3_600_000,
    registry,
  });
  const serving = ca.issueServingCert({ ips: ['127.0.0.1'], dnsNames: ['localhost'], ttlMs: 3_600_000 });
  const server = new grpc.Server();
  server.addService(svc.definition, svc.implementation);
  const creds = grpc.ServerCredentials.createSsl(null, [
    { private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.certChainPem.join('\n')) },
  ], false);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  t.after(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  const clients: CaClient[] = [];
  t.after(() => clients.forEach((c) => c.close()));
  const client = (token: string) => {
    const c = createCaClient({ address: `127.0.0.1:${port}`, rootsPem: [ca.rootCertPem], token, timeoutMs: 10_000 });
    clients.push(c);
    return c;
  };
  const count = async (name: string, labels: Record<string, string> = {}) => {
    const m = await registry.getSingleMetric(name)!.get();
    return m.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
  };
  return { ca, tokenA, client, count, pods, port };
}

const grpcCode = (e: unknown) => (e as AmbitError).details?.grpcCode;

test('CA over gRPC+TLS issues a certificate for an identity with a pod on the caller node', async (t) => {
  const { ca, tokenA, client, count } = await startCa(t);
  const { csrPem } = createKeyAndCsr(WEB);
  const chain = await client(tokenA).fetchCertificate(WEB, csrPem, 3600);
  assert.equal(chain.length, 2);
  assert.equal(chain[1], ca.rootCertPem);
  verifyChain(chain, [ca.rootCertPem]);
  const facts = readCertificateFacts(chain[0]!);
  assert.equal(facts.spiffeId, WEB);
  const lifeMs = facts.notAfter.getTime() - Date.now();
  assert.ok(lifeMs > 3_500_000 && lifeMs <= 3_600_000, `requested 1 h (got ${lifeMs} ms)`);
  assert.equal(await count('ambit_ca_requests_total', { result: 'issued' }), 1);
  assert.equal(await count('ambit_ca_certificates_issued_total'), 1);
});

test('validity 0 gets the default ttl and a huge validity is capped', async (t) => {
  const { tokenA, client } = await startCa(t);
  const c = client(tokenA);
  const life = async (sec: number) => {
    const chain = await c.fetchCertificate(WEB, createKeyAndCsr(WEB).csrPem, sec);
    return readCertificateFacts(chain[0]!).notAfter.getTime() - Date.now();
  };
  const d = await life(0);
  assert.ok(d > 2 * 3_600_000 - 120_000 && d <= 2 * 3_600_000, `default 2 h (got ${d})`);
  const m = await life(365 * 86_400);
  assert.ok(m > 3 * 3_600_000 - 120_000 && m <= 3 * 3_600_000, `max 3 h (got ${m})`);
});

test('an identity whose service account has no pod on the caller node is refused with PERMISSION_DENIED', async (t) => {
  const { tokenA, client, count } = await startCa(t);
  await assert.rejects(
    client(tokenA).fetchCertificate(DB, createKeyAndCsr(DB).csrPem, 3600),
    (e) => isAmbitError(e, 'AMBIT_ERR_CERT_FETCH') && grpcCode(e) === grpc.status.PERMISSION_DENIED && e.message.includes(DB) && e.message.includes('node-a'),
  );
  assert.equal(await count('ambit_ca_requests_total', { result: 'denied' }), 1);
  assert.equal(await count('ambit_ca_certificates_issued_total'), 0);
});

test('another trust domain is refused with PERMISSION_DENIED', async (t) => {
  const { tokenA, client } = await startCa(t);
  const foreign = 'spiffe://evil.domain/ns/default/sa/web';
  await assert.rejects(
    client(tokenA).fetchCertificate(foreign, createKeyAndCsr(foreign).csrPem, 3600),
    (e) => grpcCode(e) === grpc.status.PERMISSION_DENIED && (e as Error).message.includes('evil.domain'),
  );
});

test('a CSR naming another identity than the impersonated one is INVALID_ARGUMENT', async (t) => {
  const { tokenA, client, count } = await startCa(t);
  await assert.rejects(
    client(tokenA).fetchCertificate(WEB, createKeyAndCsr(DB).csrPem, 3600),
    (e) => grpcCode(e) === grpc.status.INVALID_ARGUMENT,
  );
  await assert.rejects(client(tokenA).fetchCertificate(WEB, 'not a csr', 3600), (e) => grpcCode(e) === grpc.status.INVALID_ARGUMENT);
  assert.equal(await count('ambit_ca_requests_total', { result: 'invalid' }), 2);
});

test('a bad token is refused with UNAUTHENTICATED', async (t) => {
  const { client, count } = await startCa(t);
  await assert.rejects(
    client('wrong-token').fetchCertificate(WEB, createKeyAndCsr(WEB).csrPem, 3600),
    (e) => isAmbitError(e, 'AMBIT_ERR_CERT_FETCH') && grpcCode(e) === grpc.status.UNAUTHENTICATED,
  );
  assert.equal(await count('ambit_ca_requests_total', { result: 'unauthenticated' }), 1);
});

test('a client that does not trust the controller root cannot connect', async (t) => {
  const { tokenA, port } = await startCa(t);
  const rogueRoot = CertificateAuthority.generate({ trustDomain: TD }).rootCertPem;
  const other = createCaClient({ address: `127.0.0.1:${port}`, rootsPem: [rogueRoot], token: tokenA, timeoutMs: 3000 });
  t.after(() => other.close());
  await assert.rejects(other.fetchCertificate(WEB, createKeyAndCsr(WEB).csrPem, 3600), (e) => grpcCode(e) === grpc.status.UNAVAILABLE);
});

test('cert manager over the real CA rotates a short-lived certificate and keeps serving', async (t) => {
  const { tokenA, client, ca } = await startCa(t);
  const registry = new Registry();
  const mgr = new CertManager({ fetcher: client(tokenA), rootsPem: [ca.rootCertPem], ttlSec: 2, registry });
  t.after(() => mgr.destroy());
  const first = await mgr.getCertificate(WEB);
  let latest = first;
  // Bounded: at most 100 polls of 50 ms (5 s) for a renewal due after ~1 s.
  for (let i = 0; i < 100 && latest === first; i++) {
    await new Promise((r) => setTimeout(r, 50));
    latest = await mgr.getCertificate(WEB);
    assert.ok(latest.notAfter.getTime() > Date.now(), 'a valid certificate is always served');
  }
  assert.notEqual(latest, first, 'certificate rotated');
  assert.notEqual(readCertificateFacts(latest.certChainPem[0]!).serialNumber, readCertificateFacts(first.certChainPem[0]!).serialNumber);
  assert.ok(((await registry.getSingleMetric('ambit_cert_rotations_total')!.get()).values[0]?.value ?? 0) >= 1);
});
