/** Istio L4 authorization semantics, table-driven. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authorize, cidrContains, stringMatches, type ConnAttributes } from '../../../src/agent/policy/authorize.js';
import { emptyMatch, type Authorization, type AuthzMatch, type AuthzRule } from '../../../src/shared/model.js';

function m(x: Partial<AuthzMatch>): AuthzMatch {
  return emptyMatch(x);
}
function pol(name: string, action: Authorization['action'], rules: AuthzRule[], extra: Partial<Authorization> = {}): Authorization {
  return { name, namespace: 'ns', scope: 'namespace', action, rules, dryRun: false, ...extra };
}
/** One rule, one clause, one match. */
function simple(name: string, action: Authorization['action'], x: Partial<AuthzMatch>): Authorization {
  return pol(name, action, [{ clauses: [{ matches: [m(x)] }] }]);
}

const mtls: ConnAttributes = { srcPrincipal: 'cluster.local/ns/front/sa/web', srcNamespace: 'front', srcIp: '10.0.1.5', dstIp: '10.0.2.7', dstPort: 8080 };
const plain: ConnAttributes = { srcIp: '10.0.1.5', dstIp: '10.0.2.7', dstPort: 8080 };
const v6: ConnAttributes = { srcPrincipal: 'cluster.local/ns/front/sa/web', srcNamespace: 'front', srcIp: 'fd00::5', dstIp: 'fd00:1::7', dstPort: 443 };

const cases: Array<{ name: string; policies: Authorization[]; conn: ConnAttributes; allowed: boolean; reason: string; policy?: string; strict?: boolean }> = [
  { name: 'no policies allow', policies: [], conn: mtls, allowed: true, reason: 'no_policy' },
  { name: 'ALLOW exact principal', policies: [simple('a', 'ALLOW', { principals: [{ exact: 'cluster.local/ns/front/sa/web' }] })], conn: mtls, allowed: true, reason: 'allow_match', policy: 'ns/a' },
  { name: 'ALLOW other principal denies', policies: [simple('a', 'ALLOW', { principals: [{ exact: 'cluster.local/ns/x/sa/y' }] })], conn: mtls, allowed: false, reason: 'no_allow_match' },
  { name: 'ALLOW principal prefix', policies: [simple('a', 'ALLOW', { principals: [{ prefix: 'cluster.local/ns/front/' }] })], conn: mtls, allowed: true, reason: 'allow_match', policy: 'ns/a' },
  { name: 'ALLOW principal suffix', policies: [simple('a', 'ALLOW', { principals: [{ suffix: '/sa/web' }] })], conn: mtls, allowed: true, reason: 'allow_match', policy: 'ns/a' },
  { name: 'ALLOW principal presence (mtls)', policies: [simple('a', 'ALLOW', { principals: [{ presence: true }] })], conn: mtls, allowed: true, reason: 'allow_match', policy: 'ns/a' },
  { name: 'ALLOW principal presence (plaintext)', policies: [simple('a', 'ALLOW', { principals: [{ presence: true }] })], conn: plain, allowed: false, reason: 'no_allow_match' },
  { name: 'DENY notPrincipals presence denies plaintext (converted STRICT)', policies: [simple('d', 'DENY', { notPrincipals: [{ presence: true }] })], conn: plain, allowed: false, reason: 'deny_match', policy: 'ns/d' },
  { name: 'DENY notPrincipals presence lets mtls through', policies: [simple('d', 'DENY', { notPrincipals: [{ presence: true }] })], conn: mtls, allowed: true, reason: 'no_policy' },
  { name: 'DENY wins over ALLOW', policies: [simple('a', 'ALLOW', { namespaces: [{ exact: 'front' }] }), simple('d', 'DENY', { destinationPorts: [8080] })], conn: mtls, allowed: false, reason: 'deny_match', policy: 'ns/d' },
  { name: 'DENY not matching then ALLOW', policies: [simple('d', 'DENY', { destinationPorts: [9090] }), simple('a', 'ALLOW', { namespaces: [{ exact: 'front' }] })], conn: mtls, allowed: true, reason: 'allow_match', policy: 'ns/a' },
  { name: 'only DENY policies, none match: allow', policies: [simple('d', 'DENY', { namespaces: [{ exact: 'other' }] })], conn: mtls, allowed: true, reason: 'no_policy' },
  { name: 'notNamespaces', policies: [simple('d', 'DENY', { notNamespaces: [{ exact: 'front' }] })], conn: mtls, allowed: true, reason: 'no_policy' },
  { name: 'notNamespaces denies others', policies: [simple('d', 'DENY', { notNamespaces: [{ exact: 'back' }] })], conn: mtls, allowed: false, reason: 'deny_match', policy: 'ns/d' },
  { name: 'source CIDR v4', policies: [simple('a', 'ALLOW', { sourceIps: ['10.0.1.0/24'] })], conn: plain, allowed: true, reason: 'allow_match', policy: 'ns/a' },
  { name: 'source CIDR v4 miss', policies: [simple('a', 'ALLOW', { sourceIps: ['10.0.9.0/24'] })], conn: plain, allowed: false, reason: 'no_allow_match' },
  { name: 'source bare address', policies: [simple('a', 'ALLOW', { sourceIps: ['10.0.1.5'] })], conn: plain, allowed: true, reason: 'allow_match', policy: 'ns/a' },
  { name: 'notSourceIps', policies: [simple('d', 'DENY', { notSourceIps: ['10.0.0.0/8'] })], conn: plain, allowed: true, reason: 'no_policy' },
  { name: 'destination CIDR v6', policies: [simple('a', 'ALLOW', { destinationIps: ['fd00:1::/64'] })], conn: v6, allowed: true, reason: 'allow_match', policy: 'ns/a' },
  { name: 'v4 CIDR does not match v6', policies: [simple('a', 'ALLOW', { sourceIps: ['0.0.0.0/0'] })], conn: v6, allowed: false, reason: 'no_allow_match' },
  { name: 'notDestinationPorts', policies: [simple('a', 'ALLOW', { notDestinationPorts: [8080] })], conn: mtls, allowed: false, reason: 'no_allow_match' },
  { name: 'types AND within one match', policies: [simple('a', 'ALLOW', { namespaces: [{ exact: 'front' }], destinationPorts: [9090] })], conn: mtls, allowed: false, reason: 'no_allow_match' },
  { name: 'values OR within one type', policies: [simple('a', 'ALLOW', { destinationPorts: [1, 8080] })], conn: mtls, allowed: true, reason: 'allow_match', policy: 'ns/a' },
  {
    name: 'matches OR within a clause',
    policies: [pol('a', 'ALLOW', [{ clauses: [{ matches: [m({ destinationPorts: [1] }), m({ namespaces: [{ exact: 'front' }] })] }] }])],
    conn: mtls,
    allowed: true,
    reason: 'allow_match',
    policy: 'ns/a',
  },
  {
    name: 'clauses AND within a rule',
    policies: [pol('a', 'ALLOW', [{ clauses: [{ matches: [m({ destinationPorts: [8080] })] }, { matches: [m({ namespaces: [{ exact: 'other' }] })] }] }])],
    conn: mtls,
    allowed: false,
    reason: 'no_allow_match',
  },
  {
    name: 'rules OR',
    policies: [pol('a', 'ALLOW', [{ clauses: [{ matches: [m({ destinationPorts: [1] })] }] }, { clauses: [] }])],
    conn: mtls,
    allowed: true,
    reason: 'allow_match',
    policy: 'ns/a',
  },
  { name: 'ALLOW with no rules allows nothing', policies: [pol('a', 'ALLOW', [])], conn: mtls, allowed: false, reason: 'no_allow_match' },
  { name: 'DENY with no rules denies nothing', policies: [pol('d', 'DENY', [])], conn: mtls, allowed: true, reason: 'no_policy' },
  { name: 'empty rule matches everything', policies: [pol('d', 'DENY', [{ clauses: [] }])], conn: mtls, allowed: false, reason: 'deny_match', policy: 'ns/d' },
  { name: 'dry-run DENY does not deny', policies: [pol('d', 'DENY', [{ clauses: [] }], { dryRun: true })], conn: mtls, allowed: true, reason: 'no_policy' },
  { name: 'AUDIT does not count as ALLOW', policies: [pol('au', 'AUDIT', [{ clauses: [] }])], conn: mtls, allowed: true, reason: 'no_policy' },
  { name: 'STRICT denies plaintext', policies: [], conn: plain, allowed: false, reason: 'strict_mtls', strict: true },
  { name: 'STRICT admits mtls', policies: [], conn: mtls, allowed: true, reason: 'no_policy', strict: true },
  { name: 'STRICT is checked before ALLOW', policies: [simple('a', 'ALLOW', { sourceIps: ['10.0.0.0/8'] })], conn: plain, allowed: false, reason: 'strict_mtls', strict: true },
];

