/**
 * The controller in Kubernetes mode: the Kubernetes source fills the store, the same Controller
 * translates it and serves config and certificates (signed by the CA kept in Secret
 * `<namespace>/ambit-ca`, callers authenticated by TokenReview), and the replica holding the
 * Lease writes status, owns the workloads Gateways ask for and publishes the root certificate.
 * Every replica serves; only the leader writes.
 *
 * Start order: leader election campaigns at once; the store is synced before anything is served
 * (an agent must never get an empty config from a controller that has not listed yet); the CA is
 * read (or created by the leader); then config and CA are served and the leader's loops start.
 */
import { randomBytes } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/log.js';
import { ambitVersion } from '../shared/version.js';
import { createRegistry } from '../shared/metrics.js';
import { loadOrCreateKubeCa } from './ca/kube-root.js';
import { RootPublisher } from './ca/root-publisher.js';
import { Controller, type ControllerOptions } from './controller.js';
import { LeaderElector } from './leader-election.js';
import { REF_GATEWAY_API_GATEWAY } from './objects.js';
import { OwnedReconciler } from './owned/reconciler.js';
import type { ProxyTemplate } from './owned/render.js';
import { KubeClient, loadKubeConfig, type KubeConfigSource } from './source/kube-client.js';
import { objectPath, RESOURCES } from './source/kube-paths.js';
import { KubernetesSource } from './source/kubernetes.js';
import { STATUS_KINDS, StatusWriter } from './status/writer.js';
import { ObjectStore } from './store.js';
import { TokenReviewAuthenticator, DEFAULT_AGENT_SERVICE_ACCOUNT } from './token-review.js';

export const DEFAULT_CONTROLLER_NAMESPACE = 'istio-system';
/** The image waypoint and gateway pods run when none is configured and the controller's own pod cannot be read. */
export const FALLBACK_PROXY_IMAGE = 'localhost/ambit:0.1.0';

export interface KubernetesControllerOptions {
  /** The API server and credentials: a kubeconfig file or text, or the pod's service account. */
  kubeconfig: KubeConfigSource;
  /** The controller's namespace: its Lease, the CA Secret, the agents' root ConfigMap (default istio-system). */
  namespace?: string;
  /** This replica's name in the Lease (default: POD_NAME-like `host-<random>`; unique per process). */
  identity?: string;
  /** Where the serving key and root-cert.pem are written (the CA itself lives in the Secret). */
  stateDir: string;
  host: string;
  port: number;
  admin?: { host: string; port: number };
  adminToken?: string;
  trustDomain: string;
  clusterId?: string;
  clusterDomain?: string;
  log: Logger;
  registry?: Registry;
  certTtlMs?: number;
  certMaxTtlMs?: number;
  debounceMs?: number;
  /** The agents' service account (default istio-system/ambit-agent): its node-bound tokens are node callers. */
  agentServiceAccount?: { namespace: string; serviceAccount: string };
  /** What waypoint and gateway pods run and how they reach this controller (defaults below). */
  proxy?: Partial<ProxyTemplate>;
  /** The controller's own pod (to run waypoints on its image when proxy.image is not given). */
  selfPod?: { namespace: string; name: string };
  /** More names for the serving certificate (the ambit-controller Service names are always there). */
  servingDnsNames?: string[];
  lease?: { durationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number };
  /** Positive TokenReview answers are reused this long (default 30 s). */
  tokenCacheTtlMs?: number;
  /** Informer restart backoff (tests shorten it). */
  informerBackoff?: { initialMs: number; maxMs: number };
}

export class KubernetesController {
  private constructor(
    readonly controller: Controller,
    readonly source: KubernetesSource,
    readonly leader: LeaderElector,
    readonly owned: OwnedReconciler,
    readonly statusWriter: StatusWriter,
    readonly rootPublisher: RootPublisher,
    private readonly log: Logger,
  ) {}

