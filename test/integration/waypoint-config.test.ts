/**
 * Route configs on the controller's config stream, over TLS on 127.0.0.1: a waypoint subscriber
 * gets the route configs of the services bound to it (VirtualService applied), another waypoint
 * gets none of them, and an agent (default types) never sees route configs.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Controller } from '../../src/controller/controller.js';
import { StaticTokenAuthenticator } from '../../src/controller/callers.js';
import type { KubeObject } from '../../src/controller/objects.js';
import { silentLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { ALL_RESOURCE_TYPES } from '../../src/shared/resources.js';
import { ConfigClient, type ConfigState } from '../../src/shared/xds/client.js';
import type { NodeInfo } from '../../src/shared/xds/node.js';
import { namespace, pod, service, waypointGateway } from '../unit/translate/helpers.js';

const TOKEN = 'n1-token-0123456789abcdef';
/** The waypoint pods' own credentials (a waypoint never subscribes with its node's token). */
const WP_TOKEN = 'wp-bookinfo-0123456789abcdef';
const OTHER_WP_TOKEN = 'wp-other-0123456789abcdefgh';
const REVIEWS = 'bookinfo/reviews.bookinfo.svc.cluster.local';

const virtualService: KubeObject = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'reviews', namespace: 'bookinfo' },
  spec: {
    hosts: ['reviews'],
    http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 90 }, { destination: { host: 'reviews', subset: 'v2' }, weight: 10 }] }],
  },
};
const destinationRule: KubeObject = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name: 'reviews', namespace: 'bookinfo' },
  spec: { host: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
};

async function startController(t: TestContext): Promise<Controller> {
  const stateDir = await mkdtemp(join(tmpdir(), `ambit-wpc${process.pid % 10000}-`));
  t.after(() => rm(stateDir, { recursive: true, force: true }));
  const authenticator = new StaticTokenAuthenticator({ [TOKEN]: 'node-1' });
  authenticator.set(WP_TOKEN, { kind: 'pod', namespace: 'bookinfo', pod: 'waypoint-0', serviceAccount: 'waypoint' });
  authenticator.set(OTHER_WP_TOKEN, { kind: 'pod', namespace: 'other', pod: 'wp-0', serviceAccount: 'wp' });
  const controller = await Controller.start({ stateDir, host: '127.0.0.1', port: 0, trustDomain: 'cluster.local', auth: { authenticator }, log: silentLogger(), debounceMs: 10 });
  t.after(() => controller.close());
  controller.store.apply([
    namespace('bookinfo', { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' }),
    namespace('other', { 'istio.io/dataplane-mode': 'ambient' }),
    waypointGateway('waypoint', { ns: 'bookinfo' }),
    pod('waypoint-0', { ns: 'bookinfo', ip: '10.0.0.2', sa: 'waypoint', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } }),
    pod('wp-0', { ns: 'other', ip: '10.0.0.3', sa: 'wp', labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' } }),
    pod('reviews-v1', { ns: 'bookinfo', ip: '10.0.0.11', labels: { app: 'reviews', version: 'v1' } }),
    pod('reviews-v2', { ns: 'bookinfo', ip: '10.0.0.12', labels: { app: 'reviews', version: 'v2' } }),
    service('reviews', { ns: 'bookinfo', ports: [{ name: 'http', port: 9080, targetPort: 9080 }] }),
    service('web', { ns: 'other', clusterIP: '10.96.0.20' }),
    virtualService,
    destinationRule,
  ]);
  return controller;
}

function subscribe(t: TestContext, controller: Controller, node: NodeInfo, token: string, types?: ConstructorParameters<typeof ConfigClient>[0]['types']): { latest: () => ConfigState | undefined } {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  let latest: ConfigState | undefined;
  const client = new ConfigClient({
    address: controller.address,
    credentials: grpc.credentials.createSsl(Buffer.from(controller.ca.rootCertPem)),
    callMetadata: md,
    node,
    ...(types ? { types } : {}),
    onUpdate: (s) => void (latest = s),
    log: silentLogger(),
    registry: createRegistry(),
  });
  t.after(() => client.close());
  client.start();
  return { latest: () => latest };
}

async function eventually(what: string, cond: () => boolean, timeoutMs = 8000): Promise<void> {
  for (let i = 0; i < timeoutMs / 20; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('waypoints get the route configs bound to them; agents get none', { timeout: 30_000 }, async (t) => {
  const controller = await startController(t);
  const wp = subscribe(t, controller, { id: 'waypoint~a', nodeName: 'node-1', role: 'waypoint', metadata: { waypoint: 'bookinfo/waypoint' } }, WP_TOKEN, ALL_RESOURCE_TYPES);
  const otherWp = subscribe(t, controller, { id: 'waypoint~b', nodeName: 'node-1', role: 'waypoint', metadata: { waypoint: 'other/wp' } }, OTHER_WP_TOKEN, ALL_RESOURCE_TYPES);
  const agent = subscribe(t, controller, { id: 'agent~node-1', nodeName: 'node-1', role: 'agent' }, TOKEN);

  await eventually('the waypoint holds the reviews route config', () => wp.latest()?.routes?.has(REVIEWS) === true);
  const cfg = wp.latest()!.routes!.get(REVIEWS)!;
  assert.equal(cfg.waypoint, 'bookinfo/waypoint');
  assert.deepEqual(
    cfg.routes.flatMap((r) => r.backends.map((b) => [b.subset, b.subsetLabels, b.weight])),
    [
      ['v1', { version: 'v1' }, 90],
      ['v2', { version: 'v2' }, 10],
    ],
  );
  assert.deepEqual([...wp.latest()!.routes!.keys()], [REVIEWS], 'only services bound to this waypoint');
  assert.ok(wp.latest()!.services.size >= 2, 'the waypoint also holds services (for endpoints)');

  await eventually('the other subscribers synced', () => (otherWp.latest()?.services.size ?? 0) >= 2 && (agent.latest()?.services.size ?? 0) >= 2);
  await controller.waitForSync(1, 5000);
  assert.equal(otherWp.latest()!.routes?.size ?? 0, 0, 'another waypoint gets none of them');
  assert.equal(agent.latest()!.routes, undefined, 'agents do not subscribe to route configs');
  assert.ok(controller.routeTranslation().routes.some((r) => r.name === REVIEWS));
});
