/**
 * Several controller replicas on one API server: one holds the Lease and writes status, every one
 * serves config and certificates from the same CA; when the leader stops (releasing the Lease),
 * another takes over at once; a Lease whose holder vanished without releasing is taken over only
 * once it expired on the taker's clock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { KubernetesController } from '../../../src/controller/kubernetes-mode.js';
import { LeaderElector, microTime } from '../../../src/controller/leader-election.js';
import { KubeClient, loadKubeConfig } from '../../../src/controller/source/kube-client.js';
import { createRegistry } from '../../../src/shared/metrics.js';
import { put, startCluster, startKubernetesController, testLog, waitUntil, type Cluster } from './helpers.js';

async function statusWrites(kc: KubernetesController): Promise<number> {
  const m = kc.controller.registry.getSingleMetric('ambit_status_writes_total');
  return m ? (await m.get()).values.filter((v) => v.labels['result'] === 'written').reduce((n, v) => n + v.value, 0) : 0;
}

function invalidPolicy(name: string): string {
  return `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: demo }
spec: { action: ALLOW, rules: [{ from: [{ source: { ipBlocks: ["nope"] } }] }] }
`;
}

async function conditionOf(c: Cluster, name: string): Promise<string | undefined> {
  const r = await c.ts.kubectl(['get', 'authorizationpolicy', '-n', 'demo', name, '-o', 'yaml']);
  if (r.code !== 0) return undefined;
  return parse(r.stdout).status?.conditions?.find((x: { type: string }) => x.type === 'Accepted')?.reason;
}

test('two replicas: one leader writes, both serve with one CA; the other takes over when the leader stops', async (t) => {
  const c = await startCluster(t);
  await put(c.ts.server, [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo' } }]);
  const a = await startKubernetesController(t, c, { identity: 'replica-a' });
  await waitUntil('replica a leads', () => (a.leader.isLeader ? true : undefined));
  const b = await startKubernetesController(t, c, { identity: 'replica-b' });
  assert.equal(b.leader.isLeader, false, 'one leader at a time');
  assert.equal(b.controller.ca.rootCertPem, a.controller.ca.rootCertPem, 'every replica signs with the CA in the Secret');

  let r = await c.ts.kubectl(['apply', '-f', '-'], { input: invalidPolicy('first') });
  assert.equal(r.code, 0, r.stderr);
  await waitUntil('the leader writes the status', async () => ((await conditionOf(c, 'first')) === 'Invalid' ? true : undefined), 20_000);
  // The follower sees the same object and would write the same status, but does not.
  await waitUntil('the follower knows the invalid object', () => (b.source.invalid().has('AuthorizationPolicy/demo/first') ? true : undefined));
  await b.settled();
  assert.ok((await statusWrites(a)) >= 1);
  assert.equal(await statusWrites(b), 0, 'a follower never writes status');
  const lease = async () => parse((await c.ts.kubectl(['get', 'lease', '-n', 'istio-system', 'ambit-controller', '-o', 'yaml'])).stdout).spec;
  assert.equal((await lease()).holderIdentity, 'replica-a');

  await a.close();
  await waitUntil('replica b takes over', () => (b.leader.isLeader ? true : undefined), 5_000);
  const spec = await lease();
  assert.equal(spec.holderIdentity, 'replica-b');
  assert.ok(spec.leaseTransitions >= 1);
  r = await c.ts.kubectl(['apply', '-f', '-'], { input: invalidPolicy('second') });
  assert.equal(r.code, 0, r.stderr);
  await waitUntil('the new leader writes the status', async () => ((await conditionOf(c, 'second')) === 'Invalid' ? true : undefined), 20_000);
  assert.ok((await statusWrites(b)) >= 1);
});

test('a Lease whose holder vanished is taken over once it expired, not before', async (t) => {
  const c = await startCluster(t);
  const now = Date.now();
  await put(c.ts.server, [{
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: 'ambit-controller', namespace: 'istio-system' },
    spec: { holderIdentity: 'crashed-replica', leaseDurationSeconds: 2, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 4 },
  }]);
  const client = new KubeClient(loadKubeConfig({ text: c.controllerKubeconfig }));
  const elector = new LeaderElector({ client, namespace: 'istio-system', identity: 'survivor', leaseDurationMs: 2000, renewDeadlineMs: 1000, retryPeriodMs: 100, log: testLog(), registry: createRegistry() });
  const leading = new Promise<number>((resolve) => elector.once('leading', () => resolve(Date.now())));
  const started = Date.now();
  elector.start();
  t.after(() => elector.close());
  const at = await leading;
  assert.ok(at - started >= 1900, `waited for the lease to expire (${at - started} ms)`);
  const spec = parse((await c.ts.kubectl(['get', 'lease', '-n', 'istio-system', 'ambit-controller', '-o', 'yaml'])).stdout).spec;
  assert.equal(spec.holderIdentity, 'survivor');
  assert.equal(spec.leaseTransitions, 5);
  await elector.close();
  const released = parse((await c.ts.kubectl(['get', 'lease', '-n', 'istio-system', 'ambit-controller', '-o', 'yaml'])).stdout).spec;
  assert.ok(!released.holderIdentity, 'released on close');
});
