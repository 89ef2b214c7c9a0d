import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import type { JwtRule, L7AuthorizationPolicy } from '../../../src/shared/routes.js';
import { claimValues, findToken, JwksCache, verifyJwt } from '../../../src/waypoint/filters/jwt.js';
import { authorizeRequest } from '../../../src/waypoint/filters/authz.js';

const ISS = 'testing@secure.istio.io';

async function keys(kid: string) {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const sign = (claims: JWTPayload, opts: { iss?: string; exp?: string | number } = {}) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid }).setIssuer(opts.iss ?? ISS).setSubject(String(claims.sub ?? 'alice')).setIssuedAt().setExpirationTime(opts.exp ?? '1h').sign(privateKey);
  return { jwks: JSON.stringify({ keys: [jwk] }), sign };
}

const rule = (jwks: string, extra: Partial<JwtRule> = {}): JwtRule => ({ issuer: ISS, audiences: [], jwks, fromHeaders: [], fromParams: [], forwardOriginalToken: false, ...extra });

test('JWT: a valid token gives <iss>/<sub> and its claims; the token header is removed unless forwarded; the payload can be output', async () => {
  const k = await keys('k1');
  const cache = new JwksCache();
  const token = await k.sign({ sub: 'alice', groups: ['admin', 'dev'], aud: 'shop' });
  const ok = await verifyJwt(cache, [rule(k.jwks, { audiences: ['shop'], outputPayloadToHeader: 'x-payload' })], { authorization: `Bearer ${token}` }, '/');
  assert.equal(ok.kind, 'valid');
  if (ok.kind !== 'valid') return;
  assert.equal(ok.principal, `${ISS}/alice`);
  assert.deepEqual(ok.removeHeaders, ['authorization']);
  assert.deepEqual(JSON.parse(Buffer.from(ok.setHeaders['x-payload']!, 'base64url').toString()).groups, ['admin', 'dev']);
  const kept = await verifyJwt(cache, [rule(k.jwks, { forwardOriginalToken: true })], { authorization: `Bearer ${token}` }, '/');
  assert.deepEqual(kept.kind === 'valid' && kept.removeHeaders, []);
  assert.deepEqual(await verifyJwt(cache, [rule(k.jwks)], {}, '/x'), { kind: 'none' }, 'no token: no principal, no refusal');
  assert.equal((await verifyJwt(cache, [rule(k.jwks)], {}, `/x?access_token=${token}`)).kind, 'valid', 'the default query parameter');
});

test('JWT: bad signature, expiry, unknown issuer, wrong audience and garbage are each refused with Envoy\'s words', async () => {
  const k = await keys('k1');
  const other = await keys('k1');
  const cache = new JwksCache();
  const r = [rule(k.jwks, { audiences: ['shop'] })];
  const h = (t: string) => ({ authorization: `Bearer ${t}` });
  assert.deepEqual(await verifyJwt(cache, r, h(await other.sign({ aud: 'shop' })), '/'), { kind: 'invalid', message: 'Jwt verification fails' });
  assert.deepEqual(await verifyJwt(cache, r, h(await k.sign({ aud: 'shop' }, { exp: Math.floor(Date.now() / 1000) - 120 })), '/'), { kind: 'invalid', message: 'Jwt is expired' });
  assert.deepEqual(await verifyJwt(cache, r, h(await k.sign({ aud: 'shop' }, { iss: 'someone-else' })), '/'), { kind: 'invalid', message: 'Jwt issuer is not configured' });
  assert.deepEqual(await verifyJwt(cache, r, h(await k.sign({ aud: 'other' })), '/'), { kind: 'invalid', message: 'Audiences in Jwt are not allowed' });
  assert.equal((await verifyJwt(cache, r, h('not.a-token'), '/')).kind, 'invalid');
});

test('JWT: custom headers and parameters replace the defaults; the first location holding a token wins', () => {
  const r = rule('{"keys":[]}', { fromHeaders: [{ name: 'x-jwt', prefix: 'Token ' }], fromParams: ['jwt'] });
  assert.deepEqual(findToken([r], { 'x-jwt': 'Token abc' }, '/'), { token: 'abc', header: 'x-jwt' });
  assert.deepEqual(findToken([r], { authorization: 'Bearer abc' }, '/p?jwt=def'), { token: 'def' });
  assert.equal(findToken([r], { authorization: 'Bearer abc' }, '/p?access_token=x'), undefined, 'the defaults no longer apply');
  assert.equal(findToken([r], { 'x-jwt': 'Bearer abc' }, '/'), undefined, 'the prefix must match');
});

test('authorization: requestPrincipals and request.auth.claims[...] conditions use the verified token (lists match by any element)', () => {
  const policy: L7AuthorizationPolicy = {
    name: 'shop/jwt',
    action: 'ALLOW',
    dryRun: false,
    rules: [{ from: [{ principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], requestPrincipals: [{ exact: `${ISS}/alice` }, { prefix: 'https://other/' }] }], to: [], when: [{ header: '', claim: ['groups'], values: [{ exact: 'admin' }], notValues: [] }, { header: '', claim: ['org', 'tier'], values: [], notValues: [{ exact: 'free' }] }] }],
  };
  const req = (requestPrincipal?: string, claims?: Record<string, unknown>) => ({ method: 'GET', path: '/', authority: 'shop', headers: {}, ...(requestPrincipal ? { requestPrincipal } : {}), ...(claims ? { claims } : {}) });
  assert.equal(authorizeRequest([policy], req(`${ISS}/alice`, { groups: ['dev', 'admin'], org: { tier: 'gold' } })).allowed, true);
  assert.equal(authorizeRequest([policy], req(`${ISS}/alice`, { groups: 'admin', org: { tier: 'free' } })).allowed, false, 'notValues on a nested claim');
  assert.equal(authorizeRequest([policy], req(`${ISS}/bob`, { groups: ['admin'] })).allowed, false);
  assert.equal(authorizeRequest([policy], req(undefined, undefined)).allowed, false, 'no token: no request principal');
  assert.deepEqual(claimValues({ a: { b: [1, 'x'] } }, ['a', 'b']), ['x']);
  assert.deepEqual(claimValues({ n: 5 }, ['n']), ['5']);
  assert.deepEqual(claimValues(undefined, ['a']), []);
});
