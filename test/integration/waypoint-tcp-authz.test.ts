/**
 * A waypoint's TCP traffic under AuthorizationPolicies, through its real HBONE front with real
 * mTLS over 127.0.0.0/8: a CUSTOM policy with an `envoyExtAuthzGrpc` provider asks a real gRPC
 * `envoy.service.auth.v3.Authorization` server with the connection's L4 attributes (Envoy's network
 * ext_authz) before the tunnel is answered, then DENY and ALLOW apply as Envoy's network RBAC.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { createLoopbackMesh, testWorkload } from '../helpers/loopback-net.js';
import { hboneRequest, hboneSession } from '../helpers/hbone-client.js';
import { startTcpAuthorizer } from '../helpers/tcp-authorizer.js';
import { createRegistry } from '../../src/shared/metrics.js';
import type { Service } from '../../src/shared/model.js';
import type { ExtAuthzProvider, RouteConfig } from '../../src/shared/routes.js';
import { validateRouteConfig } from '../../src/shared/validate-routes.js';
import { Waypoint } from '../../src/waypoint/waypoint.js';

const BASE = `127.${10 + ((process.pid + 91) % 200)}.5.`;
const WP_IP = BASE + '1';
const DB_IP = BASE + '2';
const AUTHZ_IP = BASE + '3';
const CLIENT_IP = BASE + '4';
const DB = 'db.shop.svc.cluster.local';
const AUTHZ = 'tcp-authz.shop.svc.cluster.local';

test('waypoint TCP routes: CUSTOM with a gRPC provider checks each tunnel with L4 attributes before it is answered; ALLOW and DENY then apply', { timeout: 30_000 }, async (t) => {
  const mesh = await createLoopbackMesh();
  t.after(() => mesh.close());
  const sockets = new Set<net.Socket>();
  const db = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => db.listen(5432, DB_IP, () => r()));
  t.after(() => {
    sockets.forEach((s) => s.destroy());
    db.close();
  });
  // The authorizer denies callers whose principal ends in /sa/intruder.
  const authz = await startTcpAuthorizer(t, AUTHZ_IP, (check) => !(check.attributes.source?.principal ?? '').endsWith('/sa/intruder'));
  const registry = createRegistry();
  const waypoint = new Waypoint({ name: 'shop/waypoint', podIp: WP_IP, identity: 'spiffe://cluster.local/ns/shop/sa/waypoint', trustDomain: 'cluster.local', log: mesh.log, registry, getCertificate: async (id) => mesh.certFor(id) });
  const hbone = await waypoint.listenHbone(0, WP_IP);
  t.after(() => waypoint.close(500));
  const dbPod = testWorkload({ name: 'db', namespace: 'shop', ip: DB_IP, tunnelProtocol: 'NONE', services: { [`shop/${DB}`]: [{ servicePort: 5432, targetPort: 5432 }] } });
  const authzPod = testWorkload({ name: 'tcp-authz', namespace: 'shop', ip: AUTHZ_IP, tunnelProtocol: 'NONE', services: { [`shop/${AUTHZ}`]: [{ servicePort: 9000, targetPort: authz.port }] } });
  const service = (name: string, hostname: string, vip: string, port: number, targetPort: number, endpoint: string): Service => ({ name, namespace: 'shop', hostname, vips: [vip], ports: [{ name: 'tcp', port, targetPort, protocol: 'tcp' }], subjectAltNames: [], routingPreference: [], endpoints: [endpoint] });
  const provider: ExtAuthzProvider = { name: 'tcp-authz', protocol: 'grpc', service: AUTHZ, port: 9000, timeoutMs: 5000, failOpen: false };
  const principals = (...p: string[]) => ({ principals: p.map((exact) => ({ exact })), notPrincipals: [], namespaces: [], notNamespaces: [] });
  const cfg: RouteConfig = {
    name: `shop/${DB}`,
    namespace: 'shop',
    hostname: DB,
    aliases: ['db'],
    ports: [{ port: 5432, protocol: 'tcp' }],
    routes: [],
    authorization: [
      { name: 'shop/ext', action: 'CUSTOM', providerName: provider.name, provider, dryRun: false, rules: [{ from: [], to: [], when: [] }] },
      // An HTTP attribute in an ALLOW rule: left out on TCP, so only the principal rule can allow.
      { name: 'shop/allow', action: 'ALLOW', dryRun: false, rules: [{ from: [principals('cluster.local/ns/shop/sa/frontend', 'cluster.local/ns/shop/sa/intruder')], to: [], when: [] }, { from: [principals('cluster.local/ns/shop/sa/guest')], to: [{ hosts: [], notHosts: [], paths: [{ exact: '/' }], notPaths: [], methods: [], notMethods: [], ports: [], notPorts: [] }], when: [] }] },
    ],
  };
  assert.deepEqual(validateRouteConfig(cfg), [], 'the test route config is valid');
  waypoint.applyConfig({
    workloads: new Map([dbPod, authzPod].map((w) => [w.uid, w])),
    services: new Map([
      [`shop/${DB}`, service('db', DB, '10.96.0.6', 5432, 5432, dbPod.uid)],
      [`shop/${AUTHZ}`, service('tcp-authz', AUTHZ, '10.96.0.7', 9000, authz.port, authzPod.uid)],
    ]),
    authorizations: new Map(),
    routes: new Map([[cfg.name, cfg]]),
    versions: new Map(),
    systemVersions: new Map(),
  });

  /** Opens a tunnel to the db Service as `sa`; an answered one echoes a line back. */
  const tunnel = async (sa: string): Promise<{ status: number; reason?: string; echoed?: string }> => {
    const session = await hboneSession({ host: WP_IP, port: hbone.port, cert: mesh.certFor(`spiffe://cluster.local/ns/shop/sa/${sa}`), localAddress: CLIENT_IP });
    try {
      const r = await hboneRequest(session, { ':authority': '10.96.0.6:5432' });
      if (r.status !== 200) return { status: r.status, ...(r.reason !== undefined ? { reason: r.reason } : {}) };
      const echoed = await new Promise<string>((resolve, reject) => {
        let data = '';
        r.stream.on('data', (c: Buffer) => {
          data += c.toString();
          if (data.endsWith('\n')) resolve(data);
        });
        r.stream.once('error', reject);
        r.stream.write('hello\n');
      });
      return { status: 200, echoed };
    } finally {
      session.destroy();
    }
  };
  assert.deepEqual(await tunnel('frontend'), { status: 200, echoed: 'hello\n' }, 'allowed by the authorizer and by the ALLOW policy');
  assert.equal(authz.seen.length, 1);
  const check = authz.seen[0]!.attributes;
  assert.equal(check.request?.http, undefined, 'a TCP check carries no HTTP request');
  assert.equal(check.source?.principal, 'spiffe://cluster.local/ns/shop/sa/frontend');
  assert.equal(check.source?.address?.socketAddress?.address, CLIENT_IP);
  assert.deepEqual([check.destination?.address?.socketAddress?.address, check.destination?.address?.socketAddress?.portValue, check.destination?.principal], ['10.96.0.6', 5432, 'spiffe://cluster.local/ns/shop/sa/waypoint']);
  assert.deepEqual(await tunnel('intruder'), { status: 401, reason: 'policy_denied' }, 'the authorizer denies, before any ALLOW is considered');
  assert.deepEqual(await tunnel('guest'), { status: 401, reason: 'policy_denied' }, 'the authorizer allows, but the only ALLOW rule naming guest needs a path and is left out on TCP');
  assert.equal(authz.seen.length, 3, 'each tunnel was checked once');
  const denials = (await registry.getSingleMetric('ambit_policy_denials_total')?.get())?.values ?? [];
  const by = (reason: string) => denials.filter((v) => v.labels['reason'] === reason).reduce((n, v) => n + v.value, 0);
  assert.deepEqual([by('ext_authz'), by('rbac')], [1, 1]);
});
