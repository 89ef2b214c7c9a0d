/**
 * The waypoint on worker threads (src/waypoint/workers.ts): two workers listen for HBONE on one
 * port (SO_REUSEPORT), both serve requests arriving in real mTLS tunnels, a route change reaches
 * both before applyConfig resolves, and /metrics merges their series under Istio's names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLoopbackMesh, testWorkload } from '../helpers/loopback-net.js';
import { hboneRequest, hboneSession } from '../helpers/hbone-client.js';
import { startOkApp } from '../helpers/ok-app.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { emptyHeaderOps, type RouteConfig } from '../../src/shared/routes.js';
import type { Service } from '../../src/shared/model.js';
import type { ConfigState } from '../../src/shared/xds/client.js';
import { validateRouteConfig } from '../../src/shared/validate-routes.js';
import { WaypointWorkers } from '../../src/waypoint/workers.js';

const BASE = `127.${10 + ((process.pid + 91) % 200)}.7.`;
const WP_IP = BASE + '1';
const APP_IP = BASE + '2';
const CALLER_IP = BASE + '3';
const SVC = 'cart.shop.svc.cluster.local';
const VIP = '10.96.0.7';
/** New tunnels tried before giving up on both workers serving: the kernel hashes each new connection to one of the two. */
const MAX_TUNNELS = 200;

function state(routeTag: string): ConfigState {
  const cart = testWorkload({ name: 'cart', namespace: 'shop', ip: APP_IP, serviceAccount: 'cart', tunnelProtocol: 'NONE', services: { [`shop/${SVC}`]: [{ servicePort: 8080, targetPort: 8080 }] } });
  const caller = testWorkload({ name: 'frontend', namespace: 'shop', ip: CALLER_IP, serviceAccount: 'frontend' });
  const service: Service = { name: 'cart', namespace: 'shop', hostname: SVC, vips: [VIP], ports: [{ name: 'http', port: 8080, targetPort: 8080, protocol: 'http' }], subjectAltNames: [], routingPreference: [], endpoints: [cart.uid] };
  const cfg: RouteConfig = {
    name: `shop/${SVC}`,
    namespace: 'shop',
    hostname: SVC,
    aliases: ['cart'],
    ports: [{ port: 8080, protocol: 'http' }],
    routes: [{ name: 'all', match: [], backends: [{ host: SVC, weight: 1 }], headers: { request: emptyHeaderOps(), response: { set: { 'x-route': routeTag }, add: {}, remove: [] } } }],
    authorization: [],
  };
  assert.deepEqual(validateRouteConfig(cfg), [], 'the test route config is valid');
  return { workloads: new Map([cart, caller].map((w) => [w.uid, w])), services: new Map([[`shop/${SVC}`, service]]), authorizations: new Map(), routes: new Map([[cfg.name, cfg]]), versions: new Map(), systemVersions: new Map() };
}

/** istio_requests_total of each worker (summed over its series). */
async function perWorker(workers: WaypointWorkers): Promise<number[]> {
  return (await workers.workerMetrics()).map((metrics) => metrics.filter((m) => m.name === 'istio_requests_total').flatMap((m) => m.values).reduce((a, v) => a + v.value, 0));
}

test('two waypoint workers share the HBONE port, both serve, a route change reaches both, /metrics sums them', { timeout: 90_000 }, async (t) => {
  const mesh = await createLoopbackMesh();
  t.after(() => mesh.close());
  const app = await startOkApp(t, APP_IP, 8080);
  assert.equal((app.address() as AddressInfo).port, 8080);

  const identity = 'spiffe://cluster.local/ns/shop/sa/waypoint';
  const workers = await WaypointWorkers.start({ count: 2, init: { waypoint: { name: 'shop/waypoint', podIp: WP_IP, identity, trustDomain: 'cluster.local' }, logLevel: 'warn' }, log: mesh.log, getCertificate: async (id) => mesh.certFor(id) });
  t.after(() => workers.close(500));
  await workers.applyConfig(state('v1'));
  const port = await workers.listenHbone(0, WP_IP);

  /** One request in a new tunnel (a new TLS connection, so the kernel picks a worker anew); the x-route it got. */
  const viaNewTunnel = async (n: number): Promise<string> => {
    const session = await hboneSession({ host: WP_IP, port, cert: mesh.certFor('spiffe://cluster.local/ns/shop/sa/frontend'), localAddress: CALLER_IP });
    try {
      const { status, stream } = await hboneRequest(session, { ':authority': `${VIP}:8080` });
      assert.equal(status, 200, 'the CONNECT is accepted');
      return await new Promise<string>((resolve, reject) => {
        const req = http.request({ createConnection: () => stream as unknown as import('node:net').Socket, path: `/items/${n}`, headers: { host: 'cart', connection: 'close' } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.once('end', () => {
            assert.equal(body, `ok /items/${n}`);
            resolve(String(res.headers['x-route']));
          });
        });
        req.once('error', reject);
        req.end();
      });
    } finally {
      session.destroy();
    }
  };

  /** Sends requests in new tunnels until every worker's count passed `from`; every answer must carry `tag`. */
  const untilBothServe = async (from: number[], tag: string): Promise<{ sent: number; counts: number[] }> => {
    let sent = 0;
    let counts = from;
    assert.equal((await perWorker(workers)).length, 2, 'two workers report');
    while (sent < MAX_TUNNELS) {
      for (let i = 0; i < 5; i++) assert.equal(await viaNewTunnel(sent++), tag, `request ${sent} went by route ${tag}`);
      counts = await perWorker(workers);
      if (counts.every((c, i) => c > from[i]!)) break;
    }
    assert.ok(counts.every((c, i) => c > from[i]!), `both workers served within ${MAX_TUNNELS} tunnels (counts ${from.join(',')} -> ${counts.join(',')})`);
    return { sent, counts };
  };

  const first = await untilBothServe([0, 0], 'v1');
  assert.equal(first.counts[0]! + first.counts[1]!, first.sent, 'every request was counted by the worker that served it');

  await workers.applyConfig(state('v2'));
  const second = await untilBothServe(first.counts, 'v2');

  // /metrics: the main thread's registry merged with the workers' sums, Istio names and labels unchanged.
  const text = await (await workers.registry(createRegistry())).metrics();
  const total = [...text.matchAll(/^istio_requests_total\{([^}]*)\} (\d+)$/gm)];
  assert.ok(total.length >= 1, 'istio_requests_total is exported');
  assert.ok(total.every((m) => /reporter="waypoint"/.test(m[1]!) && /destination_service="cart.shop.svc.cluster.local"/.test(m[1]!)), 'the series keep their labels');
  assert.equal(total.reduce((a, m) => a + Number(m[2]), 0), first.sent + second.sent, 'the merged counter is the sum over both workers');
  assert.match(text, /^istio_request_duration_milliseconds_bucket\{[^}]*le="\+Inf"[^}]*\} \d+$/m, 'histograms are merged too');
});
