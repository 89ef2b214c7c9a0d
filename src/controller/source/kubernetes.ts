/**
 * The Kubernetes source: client-node informers on an API server feed the same ObjectStore the
 * manifest source feeds, so translation is the same whichever source runs. Watched: Namespaces,
 * Nodes, Pods, Services, ServiceAccounts, EndpointSlices, the mesh config ConfigMap `istio`,
 * Secrets (every type but Helm releases and service-account tokens, as istiod's credential
 * watch; only those a Gateway references reach the store) and every custom kind of objects.ts whose CRD is
 * installed; the CRDs themselves are watched, so a kind whose CRD appears later is picked up then
 * (and one whose CRD goes away leaves the store).
 *
 * Invariants:
 * - Per-object semantics: each object is validated on its own. A valid one is applied; an invalid
 *   one is recorded in `invalid()` (its status says why) and the store keeps the last good version
 *   of it, if there was one. One bad object never holds up the others.
 * - Informer events are applied in batches (one store change per batch, a short debounce), deletes
 *   after applies; the newest event per object wins within a batch.
 * - While the API server is away nothing is removed: informers restart from their last
 *   resourceVersion and a relist reports only what really went away.
 * - Objects enter the store without `status` (except Pods, whose status translation reads),
 *   without managedFields and without kubectl's last-applied annotation.
 */
import { EventEmitter } from 'node:events';
import type { Registry } from 'prom-client';
import type { Logger } from '../../shared/log.js';
import { formatIssue, type Issue } from '../../shared/validate.js';
import { KINDS, kindRef, objectKey, REF_GATEWAY_API_GATEWAY, REF_ISTIO_GATEWAY, type KindInfo, type KubeObject } from '../objects.js';
import type { ObjectRef, ObjectStore } from '../store.js';
import { asArray, asRecord, asString } from '../translate/util.js';
import { createInformerMetrics, ResourceInformer, type InformerMetrics } from './informer.js';
import type { KubeClient } from './kube-client.js';
import { apiVersionOf, collectionPath, crdName, RESOURCES, resourceOf } from './kube-paths.js';
import { referencedSecrets } from './secret-refs.js';
import { MESH_CONFIG_MAP } from '../translate/mesh-config.js';
import { validateObject } from './validate-objects.js';

/** An object the API server holds that failed validation: not applied, its last good version (if any) stays. */
export interface InvalidObject {
  /** The object as the API server holds it now. */
  object: KubeObject;
  issues: Issue[];
}

export interface KubernetesSourceOptions {
  client: KubeClient;
  store: ObjectStore;
  log: Logger;
  registry?: Registry;
  /** Quiet time before a batch of informer events is applied (default 20 ms). */
  batchMs?: number;
  /** Informer restart backoff (default 500 ms doubling to 30 s). */
  backoff?: { initialMs: number; maxMs: number };
}

interface KubernetesSourceEvents {
  /** An object of `ref` changed on the API server (also status-only changes and invalid objects). */
  live: [ref: string];
}

/** Built-in kinds that are watched (Deployments are not: translation reads Pods). */
const WATCHED_BUILTINS = ['Namespace', 'Node', 'Pod', 'Service', 'ServiceAccount', 'EndpointSlice', 'Secret', 'ConfigMap'];
/** Of the ConfigMaps only Istio's mesh config is read (translate/mesh-config.ts checks its namespace). */
const CONFIG_MAP_SELECTOR = `metadata.name=${MESH_CONFIG_MAP}`;
/** Secrets are watched by type; only referenced ones reach the store. */
/** Secrets a Gateway could name: all but the two bulky kinds no gateway reads (istiod excludes the same). */
const SECRET_SELECTOR = 'type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token';
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
/** Kinds whose status translation reads. */
const STATUS_KEPT = new Set(['Pod']);
/** On a cluster the image's entrypoint applies, so containers need no command. */
const VALIDATE = { requireContainerCommand: false } as const;
/** Most issues listed for one invalid object in logs and status. */
const MAX_ISSUES = 10;

type Pending = { op: 'apply'; obj: KubeObject } | { op: 'delete'; ref: ObjectRef };

interface Watched {
  info: KindInfo;
  version: string;
  informer: ResourceInformer;
}

