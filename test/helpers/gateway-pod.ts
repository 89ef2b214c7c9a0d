/**
 * A gateway-mode Waypoint on 127.0.0.1 fed one translation as the controller would push it to
 * one gateway pod (model, route configs, that pod's listeners), with certificates from a test CA.
 * Closed when the test ends.
 */
import type { TestContext } from 'node:test';
import type { MeshTranslation } from '../../src/controller/translate/translate.js';
import { silentLogger } from '../../src/shared/log.js';
import type { Registry } from '../../src/shared/metrics.js';
import type { ConfigState } from '../../src/shared/xds/client.js';
import { Waypoint } from '../../src/waypoint/waypoint.js';
import type { TestCa } from './test-ca.js';

export async function startGatewayPod(
  t: TestContext,
  opts: { podKey: string; identity: string; workload: string; mesh: TestCa; registry: Registry; translation: MeshTranslation },
): Promise<Waypoint> {
  const { podKey, mesh, translation: out } = opts;
  const gw = new Waypoint({
    name: podKey,
    podIp: '127.0.0.1',
    identity: opts.identity,
    trustDomain: 'cluster.local',
    log: silentLogger(),
    registry: opts.registry,
    getCertificate: (id) => Promise.resolve({ identity: id, ...mesh.issue(id), rootsPem: [mesh.rootPem] }),
    gateway: { source: { workload: opts.workload, namespace: podKey.split('/')[0]! }, listenHost: '127.0.0.1' },
  });
  t.after(() => gw.close(500));
  const state: ConfigState = {
    workloads: new Map(out.model.workloads.map((w) => [w.uid, w])),
    services: new Map(out.model.services.map((s) => [`${s.namespace}/${s.hostname}`, s])),
    authorizations: new Map(),
    routes: new Map(out.routes.routes.map((r) => [r.name, r])),
    listeners: new Map((out.listeners.byPod.get(podKey) ?? []).map((l) => [`${podKey}/${l.port}`, l])),
    versions: new Map(),
    systemVersions: new Map(),
  };
  gw.applyConfig(state);
  await gw.applyListeners(state);
  return gw;
}
