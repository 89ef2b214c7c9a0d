/**
 * The agent's Kubernetes client (@kubernetes/client-node) with its own service-account
 * credentials: in a cluster the pod's mounted token (client-node re-reads it as the kubelet
 * rotates it), in local mode a kubeconfig. It does only what the agent's RBAC grants
 * (daemonset/core/rbac-agent.yaml): list and watch the pods of its own node, and merge-patch
 * their status subresource.
 */
import * as k8s from '@kubernetes/client-node';
import { AmbitError, errorMessage } from '../../shared/errors.js';

/** Where the agent's API server and credentials come from. */
export type KubeSource = { kubeconfig: string } | { inCluster: true };

/** The parts of a Pod the agent reads. */
export interface NodePod {
  namespace: string;
  name: string;
  uid: string;
  nodeName: string;
  annotations: Record<string, string>;
}

/** Loads the client configuration; throws AMBIT_ERR_KUBE_CONFIG naming what is missing. */
export function loadKubeConfig(source: KubeSource): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  const what = 'kubeconfig' in source ? `kubeconfig ${source.kubeconfig}` : 'in-cluster service-account credentials';
  try {
    if ('kubeconfig' in source) kc.loadFromFile(source.kubeconfig);
    else kc.loadFromCluster();
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', `cannot load ${what}: ${errorMessage(e)}`, { cause: e });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster || !cluster.server) throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', `${what} names no API server (no current context or cluster)`);
  return kc;
}

/** A failed API call as AMBIT_ERR_KUBE_API with the HTTP status and the server's message. */
export function kubeApiError(what: string, e: unknown): AmbitError {
  const status = e instanceof k8s.ApiException ? e.code : undefined;
  let message = errorMessage(e);
  if (e instanceof k8s.ApiException) {
    const body = typeof e.body === 'string' ? safeJson(e.body) : e.body;
    const m = (body as { message?: unknown } | undefined)?.message;
    message = `HTTP ${e.code}${typeof m === 'string' ? `: ${m}` : ''}`;
  }
  return new AmbitError('AMBIT_ERR_KUBE_API', `${what} failed: ${message}`, { cause: e, ...(status !== undefined ? { details: { status } } : {}) });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The fields of a client-node Pod the agent uses. */
export function nodePodOf(pod: k8s.V1Pod): NodePod | undefined {
  const m = pod.metadata;
  if (!m?.name || !m.namespace || !m.uid) return undefined;
  return { namespace: m.namespace, name: m.name, uid: m.uid, nodeName: pod.spec?.nodeName ?? '', annotations: { ...(m.annotations ?? {}) } };
}

/** Pods of one node: an informer (list + watch with `spec.nodeName=<node>`) and status patches. */
export class NodePodsClient {
  private readonly core: k8s.CoreV1Api;

  constructor(
    readonly kubeConfig: k8s.KubeConfig,
    readonly nodeName: string,
  ) {
    this.core = kubeConfig.makeApiClient(k8s.CoreV1Api);
  }

  /** A client-node informer over this node's pods (not started). */
  informer(): k8s.Informer<k8s.V1Pod> & k8s.ObjectCache<k8s.V1Pod> {
    const fieldSelector = `spec.nodeName=${this.nodeName}`;
    return new k8s.ListWatch<k8s.V1Pod>('/api/v1/pods', new k8s.Watch(this.kubeConfig), () => this.core.listPodForAllNamespaces({ fieldSelector }), false, undefined, fieldSelector);
  }

  /**
   * JSON-merge-patches `metadata.annotations` of a pod through its status subresource, with the
   * pod's uid as a precondition (a pod re-created under the name is not touched: 409). A null
   * value removes the annotation.
   */
  async patchAnnotations(pod: { namespace: string; name: string; uid: string }, annotations: Record<string, string | null>): Promise<void> {
    try {
      await this.core.patchNamespacedPodStatus(
        { name: pod.name, namespace: pod.namespace, body: { metadata: { uid: pod.uid, annotations } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
    } catch (e) {
      throw kubeApiError(`patching pods/status of ${pod.namespace}/${pod.name}`, e);
    }
  }
}
