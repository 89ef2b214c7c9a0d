/**
 * Istio's `istio-ingressgateway` in a local mesh, installed as Istio's ingress gateway chart
 * installs it on a cluster: a ServiceAccount, a LoadBalancer Service and a Deployment of the
 * controller's own gateway template (src/controller/owned/render.ts), whose pods Istio `Gateway`
 * objects select by their labels (`istio: ingressgateway`). The Deployment's pods are run by
 * local mode's Deployment and ReplicaSet controllers and node runtimes like any other, and
 * authenticate to the controller with their projected service-account token.
 *
 * Local mode scales it: one replica while any Istio Gateway exists, none otherwise, so a mesh
 * without Istio Gateways runs no gateway process.
 *
 * Invariant: reconcile() runs one pass at a time and writes only when the wanted replica count
 * differs from the Deployment's.
 */
import type { KubeObject } from '../controller/objects.js';
import { ISTIO_INGRESS_GATEWAY, renderIstioIngressGateway, type ProxyTemplate } from '../controller/owned/render.js';
import type { Logger } from '../shared/log.js';
import { rec } from './controllers/queue.js';
import type { ObjectsApi } from './objects-api.js';

/** True for an Istio (networking.istio.io) Gateway: ingress servers, not a waypoint. */
export function isIstioGateway(o: KubeObject): boolean {
  return o.kind === 'Gateway' && o.apiVersion.startsWith('networking.istio.io/');
}

/** Replicas of `istio-ingressgateway` wanted for these Istio Gateways: one while any exists. */
export function ingressReplicas(istioGateways: readonly KubeObject[]): number {
  return istioGateways.some((g) => isIstioGateway(g) && g.metadata.deletionTimestamp === undefined) ? 1 : 0;
}

/** The install's objects, with `replicas` on the Deployment. */
export function ingressGatewayObjects(template: ProxyTemplate, replicas: number): KubeObject[] {
  const o = renderIstioIngressGateway(template);
  const deployment = { ...o.deployment, spec: { ...rec(o.deployment.spec), replicas } };
  return [o.serviceAccount, o.service, deployment];
}

export interface IngressGatewayInstallOptions {
  /** Writes as the operator installing the chart (server-side apply). */
  objects: ObjectsApi;
  template: ProxyTemplate;
  /** The Istio Gateways the API server holds now. */
  istioGateways: () => readonly KubeObject[];
  log: Logger;
}

export class IngressGatewayInstall {
  private queue: Promise<void> = Promise.resolve();
  private replicas: number | undefined;
  private closed = false;
  private readonly log: Logger;

  constructor(private readonly opts: IngressGatewayInstallOptions) {
    this.log = opts.log.child({ component: 'ingress-gateway' });
  }

  /** `namespace/name` of the Deployment. */
  static get key(): string {
    return `${ISTIO_INGRESS_GATEWAY.namespace}/${ISTIO_INGRESS_GATEWAY.name}`;
  }

  /** The replica count the last pass wrote (undefined before the first). */
  get wantedReplicas(): number | undefined {
    return this.replicas;
  }

  /** Installs the objects (scaled for the Istio Gateways there are now). */
  async install(): Promise<void> {
    const n = ingressReplicas(this.opts.istioGateways());
    await this.opts.objects.apply(ingressGatewayObjects(this.opts.template, n));
    this.replicas = n;
  }

  /** Queues one pass; resolves when it ran. */
  reconcile(): Promise<void> {
    this.queue = this.queue.then(() => this.pass()).catch((e: unknown) => this.log.warn({ err: e }, 'ingress gateway scale failed; retried on the next change'));
    return this.queue;
  }

  private async pass(): Promise<void> {
    if (this.closed) return;
    const n = ingressReplicas(this.opts.istioGateways());
    if (n === this.replicas) return;
    await this.opts.objects.apply(ingressGatewayObjects(this.opts.template, n));
    this.replicas = n;
    this.log.info({ deployment: IngressGatewayInstall.key, replicas: n }, 'ingress gateway scaled');
  }

  async stop(): Promise<void> {
    this.closed = true;
    await this.queue.catch(() => undefined);
  }
}
