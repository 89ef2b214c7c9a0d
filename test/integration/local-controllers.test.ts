/**
 * Local mode's control plane against the real local API server, driven by the real kubectl: a
 * Deployment becomes a ReplicaSet and pods, the scheduler spreads them over Ready nodes through
 * pods/binding, EndpointSlices follow pod readiness, scaling and a new template roll the pods,
 * a pod bound to a missing node is reported, and deleting the Deployment removes its pods. The
 * test plays the kubelet (it writes pod status), so no root is needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KubeClient } from '../../src/local/kube-client.js';
import { DeploymentController } from '../../src/local/controllers/deployment.js';
import { ReplicaSetController } from '../../src/local/controllers/replicaset.js';
import { Scheduler } from '../../src/local/controllers/scheduler.js';
import { EndpointSliceController } from '../../src/local/controllers/endpointslice.js';
import { PodGarbageCollector } from '../../src/local/controllers/pod-gc.js';
import { silentLog, startTestServer, waitUntil, type TestServer } from './apiserver/helpers.js';

const APP = `apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: none
        command: [sleep, infinity]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
`;

async function startControlPlane(t: { after(fn: () => unknown): void }, s: TestServer): Promise<KubeClient> {
  const client = new KubeClient({ server: s.server.url, caPem: s.server.caCertPem, token: () => s.server.adminToken });
  for (const ctl of [new DeploymentController(client, silentLog), new ReplicaSetController(client, silentLog), new Scheduler(client, silentLog), new EndpointSliceController(client, silentLog), new PodGarbageCollector(client, silentLog)]) {
    t.after(() => ctl.stop());
    await ctl.start();
  }
  for (const name of ['node1', 'node2']) {
    await client.create('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name } } });
    await client.mergePatch(`/api/v1/nodes/${name}/status`, { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady' }] } });
  }
  return client;
}

interface PodList {
  items: Array<{ metadata: { name: string; uid: string; deletionTimestamp?: string; ownerReferences?: Array<{ name: string }> }; spec: { nodeName?: string; containers: Array<{ image: string }> }; status?: { podIP?: string } }>;
}

/** What a kubelet does: Running, an IP, Ready. */
async function runPods(client: KubeClient, pods: PodList['items']): Promise<void> {
  for (const [i, p] of pods.entries()) {
    if (p.status?.podIP) continue;
    await client.mergePatch(`/api/v1/namespaces/demo/pods/${p.metadata.name}/status`, {
      status: { phase: 'Running', podIP: `10.5.${p.spec.nodeName === 'node1' ? 1 : 2}.${10 + i + Math.floor(Math.random() * 200)}`, conditions: [{ type: 'Ready', status: 'True' }] },
    });
  }
}

const livePods = async (client: KubeClient): Promise<PodList['items']> => (await client.get<PodList>('/api/v1/namespaces/demo/pods')).items.filter((p) => !p.metadata.deletionTimestamp);

/** A kubelet finishing graceful deletions at once. */
async function finishDeletions(client: KubeClient): Promise<void> {
  for (const p of (await client.get<PodList>('/api/v1/namespaces/demo/pods')).items) {
    if (p.metadata.deletionTimestamp) await client.delete(`/api/v1/namespaces/demo/pods/${p.metadata.name}`, { gracePeriodSeconds: 0 });
  }
}

