import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { CertificateAuthority } from '../../src/controller/ca/authority.js';
import { createCaService } from '../../src/controller/ca/service.js';
import { generateToken, refuseIdentity, StaticTokenAuthenticator, type AccessView, type PodRecord } from '../../src/controller/callers.js';
import { createCaClient, type CaClient } from '../../src/shared/certs/ca-client.js';
import { createKeyAndCsr } from '../../src/shared/certs/csr.js';
import { CertManager } from '../../src/shared/certs/cert-manager.js';
import { readCertificateFacts, verifyChain } from '../../src/shared/tls.js';
import { isAmbitError, type AmbitError } from '../../src/shared/errors.js';

const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/default/sa/web`;
const DB = `spiffe://${TD}/ns/default/sa/db`;

async function startCa(t: import('node:test').TestContext, ttl: { defaultTtlMs?: number; maxTtlMs?: number } = { defaultTtlMs: 2 * 3_600_000, maxTtlMs: 3 * 3_600_000 }) {
  const ca = CertificateAuthority.generate({ trustDomain: TD });
  const tokenA = generateToken();
  const tokenWaypoint = generateToken();
  const pods: PodRecord[] = [
    { namespace: 'default', name: 'web-1', serviceAccount: 'web', node: 'node-a', labels: {} },
    { namespace: 'default', name: 'db-1', serviceAccount: 'db', node: 'node-b', labels: {} },
    { namespace: 'default', name: 'waypoint-1', serviceAccount: 'waypoint', node: 'node-b', labels: {} },
  ];
  const view: AccessView = {
    trustDomain: TD,
    podsOnNode: (node) => pods.filter((p) => p.node === node),
    pod: (ns, name) => pods.find((p) => p.namespace === ns && p.name === name),
  };
  const authenticator = new StaticTokenAuthenticator({ [tokenA]: 'node-a' });
  authenticator.set(tokenWaypoint, { kind: 'pod', namespace: 'default', pod: 'waypoint-1', serviceAccount: 'waypoint' });
  const registry = new Registry();
  const svc = createCaService({
    authority: ca,
    authenticator,
    authorize: (caller, spiffe) => refuseIdentity(caller, spiffe, view),
    ...ttl,
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
  return { ca, tokenA, tokenWaypoint, client, count, pods, port };
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

test('the CA never signs past its maximum lifetime, which defaults to the configured one', async (t) => {
  const { tokenA, client } = await startCa(t, { defaultTtlMs: 2 * 3_600_000 });
  const chain = await client(tokenA).fetchCertificate(WEB, createKeyAndCsr(WEB).csrPem, 90 * 86_400);
  const life = readCertificateFacts(chain[0]!).notAfter.getTime() - Date.now();
  assert.ok(life > 2 * 3_600_000 - 120_000 && life <= 2 * 3_600_000, `asked for 90 days, got ${life} ms; the configured 2 h is the maximum`);
});

test('a pod credential obtains only its own identity', async (t) => {
  const { tokenWaypoint, client, count } = await startCa(t);
  const own = `spiffe://${TD}/ns/default/sa/waypoint`;
  const chain = await client(tokenWaypoint).fetchCertificate(own, createKeyAndCsr(own).csrPem, 3600);
  assert.equal(readCertificateFacts(chain[0]!).spiffeId, own);
  await assert.rejects(
    client(tokenWaypoint).fetchCertificate(DB, createKeyAndCsr(DB).csrPem, 3600),
    (e) => grpcCode(e) === grpc.status.PERMISSION_DENIED && (e as Error).message.includes('only request its own identity'),
    'a waypoint pod on node-b may not have the identity of another pod on its node',
  );
  assert.equal(await count('ambit_ca_requests_total', { result: 'denied' }), 1);
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
  // 20 s certificates, renewed at half-life: on a busy machine a 2 s certificate could expire
  // between a poll and its assertion; 20 s leaves ~10 s of margin after the renewal is due.
  const mgr = new CertManager({ fetcher: client(tokenA), rootsPem: [ca.rootCertPem], ttlSec: 20, registry });
  t.after(() => mgr.destroy());
  const first = await mgr.getCertificate(WEB);
  let latest = first;
  // Bounded: polls every 100 ms for up to 30 s for a renewal due after ~10 s.
  for (let i = 0; i < 300 && latest === first; i++) {
    await new Promise((r) => setTimeout(r, 100));
    latest = await mgr.getCertificate(WEB);
    assert.ok(latest.notAfter.getTime() > Date.now(), 'a valid certificate is always served');
  }
  assert.notEqual(latest, first, 'certificate rotated');
  assert.notEqual(readCertificateFacts(latest.certChainPem[0]!).serialNumber, readCertificateFacts(first.certChainPem[0]!).serialNumber);
  assert.ok(((await registry.getSingleMetric('ambit_cert_rotations_total')!.get()).values[0]?.value ?? 0) >= 1);
});
