/**
 * The ReplicaSet controller: keeps `spec.replicas` active pods per set (created from its template
 * with `generateName: <set>-`, owned by the set; surplus pods deleted, the least useful first:
 * unscheduled, then not running, then not ready, then the newest) and writes the set's status.
 *
 * Invariant: pods this controller created or deleted but its informer has not shown yet are
 * counted as done ("expectations", as upstream keeps them), so a pass racing its own writes never
 * creates or deletes twice. Expectations expire after EXPECTATION_TTL_MS.
 */
import type { Logger } from '../../shared/log.js';
import type { KubeObject } from '../../controller/objects.js';
import { Informer, isNotFound, type KubeClient } from '../kube-client.js';
import { WorkQueue, controllerOf, controllerRef, isPodActive, isPodReady, nodeNameOf, nsName, podPhase, rec, selectorMatches, splitKey } from './queue.js';
import { sameStatus } from './deployment.js';

const EXPECTATION_TTL_MS = 30_000;
/** Pods created per pass at most (a set of 500 fills in a few passes, not one burst). */
const CREATE_BURST = 50;

/** Which of `pods` go first when a set shrinks: unscheduled, pending, not ready, then newest. */
export function deletionOrder(pods: KubeObject[]): KubeObject[] {
  const rank = (p: KubeObject): number => (nodeNameOf(p) === undefined ? 0 : podPhase(p) !== 'Running' ? 1 : !isPodReady(p) ? 2 : 3);
  return [...pods].sort((a, b) => rank(a) - rank(b) || String(b.metadata.creationTimestamp ?? '').localeCompare(String(a.metadata.creationTimestamp ?? '')) || b.metadata.name.localeCompare(a.metadata.name));
}

/** A new pod of set `rs` (the API server fills in the name from generateName). */
export function podFromTemplate(rs: KubeObject): KubeObject {
  const template = rec(rec(rs.spec).template);
  const meta = rec(template.metadata);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: '',
      generateName: `${rs.metadata.name}-`,
      namespace: rs.metadata.namespace ?? 'default',
      labels: { ...(meta.labels as Record<string, string> | undefined) },
      ...(meta.annotations ? { annotations: { ...(meta.annotations as Record<string, string>) } } : {}),
      ownerReferences: [controllerRef({ ...rs, apiVersion: 'apps/v1', kind: 'ReplicaSet' })],
    },
    spec: structuredClone(rec(template.spec)),
  };
}

export function replicaSetStatus(rs: KubeObject, pods: KubeObject[]): Record<string, unknown> {
  const labels = rec(rec(rec(rs.spec).template).metadata).labels as Record<string, string> | undefined;
  const ready = pods.filter(isPodReady).length;
  return {
    replicas: pods.length,
    fullyLabeledReplicas: pods.filter((p) => Object.entries(labels ?? {}).every(([k, v]) => p.metadata.labels?.[k] === v)).length,
    readyReplicas: ready,
    availableReplicas: ready,
    observedGeneration: rs.metadata.generation ?? 1,
  };
}

export class ReplicaSetController {
  private readonly sets: Informer;
  private readonly pods: Informer;
  private readonly queue: WorkQueue;
  /** Per set: pod names created but not seen yet, and pods deleted but still seen, with expiry. */
  private readonly creating = new Map<string, Map<string, number>>();
  private readonly deleting = new Map<string, Map<string, number>>();

  constructor(
    private readonly client: KubeClient,
    log: Logger,
  ) {
    this.queue = new WorkQueue('replicaset', (key) => this.sync(key), log);
    const enqueueOwner = (pod: KubeObject): void => {
      const owner = controllerOf(pod);
      if (owner?.kind === 'ReplicaSet') this.queue.add(`${pod.metadata.namespace}/${owner.name}`);
    };
    this.sets = new Informer({ client, path: '/apis/apps/v1/replicasets', apiVersion: 'apps/v1', kind: 'ReplicaSet', log, onEvent: (_t, rs) => this.queue.add(nsName(rs)) });
    this.pods = new Informer({ client, path: '/api/v1/pods', apiVersion: 'v1', kind: 'Pod', log, onEvent: (_t, p, old) => (enqueueOwner(p), old && enqueueOwner(old)) });
  }

  async start(): Promise<void> {
    await Promise.all([this.sets.start(), this.pods.start()]);
  }

  stop(): void {
    this.queue.stop();
    this.sets.stop();
    this.pods.stop();
  }

  private pending(map: Map<string, Map<string, number>>, key: string): Map<string, number> {
    let m = map.get(key);
    if (!m) map.set(key, (m = new Map()));
    const now = Date.now();
    for (const [name, until] of m) if (until < now) m.delete(name);
    return m;
  }

  private async sync(key: string): Promise<void> {
    const [ns, name] = splitKey(key);
    const rs = this.sets.get(ns, name);
    if (!rs) {
      this.creating.delete(key);
      this.deleting.delete(key);
      return;
    }
    if (rs.metadata.deletionTimestamp !== undefined) return;
    const owned = this.pods.list().filter((p) => p.metadata.namespace === ns && controllerOf(p)?.uid === rs.metadata.uid);
    const creating = this.pending(this.creating, key);
    const deleting = this.pending(this.deleting, key);
    for (const p of owned) creating.delete(p.metadata.name);
    const seen = new Set(owned.map((p) => p.metadata.name));
    for (const n of deleting.keys()) if (!seen.has(n)) deleting.delete(n);
    const active = owned.filter((p) => isPodActive(p) && !deleting.has(p.metadata.name) && selectorMatches(rec(rs.spec).selector, p.metadata.labels));
    const want = typeof rec(rs.spec).replicas === 'number' ? (rec(rs.spec).replicas as number) : 1;
    const diff = want - active.length - creating.size;
    const podsPath = `/api/v1/namespaces/${encodeURIComponent(ns)}/pods`;
    if (diff > 0) {
      for (let i = 0; i < Math.min(diff, CREATE_BURST); i++) {
        const created = await this.client.create(podsPath, podFromTemplate(rs));
        creating.set(created.metadata.name, Date.now() + EXPECTATION_TTL_MS);
      }
      if (diff > CREATE_BURST) this.queue.add(key);
    } else if (diff < 0 && creating.size === 0) {
      for (const p of deletionOrder(active).slice(0, -diff)) {
        deleting.set(p.metadata.name, Date.now() + EXPECTATION_TTL_MS);
        try {
          await this.client.delete(`${podsPath}/${encodeURIComponent(p.metadata.name)}`, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: p.metadata.uid } });
        } catch (e) {
          if (!isNotFound(e)) throw e;
        }
      }
    }
    const status = replicaSetStatus(rs, active);
    if (!sameStatus(status, rs.status)) {
      await this.client.mergePatch(`/apis/apps/v1/namespaces/${encodeURIComponent(ns)}/replicasets/${encodeURIComponent(name)}/status`, { status });
    }
    if (creating.size > 0 || deleting.size > 0) {
      // Expectations that are never met (a create the API server dropped) expire: look again then.
      setTimeout(() => this.queue.add(key), EXPECTATION_TTL_MS + 100).unref();
    }
  }
}
