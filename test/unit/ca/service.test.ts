import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import {
  StaticTokenAuthenticator, bearerToken, createNodeAuthorizer, generateNodeToken, resolveTtlMs, DEFAULT_CERT_TTL_MS, MAX_CERT_TTL_MS,
} from '../../../src/controller/ca/service.js';
import { parseSubjectAltName } from '../../../src/shared/tls.js';

const md = (auth?: string) => {
  const m = new grpc.Metadata();
  if (auth !== undefined) m.set('authorization', auth);
  return m;
};

test('ttl: non-positive request → default, large request → capped at max', () => {
  const cases: Array<[number, number]> = [
    [0, DEFAULT_CERT_TTL_MS],
    [-5, DEFAULT_CERT_TTL_MS],
    [3600, 3_600_000],
    [365 * 86_400, MAX_CERT_TTL_MS],
  ];
  for (const [sec, want] of cases) assert.equal(resolveTtlMs(sec, DEFAULT_CERT_TTL_MS, MAX_CERT_TTL_MS), want, `validity ${sec}s`);
  assert.equal(resolveTtlMs(0, 10 * 86_400_000, 86_400_000), 86_400_000, 'a default above the max is capped too');
});

test('bearer tokens are read from authorization metadata', () => {
  assert.equal(bearerToken(md('Bearer abc')), 'abc');
  assert.equal(bearerToken(md('bearer abc')), 'abc');
  assert.equal(bearerToken(md('Basic abc')), undefined);
  assert.equal(bearerToken(md()), undefined);
});

test('StaticTokenAuthenticator maps tokens to nodes and refuses unknown tokens', async () => {
  const t1 = generateNodeToken();
  const t2 = generateNodeToken();
  assert.notEqual(t1, t2);
  const auth = new StaticTokenAuthenticator({ [t1]: 'node-a' });
  auth.set(t2, 'node-b');
  assert.deepEqual(await auth.authenticate(md(`Bearer ${t1}`)), { node: 'node-a' });
  assert.deepEqual(await auth.authenticate(md(`Bearer ${t2}`)), { node: 'node-b' });
  assert.equal(await auth.authenticate(md('Bearer nope')), undefined);
  assert.equal(await auth.authenticate(md()), undefined);
  auth.delete(t1);
  assert.equal(await auth.authenticate(md(`Bearer ${t1}`)), undefined);
});

test('node authorizer allows only service accounts with a pod on the node', () => {
  const pods = new Map([['node-a', [{ namespace: 'default', serviceAccount: 'web' }]]]);
  const authz = createNodeAuthorizer((node) => pods.get(node) ?? []);
  assert.equal(authz.isAllowed('node-a', 'spiffe://cluster.local/ns/default/sa/web'), true);
  assert.equal(authz.isAllowed('node-a', 'spiffe://cluster.local/ns/default/sa/db'), false);
  assert.equal(authz.isAllowed('node-a', 'spiffe://cluster.local/ns/other/sa/web'), false);
  assert.equal(authz.isAllowed('node-b', 'spiffe://cluster.local/ns/default/sa/web'), false);
  assert.equal(authz.isAllowed('node-a', 'garbage'), false);
});

test('subjectAltName text parsing handles several types and quoted values', () => {
  assert.deepEqual(parseSubjectAltName('URI:spiffe://td/ns/a/sa/b, DNS:x.example, IP Address:127.0.0.1'), {
    uris: ['spiffe://td/ns/a/sa/b'], dnsNames: ['x.example'], ips: ['127.0.0.1'],
  });
  assert.deepEqual(parseSubjectAltName('DNS:"a, b", URI:spiffe://td/ns/a/sa/b'), { uris: ['spiffe://td/ns/a/sa/b'], dnsNames: ['a, b'], ips: [] });
  assert.deepEqual(parseSubjectAltName(undefined), { uris: [], dnsNames: [], ips: [] });
});