test('deployments, replicasets, the scheduler and endpointslices on the local API server, driven by kubectl', async (t) => {
  const s = await startTestServer(t);
  const client = await startControlPlane(t, s);
  const applied = await s.kubectl(['apply', '-f', '-'], { input: APP });
  assert.equal(applied.code, 0, applied.stderr);

  const bound = await waitUntil('two pods bound to nodes', async () => {
    const pods = await livePods(client);
    return pods.length === 2 && pods.every((p) => p.spec.nodeName) ? pods : undefined;
  });
  assert.deepEqual(bound.map((p) => p.spec.nodeName).sort(), ['node1', 'node2'], 'replicas spread over the nodes');
  assert.ok(bound.every((p) => /^web-[a-z0-9]+-[a-z0-9]{5}$/.test(p.metadata.name)), bound.map((p) => p.metadata.name).join(','));

  await runPods(client, bound);
  const slice = await waitUntil('an EndpointSlice with both pods ready', async () => {
    const list = await client.get<{ items: Array<{ endpoints: Array<{ addresses: string[]; conditions: { ready: boolean }; nodeName: string }>; ports: Array<{ port: number }> }> }>('/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb');
    const sl = list.items[0];
    return sl && sl.endpoints.length === 2 && sl.endpoints.every((e) => e.conditions.ready) ? sl : undefined;
  });
  assert.deepEqual(slice.ports.map((p) => p.port), [8080], 'the named targetPort resolves to the container port');

  const deploy = await waitUntil('the Deployment reports 2 available', async () => {
    const r = await s.kubectl(['get', 'deployment', 'web', '-n', 'demo', '-o', 'jsonpath={.status.availableReplicas}/{.status.updatedReplicas}']);
    return r.stdout === '2/2' ? r.stdout : undefined;
  });
  assert.equal(deploy, '2/2');
  const wide = await s.kubectl(['get', 'pods', '-n', 'demo', '-o', 'wide']);
  assert.match(wide.stdout, /node1/);
  assert.match(wide.stdout, /node2/);

  // Scale down: one pod deleted (gracefully; the kubelet finishes it).
  assert.equal((await s.kubectl(['scale', 'deployment/web', '-n', 'demo', '--replicas=1'])).code, 0);
  await waitUntil('one pod left', async () => {
    await finishDeletions(client);
    return (await livePods(client)).length === 1 ? true : undefined;
  });

  // A new template rolls over to a new ReplicaSet.
  const set = await s.kubectl(['set', 'image', 'deployment/web', '-n', 'demo', 'web=none:v2']);
  assert.equal(set.code, 0, set.stderr);
  const rolled = await waitUntil('the pods of the new template running alone', async () => {
    await runPods(client, await livePods(client));
    await finishDeletions(client);
    const pods = await livePods(client);
    return pods.length === 1 && pods[0]!.spec.containers[0]!.image === 'none:v2' ? pods : undefined;
  }, 20_000);
  assert.equal(rolled.length, 1);
  const sets = await s.kubectl(['get', 'rs', '-n', 'demo', '-o', 'jsonpath={range .items[*]}{.spec.replicas} {end}']);
  assert.deepEqual(sets.stdout.trim().split(' ').sort(), ['0', '1'], 'the old set is scaled to 0 and kept');

  // A pod for a node that does not exist is reported, not run.
  await client.create('/api/v1/namespaces/demo/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'lost' }, spec: { nodeName: 'node9', containers: [{ name: 'c', image: 'x', command: ['true'] }] } });
  const reason = await waitUntil('the orphan reported', async () => {
    const r = await s.kubectl(['get', 'pod', 'lost', '-n', 'demo', '-o', 'jsonpath={.status.reason}']);
    return r.stdout !== '' ? r.stdout : undefined;
  });
  assert.equal(reason, 'NodeNotFound');
  // A pod nothing fits stays unscheduled with the scheduler's reason.
  await client.create('/api/v1/namespaces/demo/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'picky' }, spec: { nodeSelector: { zone: 'mars' }, containers: [{ name: 'c', image: 'x', command: ['true'] }] } });
  const unsched = await waitUntil('picky unschedulable', async () => {
    const r = await s.kubectl(['get', 'pod', 'picky', '-n', 'demo', '-o', 'jsonpath={.status.conditions[?(@.type=="PodScheduled")].message}']);
    return r.stdout !== '' ? r.stdout : undefined;
  });
  assert.match(unsched, /0\/2 nodes are available: 2 node\(s\) didn't match Pod's node affinity\/selector/);

  const del = await s.kubectl(['delete', 'deployment', 'web', '-n', 'demo', '--wait=false']);
  assert.equal(del.code, 0, del.stderr);
  await waitUntil('the Deployment\'s pods and sets gone', async () => {
    await finishDeletions(client);
    const pods = (await livePods(client)).filter((p) => p.metadata.name.startsWith('web-'));
    const rs = await client.get<{ items: unknown[] }>('/apis/apps/v1/namespaces/demo/replicasets');
    return pods.length === 0 && rs.items.length === 0 ? true : undefined;
  }, 20_000);
});