for (const c of cases) {
  test(`authorize: ${c.name}`, () => {
    const d = authorize(c.policies, c.conn, c.strict ? { peerAuthentication: 'STRICT' } : {});
    assert.equal(d.allowed, c.allowed);
    assert.equal(d.reason, c.reason);
    assert.equal(d.policy, c.policy);
  });
}

test('authorize: AUDIT and dry-run matches are reported in audit[]', () => {
  const d = authorize([pol('au', 'AUDIT', [{ clauses: [] }]), pol('dr', 'DENY', [{ clauses: [] }], { dryRun: true })], mtls);
  assert.deepEqual(d.audit, ['ns/au', 'dry-run:ns/dr']);
});

test('stringMatches: absent values match nothing', () => {
  assert.equal(stringMatches({ presence: true }, undefined), false);
  assert.equal(stringMatches({ prefix: '' }, undefined), false);
  assert.equal(stringMatches({ exact: 'a' }, 'a'), true);
});

test('cidrContains: v4, v6, mapped, malformed', () => {
  const rows: Array<[string, string, boolean]> = [
    ['10.0.0.0/8', '10.255.1.1', true],
    ['10.0.0.0/8', '11.0.0.1', false],
    ['10.0.0.0/8', '::ffff:10.1.2.3', true],
    ['0.0.0.0/0', '1.2.3.4', true],
    ['fd00::/8', 'fd12::1', true],
    ['fd00::/8', 'fe80::1', false],
    ['::/0', '2001:db8::1', true],
    ['192.168.1.1', '192.168.1.1', true],
    ['192.168.1.1/33', '192.168.1.1', false],
    ['not-an-ip/8', '10.0.0.1', false],
    ['10.0.0.0/8', 'garbage', false],
    ['10.0.0.0/x', '10.0.0.1', false],
  ];
  for (const [cidr, ip, want] of rows) assert.equal(cidrContains(cidr, ip), want, `${cidr} ∋ ${ip}`);
});
