import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CorsPolicy, RedirectPolicy } from '../../../src/shared/routes.js';
import { redirectLocation, type RedirectRequest } from '../../../src/waypoint/route/redirect.js';
import { decideCors } from '../../../src/waypoint/filters/cors.js';

const REQ: RedirectRequest = { scheme: 'http', authority: 'shop.example.com', path: '/old/page?x=1', port: 80 };

const REDIRECTS: Array<{ name: string; r: Partial<RedirectPolicy>; req?: Partial<RedirectRequest>; want: string }> = [
  { name: 'uri replaces the whole path and keeps the query', r: { uri: '/new' }, want: 'http://shop.example.com/new?x=1' },
  { name: 'a uri with its own query replaces the query', r: { uri: '/new?y=2' }, want: 'http://shop.example.com/new?y=2' },
  { name: 'uri without a leading slash gets one', r: { uri: 'new' }, req: { path: '/a' }, want: 'http://shop.example.com/new' },
  { name: 'nothing set: the request URL', r: {}, want: 'http://shop.example.com/old/page?x=1' },
  { name: 'authority replaces host and keeps the path', r: { authority: 'other.example.com' }, want: 'http://other.example.com/old/page?x=1' },
  { name: 'the request port is kept', r: { uri: '/n' }, req: { authority: 'shop:8080' }, want: 'http://shop:8080/n?x=1' },
  { name: 'scheme change drops the old default port', r: { scheme: 'https' }, req: { authority: 'shop:80', path: '/' }, want: 'https://shop/' },
  { name: 'scheme change keeps a non-default port', r: { scheme: 'https' }, req: { authority: 'shop:8080', path: '/' }, want: 'https://shop:8080/' },
  { name: 'port replaces the request port', r: { port: 8443, scheme: 'https' }, req: { authority: 'shop:8080', path: '/' }, want: 'https://shop:8443/' },
  { name: 'port with authority', r: { port: 9000, authority: 'b.example.com' }, req: { path: '/' }, want: 'http://b.example.com:9000/' },
  { name: 'derivePort FROM_REQUEST_PORT names the port the request was addressed to', r: { derivePort: 'FROM_REQUEST_PORT' }, req: { authority: 'shop', port: 9080, path: '/' }, want: 'http://shop:9080/' },
  { name: 'derivePort FROM_PROTOCOL_DEFAULT sets no port', r: { derivePort: 'FROM_PROTOCOL_DEFAULT', scheme: 'https' }, req: { authority: 'shop', path: '/' }, want: 'https://shop/' },
  { name: 'an https request stays https', r: { uri: '/n' }, req: { scheme: 'https', authority: 'shop:443', path: '/' }, want: 'https://shop:443/n' },
  { name: 'IPv6 authority', r: { scheme: 'https' }, req: { authority: '[::1]:80', path: '/' }, want: 'https://[::1]/' },
];

for (const c of REDIRECTS) {
  test(`redirect: ${c.name}`, () => {
    assert.equal(redirectLocation({ code: 301, ...c.r }, { ...REQ, ...c.req }), c.want);
  });
}

const POLICY: CorsPolicy = {
  allowOrigins: [{ exact: 'https://a.example.com' }, { prefix: 'https://b.' }, { regex: 'https://[a-z]+\\.c\\.example\\.com' }],
  allowMethods: ['GET', 'POST'],
  allowHeaders: ['x-a', 'content-type'],
  exposeHeaders: ['x-b'],
  maxAgeSeconds: 86400,
  allowCredentials: true,
  unmatchedPreflights: 'FORWARD',
};
const preflight = (origin: string): Record<string, string> => ({ origin, 'access-control-request-method': 'POST' });

test('CORS: a preflight from an allowed origin is answered with the origin, methods, headers, max age and credentials', () => {
  for (const origin of ['https://a.example.com', 'https://b.example.org', 'https://x.c.example.com']) {
    assert.deepEqual(decideCors(POLICY, 'OPTIONS', preflight(origin)), {
      kind: 'preflight',
      headers: {
        'access-control-allow-origin': origin,
        'access-control-allow-credentials': 'true',
        'access-control-allow-methods': 'GET,POST',
        'access-control-allow-headers': 'x-a,content-type',
        'access-control-max-age': '86400',
      },
    });
  }
});

test('CORS: an actual request from an allowed origin goes on with the origin, credentials and exposed headers for its response', () => {
  assert.deepEqual(decideCors(POLICY, 'GET', { origin: 'https://a.example.com' }), {
    kind: 'actual',
    headers: { 'access-control-allow-origin': 'https://a.example.com', 'access-control-allow-credentials': 'true', 'access-control-expose-headers': 'x-b' },
  });
  // OPTIONS without Access-Control-Request-Method is not a preflight.
  assert.equal(decideCors(POLICY, 'OPTIONS', { origin: 'https://a.example.com' }).kind, 'actual');
});

test('CORS: no policy, no Origin, or an origin not allowed adds nothing; an unmatched preflight is forwarded or, with IGNORE, answered bare', () => {
  assert.deepEqual(decideCors(undefined, 'GET', { origin: 'https://a.example.com' }), { kind: 'none' });
  assert.deepEqual(decideCors(POLICY, 'GET', {}), { kind: 'none' });
  assert.deepEqual(decideCors(POLICY, 'GET', { origin: 'https://evil.example.com' }), { kind: 'none' });
  assert.deepEqual(decideCors(POLICY, 'OPTIONS', preflight('https://evil.example.com')), { kind: 'none' });
  assert.deepEqual(decideCors({ ...POLICY, unmatchedPreflights: 'IGNORE' }, 'OPTIONS', preflight('https://evil.example.com')), { kind: 'preflight', headers: {} });
  // The exact match is whole-string: a longer origin is not allowed.
  assert.deepEqual(decideCors(POLICY, 'GET', { origin: 'https://a.example.com.evil' }), { kind: 'none' });
});

test('CORS: an exact "*" origin allows any origin and echoes it; unset lists add no header', () => {
  const any: CorsPolicy = { allowOrigins: [{ exact: '*' }], allowMethods: [], allowHeaders: [], exposeHeaders: [], unmatchedPreflights: 'FORWARD' };
  assert.deepEqual(decideCors(any, 'OPTIONS', preflight('https://z.example')), { kind: 'preflight', headers: { 'access-control-allow-origin': 'https://z.example' } });
  assert.deepEqual(decideCors(any, 'GET', { origin: 'https://z.example' }), { kind: 'actual', headers: { 'access-control-allow-origin': 'https://z.example' } });
});
