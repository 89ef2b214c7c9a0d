/**
 * A Gateway API ingress Gateway of class istio served by a real gateway-mode Waypoint over
 * 127.0.0.0/8, checking on real traffic: listener `allowedRoutes` (an HTTPRoute from a namespace
 * only a Selector listener allows is served on that listener's port alone, one from a namespace no
 * listener allows is not served, a TCPRoute reaches only the TCP listener that allows all
 * namespaces); `numTrustedProxies` from the mesh config's `defaultConfig` (ConfigMap istio) for an
 * unannotated gateway pod; and a CUSTOM AuthorizationPolicy on a TCP listener checked by a real
 * gRPC `envoy.service.auth.v3.Authorization` server with the connection's L4 attributes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { objectKey, type KubeObject } from '../../src/controller/objects.js';
import { translateAll } from '../../src/controller/translate/translate.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { freePort } from '../helpers/local-mesh.js';
import { startGatewayPod } from '../helpers/gateway-pod.js';
import { createTestCa } from '../helpers/test-ca.js';
import { startTcpAuthorizer } from '../helpers/tcp-authorizer.js';
import { startCountingWeb, startGreetingEcho, tcpExchange } from '../helpers/tcp-exchange.js';
import { namespace, pod, service } from '../unit/translate/helpers.js';

function get(port: number, host: string, opts: { from?: string; xff?: string } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', localAddress: opts.from ?? '127.0.0.1', agent: false, headers: { host, ...(opts.xff ? { 'x-forwarded-for': opts.xff } : {}) } }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.end();
  });
}

test('Gateway API ingress: allowedRoutes decide where routes attach; the mesh default numTrustedProxies; CUSTOM on a TCP listener asks a gRPC authorizer', async (t) => {
  const webServer = await startCountingWeb(t, '127.0.0.6');
  const web = webServer.port;
  const echo = await startGreetingEcho(t, '127.0.0.2');
  // The authorizer allows connections from 127.0.0.1 only.
  const authz = await startTcpAuthorizer(t, '127.0.0.3', (check) => check.attributes.source?.address?.socketAddress?.address === '127.0.0.1');
  const port = { same: await freePort(), teams: await freePort(), tcpAll: await freePort(), tcpSame: await freePort() };
  const podKey = 'infra/edge-api-0';
  const route = (kind: string, name: string, ns: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind, metadata: { name, namespace: ns }, spec: { parentRefs: [{ name: 'edge-api', namespace: 'infra' }], ...spec } });
  const objects: KubeObject[] = [
    namespace('infra'),
    namespace('shop', { team: 'shop' }),
    namespace('other'),
    namespace('istio-system'),
    // No proxy.istio.io/config annotation: the mesh config's default applies.
    pod('edge-api-0', { ns: 'infra', ip: '127.0.0.1', labels: { 'gateway.networking.k8s.io/gateway-name': 'edge-api' } }),
    pod('web', { ns: 'shop', ip: '127.0.0.6', labels: { app: 'web' } }),
    pod('web', { ns: 'other', ip: '127.0.0.6', labels: { app: 'web' } }),
    pod('echo', { ns: 'shop', ip: '127.0.0.2', labels: { app: 'echo' } }),
    pod('ext-authz', { ns: 'infra', ip: '127.0.0.3', labels: { app: 'ext-authz' } }),
    service('web', { ns: 'shop', clusterIP: '10.96.9.1', ports: [{ name: 'http', port: 8080, targetPort: web }] }),
    service('web', { ns: 'other', clusterIP: '10.96.9.2', ports: [{ name: 'http', port: 8080, targetPort: web }] }),
    service('echo', { ns: 'shop', clusterIP: '10.96.9.3', ports: [{ name: 'tcp', port: 9000, targetPort: echo }] }),
    service('ext-authz', { ns: 'infra', clusterIP: '10.96.9.4', ports: [{ name: 'grpc', port: 9000, targetPort: authz.port }] }),
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'istio', namespace: 'istio-system' },
      data: { mesh: 'defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 1\nextensionProviders:\n- name: tcp-authz\n  envoyExtAuthzGrpc:\n    service: ext-authz.infra.svc.cluster.local\n    port: 9000\n    timeout: 5s\n' },
    } as KubeObject,
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge-api', namespace: 'infra' },
      spec: {
        gatewayClassName: 'istio',
        listeners: [
          { name: 'same', port: port.same, protocol: 'HTTP' },
          { name: 'teams', port: port.teams, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { team: 'shop' } } } } },
          { name: 'tcp-all', port: port.tcpAll, protocol: 'TCP', allowedRoutes: { namespaces: { from: 'All' } } },
          { name: 'tcp-same', port: port.tcpSame, protocol: 'TCP' },
        ],
      },
    },
    route('HTTPRoute', 'shop', 'shop', { hostnames: ['shop.example.com'], rules: [{ backendRefs: [{ name: 'web', port: 8080 }] }] }),
    route('HTTPRoute', 'other', 'other', { hostnames: ['other.example.com'], rules: [{ backendRefs: [{ name: 'web', port: 8080 }] }] }),
    route('TCPRoute', 'echo', 'shop', { rules: [{ backendRefs: [{ name: 'echo', port: 9000 }] }] }),
    // The gateway's own policies: the client address (behind one trusted proxy) for HTTP; every TCP connection.
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'edge-allow', namespace: 'infra' },
      spec: {
        targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge-api' }],
        action: 'ALLOW',
        rules: [{ from: [{ source: { remoteIpBlocks: ['127.0.0.7/32'] } }], to: [{ operation: { hosts: ['shop.example.com', 'other.example.com'] } }] }, { to: [{ operation: { ports: [String(port.tcpAll), String(port.tcpSame)] } }] }],
      },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'edge-ext', namespace: 'infra' },
      spec: { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge-api' }], action: 'CUSTOM', provider: { name: 'tcp-authz' }, rules: [{ to: [{ operation: { ports: [String(port.tcpAll)] } }] }] },
    },
  ];
  const out = translateAll(objects);
  const conditions = [...out.model.conditions, ...out.routes.conditions, ...out.listeners.conditions];
  const of = (kind: string, ns: string, name: string) => conditions.filter((c) => c.objectKey === objectKey(objects.find((o) => o.kind === kind && o.metadata.namespace === ns && o.metadata.name === name)!)).map((c) => c.message);
  assert.match(of('HTTPRoute', 'other', 'other').join(), /namespace "other" is not allowed by the parent/);
  assert.match(of('TCPRoute', 'shop', 'echo').join(), /^$/, 'the TCPRoute attaches (to tcp-all) without a note');
  assert.deepEqual(of('AuthorizationPolicy', 'infra', 'edge-ext'), [], 'the gRPC provider is usable');
  const listeners = out.listeners.byPod.get(podKey) ?? [];
  assert.deepEqual(listeners.filter((l) => l.protocol === 'HTTP').map((l) => l.numTrustedProxies), [1, 1], 'the mesh default reaches the unannotated pod\'s HTTP listeners');

  const registry = createRegistry();
  await startGatewayPod(t, { podKey, identity: 'spiffe://cluster.local/ns/infra/sa/edge-api', workload: 'edge-api', mesh: createTestCa('cluster.local'), registry, translation: out });

  // allowedRoutes on real traffic. shop is labelled team=shop: only the Selector listener serves it.
  assert.equal(await get(port.teams, 'shop.example.com', { from: '127.0.0.7' }), 200, 'the Selector listener takes the shop route');
  assert.equal(await get(port.same, 'shop.example.com', { from: '127.0.0.7' }), 404, 'the Same listener does not');
  assert.equal(await get(port.teams, 'other.example.com', { from: '127.0.0.7' }), 404, 'no listener allows the other namespace');
  // numTrustedProxies 1 from the mesh config: the last X-Forwarded-For entry is the client.
  assert.equal(await get(port.teams, 'shop.example.com', { from: '127.0.0.8' }), 403, 'the peer address is not allowed');
  assert.equal(await get(port.teams, 'shop.example.com', { from: '127.0.0.8', xff: '10.9.9.9, 127.0.0.7' }), 200, 'the trusted proxy says the client is the allowed address');
  assert.equal(webServer.hits(), 2);

  // TCPRoute from shop: the All listener serves it, after the gRPC authorizer allowed the connection.
  assert.equal(await tcpExchange(port.tcpSame, 'ping'), 'reset', 'the Same TCP listener takes no route from shop');
  assert.equal(authz.seen.length, 0, 'the CUSTOM policy names only the tcp-all port');
  assert.equal(await tcpExchange(port.tcpAll, 'ping'), 'echo\nping');
  assert.equal(await tcpExchange(port.tcpAll, 'ping', '127.0.0.8'), 'reset', 'the authorizer denies another client address');
  assert.equal(authz.seen.length, 2, 'each connection was checked once');
  const check = authz.seen[0]!.attributes;
  assert.equal(check.request?.http, undefined, 'a TCP check carries no HTTP request');
  assert.equal(check.source?.address?.socketAddress?.address, '127.0.0.1');
  assert.equal(check.destination?.address?.socketAddress?.portValue, port.tcpAll);
  assert.equal(check.destination?.principal, 'spiffe://cluster.local/ns/infra/sa/edge-api', 'the gateway\'s own identity is the destination principal');
  const denials = (await registry.getSingleMetric('ambit_policy_denials_total')?.get())?.values ?? [];
  assert.equal(denials.filter((v) => v.labels['reason'] === 'ext_authz').reduce((n, v) => n + v.value, 0), 1, 'one connection denied by the authorizer');
});
