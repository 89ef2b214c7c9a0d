/**
 * Waypoint and ingress gateway pods of a local mesh, written to the API server: one pod per
 * waypoint-class Gateway (owned by the Gateway, so deleting the Gateway deletes it) and the
 * built-in `istio-ingressgateway` pod while any Istio Gateway exists. Each pod authenticates to
 * the controller with a credential of its own (a file only root reads), registered while the pod
 * exists; its service account is created when missing.
 *
 * Invariant: reconcile() runs one pass at a time and is idempotent: pods labelled as local
 * proxies that are not wanted are deleted, wanted ones that are missing are created.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { generateToken, type StaticTokenAuthenticator } from '../controller/callers.js';
import type { KubeObject } from '../controller/objects.js';
import { podServiceAccount } from '../controller/translate/workloads.js';
import type { ObjectStore } from '../controller/store.js';
import type { Logger } from '../shared/log.js';
import { isAlreadyExists, isNotFound, type KubeClient } from './kube-client.js';
import { ingressGatewayPod, isWaypointGateway, keyOf, nsOf, waypointPod, wantsIngressGateway, type WaypointPodEnv } from './workloads.js';

/** Label of the pods this reconciler owns. */
export const LOCAL_PROXY_LABEL = 'ambit.dev/local-proxy';

export interface ProxyPodsOptions {
  /** A client that may create and delete pods and service accounts. */
  client: KubeClient;
  store: ObjectStore;
  env: WaypointPodEnv;
  tokens: StaticTokenAuthenticator;
  log: Logger;
}

interface PodList {
  items: KubeObject[];
}

export class ProxyPods {
  private queue: Promise<void> = Promise.resolve();
  private readonly tokens = new Map<string, string>();
  private readonly log: Logger;
  private closed = false;

  constructor(private readonly opts: ProxyPodsOptions) {
    this.log = opts.log.child({ component: 'proxy-pods' });
  }

  /** The pods wanted now, from the Gateways in the controller's store. */
  private wanted(): KubeObject[] {
    const gateways = this.opts.store.list('Gateway');
    const out: KubeObject[] = [];
    for (const gw of gateways.filter(isWaypointGateway)) {
      const p = waypointPod(gw, this.opts.env);
      p.metadata.ownerReferences = gw.metadata.uid ? [{ apiVersion: gw.apiVersion, kind: 'Gateway', name: gw.metadata.name, uid: gw.metadata.uid, controller: true }] : [];
      out.push(p);
    }
    if (wantsIngressGateway(gateways)) {
      const p = ingressGatewayPod(this.opts.env);
      delete p.metadata.ownerReferences;
      out.push(p);
    }
    for (const p of out) p.metadata.labels = { ...p.metadata.labels, [LOCAL_PROXY_LABEL]: 'true' };
    return out;
  }

  /** Queues one pass; resolves when it ran. */
  reconcile(): Promise<void> {
    this.queue = this.queue.then(() => this.pass()).catch((e: unknown) => this.log.warn({ err: e }, 'proxy pods pass failed; retried on the next change'));
    return this.queue;
  }

  /** `ns/name` of every proxy pod wanted now (for settling). */
  wantedKeys(): string[] {
    return this.wanted().map(keyOf);
  }

  private async pass(): Promise<void> {
    if (this.closed) return;
    const c = this.opts.client;
    const want = new Map(this.wanted().map((p) => [keyOf(p), p]));
    const have = (await c.get<PodList>(`/api/v1/pods?labelSelector=${encodeURIComponent(`${LOCAL_PROXY_LABEL}=true`)}`)).items;
    for (const p of have) {
      const key = keyOf(p);
      if (want.has(key) || p.metadata.deletionTimestamp !== undefined) continue;
      await c.delete(`/api/v1/namespaces/${encodeURIComponent(nsOf(p))}/pods/${encodeURIComponent(p.metadata.name)}`);
      await this.forget(p);
      this.log.info({ pod: key }, 'proxy pod removed');
    }
    const existing = new Set(have.map(keyOf));
    // Pods the API server removed itself (their Gateway was deleted) give their credential back.
    for (const key of [...this.tokens.keys()]) {
      if (want.has(key) || existing.has(key)) continue;
      const [namespace, name] = key.split('/') as [string, string];
      await this.forget({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace } });
    }
    for (const [key, p] of want) {
      if (existing.has(key)) continue;
      await this.ensureServiceAccount(nsOf(p), podServiceAccount(p));
      await this.credential(p);
      try {
        await c.create(`/api/v1/namespaces/${encodeURIComponent(nsOf(p))}/pods`, p);
        this.log.info({ pod: key }, 'proxy pod created');
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
      }
    }
  }

  private async ensureServiceAccount(namespace: string, name: string): Promise<void> {
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts`;
    if (await this.opts.client.getOptional(`${path}/${encodeURIComponent(name)}`)) return;
    try {
      await this.opts.client.create(path, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } });
    } catch (e) {
      if (!isAlreadyExists(e) && !isNotFound(e)) throw e;
    }
  }

  /** Writes the pod's own controller credential (0600) and registers it. */
  private async credential(p: KubeObject): Promise<void> {
    const key = keyOf(p);
    if (this.tokens.has(key)) return;
    const token = generateToken();
    const file = this.opts.env.tokenFile(nsOf(p), p.metadata.name);
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await writeFile(file, token, { mode: 0o600 });
    this.opts.tokens.set(token, { kind: 'pod', namespace: nsOf(p), pod: p.metadata.name, serviceAccount: podServiceAccount(p) });
    this.tokens.set(key, token);
  }

  private async forget(p: KubeObject): Promise<void> {
    const key = keyOf(p);
    const token = this.tokens.get(key);
    if (token) this.opts.tokens.delete(token);
    this.tokens.delete(key);
    await rm(this.opts.env.tokenFile(nsOf(p), p.metadata.name), { force: true });
  }

  async stop(): Promise<void> {
    this.closed = true;
    await this.queue.catch(() => undefined);
  }
}
