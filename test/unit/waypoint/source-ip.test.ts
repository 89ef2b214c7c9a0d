import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../../src/controller/objects.js';
import { translateRoutes } from '../../../src/controller/translate/routes.js';
import { buildConnectHeaders } from '../../../src/shared/hbone/tunnel.js';
import { authorizeConnection, authorizeRequest } from '../../../src/waypoint/filters/authz.js';
import { clientAddress } from '../../../src/waypoint/server/request.js';
import { forwardedClient } from '../../../src/waypoint/server/hbone-front.js';

test('forwardedClient: the for= address the source agent writes, normalized; nothing that is no IP address', () => {
  const fwd = (srcIp: string) => buildConnectHeaders({ target: { address: '10.96.0.5', port: 9080 }, srcIp }).forwarded as string;
  assert.equal(forwardedClient(fwd('10.1.0.7')), '10.1.0.7');
  assert.equal(forwardedClient(fwd('fd00::7')), 'fd00::7', 'the bracketed IPv6 form');
  assert.equal(forwardedClient('for="::ffff:10.1.0.7"'), '10.1.0.7', 'an IPv4-mapped address is the IPv4 address');
  assert.equal(forwardedClient('for=10.1.0.7:4433;host=x'), '10.1.0.7', 'a port is dropped');
  assert.equal(forwardedClient(undefined), undefined);
  assert.equal(forwardedClient('for=unknown'), undefined, 'an obfuscated or unknown node is no address');
  assert.equal(forwardedClient('for="_hidden"'), undefined);
  assert.equal(forwardedClient('proto=https'), undefined);
});

const svc = (name: string, port: number): KubeObject => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'shop' }, spec: { ports: [{ name: port === 9000 ? 'tcp' : 'http', port }] } });
const ap = (name: string, action: string, rule: Record<string, unknown>): KubeObject => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: 'shop' },
  spec: { action, targetRefs: [{ kind: 'Service', group: '', name: 'web' }], rules: [rule] },
});

test('a waypoint policy with ipBlocks, translated, admits the forwarded client address and refuses others (HTTP and TCP)', () => {
  const out = translateRoutes([svc('web', 8080), ap('allow', 'ALLOW', { from: [{ source: { ipBlocks: ['10.1.0.0/24'], notIpBlocks: ['10.1.0.9'] } }] })]);
  const web = out.routes.find((r) => r.hostname === 'web.shop.svc.cluster.local')!;
  const req = (sourceIp: string | undefined) => ({ method: 'GET', path: '/', authority: 'web', headers: {}, port: 8080, ...(sourceIp !== undefined ? { sourceIp, remoteIp: clientAddress(sourceIp, 0, '203.0.113.1') } : {}) });
  assert.equal(authorizeRequest(web.authorization, req(forwardedClient('for="10.1.0.7"'))).allowed, true);
  const other = authorizeRequest(web.authorization, req(forwardedClient('for="10.2.0.7"')));
  assert.equal(other.allowed, false);
  assert.equal(authorizeRequest(web.authorization, req('10.1.0.9')).allowed, false, 'notIpBlocks excludes one address of the block');
  assert.equal(authorizeRequest(web.authorization, req(undefined)).allowed, false, 'no source address: an ipBlocks rule cannot match');
  assert.equal(authorizeConnection(web.authorization, { port: 8080, sourceIp: '10.1.0.7' }).allowed, true, 'TCP: the same address decides');
  assert.equal(authorizeConnection(web.authorization, { port: 8080, sourceIp: '10.2.0.7' }).allowed, false);
});

test('remoteIpBlocks and remote.ip at a waypoint: the source address, whatever X-Forwarded-For says (no trusted proxies)', () => {
  const out = translateRoutes([svc('web', 8080), ap('deny', 'DENY', { when: [{ key: 'remote.ip', values: ['192.0.2.0/24'] }] }), ap('allow', 'ALLOW', { from: [{ source: { remoteIpBlocks: ['10.1.0.0/16', '192.0.2.0/24'] } }] })]);
  const web = out.routes.find((r) => r.hostname === 'web.shop.svc.cluster.local')!;
  assert.equal(out.conditions.some((c) => c.reason === 'PartiallyApplied'), false, JSON.stringify(out.conditions));
  const req = (sourceIp: string, xff?: string) => ({ method: 'GET', path: '/', authority: 'web', headers: {}, port: 8080, sourceIp, remoteIp: clientAddress(sourceIp, 0, xff) });
  assert.equal(authorizeRequest(web.authorization, req('10.1.0.7', '192.0.2.1')).allowed, true, 'a client-written X-Forwarded-For is not trusted');
  assert.equal(authorizeRequest(web.authorization, req('192.0.2.1')).allowed, false, 'the DENY on remote.ip applies');
  assert.equal(authorizeRequest(web.authorization, req('10.9.9.9', '10.1.0.7')).allowed, false);
});
