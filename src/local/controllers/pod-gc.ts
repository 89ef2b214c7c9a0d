/**
 * Pods bound to a node that does not exist (a manifest's `spec.nodeName` naming no node of this
 * cluster): no kubelet will ever run them. They stay Pending with reason `NodeNotFound` and a
 * message naming the nodes that do exist, so `kubectl get pods` and `ambit local status` say why
 * and nothing waits for them; one being deleted is removed at once (grace 0), as upstream's pod
 * garbage collector removes pods of nodes that are gone.
 */
import type { Logger } from '../../shared/log.js';
import type { KubeObject } from '../../controller/objects.js';
import { Informer, isNotFound, type KubeClient } from '../kube-client.js';
import { WorkQueue, nodeNameOf, nsName, rec, splitKey } from './queue.js';

export const NODE_NOT_FOUND = 'NodeNotFound';

/** True when `pod` is bound to a node missing from `nodes`. */
export function isOrphan(pod: KubeObject, nodes: ReadonlySet<string>): boolean {
  const n = nodeNameOf(pod);
  return n !== undefined && !nodes.has(n);
}

export function orphanMessage(pod: KubeObject, nodes: ReadonlySet<string>): string {
  return `pod is bound to node "${nodeNameOf(pod)}", which does not exist in this cluster (nodes: ${[...nodes].sort().join(', ') || 'none'}); it will not run`;
}

export class PodGarbageCollector {
  private readonly pods: Informer;
  private readonly nodes: Informer;
  private readonly queue: WorkQueue;

  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger,
  ) {
    this.queue = new WorkQueue('pod-gc', (key) => this.sync(key), log);
    this.pods = new Informer({ client, path: '/api/v1/pods', apiVersion: 'v1', kind: 'Pod', log, onEvent: (t, p) => t !== 'delete' && nodeNameOf(p) !== undefined && this.queue.add(nsName(p)) });
    this.nodes = new Informer({
      client,
      path: '/api/v1/nodes',
      apiVersion: 'v1',
      kind: 'Node',
      log,
      onEvent: () => {
        for (const p of this.pods.list()) if (nodeNameOf(p) !== undefined) this.queue.add(nsName(p));
      },
    });
  }

  async start(): Promise<void> {
    await this.nodes.start();
    await this.pods.start();
  }

  stop(): void {
    this.queue.stop();
    this.pods.stop();
    this.nodes.stop();
  }

  private async sync(key: string): Promise<void> {
    const [ns, name] = splitKey(key);
    const pod = this.pods.get(ns, name);
    const nodes = new Set(this.nodes.list().map((n) => n.metadata.name));
    if (!pod || !isOrphan(pod, nodes)) return;
    const path = `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`;
    if (pod.metadata.deletionTimestamp !== undefined) {
      await this.client.delete(path, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid: pod.metadata.uid } });
      return;
    }
    const message = orphanMessage(pod, nodes);
    const st = rec(pod.status);
    if (st.reason === NODE_NOT_FOUND && st.message === message) return;
    this.log.warn({ pod: key, node: nodeNameOf(pod) }, 'pod is bound to a node that does not exist');
    try {
      await this.client.mergePatch(`${path}/status`, { status: { phase: 'Pending', reason: NODE_NOT_FOUND, message } });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
}
