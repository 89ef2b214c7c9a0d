import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveTtlMs, DEFAULT_CERT_TTL_MS, MAX_CERT_TTL_MS } from '../../../src/controller/ca/service.js';
import { parseSubjectAltName } from '../../../src/shared/tls.js';

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

test('subjectAltName text parsing handles several types and quoted values', () => {
  assert.deepEqual(parseSubjectAltName('URI:spiffe://td/ns/a/sa/b, DNS:x.example, IP Address:127.0.0.1'), {
    uris: ['spiffe://td/ns/a/sa/b'], dnsNames: ['x.example'], ips: ['127.0.0.1'],
  });
  assert.deepEqual(parseSubjectAltName('DNS:"a, b", URI:spiffe://td/ns/a/sa/b'), { uris: ['spiffe://td/ns/a/sa/b'], dnsNames: ['a, b'], ips: [] });
  assert.deepEqual(parseSubjectAltName(undefined), { uris: [], dnsNames: [], ips: [] });
});