export class KubernetesSource extends EventEmitter<KubernetesSourceEvents> {
  private readonly log: Logger;
  private readonly metrics: InformerMetrics | undefined;
  private readonly batchMs: number;
  /** kind ref → its informer. */
  private readonly watched = new Map<string, Watched>();
  private crdInformer: ResourceInformer | undefined;
  private readonly invalidObjects = new Map<string, InvalidObject>();
  private readonly pending = new Map<string, Pending>();
  /** `ns/name` of the Secrets now in the store. */
  private readonly secretsInStore = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly skippedLogged = new Set<string>();
  private readonly invalidLogged = new Map<string, string>();

  constructor(private readonly opts: KubernetesSourceOptions) {
    super();
    this.log = opts.log.child({ component: 'kubernetes-source' });
    this.metrics = opts.registry ? createInformerMetrics(opts.registry) : undefined;
    this.batchMs = opts.batchMs ?? 20;
  }

  /**
   * Starts every informer and resolves once each has delivered its first list (the built-in
   * kinds, the CRDs, and the custom kinds whose CRD is installed) and that list is in the store.
   * Retries while the API server cannot be reached; never rejects.
   */
  async start(): Promise<void> {
    const builtins = KINDS.filter((k) => WATCHED_BUILTINS.includes(k.kind));
    const crds = this.newInformer({ resource: 'customresourcedefinitions', path: collectionPath(RESOURCES.crds), apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition' });
    this.crdInformer = crds;
    crds.on('add', (crd) => this.onCrd(crd));
    crds.on('update', (crd) => this.onCrd(crd));
    crds.on('delete', (crd) => this.onCrdGone(crd));
    const started = builtins.map((info) => this.watch(info, info.versions[0]!));
    await Promise.all([crds.start(), ...started]);
    for (const info of KINDS.filter((k) => !k.builtin && !this.watched.has(k.ref))) this.logSkipped(info);
    // The custom kinds found in the first CRD list are being listed now.
    await Promise.all([...this.watched.values()].map((w) => w.informer.whenSynced()));
    this.flush();
    this.log.info({ kinds: [...this.watched.keys()].sort() }, 'kubernetes source synced');
  }

  /** True once every informer started so far delivered its first list. */
  get ready(): boolean {
    return !this.closed && (this.crdInformer?.synced ?? false) && [...this.watched.values()].every((w) => w.informer.synced);
  }

  /** Kind refs being watched now (custom kinds appear once their CRD is installed). */
  watchedKinds(): string[] {
    return [...this.watched.keys()].sort();
  }

  /** The API server's current version of an object (`objectKey` form), as the informer last saw it. */
  live(key: string): KubeObject | undefined {
    const [ref, ns, ...rest] = key.split('/');
    const w = this.watched.get(ref ?? '');
    return w?.informer.get(rest.join('/'), w.info.namespaced ? ns : undefined);
  }

  /** Every object of a kind ref as the API server holds it (valid or not). */
  liveObjects(ref: string): KubeObject[] {
    return this.watched.get(ref)?.informer.objects() ?? [];
  }

  /** Whether the store holds a version of `obj` (for an invalid object: its last good one). */
  inStore(obj: KubeObject): boolean {
    return this.opts.store.get(kindRef(obj), obj.metadata.namespace, obj.metadata.name) !== undefined;
  }

  /** Whether an informer event of the object (`objectKey` form) waits to reach the store. */
  isPending(key: string): boolean {
    return this.pending.has(key);
  }

  /** Objects that failed validation, by objectKey. */
  invalid(): ReadonlyMap<string, InvalidObject> {
    return this.invalidObjects;
  }

  /** Stops every informer; the store keeps what it holds. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const all = [...this.watched.values()].map((w) => w.informer.stop());
    if (this.crdInformer) all.push(this.crdInformer.stop());
    await Promise.all(all);
  }

  private newInformer(o: { resource: string; path: string; apiVersion: string; kind: string; fieldSelector?: string }): ResourceInformer {
    return new ResourceInformer({
      client: this.opts.client,
      log: this.opts.log,
      ...(this.metrics ? { metrics: this.metrics } : {}),
      ...(this.opts.backoff ? { backoff: this.opts.backoff } : {}),
      ...o,
    });
  }

  /** Starts the informer of one kind at one version; resolves when its first list is delivered. */
  private watch(info: KindInfo, version: string): Promise<void> {
    const resource = info.builtin ? info.plural : crdName(info);
    const informer = this.newInformer({
      resource,
      path: collectionPath(resourceOf(info, version)),
      apiVersion: apiVersionOf(info.group, version),
      kind: info.kind,
      ...(info.kind === 'Secret' ? { fieldSelector: SECRET_SELECTOR } : {}),
      ...(info.kind === 'ConfigMap' ? { fieldSelector: CONFIG_MAP_SELECTOR } : {}),
    });
    informer.on('add', (o) => this.onObject(info, o));
    informer.on('update', (o) => this.onObject(info, o));
    informer.on('delete', (o) => this.onDeleted(info, o));
    this.watched.set(info.ref, { info, version, informer });
    return informer.start();
  }

  private onCrd(crd: KubeObject): void {
    const info = KINDS.find((k) => !k.builtin && crdName(k) === crd.metadata.name);
    if (!info || this.closed) return;
    const version = servedVersion(crd, info);
    const cur = this.watched.get(info.ref);
    if (cur && cur.version === version) return;
    if (cur) void this.unwatch(info, version === undefined ? 'its CRD no longer serves a version Ambit reads' : `its CRD now serves ${version} instead`);
    if (version === undefined) {
      if (!cur) this.logSkipped(info, crd);
      return;
    }
    this.log.info({ kind: info.ref, crd: crd.metadata.name, version }, 'CRD installed; watching its objects');
    this.skippedLogged.delete(info.ref);
    void this.watch(info, version).catch((e: unknown) => this.log.error({ err: e, kind: info.ref }, 'cannot watch kind'));
  }

  private onCrdGone(crd: KubeObject): void {
    const info = KINDS.find((k) => !k.builtin && crdName(k) === crd.metadata.name);
    if (!info || !this.watched.has(info.ref)) return;
    void this.unwatch(info, 'its CRD was deleted');
  }

  /** Stops watching a kind and removes its objects from the store. */
  private async unwatch(info: KindInfo, why: string): Promise<void> {
    const w = this.watched.get(info.ref);
    if (!w) return;
    this.watched.delete(info.ref);
    const objects = w.informer.objects();
    await w.informer.stop();
    for (const o of objects) this.onDeleted(info, o);
    this.log.warn({ kind: info.ref, objects: objects.length }, `stopped watching ${info.ref}: ${why}; its objects left the mesh config`);
  }

  private logSkipped(info: KindInfo, crd?: KubeObject): void {
    if (this.skippedLogged.has(info.ref)) return;
    this.skippedLogged.add(info.ref);
    const why = crd ? `its CRD ${crdName(info)} serves none of ${info.versions.join(', ')} (or is not established yet)` : `its CRD ${crdName(info)} is not installed`;
    this.log.info({ kind: info.ref, crd: crdName(info) }, `skipping ${info.kind}.${info.group}: ${why}; it is picked up when the CRD appears`);
  }

  private onObject(info: KindInfo, raw: KubeObject): void {
    const obj = clean(raw);
    const key = objectKey(obj);
    this.emit('live', info.ref);
    if (info.kind === 'Secret') {
      // Secrets wait in the informer's cache; referencedSecrets() lets the ones a Gateway names in.
      this.queue(key, { op: 'apply', obj });
      return;
    }
    const issues = validateObject(obj, 'kubernetes', VALIDATE);
    if (issues.length > 0) {
      this.invalidObjects.set(key, { object: raw, issues: issues.slice(0, MAX_ISSUES) });
      const stamp = `${raw.metadata.resourceVersion}`;
      if (this.invalidLogged.get(key) !== stamp) {
        this.invalidLogged.set(key, stamp);
        const kept = this.inStore(obj);
        this.log.warn(
          { code: 'AMBIT_ERR_MANIFEST_INVALID', object: key, problems: issues.length, issues: issues.slice(0, MAX_ISSUES).map(formatIssue) },
          kept ? 'object is invalid; its last good version stays in force' : 'object is invalid; it is not applied',
        );
      }
      // A pending apply of an older good version is still the last good one: keep it queued.
      return;
    }
    if (this.invalidObjects.delete(key)) this.invalidLogged.delete(key);
    this.queue(key, { op: 'apply', obj });
  }

  private onDeleted(info: KindInfo, raw: KubeObject): void {
    const obj = clean(raw);
    const key = objectKey(obj);
    this.invalidObjects.delete(key);
    this.invalidLogged.delete(key);
    this.emit('live', info.ref);
    const metadata: ObjectRef['metadata'] = { name: obj.metadata.name };
    if (obj.metadata.namespace !== undefined) metadata.namespace = obj.metadata.namespace;
    this.queue(key, { op: 'delete', ref: { apiVersion: obj.apiVersion, kind: obj.kind, metadata } });
  }

  private queue(key: string, p: Pending): void {
    this.pending.set(key, p);
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.batchMs);
  }

  /** Applies the queued events to the store: one batch of applies, then one of deletes. */
  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = [...this.pending.values()];
    this.pending.clear();
    const applies: KubeObject[] = [];
    const deletes: ObjectRef[] = [];
    let gatewaysMoved = false;
    for (const p of batch) {
      const obj = p.op === 'apply' ? p.obj : p.ref;
      const ref = kindRef(obj);
      if (ref === 'Secret') continue; // decided below, from the references
      if (ref === 'Pod' || ref === REF_ISTIO_GATEWAY || ref === REF_GATEWAY_API_GATEWAY) gatewaysMoved = true;
      if (p.op === 'apply') applies.push(p.obj);
      else deletes.push(p.ref);
    }
    if (batch.some((p) => kindRef(p.op === 'apply' ? p.obj : p.ref) === 'Secret')) gatewaysMoved = true;
    this.applyBatch(applies);
    if (deletes.length > 0) {
      try {
        this.opts.store.delete(deletes);
      } catch (e) {
        this.log.error({ err: e }, 'store refused a delete batch');
      }
    }
    if (gatewaysMoved) this.syncSecrets();
  }