  /** Starts everything; resolves once config and certificates are served (the store synced). */
  static async start(opts: KubernetesControllerOptions): Promise<KubernetesController> {
    const log = opts.log.child({ mode: 'kubernetes' });
    const registry = opts.registry ?? createRegistry({ build: { component: 'pilot', tag: ambitVersion() } });
    const namespace = opts.namespace ?? DEFAULT_CONTROLLER_NAMESPACE;
    const clusterDomain = opts.clusterDomain ?? 'cluster.local';
    const client = new KubeClient(loadKubeConfig(opts.kubeconfig));
    const store = new ObjectStore();
    const source = new KubernetesSource({ client, store, log, registry, ...(opts.informerBackoff ? { backoff: opts.informerBackoff } : {}) });
    const leader = new LeaderElector({
      client,
      namespace,
      identity: opts.identity ?? `${opts.selfPod?.name ?? 'ambit-controller'}-${randomBytes(4).toString('hex')}`,
      log,
      registry,
      ...(opts.lease?.durationMs !== undefined ? { leaseDurationMs: opts.lease.durationMs } : {}),
      ...(opts.lease?.renewDeadlineMs !== undefined ? { renewDeadlineMs: opts.lease.renewDeadlineMs } : {}),
      ...(opts.lease?.retryPeriodMs !== undefined ? { retryPeriodMs: opts.lease.retryPeriodMs } : {}),
    });
    const started: Array<{ close(): Promise<void> }> = [source, leader];
    const cleanup = async (): Promise<void> => {
      for (const s of started.reverse()) await s.close().catch(() => undefined);
    };
    try {
      leader.start();
      log.info({ server: client.server, namespace }, 'listing the cluster before serving');
      await source.start();
      const ca = await loadOrCreateKubeCa({ client, namespace, trustDomain: opts.trustDomain, mayCreate: () => leader.isLeader, log });
      const authenticator = new TokenReviewAuthenticator({
        client,
        log,
        registry,
        agent: opts.agentServiceAccount ?? DEFAULT_AGENT_SERVICE_ACCOUNT,
        ...(opts.tokenCacheTtlMs !== undefined ? { cacheTtlMs: opts.tokenCacheTtlMs } : {}),
      });
      const template: ProxyTemplate = {
        image: opts.proxy?.image ?? (await ownImage(client, opts.selfPod, log)),
        controllerAddress: opts.proxy?.controllerAddress ?? `ambit-controller.${namespace}.svc:${opts.port === 0 ? 15012 : opts.port}`,
        trustDomain: opts.trustDomain,
        clusterId: opts.clusterId ?? 'Kubernetes',
        logLevel: opts.proxy?.logLevel ?? 'info',
        ...(opts.proxy?.controllerServerName ? { controllerServerName: opts.proxy.controllerServerName } : {}),
        ...(opts.proxy?.imagePullPolicy ? { imagePullPolicy: opts.proxy.imagePullPolicy } : {}),
      };
      // The loops are wired before the first translation so its status is written too.
      let statusWriter: StatusWriter | undefined;
      const active = (): boolean => leader.isLeader && source.ready;
      const owned = new OwnedReconciler({
        client,
        template,
        gateways: () => source.liveObjects(REF_GATEWAY_API_GATEWAY),
        active,
        log,
        registry,
        onChange: () => statusWriter?.trigger(),
      });
      started.push(owned);
      const controllerOpts: ControllerOptions = {
        stateDir: opts.stateDir,
        host: opts.host,
        port: opts.port,
        trustDomain: opts.trustDomain,
        auth: { authenticator },
        log,
        registry,
        ca,
        store,
        translate: { clusterId: opts.clusterId ?? 'Kubernetes', clusterDomain },
        servingDnsNames: [
          'ambit-controller',
          `ambit-controller.${namespace}`,
          `ambit-controller.${namespace}.svc`,
          `ambit-controller.${namespace}.svc.${clusterDomain}`,
          ...(opts.servingDnsNames ?? []),
        ],
        onTranslated: () => statusWriter?.trigger(),
        ...(opts.admin ? { admin: opts.admin } : {}),
        ...(opts.adminToken !== undefined ? { adminToken: opts.adminToken } : {}),
        ...(opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {}),
        ...(opts.certTtlMs !== undefined ? { certTtlMs: opts.certTtlMs } : {}),
        ...(opts.certMaxTtlMs !== undefined ? { certMaxTtlMs: opts.certMaxTtlMs } : {}),
      };
      const controller = await Controller.start(controllerOpts);
      started.push(controller);
      statusWriter = new StatusWriter({
        client,
        source,
        translation: () => ({ model: controller.translation().conditions, routes: controller.routeTranslation().conditions, listeners: controller.listenerTranslation().conditions }),
        gatewayState: (gw) => owned.stateOf(gw),
        active,
        log,
        registry,
      });
      const writer = statusWriter;
      started.push(writer);
      const rootPublisher = new RootPublisher({
        client,
        rootCertPem: ca.rootCertPem,
        // The informer's view, not the store's: the store takes a namespace a batch later than
        // the 'live' event that triggers this, so a pass could run before it and miss it for good.
        namespaces: () => [namespace, ...source.liveObjects('Namespace').filter((n) => !n.metadata.deletionTimestamp).map((n) => n.metadata.name)],
        isLeader: () => leader.isLeader,
        log,
        registry,
      });
      started.push(rootPublisher);
      source.on('live', (ref) => {
        // Other kinds reach status through translation (onTranslated).
        if (STATUS_KINDS.includes(ref)) writer.trigger();
        if (ref === REF_GATEWAY_API_GATEWAY) owned.trigger();
        if (ref === 'Namespace') rootPublisher.trigger();
      });
      leader.on('leading', () => {
        owned.trigger();
        writer.trigger();
        rootPublisher.trigger();
      });
      // Leader-only work: serving does not wait for it (a missing permission there must not stop
      // config and certificates from being served).
      void owned.start();
      void rootPublisher.start();
      writer.trigger();
      log.info({ address: controller.address, leader: leader.isLeader }, 'controller serving in Kubernetes mode');
      return new KubernetesController(controller, source, leader, owned, writer, rootPublisher, log);
    } catch (e) {
      await cleanup();
      throw e;
    }
  }

