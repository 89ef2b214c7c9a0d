/**
 * The controllers a cluster's control plane runs for the API's own semantics, driven by store
 * events: the garbage collector (ownerReferences; background, foreground and orphan deletion),
 * the namespace controller (a deleted namespace's objects go, then the namespace), the CRD
 * controller (serving types follow CRDs; a deleted CRD's objects go first), the service-account
 * and root-CA publishers (`default` ServiceAccount and `kube-root-ca.crt` in every namespace) and
 * ClusterRole aggregation. Work runs as microtasks after the write that caused it, through the
 * registry as the system user, so it obeys the same rules as any client.
 *
 * Invariants: every task is idempotent and re-derives what to do from the store; a task that
 * fails is retried a bounded number of times.
 */
import type { Logger } from '../../shared/log.js';
import { SYSTEM_USER } from './authn.js';
import { CRD_CLEANUP_FINALIZER, CRD_RESOURCE } from './kinds/crd.js';
import { NAMESPACE_FINALIZER } from './kinds/cluster.js';
import type { Registry, RequestContext } from './registry.js';
import type { ResourceDef, ResourceTypes } from './resources.js';
import { labelSelectorFromObject, matchLabels } from './selectors.js';
import { ApiError } from './status.js';
import type { StoreEvent } from './store.js';
import { clone, isMap, jsonEqual, type JsonMap, type KubeObject, type OwnerReference } from './types.js';

const ROOT_CA_CONFIGMAP = 'kube-root-ca.crt';
const ROOT_CA_DESCRIPTION =
  'Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.';
const MAX_ATTEMPTS = 5;
const RETRY_MS = 50;

