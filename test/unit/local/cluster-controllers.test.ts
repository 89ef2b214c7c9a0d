/**
 * The pure decisions of local mode's control plane: the Deployment plan (one ReplicaSet per
 * template, rolling over without dropping capacity, Recreate), the ReplicaSet's deletion order,
 * the scheduler's node choice and reasons, EndpointSlices of a Service, and kube-proxy's rules
 * from the slices.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../../src/controller/objects.js';
import { planDeployment, podTemplateHash, TEMPLATE_HASH_LABEL } from '../../../src/local/controllers/deployment.js';
import { deletionOrder, podFromTemplate } from '../../../src/local/controllers/replicaset.js';
import { pickNode } from '../../../src/local/controllers/scheduler.js';
import { desiredSlices, resolvePort, SERVICE_NAME_LABEL } from '../../../src/local/controllers/endpointslice.js';
import { isOrphan } from '../../../src/local/controllers/pod-gc.js';
import { serviceRulesFromSlices } from '../../../src/local/services.js';
import { kubeDnsObjects } from '../../../src/local/cluster-api.js';

const template = (image: string): Record<string, unknown> => ({ metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image, command: ['sleep', '1'], ports: [{ name: 'http', containerPort: 8080 }] }] } });
const deployment = (image: string, replicas = 3, strategy?: string): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', namespace: 'demo', uid: 'd-uid', generation: 2 },
  spec: { replicas, selector: { matchLabels: { app: 'web' } }, template: template(image), ...(strategy ? { strategy: { type: strategy } } : {}) },
});
const rs = (name: string, hash: string, revision: number, replicas: number, available: number): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'ReplicaSet',
  metadata: { name, namespace: 'demo', labels: { app: 'web', [TEMPLATE_HASH_LABEL]: hash }, annotations: { 'deployment.kubernetes.io/revision': String(revision) } },
  spec: { replicas },
  status: { replicas, readyReplicas: available, availableReplicas: available },
});

test('deployment: a new template gets a new ReplicaSet; old sets shrink only as new pods become available', () => {
  const h1 = podTemplateHash(template('v1'));
  const h2 = podTemplateHash(template('v2'));
  assert.notEqual(h1, h2);
  assert.equal(podTemplateHash(template('v1')), h1, 'the hash is stable');
  assert.match(h1, /^[bcdfghjklmnpqrstvwxz2456789]+$/);

  const first = planDeployment(deployment('v1'), []);
  assert.equal(first.create?.metadata.name, `web-${h1}`);
  assert.equal((first.create?.spec as any).replicas, 3);
  assert.equal((first.create?.spec as any).selector.matchLabels[TEMPLATE_HASH_LABEL], h1);
  assert.equal(first.create?.metadata.ownerReferences?.[0]?.uid, 'd-uid');

  const old = rs(`web-${h1}`, h1, 1, 3, 3);
  const rolled = planDeployment(deployment('v2'), [old]);
  assert.equal(rolled.create?.metadata.name, `web-${h2}`);
  assert.equal(rolled.create?.metadata.annotations?.['deployment.kubernetes.io/revision'], '2');
  assert.deepEqual(rolled.scale, [], 'the old set keeps its 3 while the new one has none available');

  const halfway = planDeployment(deployment('v2'), [old, rs(`web-${h2}`, h2, 2, 3, 2)]);
  assert.deepEqual(halfway.scale, [{ name: `web-${h1}`, replicas: 1 }]);
  assert.equal((halfway.status.conditions as any[]).find((c) => c.type === 'Progressing').reason, 'ReplicaSetUpdated');

  const done = planDeployment(deployment('v2'), [rs(`web-${h1}`, h1, 1, 0, 0), rs(`web-${h2}`, h2, 2, 3, 3)]);
  assert.deepEqual(done.scale, []);
  assert.equal((done.status.conditions as any[]).find((c) => c.type === 'Progressing').reason, 'NewReplicaSetAvailable');
  assert.equal(done.status.availableReplicas, 3);

  const recreate = planDeployment(deployment('v2', 3, 'Recreate'), [old]);
  assert.equal((recreate.create?.spec as any).replicas, 0, 'Recreate starts the new set only once old pods are gone');
  assert.deepEqual(recreate.scale, [{ name: `web-${h1}`, replicas: 0 }]);
});

const pod = (name: string, o: { node?: string; phase?: string; ready?: boolean; created?: string; ip?: string; labels?: Record<string, string>; deleting?: boolean } = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'demo', uid: `${name}-uid`, labels: o.labels ?? { app: 'web' }, creationTimestamp: o.created ?? '2026-01-01T00:00:00Z', ...(o.deleting ? { deletionTimestamp: '2026-01-01T00:01:00Z' } : {}) },
  spec: { ...(o.node ? { nodeName: o.node } : {}), containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }] }] },
  status: { phase: o.phase ?? 'Running', ...(o.ip ? { podIP: o.ip } : {}), conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }] },
});

test('replicaset: surplus pods go unscheduled first, then pending, then not ready, then newest', () => {
  const order = deletionOrder([
    pod('ready-old', { node: 'n1', created: '2026-01-01T00:00:00Z' }),
    pod('ready-new', { node: 'n1', created: '2026-01-02T00:00:00Z' }),
    pod('not-ready', { node: 'n1', ready: false }),
    pod('pending', { node: 'n1', phase: 'Pending' }),
    pod('unscheduled'),
  ]).map((p) => p.metadata.name);
  assert.deepEqual(order, ['unscheduled', 'pending', 'not-ready', 'ready-new', 'ready-old']);
  const set: KubeObject = { apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'web-abc', namespace: 'demo', uid: 'rs-uid' }, spec: { template: template('v1') } };
  const p = podFromTemplate(set);
  assert.equal(p.metadata.generateName, 'web-abc-');
  assert.deepEqual(p.metadata.ownerReferences?.map((r) => [r.kind, r.uid, r.controller]), [['ReplicaSet', 'rs-uid', true]]);
});

const node = (name: string, o: { ready?: boolean; labels?: Record<string, string>; taint?: Record<string, string>; unschedulable?: boolean } = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels: { 'kubernetes.io/hostname': name, ...o.labels } },
  spec: { ...(o.taint ? { taints: [o.taint] } : {}), ...(o.unschedulable ? { unschedulable: true } : {}) },
  status: { conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }] },
});

test('scheduler: the fitting node with the fewest pods; reasons when none fits', () => {
  const nodes = [node('node1'), node('node2'), node('node3', { ready: false })];
  assert.deepEqual(pickNode(pod('p'), nodes, new Map([['node1', 2], ['node2', 1]])), { node: 'node2' });
  assert.deepEqual(pickNode(pod('p'), nodes, new Map()), { node: 'node1' }, 'ties go to the lowest name');
  const selective: KubeObject = { ...pod('p'), spec: { nodeSelector: { zone: 'b' }, containers: [] } };
  assert.deepEqual(pickNode(selective, [node('node1'), node('node2', { labels: { zone: 'b' } })], new Map()), { node: 'node2' });
  const none = pickNode(selective, [node('node1'), node('node2', { labels: { zone: 'b' }, taint: { key: 'k', value: 'v', effect: 'NoSchedule' } }), node('node3', { ready: false })], new Map());
  assert.ok('message' in none);
  assert.match(none.message, /^0\/3 nodes are available: /);
  assert.match(none.message, /node\(s\) didn't match Pod's node affinity\/selector/);
  assert.match(none.message, /node\(s\) had untolerated taint \{k: v\}/);
  assert.match(none.message, /node\(s\) were not ready/);
  const tolerant: KubeObject = { ...pod('p'), spec: { tolerations: [{ operator: 'Exists' }], containers: [] } };
  assert.deepEqual(pickNode(tolerant, [node('node1', { taint: { key: 'k', value: 'v', effect: 'NoSchedule' } })], new Map()), { node: 'node1' });
});

test('endpointslices: ready, serving and terminating endpoints; named target ports resolved per pod; a placeholder when nothing is selected', () => {
  const svc: KubeObject = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'demo', uid: 's-uid' }, spec: { selector: { app: 'web' }, clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 'http' }] } };
  assert.equal(resolvePort(pod('a'), 'http', 80), 8080);
  assert.equal(resolvePort(pod('a'), undefined, 80), 80);
  assert.equal(resolvePort(pod('a'), 'nope', 80), undefined);
  const pods = [
    pod('a', { node: 'node1', ip: '10.5.1.2' }),
    pod('b', { node: 'node2', ip: '10.5.2.2', ready: false }),
    pod('c', { node: 'node2', ip: '10.5.2.3', deleting: true }),
    pod('d', { node: 'node1' }),
    pod('e', { node: 'node1', ip: '10.5.1.9', labels: { app: 'other' } }),
  ];
  const slices = desiredSlices(svc, pods);
  assert.equal(slices.length, 1);
  const sl = slices[0] as any;
  assert.equal(sl.metadata.labels[SERVICE_NAME_LABEL], 'web');
  assert.deepEqual(sl.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  assert.deepEqual(
    sl.endpoints.map((e: any) => [e.addresses[0], e.nodeName, e.conditions.ready, e.conditions.serving, e.conditions.terminating]),
    [
      ['10.5.1.2', 'node1', true, true, false],
      ['10.5.2.2', 'node2', false, false, false],
      ['10.5.2.3', 'node2', false, true, true],
    ],
  );
  const empty = desiredSlices(svc, []) as any[];
  assert.deepEqual([empty.length, empty[0].endpoints, empty[0].ports], [1, [], []]);

  const rules = serviceRulesFromSlices([svc], slices);
  assert.deepEqual(rules, [{ vip: '10.96.0.10', protocol: 'tcp', port: 80, endpoints: [{ ip: '10.5.1.2', port: 8080 }] }], 'kube-proxy sends only to ready endpoints');
  const onlyTerminating = desiredSlices(svc, [pods[2]!]);
  assert.deepEqual(serviceRulesFromSlices([svc], onlyTerminating)[0]?.endpoints, [{ ip: '10.5.2.3', port: 8080 }], 'serving terminating endpoints are used when none is ready');
  const headless: KubeObject = { ...svc, spec: { ...(svc.spec as object), clusterIP: 'None' } };
  assert.deepEqual(serviceRulesFromSlices([headless], slices), []);
});

test('kube-proxy rules: the kube-dns Service gets a UDP and a TCP rule to the cluster DNS server', () => {
  const [svc, slice] = kubeDnsObjects('10.99.0.10', '10.240.3.1') as [KubeObject, KubeObject];
  assert.equal((svc.spec as any).clusterIP, '10.99.0.10');
  assert.equal(svc.metadata.namespace, 'kube-system');
  assert.equal(slice.metadata.labels?.[SERVICE_NAME_LABEL], 'kube-dns');
  assert.notEqual(slice.metadata.labels?.['endpointslice.kubernetes.io/managed-by'], 'endpointslice-controller.k8s.io', 'the EndpointSlice controller leaves it alone');
  assert.deepEqual(serviceRulesFromSlices([svc], [slice]), [
    { vip: '10.99.0.10', protocol: 'udp', port: 53, endpoints: [{ ip: '10.240.3.1', port: 53 }] },
    { vip: '10.99.0.10', protocol: 'tcp', port: 53, endpoints: [{ ip: '10.240.3.1', port: 53 }] },
  ]);
  const sctp: KubeObject = { ...svc, spec: { ...(svc.spec as object), ports: [{ name: 'x', port: 9, protocol: 'SCTP' }] } };
  assert.deepEqual(serviceRulesFromSlices([sctp], [slice]), [], 'protocols kube-proxy rules do not cover are skipped');
});

test('pod gc: a pod bound to a node that does not exist is an orphan', () => {
  assert.equal(isOrphan(pod('a', { node: 'node9' }), new Set(['node1'])), true);
  assert.equal(isOrphan(pod('a', { node: 'node1' }), new Set(['node1'])), false);
  assert.equal(isOrphan(pod('a'), new Set(['node1'])), false, 'an unscheduled pod is the scheduler\'s');
});