  /** True while the store follows the API server (every informer listed). */
  get ready(): boolean {
    return this.source.ready;
  }

  /** Resolves once the leader's loops have nothing pending (tests). */
  async settled(): Promise<void> {
    await Promise.all([this.owned.idle(), this.statusWriter.idle(), this.rootPublisher.idle()]);
  }

  /** Stops writing (releasing the Lease so another replica leads at once), serving and watching. */
  async close(): Promise<void> {
    await this.statusWriter.close();
    await this.rootPublisher.close();
    await this.owned.close();
    await this.leader.close();
    await this.controller.close();
    await this.source.close();
    this.log.info('controller stopped');
  }
}

/** The image of the controller's own pod (waypoints run the same one), else the fallback. */
async function ownImage(client: KubeClient, self: { namespace: string; name: string } | undefined, log: Logger): Promise<string> {
  if (!self) return FALLBACK_PROXY_IMAGE;
  try {
    const pod = await client.get<{ spec?: { containers?: Array<{ image?: string }> } }>(objectPath(RESOURCES.pods, self.namespace, self.name));
    const image = pod.spec?.containers?.[0]?.image;
    if (image) return image;
  } catch (e) {
    log.warn({ err: e, pod: `${self.namespace}/${self.name}` }, `cannot read the controller's own pod; waypoints run ${FALLBACK_PROXY_IMAGE}`);
  }
  return FALLBACK_PROXY_IMAGE;
}
