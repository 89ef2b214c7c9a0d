/**
 * The Deployment controller, as kube-controller-manager runs it: each Deployment owns one
 * ReplicaSet per pod template (`<deployment>-<pod-template-hash>`, the hash label on the set, its
 * selector and its pods), scaled to `spec.replicas`; a changed template makes a new ReplicaSet and
 * rolls over (RollingUpdate: the new set is scaled up at once and old sets down only as new pods
 * become available, so serving capacity never drops; Recreate: old pods go first); the
 * Deployment's status sums its sets. `planDeployment` decides (pure); the class reads informers and
 * writes through the API.
 */
import type { Logger } from '../../shared/log.js';
import type { KubeObject } from '../../controller/objects.js';
import { Informer, isAlreadyExists, isNotFound, type KubeClient } from '../kube-client.js';
import { WorkQueue, controllerOf, controllerRef, nsName, rec, splitKey, stableJson } from './queue.js';

export const TEMPLATE_HASH_LABEL = 'pod-template-hash';
export const REVISION_ANNOTATION = 'deployment.kubernetes.io/revision';
/** Characters Kubernetes encodes hashes with (no vowels, no confusable digits). */
const SAFE = 'bcdfghjklmnpqrstvwxz2456789';

/** The pod-template-hash of a template: a 32-bit FNV-1a over its JSON, safe-encoded as Kubernetes encodes it. */
export function podTemplateHash(template: unknown): string {
  const text = stableJson(template ?? {});
  let h = 0x811c9dc5;
  for (const b of Buffer.from(text)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return [...String(h)].map((c) => SAFE[c.charCodeAt(0) % SAFE.length]).join('');
}

function int(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isInteger(v) ? v : fallback;
}

export interface ReplicaSetScale {
  name: string;
  replicas: number;
}

export interface DeploymentPlan {
  /** A ReplicaSet to create for the current template. */
  create?: KubeObject;
  /** Sets whose spec.replicas must change. */
  scale: ReplicaSetScale[];
  /** The Deployment's status (written when it differs). */
  status: Record<string, unknown>;
}

function revisionOf(rs: KubeObject): number {
  return Number(rs.metadata.annotations?.[REVISION_ANNOTATION] ?? '0') || 0;
}

/** What to do for deployment `d` given the ReplicaSets it controls. */
export function planDeployment(d: KubeObject, owned: KubeObject[]): DeploymentPlan {
  const spec = rec(d.spec);
  const template = rec(spec.template);
  const desired = int(spec.replicas, 1);
  const hash = podTemplateHash(template);
  const newRs = owned.find((rs) => rs.metadata.labels?.[TEMPLATE_HASH_LABEL] === hash);
  const old = owned.filter((rs) => rs !== newRs).sort((a, b) => revisionOf(b) - revisionOf(a));
  const plan: DeploymentPlan = { scale: [], status: {} };
  const specReplicas = (rs: KubeObject): number => int(rec(rs.spec).replicas, 0);
  const st = (rs: KubeObject | undefined, k: string): number => (rs ? int(rec(rs.status)[k], 0) : 0);
  const recreate = rec(spec.strategy).type === 'Recreate';
  const oldPods = old.reduce((s, rs) => s + st(rs, 'replicas'), 0);

  let newTarget = desired;
  if (recreate && (oldPods > 0 || old.some((rs) => specReplicas(rs) > 0))) newTarget = 0;
  if (!newRs) {
    const revision = Math.max(0, ...owned.map(revisionOf)) + 1;
    const tmeta = rec(template.metadata);
    const labels = { ...(tmeta.labels as Record<string, string> | undefined), [TEMPLATE_HASH_LABEL]: hash };
    const matchLabels = { ...(rec(spec.selector).matchLabels as Record<string, string> | undefined), [TEMPLATE_HASH_LABEL]: hash };
    plan.create = {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: {
        name: `${d.metadata.name}-${hash}`,
        namespace: d.metadata.namespace ?? 'default',
        labels,
        annotations: { [REVISION_ANNOTATION]: String(revision), 'deployment.kubernetes.io/desired-replicas': String(desired) },
        ownerReferences: [controllerRef({ ...d, apiVersion: 'apps/v1', kind: 'Deployment' })],
      },
      spec: {
        replicas: newTarget,
        selector: { ...rec(spec.selector), matchLabels },
        template: { ...template, metadata: { ...tmeta, labels } },
      },
    };
  } else if (specReplicas(newRs) !== newTarget) plan.scale.push({ name: newRs.metadata.name, replicas: newTarget });

  // Old sets keep what the new set does not yet serve, newest first.
  let keep = recreate ? 0 : Math.max(0, desired - st(newRs, 'availableReplicas'));
  for (const rs of old) {
    const want = Math.min(specReplicas(rs), keep);
    keep -= want;
    if (specReplicas(rs) !== want) plan.scale.push({ name: rs.metadata.name, replicas: want });
  }

  const all = newRs ? [newRs, ...old] : old;
  const sum = (k: string): number => all.reduce((s, rs) => s + st(rs, k), 0);
  const available = sum('availableReplicas');
  const updated = st(newRs, 'replicas');
  const complete = newRs !== undefined && st(newRs, 'availableReplicas') >= desired && updated === desired && sum('replicas') === desired;
  plan.status = {
    observedGeneration: d.metadata.generation ?? 1,
    replicas: sum('replicas'),
    updatedReplicas: updated,
    readyReplicas: sum('readyReplicas'),
    availableReplicas: available,
    ...(desired - available > 0 ? { unavailableReplicas: desired - available } : {}),
    conditions: [
      {
        type: 'Available',
        status: available >= desired ? 'True' : 'False',
        reason: available >= desired ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable',
        message: available >= desired ? 'Deployment has minimum availability.' : 'Deployment does not have minimum availability.',
      },
      {
        type: 'Progressing',
        status: 'True',
        reason: complete ? 'NewReplicaSetAvailable' : 'ReplicaSetUpdated',
        message: `ReplicaSet "${d.metadata.name}-${hash}" ${complete ? 'has successfully progressed' : 'is progressing'}.`,
      },
    ],
  };
  return plan;
}

/** Conditions compared without their timestamps. */
function statusView(status: unknown): string {
  const s = { ...rec(status) };
  if (Array.isArray(s.conditions)) s.conditions = (s.conditions as Array<Record<string, unknown>>).map(({ type, status: cs, reason, message }) => ({ type, status: cs, reason, message }));
  return stableJson(s);
}

/** Adds the timestamps of conditions (kept from the current status when unchanged). */
export function withConditionTimes(next: Record<string, unknown>, current: unknown, now: string): Record<string, unknown> {
  const cur = Array.isArray(rec(current).conditions) ? (rec(current).conditions as Array<Record<string, unknown>>) : [];
  const conds = Array.isArray(next.conditions) ? (next.conditions as Array<Record<string, unknown>>) : [];
  return {
    ...next,
    conditions: conds.map((c) => {
      const prev = cur.find((p) => p.type === c.type);
      const same = prev && prev.status === c.status;
      return { ...c, lastUpdateTime: now, lastTransitionTime: same && typeof prev.lastTransitionTime === 'string' ? prev.lastTransitionTime : now };
    }),
  };
}

export function sameStatus(a: unknown, b: unknown): boolean {
  return statusView(a) === statusView(b);
}

export class DeploymentController {
  private readonly deployments: Informer;
  private readonly replicaSets: Informer;
  private readonly queue: WorkQueue;

  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger,
  ) {
    this.queue = new WorkQueue('deployment', (key) => this.sync(key), log);
    const enqueueOwner = (rs: KubeObject): void => {
      const owner = controllerOf(rs);
      if (owner?.kind === 'Deployment') this.queue.add(`${rs.metadata.namespace}/${owner.name}`);
    };
    this.deployments = new Informer({ client, path: '/apis/apps/v1/deployments', apiVersion: 'apps/v1', kind: 'Deployment', log, onEvent: (_t, d) => this.queue.add(nsName(d)) });
    this.replicaSets = new Informer({ client, path: '/apis/apps/v1/replicasets', apiVersion: 'apps/v1', kind: 'ReplicaSet', log, onEvent: (_t, rs, old) => (enqueueOwner(rs), old && enqueueOwner(old)) });
  }

  async start(): Promise<void> {
    await Promise.all([this.deployments.start(), this.replicaSets.start()]);
  }

  stop(): void {
    this.queue.stop();
    this.deployments.stop();
    this.replicaSets.stop();
  }

  private async sync(key: string): Promise<void> {
    const [ns, name] = splitKey(key);
    const d = this.deployments.get(ns, name);
    if (!d || d.metadata.deletionTimestamp !== undefined) return;
    const owned = this.replicaSets.list().filter((rs) => rs.metadata.namespace === ns && controllerOf(rs)?.uid === d.metadata.uid && rs.metadata.deletionTimestamp === undefined);
    const plan = planDeployment(d, owned);
    const base = `/apis/apps/v1/namespaces/${encodeURIComponent(ns)}`;
    if (plan.create) {
      try {
        await this.client.create(`${base}/replicasets`, plan.create);
        this.log.info({ deployment: key, replicaSet: plan.create.metadata.name }, 'replica set created');
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
      }
    }
    for (const s of plan.scale) {
      try {
        await this.client.mergePatch(`${base}/replicasets/${encodeURIComponent(s.name)}`, { spec: { replicas: s.replicas } });
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    }
    if (!sameStatus(plan.status, d.status)) {
      await this.client.mergePatch(`${base}/deployments/${encodeURIComponent(name)}/status`, { status: withConditionTimes(plan.status, d.status, new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')) });
    }
  }
}
