/**
 * The client local mode's own cluster components (controllers, node runtimes, kube-proxy rules,
 * supervisors) use to talk to local mode's API server: the shared request shell
 * (shared/kube-api.ts) with the server's CA and one bearer token each (read anew per request, so
 * a rotated token file is picked up), and the shared list + watch informer
 * (shared/kube-informer.ts) typed for Kubernetes objects. Failures are
 * AMBIT_ERR_APISERVER_REQUEST.
 */
import { KubeApi, kubeFailure, type KubeWatchEvent } from '../shared/kube-api.js';
import { Informer as SharedInformer, type InformerOptions as SharedInformerOptions } from '../shared/kube-informer.js';
import type { KubeObject } from '../controller/objects.js';

export { kubeFailure, isNotFound, isConflict, isAlreadyExists, type KubeRequest } from '../shared/kube-api.js';
export { cacheKey, type InformerEventType } from '../shared/kube-informer.js';

export interface KubeClientOptions {
  /** `https://host:port`. */
  server: string;
  caPem: string;
  /** The bearer token; called for every request. */
  token: () => string;
  /** Per-request deadline (watches excepted); default 30 s. */
  timeoutMs?: number;
}

/** Local mode's client: failures are AMBIT_ERR_APISERVER_REQUEST; DELETE of a missing object counts as done. */
export class KubeClient extends KubeApi<KubeObject> {
  constructor(opts: KubeClientOptions) {
    super({
      endpoint: { server: opts.server, caPem: opts.caPem, token: opts.token },
      errorCode: 'AMBIT_ERR_APISERVER_REQUEST',
      unreachableHint: 'is the local API server running?',
      ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
    });
  }

  /** DELETE; 404 counts as done. */
  async delete(path: string, body?: Record<string, unknown>): Promise<void> {
    try {
      await this.request({ method: 'DELETE', path, ...(body ? { body } : {}) });
    } catch (e) {
      if (kubeFailure(e)?.status !== 404) throw e;
    }
  }
}

export type WatchEvent = KubeWatchEvent<KubeObject>;


export type InformerOptions = SharedInformerOptions<KubeObject>;

/** An informer of Kubernetes objects (apiVersion, kind and metadata.name always set). */
export class Informer extends SharedInformer<KubeObject> {}
