/**
 * The scheduler: binds every pod without `spec.nodeName` (and of the default scheduler) to a node
 * through `pods/binding`: among the nodes that are Ready, schedulable, matching the pod's
 * nodeSelector and whose NoSchedule taints it tolerates, the one running the fewest pods (lowest
 * name on a tie), so replicas spread over nodes. A pod no node fits keeps
 * `PodScheduled=False, reason Unschedulable` with the reason per node, as upstream reports it.
 * `pickNode` decides (pure).
 */
import type { Logger } from '../../shared/log.js';
import type { KubeObject } from '../../controller/objects.js';
import { Informer, isConflict, isNotFound, type KubeClient } from '../kube-client.js';
import { WorkQueue, isPodActive, nodeNameOf, nsName, rec, splitKey } from './queue.js';

function nodeReady(node: KubeObject): boolean {
  const conds = (rec(node.status).conditions ?? []) as Array<Record<string, unknown>>;
  return conds.some((c) => c.type === 'Ready' && c.status === 'True');
}

function tolerates(pod: KubeObject, taint: Record<string, unknown>): boolean {
  const tolerations = (rec(pod.spec).tolerations ?? []) as Array<Record<string, unknown>>;
  return tolerations.some((t) => {
    if (t.effect !== undefined && t.effect !== '' && t.effect !== taint.effect) return false;
    if (t.operator === 'Exists') return t.key === undefined || t.key === '' || t.key === taint.key;
    return t.key === taint.key && (t.value ?? '') === (taint.value ?? '');
  });
}

/** Why `node` cannot run `pod`, or undefined when it can. */
export function unfitReason(pod: KubeObject, node: KubeObject): string | undefined {
  if (!nodeReady(node)) return 'node(s) were not ready';
  if (rec(node.spec).unschedulable === true) return 'node(s) were unschedulable';
  const selector = (rec(pod.spec).nodeSelector ?? {}) as Record<string, string>;
  if (Object.entries(selector).some(([k, v]) => node.metadata.labels?.[k] !== v)) return "node(s) didn't match Pod's node affinity/selector";
  for (const t of (rec(node.spec).taints ?? []) as Array<Record<string, unknown>>) {
    if ((t.effect === 'NoSchedule' || t.effect === 'NoExecute') && !tolerates(pod, t)) return `node(s) had untolerated taint {${String(t.key)}: ${String(t.value ?? '')}}`;
  }
  return undefined;
}

/** The node for `pod`: the fitting node with the fewest pods; or the reasons none fits. */
export function pickNode(pod: KubeObject, nodes: KubeObject[], podsPerNode: ReadonlyMap<string, number>): { node: string } | { message: string } {
  const reasons = new Map<string, number>();
  let best: KubeObject | undefined;
  for (const n of [...nodes].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name, undefined, { numeric: true }))) {
    const why = unfitReason(pod, n);
    if (why) {
      reasons.set(why, (reasons.get(why) ?? 0) + 1);
      continue;
    }
    if (!best || (podsPerNode.get(n.metadata.name) ?? 0) < (podsPerNode.get(best.metadata.name) ?? 0)) best = n;
  }
  if (best) return { node: best.metadata.name };
  const parts = [...reasons].map(([why, count]) => `${count} ${why}`);
  return { message: `0/${nodes.length} nodes are available${parts.length ? `: ${parts.join(', ')}` : ''}.` };
}

export class Scheduler {
  private readonly pods: Informer;
  private readonly nodes: Informer;
  private readonly queue: WorkQueue;
  /** Bindings made but not yet seen in the informer, counted for spreading. */
  private readonly bound = new Map<string, string>();

  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger,
  ) {
    this.queue = new WorkQueue('scheduler', (key) => this.sync(key), log);
    this.pods = new Informer({
      client,
      path: '/api/v1/pods',
      apiVersion: 'v1',
      kind: 'Pod',
      log,
      onEvent: (type, p) => {
        if (nodeNameOf(p) !== undefined || type === 'delete') this.bound.delete(nsName(p));
        if (type !== 'delete' && nodeNameOf(p) === undefined) this.queue.add(nsName(p));
      },
    });
    this.nodes = new Informer({
      client,
      path: '/api/v1/nodes',
      apiVersion: 'v1',
      kind: 'Node',
      log,
      // A node becoming ready or changing labels may fit pods that waited.
      onEvent: () => {
        for (const p of this.pods.list()) if (nodeNameOf(p) === undefined) this.queue.add(nsName(p));
      },
    });
  }

  async start(): Promise<void> {
    await Promise.all([this.nodes.start(), this.pods.start()]);
  }

  stop(): void {
    this.queue.stop();
    this.pods.stop();
    this.nodes.stop();
  }

  private podsPerNode(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const p of this.pods.list()) {
      const n = nodeNameOf(p) ?? this.bound.get(nsName(p));
      if (n && isPodActive(p)) counts.set(n, (counts.get(n) ?? 0) + 1);
    }
    return counts;
  }

  private async sync(key: string): Promise<void> {
    const [ns, name] = splitKey(key);
    const pod = this.pods.get(ns, name);
    if (!pod || nodeNameOf(pod) !== undefined || pod.metadata.deletionTimestamp !== undefined || this.bound.has(key)) return;
    const scheduler = rec(pod.spec).schedulerName;
    if (scheduler !== undefined && scheduler !== 'default-scheduler') return;
    const choice = pickNode(pod, this.nodes.list(), this.podsPerNode());
    const path = `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`;
    if ('node' in choice) {
      try {
        await this.client.create(`${path}/binding`, { apiVersion: 'v1', kind: 'Binding', metadata: { name, uid: pod.metadata.uid }, target: { apiVersion: 'v1', kind: 'Node', name: choice.node } });
        this.bound.set(key, choice.node);
        this.log.debug({ pod: key, node: choice.node }, 'pod bound');
      } catch (e) {
        // Gone, or bound meanwhile (by someone else): nothing left to do.
        if (!isNotFound(e) && !isConflict(e)) throw e;
      }
      return;
    }
    const conds = ((rec(pod.status).conditions ?? []) as Array<Record<string, unknown>>).filter((c) => c.type !== 'PodScheduled');
    const cur = ((rec(pod.status).conditions ?? []) as Array<Record<string, unknown>>).find((c) => c.type === 'PodScheduled');
    if (cur?.status === 'False' && cur.message === choice.message) return;
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    await this.client.mergePatch(`${path}/status`, {
      status: { conditions: [...conds, { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: choice.message, lastProbeTime: null, lastTransitionTime: now }] },
    });
  }
}
