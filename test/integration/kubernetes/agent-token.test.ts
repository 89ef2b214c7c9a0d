/**
 * The agent's side of Kubernetes authentication: connectToController (what the agent's main.ts
 * uses) presents the projected service-account token from a kubelet-style token volume (the
 * `..data` symlink swapped atomically on rotation) to the controller in Kubernetes mode, which
 * checks it with TokenReview against local mode's API server. Rotations are picked up by the CA
 * client and by each config-stream connection without a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectToController, type ControllerConnection } from '../../../src/shared/controller-client.js';
import { createKeyAndCsr } from '../../../src/shared/certs/csr.js';
import { isAmbitError } from '../../../src/shared/errors.js';
import { createRegistry } from '../../../src/shared/metrics.js';
import type { ConfigState } from '../../../src/shared/xds/client.js';
import { podObject, put, setPodRunning, startCluster, startKubernetesController, testLog, waitUntil } from './helpers.js';

const id = (ns: string, sa: string): string => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

/** A projected token volume as the kubelet writes it: `<dir>/istio-token` -> `..data/istio-token`, `..data` -> a timestamped folder. */
class TokenVolume {
  private version = 0;
  constructor(readonly dir: string) {}

  get file(): string {
    return join(this.dir, 'istio-token');
  }

  /** Writes a new timestamped folder and swaps `..data` to it in one rename, as the kubelet does. */
  async rotate(token: string): Promise<void> {
    const folder = `..2026_12_02_00_00_0${this.version++}`;
    await mkdir(join(this.dir, folder));
    await writeFile(join(this.dir, folder, 'istio-token'), token, { mode: 0o600 });
    await symlink(folder, join(this.dir, '..data_tmp'));
    await rename(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (this.version === 1) await symlink(join('..data', 'istio-token'), this.file);
    else await rm(join(this.dir, `..2026_12_02_00_00_0${this.version - 2}`), { recursive: true });
  }
}

async function ask(conn: ControllerConnection, identity: string): Promise<string> {
  try {
    await conn.caClient.fetchCertificate(identity, createKeyAndCsr(identity).csrPem, 3600);
    return 'issued';
  } catch (e) {
    assert.ok(isAmbitError(e, 'AMBIT_ERR_CERT_FETCH'), String(e));
    return grpc.status[(e.details?.['grpcCode'] as number) ?? 0] ?? 'unknown';
  }
}

test('the agent presents its projected token from the file, and the rotated one after the kubelet swaps it (CA and config stream)', async (t) => {
  const c = await startCluster(t);
  const server = c.ts.server;
  await put(server, [
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' } },
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-2' } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: 'demo' } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'client', namespace: 'demo' } },
    podObject('web', 'demo', { node: 'node-1', sa: 'web' }),
    podObject('client', 'demo', { node: 'node-2', sa: 'client' }),
    podObject('ambit-agent-n1', 'istio-system', { node: 'node-1', sa: 'ambit-agent' }),
    podObject('ambit-agent-n2', 'istio-system', { node: 'node-2', sa: 'ambit-agent' }),
  ]);
  await setPodRunning(server, 'demo', 'web', '10.1.0.5');
  await setPodRunning(server, 'demo', 'client', '10.1.0.6');
  const kc = await startKubernetesController(t, c);
  await waitUntil('the pods known to the controller', () => (kc.controller.access.pod('demo', 'client') ? true : undefined));

  const dir = await mkdtemp(join(tmpdir(), 'ambit-agent-token-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'root-cert.pem'), kc.controller.ca.rootCertPem);
  const volume = new TokenVolume(join(dir, 'tokens'));
  await mkdir(volume.dir);
  const agentToken = (pod: string, audiences = ['istio-ca']): string => server.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-agent', audiences, pod }).token;
  // First the kubelet has written a token for another audience: the controller refuses it.
  await volume.rotate(agentToken('ambit-agent-n1', ['api']));

  const [host, port] = [kc.controller.address.slice(0, kc.controller.address.lastIndexOf(':')), Number(kc.controller.address.slice(kc.controller.address.lastIndexOf(':') + 1))];
  const registry = createRegistry();
  const conn = await connectToController({ controller: { host: host!, port: port! }, controllerServerName: undefined, caRootFile: join(dir, 'root-cert.pem'), tokenFile: volume.file, certTtlSec: 3600 }, { registry, log: testLog() });
  t.after(() => conn.close());
  let state: ConfigState | undefined;
  const stream = conn.configClient({
    node: { id: 'agent~node-1', nodeName: 'node-1', role: 'agent' },
    onUpdate: (s) => {
      state = s;
    },
    log: testLog(),
    registry,
    backoff: { baseMs: 50, capMs: 200 },
  });
  stream.start();
  t.after(() => stream.close());

  assert.equal(await ask(conn, id('demo', 'web')), 'UNAUTHENTICATED', 'a token for another audience is refused');
  const refusedStreams = (): Promise<number> => kc.controller.registry.getSingleMetric('ambit_token_reviews_total')!.get().then((m) => m.values.filter((v) => v.labels['result'] === 'refused').reduce((n, v) => n + v.value, 0));
  await waitUntil('the config stream refused too', async () => ((await refusedStreams()) >= 2 ? true : undefined));
  assert.equal(state, undefined, 'no config for a refused token');

  // The kubelet rotates in the istio-ca token: both clients present it without a restart.
  await volume.rotate(agentToken('ambit-agent-n1'));
  assert.equal(await ask(conn, id('demo', 'web')), 'issued', 'the rotated token is presented to the CA');
  await waitUntil('config on the reconnected stream', () => (state ? true : undefined));
  assert.ok([...state!.workloads.values()].some((w) => w.name === 'web'), 'the agent view of node-1');
  assert.equal(await ask(conn, id('demo', 'client')), 'PERMISSION_DENIED', "another node's identity is refused");

  // Rotated again (a valid token replaced by another): the next call presents the new one. A
  // token bound to node-2's agent pod shows which token was presented by what it may obtain.
  await volume.rotate(agentToken('ambit-agent-n2'));
  assert.equal(await ask(conn, id('demo', 'client')), 'issued', 'the new token (node-2) is presented');
  assert.equal(await ask(conn, id('demo', 'web')), 'PERMISSION_DENIED', 'and node-1 identities are now refused');
});