export class Controllers {
  private readonly pending = new Map<string, () => void>();
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly registry: Registry,
    private readonly types: ResourceTypes,
    private readonly log: Logger,
  ) {}

  private ctx(manager: string): RequestContext {
    return { user: SYSTEM_USER, dryRun: false, fieldValidation: 'Ignore', fieldManager: manager, warnings: [] };
  }

  private get store() {
    return this.registry.store;
  }

  /** Subscribes and reconciles everything once (after a restart, work may be half done). */
  start(): void {
    this.types.setCrds(this.store.list(CRD_RESOURCE));
    this.unsubscribe = this.store.subscribe((e) => this.onEvent(e));
    for (const ns of this.store.list('/namespaces')) this.enqueue(`ns/${ns.metadata.name}`, () => this.syncNamespace(ns.metadata.name!));
    for (const crd of this.store.list(CRD_RESOURCE)) this.enqueue(`crd/${crd.metadata.name}`, () => this.syncCrd(crd.metadata.name!));
    for (const resource of this.store.resources()) {
      for (const o of this.store.list(resource)) this.queueOwnerChecks(resource, o);
    }
    this.enqueue('aggregate', () => this.syncAggregation());
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.pending.clear();
  }

  /** Runs `fn` soon, once per key however often it is asked for meanwhile. */
  private enqueue(key: string, fn: () => void, attempt = 1): void {
    if (this.stopped || this.pending.has(key)) return;
    this.pending.set(key, fn);
    queueMicrotask(() => {
      this.pending.delete(key);
      if (this.stopped) return;
      try {
        fn();
      } catch (e) {
        if (attempt >= MAX_ATTEMPTS) {
          this.log.warn({ task: key, err: e }, 'controller task failed; giving up until the next change');
          return;
        }
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.enqueue(key, fn, attempt + 1);
        }, RETRY_MS * attempt);
        t.unref();
        this.timers.add(t);
      }
    });
  }

  private onEvent(e: StoreEvent): void {
    const o = e.object;
    const ns = o.metadata.namespace;
    if (e.resource === CRD_RESOURCE) {
      this.types.setCrds(this.store.list(CRD_RESOURCE));
      if (e.type !== 'DELETED') this.enqueue(`crd/${o.metadata.name}`, () => this.syncCrd(o.metadata.name!));
    }
    if (e.resource === '/namespaces' && e.type !== 'DELETED') this.enqueue(`ns/${o.metadata.name}`, () => this.syncNamespace(o.metadata.name!));
    if (e.type === 'DELETED') {
      if (ns !== undefined) this.enqueue(`ns/${ns}`, () => this.syncNamespace(ns));
      if (o.metadata.uid) this.enqueue(`dependents/${o.metadata.uid}`, () => this.collectDependents(o.metadata.uid!));
      for (const ref of o.metadata.ownerReferences ?? []) this.enqueue(`owner/${ref.uid}`, () => this.syncOwner(ref.uid));
      for (const crd of this.store.list(CRD_RESOURCE)) {
        if (crd.metadata.deletionTimestamp !== undefined) this.enqueue(`crd/${crd.metadata.name}`, () => this.syncCrd(crd.metadata.name!));
      }
    } else {
      this.queueOwnerChecks(e.resource, o);
    }
    if (e.resource === 'rbac.authorization.k8s.io/clusterroles') this.enqueue('aggregate', () => this.syncAggregation());
  }

  private queueOwnerChecks(resource: string, o: KubeObject): void {
    if (o.metadata.deletionTimestamp !== undefined && o.metadata.uid !== undefined) {
      const f = o.metadata.finalizers ?? [];
      if (f.includes('orphan') || f.includes('foregroundDeletion')) this.enqueue(`owner/${o.metadata.uid}`, () => this.syncOwner(o.metadata.uid!));
    }
    if ((o.metadata.ownerReferences ?? []).length > 0) {
      const key = `${resource}|${o.metadata.namespace ?? ''}|${o.metadata.name}`;
      this.enqueue(`dependent/${key}`, () => this.syncDependent(resource, o.metadata.namespace, o.metadata.name!));
    }
  }

  // ---- garbage collector ----------------------------------------------------------------------

  private defOf(resource: string): ResourceDef | undefined {
    return this.types.byId(resource) ?? this.types.stored().find((d) => d.id === resource);
  }

  /** Every object with an ownerReference to `uid`. */
  private dependentsOf(uid: string): Array<{ resource: string; object: KubeObject }> {
    const out: Array<{ resource: string; object: KubeObject }> = [];
    for (const resource of this.store.resources()) {
      for (const o of this.store.list(resource)) {
        if ((o.metadata.ownerReferences ?? []).some((r) => r.uid === uid)) out.push({ resource, object: o });
      }
    }
    return out;
  }

  private ownerExists(ref: OwnerReference): boolean {
    const found = this.store.byUid(ref.uid);
    return found !== undefined && found.object.kind === ref.kind && found.object.metadata.name === ref.name;
  }

  private collectDependents(uid: string): void {
    for (const d of this.dependentsOf(uid)) this.syncDependent(d.resource, d.object.metadata.namespace, d.object.metadata.name!);
  }

  /** A dependent whose owners are all gone is deleted; dangling references beside live owners are dropped. */
  private syncDependent(resource: string, namespace: string | undefined, name: string): void {
    const o = this.store.get(resource, namespace, name);
    const def = this.defOf(resource);
    if (o === undefined || def === undefined) return;
    const refs = o.metadata.ownerReferences ?? [];
    if (refs.length === 0) return;
    const alive = refs.filter((r) => this.ownerExists(r));
    if (alive.length === refs.length) return;
    if (alive.length === 0) {
      if (o.metadata.deletionTimestamp !== undefined) return;
      this.log.debug({ resource, namespace, name }, 'garbage collector deletes an object whose owners are gone');
      this.tolerateNotFound(() => this.registry.delete(def, def.storageVersion, namespace ?? '', name, { propagationPolicy: 'Background' }, this.ctx('garbage-collector')));
      return;
    }
    const next = clone(o);
    next.metadata.ownerReferences = alive;
    this.tolerateNotFound(() => this.registry.update(def, def.storageVersion, namespace ?? '', name, next, this.ctx('garbage-collector')));
  }

  /** An owner being deleted with the orphan or foregroundDeletion finalizer. */
  private syncOwner(uid: string): void {
    const found = this.store.byUid(uid);
    if (found === undefined) return;
    const { resource, object: owner } = found;
    const def = this.defOf(resource);
    if (def === undefined || owner.metadata.deletionTimestamp === undefined) return;
    const finalizers = owner.metadata.finalizers ?? [];
    const dependents = this.dependentsOf(uid);
    if (finalizers.includes('orphan')) {
      for (const d of dependents) {
        const ddef = this.defOf(d.resource);
        if (ddef === undefined) continue;
        const next = clone(d.object);
        next.metadata.ownerReferences = (next.metadata.ownerReferences ?? []).filter((r) => r.uid !== uid);
        if (next.metadata.ownerReferences.length === 0) delete next.metadata.ownerReferences;
        this.tolerateNotFound(() => this.registry.update(ddef, ddef.storageVersion, d.object.metadata.namespace ?? '', d.object.metadata.name!, next, this.ctx('garbage-collector')));
      }
      this.removeFinalizer(def, owner, 'orphan');
      return;
    }
    if (finalizers.includes('foregroundDeletion')) {
      for (const d of dependents) {
        if (d.object.metadata.deletionTimestamp !== undefined) continue;
        const ddef = this.defOf(d.resource);
        if (ddef === undefined) continue;
        this.tolerateNotFound(() => this.registry.delete(ddef, ddef.storageVersion, d.object.metadata.namespace ?? '', d.object.metadata.name!, { propagationPolicy: 'Foreground' }, this.ctx('garbage-collector')));
      }
      const blocking = this.dependentsOf(uid).filter((d) => (d.object.metadata.ownerReferences ?? []).some((r) => r.uid === uid && r.blockOwnerDeletion === true));
      if (blocking.length === 0) this.removeFinalizer(def, owner, 'foregroundDeletion');
    }
  }

  private removeFinalizer(def: ResourceDef, obj: KubeObject, finalizer: string): void {
    const cur = this.store.get(def.id, obj.metadata.namespace, obj.metadata.name!);
    if (cur === undefined || !(cur.metadata.finalizers ?? []).includes(finalizer)) return;
    const next = clone(cur);
    next.metadata.finalizers = (next.metadata.finalizers ?? []).filter((f) => f !== finalizer);
    this.registry.update(def, def.storageVersion, cur.metadata.namespace ?? '', cur.metadata.name!, next, this.ctx('system'));
  }

  /** Runs a write whose target may have gone meanwhile (then there is nothing left to do). */
  private tolerateNotFound(fn: () => unknown): void {
    try {
      fn();
    } catch (e) {
      if (e instanceof ApiError && e.code === 404) return;
      throw e;
    }
  }

  // ---- namespaces -----------------------------------------------------------------------------

  private syncNamespace(name: string): void {
    const ns = this.store.get('/namespaces', undefined, name);
    if (ns === undefined) return;
    if (ns.metadata.deletionTimestamp === undefined) {
      this.ensureNamespaceDefaults(name);
      return;
    }
    const spec = isMap(ns['spec']) ? ns['spec'] : {};
    const finalizers = Array.isArray(spec['finalizers']) ? spec['finalizers'].map(String) : [];
    if (!finalizers.includes(NAMESPACE_FINALIZER)) return;
    let remaining = 0;
    for (const def of this.types.stored()) {
      if (!def.namespaced) continue;
      for (const o of this.store.list(def.id, name)) {
        remaining++;
        if (o.metadata.deletionTimestamp !== undefined) continue;
        this.tolerateNotFound(() => this.registry.delete(def, def.storageVersion, name, o.metadata.name!, { propagationPolicy: 'Background' }, this.ctx('namespace-controller')));
      }
    }
    const left = this.types.stored().some((def) => def.namespaced && this.store.list(def.id, name).length > 0);
    if (remaining > 0 && left) return;
    const nsDef = this.types.byId('/namespaces')!;
    this.registry.finalize(nsDef, name, finalizers.filter((f) => f !== NAMESPACE_FINALIZER), this.ctx('namespace-controller'));
  }

  /** The `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap every namespace has. */
  private ensureNamespaceDefaults(ns: string): void {
    const saDef = this.types.byId('/serviceaccounts')!;
    const cmDef = this.types.byId('/configmaps')!;
    const ctx = this.ctx('system');
    if (this.store.get(saDef.id, ns, 'default') === undefined) {
      this.ignoreExists(() => this.registry.create(saDef, 'v1', ns, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } }, ctx));
    }
    const ca = this.registry.settings.rootCaPem;
    const cm = this.store.get(cmDef.id, ns, ROOT_CA_CONFIGMAP);
    const want = { 'ca.crt': ca };
    if (cm === undefined) {
      this.ignoreExists(() =>
        this.registry.create(cmDef, 'v1', ns, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: ROOT_CA_CONFIGMAP, annotations: { 'kubernetes.io/description': ROOT_CA_DESCRIPTION } }, data: want }, ctx),
      );
    } else if (!jsonEqual(cm['data'], want)) {
      this.registry.update(cmDef, 'v1', ns, ROOT_CA_CONFIGMAP, { ...clone(cm), data: want }, ctx);
    }
  }

  private ignoreExists(fn: () => unknown): void {
    try {
      fn();
    } catch (e) {
      if (e instanceof ApiError && (e.code === 409 || e.code === 403)) return;
      throw e;
    }
  }

  // ---- CRDs -----------------------------------------------------------------------------------

  private syncCrd(name: string): void {
    const crd = this.store.get(CRD_RESOURCE, undefined, name);
    if (crd === undefined || crd.metadata.deletionTimestamp === undefined) return;
    if (!(crd.metadata.finalizers ?? []).includes(CRD_CLEANUP_FINALIZER)) return;
    const crdDef = this.types.byId(CRD_RESOURCE)!;
    const spec = crd['spec'] as JsonMap;
    const names = isMap(spec['names']) ? spec['names'] : {};
    const resource = `${String(spec['group'])}/${String(names['plural'])}`;
    const status = isMap(crd['status']) ? clone(crd['status']) : {};
    const conds = Array.isArray(status['conditions']) ? (status['conditions'] as JsonMap[]) : [];
    if (!conds.some((c) => c['type'] === 'Terminating' && c['status'] === 'True')) {
      status['conditions'] = [
        ...conds.filter((c) => c['type'] !== 'Terminating'),
        { type: 'Terminating', status: 'True', lastTransitionTime: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'), reason: 'InstanceDeletionInProgress', message: 'CustomResourceDefinition marked for deletion; instances are being deleted' },
      ];
      this.registry.update(crdDef, 'v1', '', name, { ...clone(crd), status }, this.ctx('apiextensions'), 'status');
    }
    const objects = this.store.list(resource);
    const def = this.types.byId(resource);
    for (const o of objects) {
      if (o.metadata.deletionTimestamp !== undefined || def === undefined) continue;
      this.tolerateNotFound(() => this.registry.delete(def, def.storageVersion, o.metadata.namespace ?? '', o.metadata.name!, { propagationPolicy: 'Background' }, this.ctx('apiextensions')));
    }
    if (this.store.list(resource).length === 0) this.removeFinalizer(crdDef, this.store.get(CRD_RESOURCE, undefined, name)!, CRD_CLEANUP_FINALIZER);
  }

  // ---- ClusterRole aggregation ---------------------------------------------------------------

  private syncAggregation(): void {
    const def = this.types.byId('rbac.authorization.k8s.io/clusterroles')!;
    const roles = this.store.list(def.id);
    for (const role of roles) {
      const rule = role['aggregationRule'];
      if (!isMap(rule) || !Array.isArray(rule['clusterRoleSelectors'])) continue;
      const selectors = rule['clusterRoleSelectors'].map((s) => labelSelectorFromObject(s));
      const rules: unknown[] = [];
      for (const other of roles) {
        if (other.metadata.name === role.metadata.name) continue;
        if (!selectors.some((s) => matchLabels(s, other.metadata.labels))) continue;
        for (const r of Array.isArray(other['rules']) ? other['rules'] : []) if (!rules.some((x) => jsonEqual(x, r))) rules.push(r);
      }
      if (jsonEqual(role['rules'] ?? [], rules)) continue;
      this.registry.update(def, 'v1', '', role.metadata.name!, { ...clone(role), rules }, this.ctx('clusterrole-aggregation-controller'));
    }
  }
}
