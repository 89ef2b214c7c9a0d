import { test } from 'node:test';
import assert from 'node:assert/strict';
import { translate } from '../../../src/controller/translate/translate.js';
import type { KubeObject } from '../../../src/controller/objects.js';
import type { Authorization, AuthzMatch } from '../../../src/shared/model.js';
import { emptyMatch } from '../../../src/controller/translate/authorization.js';
import { authorizationPolicy, peerAuthentication, pod } from './helpers.js';

const match = (fields: Partial<AuthzMatch>): AuthzMatch => ({ ...emptyMatch(), ...fields });

function onlyAuthorization(objects: KubeObject[]): Authorization {
  const { authorizations } = translate(objects);
  assert.equal(authorizations.length, 1, `expected one Authorization, got ${JSON.stringify(authorizations)}`);
  return authorizations[0]!;
}

// ---- PeerAuthentication ----

const strict = { mtls: { mode: 'STRICT' } };
const permissive = { mtls: { mode: 'PERMISSIVE' } };
const unset = { mtls: {} };
const sel = (spec: Record<string, unknown>, labels: Record<string, string> = { app: 'web' }) => ({ selector: { matchLabels: labels }, ...spec });

const PEER: Array<{ name: string; policies: KubeObject[]; want: 'STRICT' | 'PERMISSIVE'; ports?: Record<string, string> }> = [
  { name: 'nothing → PERMISSIVE', policies: [], want: 'PERMISSIVE' },
  { name: 'mesh STRICT', policies: [peerAuthentication('default', 'istio-system', strict)], want: 'STRICT' },
  { name: 'namespace PERMISSIVE beats mesh STRICT', policies: [peerAuthentication('default', 'istio-system', strict), peerAuthentication('ns', 'demo', permissive)], want: 'PERMISSIVE' },
  { name: 'namespace UNSET inherits mesh STRICT', policies: [peerAuthentication('default', 'istio-system', strict), peerAuthentication('ns', 'demo', unset)], want: 'STRICT' },
  { name: 'workload STRICT beats namespace PERMISSIVE', policies: [peerAuthentication('ns', 'demo', permissive), peerAuthentication('w', 'demo', sel(strict))], want: 'STRICT' },
  { name: 'workload UNSET inherits namespace STRICT', policies: [peerAuthentication('ns', 'demo', strict), peerAuthentication('w', 'demo', sel(unset))], want: 'STRICT' },
  { name: 'workload DISABLE counts as PERMISSIVE', policies: [peerAuthentication('ns', 'demo', strict), peerAuthentication('w', 'demo', sel({ mtls: { mode: 'DISABLE' } }))], want: 'PERMISSIVE' },
  { name: 'selector not matching the pod is ignored', policies: [peerAuthentication('w', 'demo', sel(strict, { app: 'other' }))], want: 'PERMISSIVE' },
  { name: 'selector in another namespace is ignored', policies: [peerAuthentication('w', 'prod', sel(strict))], want: 'PERMISSIVE' },
  { name: 'selector policy in root namespace is not mesh-wide', policies: [peerAuthentication('w', 'istio-system', sel(strict))], want: 'PERMISSIVE' },
  {
    name: 'port-level settings resolve UNSET to the workload mode and DISABLE to PERMISSIVE',
    policies: [peerAuthentication('w', 'demo', sel({ mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'PERMISSIVE' }, '9090': { mode: 'UNSET' }, '9091': { mode: 'DISABLE' } } }))],
    want: 'STRICT',
    ports: { '8080': 'PERMISSIVE', '9090': 'STRICT', '9091': 'PERMISSIVE' },
  },
];

for (const c of PEER) {
  test(`PeerAuthentication: ${c.name}`, () => {
    const { workloads } = translate([...c.policies, pod('web')]);
    assert.equal(workloads[0]!.peerAuthentication, c.want);
    assert.deepEqual(workloads[0]!.portPeerAuthentication, c.ports ?? {});
  });
}

test('PeerAuthentication: DISABLE gets a condition saying it is treated as PERMISSIVE; no Authorization is emitted for STRICT', () => {
  const { conditions, authorizations } = translate([peerAuthentication('off', 'demo', { mtls: { mode: 'DISABLE' } }), peerAuthentication('default', 'istio-system', strict), pod('web')]);
  assert.deepEqual(authorizations, [], 'the agent enforces STRICT from the Workload field');
  const off = conditions.find((c) => c.objectKey === 'PeerAuthentication/demo/off')!;
  assert.equal(off.reason, 'PartiallyApplied');
  assert.match(off.message, /DISABLE is ignored in ambient mode.*PERMISSIVE/);
  assert.equal(conditions.find((c) => c.objectKey === 'PeerAuthentication/istio-system/default')!.reason, 'Accepted');
});

