/**
 * Feeds the in-process controller's store from local mode's API server: one informer per kind the
 * controller reads (as the controller's own service account), each change applied to the store.
 * This is local mode's bridge until the controller runs its own Kubernetes source against the
 * API server; the store, translation and pushes are the ones every source uses.
 *
 * Invariants: objects enter the store without managedFields or kubectl's last-applied annotation,
 * and without status except Pods (whose IP and readiness translation reads); an object the store
 * refuses is logged once and skipped, never holding up the others; `caughtUp()` tells whether
 * the store holds (at least) given resourceVersions of given objects.
 */
import type { Logger } from '../shared/log.js';
import { KINDS, objectKey, type KindInfo, type KubeObject } from '../controller/objects.js';
import type { ObjectStore } from '../controller/store.js';
import { Informer, type KubeClient } from './kube-client.js';
import type { ObjectsApi } from './objects-api.js';

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
/** Kinds not fed: translation reads the Pods a Deployment makes, not the Deployment. */
const NOT_FED = new Set(['Deployment']);
/** Kinds whose status the store keeps from the API server. */
const STATUS_FED = new Set(['Pod']);

/** The object as the store takes it. */
export function storeForm(o: KubeObject): KubeObject {
  const meta = { ...o.metadata } as Record<string, unknown>;
  delete meta['managedFields'];
  const annotations = { ...((meta['annotations'] as Record<string, string> | undefined) ?? {}) };
  delete annotations[LAST_APPLIED];
  if (Object.keys(annotations).length > 0) meta['annotations'] = annotations;
  else delete meta['annotations'];
  const out = { ...o, metadata: meta as KubeObject['metadata'] };
  if (!STATUS_FED.has(o.kind)) delete out.status;
  return out;
}

export interface StoreFeedOptions {
  client: KubeClient;
  objects: ObjectsApi;
  store: ObjectStore;
  log: Logger;
}

export class StoreFeed {
  private readonly informers: Informer[] = [];
  private readonly log: Logger;
  /** Last resourceVersion fed per object key, and keys deleted. */
  private readonly fed = new Map<string, number>();
  private readonly refused = new Map<string, string>();
  private closed = false;

  constructor(private readonly opts: StoreFeedOptions) {
    this.log = opts.log.child({ component: 'store-feed' });
  }

  /** Lists every kind (resolves once each first list is in the store) and keeps watching. */
  async start(): Promise<void> {
    const kinds = KINDS.filter((k) => !NOT_FED.has(k.kind));
    await Promise.all(kinds.map((k) => this.watchKind(k)));
  }

  private async watchKind(k: KindInfo): Promise<void> {
    const apiVersion = k.group === '' ? k.versions[0]! : `${k.group}/${k.versions[0]!}`;
    let path: string;
    try {
      path = (await this.opts.objects.collectionPath(apiVersion, k.kind)).replace(/\/namespaces\/[^/]+\//, '/');
    } catch (e) {
      // A kind the local API server does not serve (no CRD, or a built-in it lacks) has no objects.
      this.log.info({ kind: `${k.kind}.${k.group}`, err: e }, 'kind not served by the local API server; not fed');
      return;
    }
    const inf = new Informer({
      client: this.opts.client,
      path,
      apiVersion,
      kind: k.kind,
      log: this.log,
      onEvent: (type, obj) => (type === 'delete' ? this.remove(obj) : this.put(obj)),
    });
    this.informers.push(inf);
    await inf.start();
  }

  private put(obj: KubeObject): void {
    if (this.closed) return;
    const o = storeForm(obj);
    const key = objectKey(o);
    try {
      this.opts.store.apply([o], { preserveStatus: !STATUS_FED.has(o.kind) });
      this.refused.delete(key);
    } catch (e) {
      const msg = (e as Error).message;
      if (this.refused.get(key) !== msg) this.log.warn({ object: key, err: e }, 'object refused by the controller; its last good version stays');
      this.refused.set(key, msg);
    }
    this.fed.set(key, Number(obj.metadata.resourceVersion ?? '0'));
  }

  private remove(obj: KubeObject): void {
    if (this.closed) return;
    const key = objectKey(obj);
    this.opts.store.remove([obj]);
    this.fed.set(key, Number.POSITIVE_INFINITY);
    this.refused.delete(key);
  }

  /** Whether every object was fed at its given resourceVersion or later (deleted ones: `gone`). */
  caughtUp(written: ReadonlyArray<Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>>, gone = false): boolean {
    return written.every((o) => {
      if (NOT_FED.has(o.kind)) return true;
      const rv = this.fed.get(objectKey(o));
      if (gone) return rv === Number.POSITIVE_INFINITY || rv === undefined;
      return rv !== undefined && rv >= Number(o.metadata.resourceVersion ?? '0');
    });
  }

  /** Objects the controller refused, with why. */
  refusedObjects(): Array<{ object: string; reason: string }> {
    return [...this.refused].map(([object, reason]) => ({ object, reason }));
  }

  stop(): void {
    this.closed = true;
    for (const i of this.informers) i.stop();
  }
}
