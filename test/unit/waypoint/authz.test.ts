import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { L7AuthorizationPolicy, L7Operation, L7Rule, L7Source } from '../../../src/shared/routes.js';
import { authorizeRequest, sourceOf, type AuthzRequest } from '../../../src/waypoint/filters/authz.js';

const op = (p: Partial<L7Operation>): L7Operation => ({ hosts: [], notHosts: [], paths: [], notPaths: [], methods: [], notMethods: [], ports: [], notPorts: [], ...p });
const src = (p: Partial<L7Source>): L7Source => ({ principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], ...p });
const rule = (p: Partial<L7Rule>): L7Rule => ({ from: [], to: [], when: [], ...p });
const pol = (name: string, action: L7AuthorizationPolicy['action'], rules: L7Rule[], dryRun = false): L7AuthorizationPolicy => ({ name: `ns/${name}`, action, rules, dryRun });
const req = (p: Partial<AuthzRequest>): AuthzRequest => ({ method: 'GET', path: '/', authority: 'reviews:9080', headers: {}, port: 9080, principal: 'spiffe://cluster.local/ns/bookinfo/sa/productpage', ...p });

const allowGetFromProductpage = pol('allow-get', 'ALLOW', [rule({ from: [src({ principals: [{ exact: 'cluster.local/ns/bookinfo/sa/productpage' }] })], to: [op({ methods: ['GET'], paths: [{ prefix: '/reviews/' }, { exact: '/health' }] })] })]);
const denyAdmin = pol('deny-admin', 'DENY', [rule({ to: [op({ paths: [{ prefix: '/admin' }] })] })]);
const denyFromOtherNs = pol('deny-ns', 'DENY', [rule({ from: [src({ notNamespaces: [{ exact: 'bookinfo' }] })] })]);
const headerAllow = pol('hdr', 'ALLOW', [rule({ when: [{ header: 'x-token', values: [{ prefix: 'good-' }], notValues: [] }] })]);

test('L7 authorization verdicts (table)', () => {
  const cases: Array<[string, L7AuthorizationPolicy[], Partial<AuthzRequest>, boolean, string]> = [
    ['no policies allow', [], {}, true, 'no-policy'],
    ['ALLOW matches path prefix and method', [allowGetFromProductpage], { path: '/reviews/1?x=1' }, true, 'allow-matched'],
    ['ALLOW: exact path', [allowGetFromProductpage], { path: '/health' }, true, 'allow-matched'],
    ['ALLOW: wrong method denies', [allowGetFromProductpage], { path: '/reviews/1', method: 'POST' }, false, 'no-allow-match'],
    ['ALLOW: wrong principal denies', [allowGetFromProductpage], { path: '/reviews/1', principal: 'spiffe://cluster.local/ns/bookinfo/sa/other' }, false, 'no-allow-match'],
    ['ALLOW: no principal (plaintext) denies', [allowGetFromProductpage], { path: '/reviews/1', principal: undefined }, false, 'no-allow-match'],
    ['DENY wins over ALLOW', [allowGetFromProductpage, denyAdmin], { path: '/admin/x' }, false, 'deny-matched'],
    ['DENY not matching leaves ALLOW in charge', [allowGetFromProductpage, denyAdmin], { path: '/reviews/2' }, true, 'allow-matched'],
    ['DENY by notNamespaces', [denyFromOtherNs], { principal: 'spiffe://cluster.local/ns/evil/sa/x' }, false, 'deny-matched'],
    ['DENY by notNamespaces spares the own namespace', [denyFromOtherNs], {}, true, 'no-policy'],
    ['when request.headers prefix', [headerAllow], { headers: { 'x-token': 'good-1' } }, true, 'allow-matched'],
    ['when request.headers missing', [headerAllow], {}, false, 'no-allow-match'],
    ['ALLOW with no rules denies everything', [pol('empty', 'ALLOW', [])], {}, false, 'no-allow-match'],
    ['ALLOW with one empty rule allows everything', [pol('all', 'ALLOW', [rule({})])], {}, true, 'allow-matched'],
    ['DENY with no rules denies nothing', [pol('none', 'DENY', [])], {}, true, 'no-policy'],
    ['AUDIT does not change the verdict', [pol('audit', 'AUDIT', [rule({})])], {}, true, 'no-policy'],
    ['dry-run DENY does not enforce', [pol('dry', 'DENY', [rule({})], true)], {}, true, 'no-policy'],
    ['hosts match without the port', [pol('h', 'ALLOW', [rule({ to: [op({ hosts: [{ exact: 'reviews' }] })] })])], {}, true, 'allow-matched'],
    ['ports', [pol('p', 'ALLOW', [rule({ to: [op({ ports: [8080] })] })])], {}, false, 'no-allow-match'],
    ['notPaths', [pol('np', 'DENY', [rule({ to: [op({ notPaths: [{ prefix: '/public' }] })] })])], { path: '/public/x' }, true, 'no-policy'],
    ['suffix path', [pol('sfx', 'DENY', [rule({ to: [op({ paths: [{ suffix: '.php' }] })] })])], { path: '/x/index.php' }, false, 'deny-matched'],
  ];
  for (const [what, policies, r, allowed, reason] of cases) {
    const v = authorizeRequest(policies, req(r));
    assert.equal(v.allowed, allowed, what);
    assert.equal(v.reason, reason, what);
  }
});

test('AUDIT and dry-run policies are reported', () => {
  const v = authorizeRequest([pol('audit', 'AUDIT', [rule({})]), pol('dry', 'DENY', [rule({})], true)], req({}));
  assert.deepEqual(v.audited, ['ns/audit']);
  assert.deepEqual(v.dryRunDenied, ['ns/dry']);
});

test('sourceOf splits a SPIFFE id', () => {
  assert.deepEqual(sourceOf('spiffe://td/ns/a/sa/b'), { principal: 'td/ns/a/sa/b', namespace: 'a' });
  assert.deepEqual(sourceOf(undefined), {});
});