test('PeerAuthentication: of two namespace-wide policies the oldest applies; the other is reported', () => {
  const { workloads, conditions } = translate([
    peerAuthentication('newer', 'demo', permissive, '2026-01-02T00:00:00Z'),
    peerAuthentication('older', 'demo', strict, '2026-01-01T00:00:00Z'),
    pod('web'),
  ]);
  assert.equal(workloads[0]!.peerAuthentication, 'STRICT');
  const c = conditions.find((x) => x.objectKey === 'PeerAuthentication/demo/newer')!;
  assert.equal(c.status, 'False');
  assert.equal(c.reason, 'Conflicted');
});

// ---- AuthorizationPolicy ----

test('AuthorizationPolicy scopes: global (root, no selector), namespace (no selector), workload (selector)', () => {
  const { authorizations, workloads } = translate([
    authorizationPolicy('g', 'istio-system', { action: 'DENY', rules: [{}] }),
    authorizationPolicy('n', 'demo', { rules: [{}] }),
    authorizationPolicy('w', 'demo', { selector: { matchLabels: { app: 'web' } }, rules: [{}] }),
    authorizationPolicy('empty-selector', 'demo', { selector: { matchLabels: {} }, rules: [{}] }),
    pod('web'),
    pod('db'),
  ]);
  assert.deepEqual(
    authorizations.map((a) => [a.namespace, a.name, a.scope, a.action]),
    [
      ['demo', 'empty-selector', 'namespace', 'ALLOW'],
      ['demo', 'n', 'namespace', 'ALLOW'],
      ['demo', 'w', 'workload', 'ALLOW'],
      ['istio-system', 'g', 'global', 'DENY'],
    ],
  );
  const byName = new Map(workloads.map((w) => [w.name, w]));
  assert.deepEqual(byName.get('web')!.authorizationPolicies, ['demo/w']);
  assert.deepEqual(byName.get('db')!.authorizationPolicies, []);
});

test('AuthorizationPolicy: a selector policy in the root namespace selects in every namespace; elsewhere only its own', () => {
  const { workloads } = translate([
    authorizationPolicy('root-sel', 'istio-system', { selector: { matchLabels: { app: 'web' } }, rules: [{}] }),
    authorizationPolicy('prod-sel', 'prod', { selector: { matchLabels: { app: 'web' } }, rules: [{}] }),
    pod('web'),
  ]);
  assert.deepEqual(workloads[0]!.authorizationPolicies, ['istio-system/root-sel']);
});

test('AuthorizationPolicy: empty spec allows nothing; rules [{}] allow everything; DENY without rules matches nothing', () => {
  const { authorizations } = translate([
    authorizationPolicy('a-deny-all', 'demo', {}),
    authorizationPolicy('b-allow-all', 'demo', { action: 'ALLOW', rules: [{}] }),
    authorizationPolicy('c-deny-nothing', 'demo', { action: 'DENY' }),
  ]);
  assert.deepEqual(authorizations.map((a) => [a.action, a.rules]), [
    ['ALLOW', []],
    ['ALLOW', [{ clauses: [] }]],
    ['DENY', []],
  ]);
});

test('AuthorizationPolicy: from/to/when map to ANDed clauses of ORed matches with Istio string matching', () => {
  const a = onlyAuthorization([
    authorizationPolicy('p', 'demo', {
      action: 'ALLOW',
      rules: [
        {
          from: [
            { source: { principals: ['cluster.local/ns/demo/sa/sleep', 'cluster.local/ns/prod/*', '*/sa/admin', '*'], notNamespaces: ['kube-system'] } },
            { source: { namespaces: ['team-*'], ipBlocks: ['10.0.0.0/8'], remoteIpBlocks: ['192.168.1.1'], notIpBlocks: ['10.1.0.0/16'] } },
            { source: { serviceAccounts: ['demo/sleep'], notServiceAccounts: ['demo/bad'], notPrincipals: ['x'] } },
          ],
          to: [{ operation: { ports: ['8080', '9090'] } }, { operation: { notPorts: ['22'] } }],
          when: [
            { key: 'source.ip', values: ['10.2.0.0/16'], notValues: ['10.2.3.4'] },
            { key: 'source.namespace', values: ['demo'] },
            { key: 'source.principal', notValues: ['cluster.local/ns/demo/sa/evil'] },
            { key: 'destination.port', values: ['8080'] },
            { key: 'destination.ip', values: ['10.96.0.10'] },
            { key: 'remote.ip', values: ['172.16.0.0/12'] },
            { key: 'source.serviceAccount', values: ['demo/sleep'] },
          ],
        },
      ],
    }),
  ]);
  assert.equal(a.rules.length, 1);
  assert.deepEqual(a.rules[0]!.clauses, [
    {
      matches: [
        match({
          principals: [{ exact: 'cluster.local/ns/demo/sa/sleep' }, { prefix: 'cluster.local/ns/prod/' }, { suffix: '/sa/admin' }, { presence: true }],
          notNamespaces: [{ exact: 'kube-system' }],
        }),
        match({ namespaces: [{ prefix: 'team-' }], sourceIps: ['10.0.0.0/8', '192.168.1.1'], notSourceIps: ['10.1.0.0/16'] }),
        match({ principals: [{ suffix: '/ns/demo/sa/sleep' }], notPrincipals: [{ exact: 'x' }, { suffix: '/ns/demo/sa/bad' }] }),
      ],
    },
    { matches: [match({ destinationPorts: [8080, 9090] }), match({ notDestinationPorts: [22] })] },
    { matches: [match({ sourceIps: ['10.2.0.0/16'], notSourceIps: ['10.2.3.4'] })] },
    { matches: [match({ namespaces: [{ exact: 'demo' }] })] },
    { matches: [match({ notPrincipals: [{ exact: 'cluster.local/ns/demo/sa/evil' }] })] },
    { matches: [match({ destinationPorts: [8080] })] },
    { matches: [match({ destinationIps: ['10.96.0.10'] })] },
    { matches: [match({ sourceIps: ['172.16.0.0/12'] })] },
    { matches: [match({ principals: [{ suffix: '/ns/demo/sa/sleep' }] })] },
  ]);
});