  /** Applies valid objects; if the store refuses the batch as a whole, applies them one by one. */
  private applyBatch(objects: KubeObject[]): void {
    if (objects.length === 0) return;
    try {
      this.opts.store.apply(objects);
      return;
    } catch (e) {
      this.log.warn({ err: e }, 'store refused a batch; applying its objects one by one');
    }
    for (const o of objects) {
      try {
        this.opts.store.apply([o]);
      } catch (e) {
        this.log.warn({ object: objectKey(o), err: e }, 'store refused an object; its last good version stays');
      }
    }
  }

  /** Lets exactly the referenced Secrets of the informer's cache into the store. */
  private syncSecrets(): void {
    const secrets = this.watched.get('Secret')?.informer;
    if (!secrets) return;
    const wanted = referencedSecrets(this.opts.store.snapshot().objects);
    const applies: KubeObject[] = [];
    const deletes: ObjectRef[] = [];
    for (const key of [...this.secretsInStore]) {
      const [ns, name] = key.split('/') as [string, string];
      if (!wanted.has(key) || !secrets.get(name, ns)) {
        deletes.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns } });
        this.secretsInStore.delete(key);
      }
    }
    for (const key of wanted) {
      const [ns, name] = key.split('/') as [string, string];
      const s = secrets.get(name, ns);
      if (!s) continue;
      const obj = clean(s);
      if (validateObject(obj, 'kubernetes', VALIDATE).length > 0) continue;
      applies.push(obj);
      this.secretsInStore.add(key);
    }
    this.applyBatch(applies);
    if (deletes.length > 0) this.opts.store.delete(deletes);
  }
}

/** The version of `info` a CRD serves (Established, served), preferred first; undefined if none. */
export function servedVersion(crd: KubeObject, info: KindInfo): string | undefined {
  const established = asArray(crd.status?.['conditions']).some((c) => asRecord(c)['type'] === 'Established' && asRecord(c)['status'] === 'True');
  if (!established) return undefined;
  const served = new Set(
    asArray(crd.spec?.['versions'])
      .map(asRecord)
      .filter((v) => v['served'] === true)
      .map((v) => asString(v['name'])),
  );
  return info.versions.find((v) => served.has(v));
}

/** What the store keeps of an API object: no status (but a Pod's), managedFields or last-applied copy. */
function clean(raw: KubeObject): KubeObject {
  const { status, ...rest } = raw;
  const metadata = { ...raw.metadata };
  delete metadata['managedFields'];
  delete metadata['resourceVersion'];
  if (metadata.annotations?.[LAST_APPLIED] !== undefined) {
    const { [LAST_APPLIED]: _dropped, ...annotations } = metadata.annotations;
    metadata.annotations = annotations;
  }
  return { ...rest, metadata, ...(status !== undefined && STATUS_KEPT.has(raw.kind) ? { status } : {}) } as KubeObject;
}
