/**
 * Publishes the mesh root certificate as ConfigMap `ambit-ca-root-cert` (key `root-cert.pem`) in
 * every namespace, as istiod publishes `istio-ca-root-cert`: agents read it in the controller's
 * namespace, waypoint and gateway pods mount it in their own. Written only by the leader, with
 * server-side apply as field manager `ambit-controller` (so labels or annotations others add
 * stay), and only where it is missing or differs; a ConfigMap someone deletes comes back.
 */
import type { Registry } from 'prom-client';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { createInformerMetrics, ResourceInformer } from '../source/informer.js';
import type { KubeClient } from '../source/kube-client.js';
import { collectionPath, objectPath, RESOURCES } from '../source/kube-paths.js';
import { InformedReconciler, ReconcileLoop } from '../reconcile-loop.js';

export const ROOT_CONFIGMAP_NAME = 'ambit-ca-root-cert';
export const ROOT_CONFIGMAP_KEY = 'root-cert.pem';
export const FIELD_MANAGER = 'ambit-controller';

export interface RootPublisherOptions {
  client: KubeClient;
  rootCertPem: string;
  /** Namespaces to publish in (active ones; the controller's own included). */
  namespaces: () => Iterable<string>;
  isLeader: () => boolean;
  log: Logger;
  registry?: Registry;
}

export class RootPublisher extends InformedReconciler {
  private readonly informer: ResourceInformer;
  protected readonly informers: readonly ResourceInformer[];
  protected readonly loop: ReconcileLoop;
  private readonly log: Logger;

  constructor(private readonly opts: RootPublisherOptions) {
    super();
    this.log = opts.log.child({ component: 'root-publisher' });
    this.informer = new ResourceInformer({
      client: opts.client,
      path: collectionPath(RESOURCES.configMaps),
      apiVersion: 'v1',
      kind: 'ConfigMap',
      resource: 'configmaps',
      fieldSelector: `metadata.name=${ROOT_CONFIGMAP_NAME}`,
      log: opts.log,
      ...(opts.registry ? { metrics: createInformerMetrics(opts.registry) } : {}),
    });
    this.informers = [this.informer];
    this.loop = new ReconcileLoop({ name: 'root-publisher', run: () => this.sync(), active: () => opts.isLeader() && this.synced, log: opts.log });
    const again = (): void => this.loop.trigger();
    this.informer.on('update', again);
    this.informer.on('delete', again);
  }

  private async sync(): Promise<void> {
    let written = 0;
    const failed: string[] = [];
    for (const ns of new Set(this.opts.namespaces())) {
      if (!this.opts.isLeader()) return;
      const cm = this.informer.get(ROOT_CONFIGMAP_NAME, ns) as { data?: Record<string, string> } | undefined;
      if (cm?.data?.[ROOT_CONFIGMAP_KEY] === this.opts.rootCertPem) continue;
      try {
        const body = {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: ROOT_CONFIGMAP_NAME, namespace: ns, labels: { 'app.kubernetes.io/managed-by': 'ambit-controller' } },
          data: { [ROOT_CONFIGMAP_KEY]: this.opts.rootCertPem },
        };
        await this.opts.client.apply(objectPath(RESOURCES.configMaps, ns, ROOT_CONFIGMAP_NAME), body, FIELD_MANAGER);
        written++;
      } catch (e) {
        failed.push(`${ns}: ${errorMessage(e)}`);
      }
    }
    if (written > 0) this.log.info({ namespaces: written }, 'mesh root certificate published');
    if (failed.length > 0) throw new Error(`cannot publish ${ROOT_CONFIGMAP_NAME} in ${failed.length} namespace(s): ${failed.slice(0, 3).join('; ')}`);
  }
}