test('AuthorizationPolicy L7 fail-closed, ALLOW: rules with HTTP attributes are dropped, L4 rules kept, condition explains', () => {
  const { authorizations, conditions } = translate([
    authorizationPolicy('p', 'demo', {
      rules: [
        { from: [{ source: { namespaces: ['demo'] } }], to: [{ operation: { methods: ['GET'] } }] },
        { from: [{ source: { namespaces: ['ops'] } }] },
        { when: [{ key: 'request.headers[x-user]', values: ['bob'] }] },
      ],
    }),
  ]);
  assert.deepEqual(authorizations[0]!.rules, [{ clauses: [{ matches: [match({ namespaces: [{ exact: 'ops' }] })] }] }]);
  const c = conditions.find((x) => x.objectKey === 'AuthorizationPolicy/demo/p')!;
  assert.equal(c.reason, 'PartiallyApplied');
  assert.match(c.message, /operation\.methods/);
  assert.match(c.message, /when request\.headers\[x-user\]/);
  assert.match(c.message, /omitted, which is more restrictive than requested/);
});

test('AuthorizationPolicy L7 fail-closed, ALLOW with only HTTP rules: allows nothing', () => {
  const { authorizations, conditions } = translate([
    authorizationPolicy('p', 'demo', { selector: { matchLabels: { app: 'web' } }, rules: [{ to: [{ operation: { paths: ['/public/*'] } }] }] }),
    pod('web'),
  ]);
  assert.deepEqual(authorizations[0]!.rules, []);
  assert.equal(authorizations[0]!.action, 'ALLOW');
  assert.match(conditions.find((x) => x.objectKey === 'AuthorizationPolicy/demo/p')!.message, /no rules remain: this policy matches nothing/);
});

test('AuthorizationPolicy L7 fail-closed, DENY: HTTP attributes removed, rule kept (denies more)', () => {
  const { authorizations, conditions } = translate([
    authorizationPolicy('p', 'demo', {
      action: 'DENY',
      rules: [
        {
          from: [{ source: { requestPrincipals: ['issuer/subject'] } }, { source: { namespaces: ['evil'] } }],
          to: [{ operation: { methods: ['DELETE'], ports: ['8080'] } }],
          when: [{ key: 'request.auth.claims[group]', values: ['x'] }, { key: 'source.namespace', values: ['evil'] }],
        },
      ],
    }),
  ]);
  assert.deepEqual(authorizations[0]!.rules, [
    {
      clauses: [
        { matches: [match({}), match({ namespaces: [{ exact: 'evil' }] })] },
        { matches: [match({ destinationPorts: [8080] })] },
        { matches: [match({ namespaces: [{ exact: 'evil' }] })] },
      ],
    },
  ]);
  const c = conditions.find((x) => x.objectKey === 'AuthorizationPolicy/demo/p')!;
  assert.match(c.message, /source\.requestPrincipals/);
  assert.match(c.message, /deny more than requested/);
});

test('AuthorizationPolicy attached to a waypoint (targetRefs) is not an agent policy: no output, no condition', () => {
  const { authorizations, conditions } = translate([
    authorizationPolicy('wp', 'demo', { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }], rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }),
    authorizationPolicy('svc', 'demo', { targetRef: { kind: 'Service', group: '', name: 'reviews' }, rules: [{}] }),
  ]);
  assert.deepEqual(authorizations, []);
  assert.deepEqual(conditions, []);
});

test('AuthorizationPolicy CUSTOM is not applied and gets a False condition; AUDIT passes through; dry-run annotation', () => {
  const { authorizations, conditions } = translate([
    authorizationPolicy('ext', 'demo', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{}] }),
    authorizationPolicy('audit', 'demo', { action: 'AUDIT', rules: [{}] }),
    authorizationPolicy('dry', 'demo', { action: 'DENY', rules: [{}] }, { 'istio.io/dry-run': 'true' }),
  ]);
  assert.deepEqual(authorizations.map((a) => [a.name, a.action, a.dryRun]), [
    ['audit', 'AUDIT', false],
    ['dry', 'DENY', true],
  ]);
  const c = conditions.find((x) => x.objectKey === 'AuthorizationPolicy/demo/ext')!;
  assert.equal(c.status, 'False');
  assert.equal(c.reason, 'UnsupportedValue');
});
