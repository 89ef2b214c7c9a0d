/**
 * Mirror pods of a local mesh's agents: local mode runs each node's agent itself (agents.ts), so
 * the API server shows it as a kubelet shows a static pod, a pod annotated
 * `kubernetes.io/config.mirror` in istio-system on its node's network (hostNetwork, the node's
 * address), Running, Ready while the agent is connected to the controller. That is how
 * `kubectl get pods -n istio-system` lists the agents and how Prometheus' Kubernetes service
 * discovery finds them, by the same scrape annotations the DaemonSet's pods carry (15020).
 *
 * Invariant: one pass at a time; a pod's status is written only when it changes.
 */
import type { KubeObject } from '../controller/objects.js';
import type { Logger } from '../shared/log.js';
import { MESH_NAMESPACE, AGENT_IDENTITY } from './cluster-api.js';
import { isAlreadyExists, type KubeClient } from './kube-client.js';
import { MIRROR_ANNOTATION } from './node/runtime.js';
import type { NodePlan } from './plan.js';

/** The scrape annotations of the agent DaemonSet's pods (daemonset/core/agent.yaml). */
export const SCRAPE_ANNOTATIONS: Readonly<Record<string, string>> = { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15020', 'prometheus.io/path': '/metrics' };

export function agentPodName(node: string): string {
  return `ambit-agent-${node}`;
}

/** The mirror pod of node `n`'s agent. */
export function agentMirrorPod(n: NodePlan): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: agentPodName(n.name),
      namespace: MESH_NAMESPACE,
      labels: { app: 'ambit-agent', 'app.kubernetes.io/name': 'ambit-agent', 'app.kubernetes.io/part-of': 'ambit' },
      annotations: { [MIRROR_ANNOTATION]: `ambit-local/${n.name}`, ...SCRAPE_ANNOTATIONS },
    },
    spec: {
      nodeName: n.name,
      hostNetwork: true,
      serviceAccountName: AGENT_IDENTITY.name,
      tolerations: [{ operator: 'Exists' }],
      containers: [
        {
          name: 'agent',
          image: 'ambit',
          command: ['ambit-agent'],
          ports: [
            { name: 'metrics', containerPort: 15020, protocol: 'TCP' },
            { name: 'status-port', containerPort: 15021, protocol: 'TCP' },
          ],
        },
      ],
    },
  };
}

/** Status of an agent's mirror pod. */
export function agentPodStatus(n: NodePlan, running: boolean, ready: boolean, startedAt: string): Record<string, unknown> {
  const cond = (type: string, ok: boolean): Record<string, unknown> => ({ type, status: ok ? 'True' : 'False' });
  return {
    phase: running ? 'Running' : 'Pending',
    hostIP: n.ip,
    podIP: n.ip,
    podIPs: [{ ip: n.ip }],
    startTime: startedAt,
    conditions: [cond('PodScheduled', true), cond('Initialized', true), cond('ContainersReady', ready), cond('Ready', ready)],
    containerStatuses: [{ name: 'agent', image: 'ambit', imageID: '', ready, started: running, restartCount: 0, state: running ? { running: { startedAt } } : { waiting: { reason: 'ContainerCreating' } } }],
  };
}

export interface AgentPodsOptions {
  client: KubeClient;
  nodes: readonly NodePlan[];
  /** Whether node `name`'s agent runs, and is connected to the controller. */
  state: (node: string) => { running: boolean; ready: boolean };
  log: Logger;
}

export class AgentPods {
  private readonly last = new Map<string, string>();
  private readonly startedAt = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly opts: AgentPodsOptions) {}

  /** Creates the mirror pods (once) and writes their status. */
  sync(): Promise<void> {
    this.queue = this.queue.then(() => this.pass()).catch((e: unknown) => this.opts.log.warn({ err: e }, 'agent mirror pods pass failed; retried'));
    return this.queue;
  }

  private async pass(): Promise<void> {
    for (const n of this.opts.nodes) {
      if (this.closed) return;
      const pod = agentMirrorPod(n);
      const base = `/api/v1/namespaces/${MESH_NAMESPACE}/pods`;
      if (!this.last.has(n.name)) {
        try {
          await this.opts.client.create(base, pod);
        } catch (e) {
          if (!isAlreadyExists(e)) throw e;
        }
        this.last.set(n.name, '');
      }
      const { running, ready } = this.opts.state(n.name);
      const status = agentPodStatus(n, running, ready, this.startedAt);
      const text = JSON.stringify(status);
      if (this.last.get(n.name) === text) continue;
      await this.opts.client.mergePatch(`${base}/${pod.metadata.name}/status`, { status });
      this.last.set(n.name, text);
    }
  }

  async stop(): Promise<void> {
    this.closed = true;
    await this.queue.catch(() => undefined);
  }
}
