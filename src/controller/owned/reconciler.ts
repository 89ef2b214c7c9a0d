/**
 * Keeps the workloads Gateways ask for (render.ts) in the cluster: the leader applies each
 * ServiceAccount, Deployment and Service with server-side apply (field manager ambit-controller,
 * so fields others own, such as replicas after `kubectl scale` or a Service's cluster IP, are left
 * alone) when it is missing or differs in a field this controller sets; deletes managed objects
 * no Gateway asks for any more (a Gateway deleted with orphaning, a class changed); and never
 * touches an object of the same name that another owner controls (reported as a conflict on the
 * Gateway's status). Deleting a Gateway removes its objects through garbage collection
 * (ownerReferences), and through this reconciler too.
 */
import type { Registry } from 'prom-client';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { objectKey, type KubeObject } from '../objects.js';
import { InformedReconciler, ReconcileLoop } from '../reconcile-loop.js';
import { createInformerMetrics, ResourceInformer } from '../source/informer.js';
import { isNotFound, type KubeClient } from '../source/kube-client.js';
import { collectionPath, objectPath, RESOURCES, type ResourceRef } from '../source/kube-paths.js';
import { LABEL_MANAGED_BY, MANAGED_BY, renderOwned, type OwnedObjects, type ProxyTemplate } from './render.js';
import { nsOf } from '../translate/util.js';

export const FIELD_MANAGER = 'ambit-controller';

export interface OwnedReconcilerOptions {
  client: KubeClient;
  template: ProxyTemplate;
  /** The Gateway API Gateways as the API server holds them now (uids matter). */
  gateways: () => readonly KubeObject[];
  /** Passes run only while this is true (the leader, with synced informers). */
  active: () => boolean;
  log: Logger;
  registry?: Registry;
  /** Called after a pass changed something, or a managed object changed (status writer). */
  onChange?: () => void;
}

/** Where a Gateway's workload stands, for its status. */
export interface OwnedState {
  role: OwnedObjects['role'];
  /** The Service as the API server holds it (addresses), once it exists. */
  service?: KubeObject;
  deployment?: KubeObject;
  /** Set when an object of the same name belongs to someone else. */
  conflict?: string;
}

const KINDS: Array<{ key: keyof Omit<OwnedObjects, 'role'>; ref: ResourceRef; apiVersion: string; kind: string }> = [
  { key: 'serviceAccount', ref: RESOURCES.serviceAccounts, apiVersion: 'v1', kind: 'ServiceAccount' },
  { key: 'deployment', ref: RESOURCES.deployments, apiVersion: 'apps/v1', kind: 'Deployment' },
  { key: 'service', ref: RESOURCES.services, apiVersion: 'v1', kind: 'Service' },
];

export class OwnedReconciler extends InformedReconciler {
  private readonly log: Logger;
  /** Managed objects by kind. */
  private readonly byKind: Map<string, ResourceInformer>;
  protected readonly informers: readonly ResourceInformer[];
  protected readonly loop: ReconcileLoop;
  private readonly conflicts = new Map<string, string>();

  constructor(private readonly opts: OwnedReconcilerOptions) {
    super();
    this.log = opts.log.child({ component: 'owned-objects' });
    const metrics = opts.registry ? createInformerMetrics(opts.registry) : undefined;
    this.byKind = new Map(
      KINDS.map((k) => {
        const inf = new ResourceInformer({
          client: opts.client,
          path: collectionPath(k.ref),
          apiVersion: k.apiVersion,
          kind: k.kind,
          resource: `${k.ref.plural} (managed)`,
          labelSelector: `${LABEL_MANAGED_BY}=${MANAGED_BY}`,
          log: opts.log,
          ...(metrics ? { metrics } : {}),
        });
        const changed = (): void => {
          this.loop.trigger();
          opts.onChange?.();
        };
        inf.on('add', changed);
        inf.on('update', changed);
        inf.on('delete', changed);
        return [k.kind, inf];
      }),
    );
    this.informers = [...this.byKind.values()];
    this.loop = new ReconcileLoop({ name: 'owned-objects', run: () => this.sync(), active: () => opts.active() && this.synced, log: opts.log });
  }

  /** The workload state of a Gateway (for its status); undefined for Gateways of other classes. */
  stateOf(gw: KubeObject): OwnedState | undefined {
    const want = renderOwned(gw, this.opts.template);
    if (!want) return undefined;
    const get = (kind: string, o: KubeObject): KubeObject | undefined => {
      const live = this.byKind.get(kind)?.get(o.metadata.name, nsOf(o));
      return live && controlledBy(live, gw) ? live : undefined;
    };
    const conflict = this.conflicts.get(objectKey(gw));
    const service = get('Service', want.service);
    const deployment = get('Deployment', want.deployment);
    return { role: want.role, ...(service ? { service } : {}), ...(deployment ? { deployment } : {}), ...(conflict ? { conflict } : {}) };
  }

  private async sync(): Promise<void> {
    const desired = new Set<string>();
    const failures: string[] = [];
    let changed = 0;
    this.conflicts.clear();
    for (const gw of this.opts.gateways()) {
      if (gw.metadata.deletionTimestamp) continue;
      const want = renderOwned(gw, this.opts.template);
      if (!want) continue;
      for (const k of KINDS) {
        const obj = want[k.key];
        desired.add(`${k.kind}/${nsOf(obj)}/${obj.metadata.name}`);
        if (!this.opts.active()) return;
        try {
          if (await this.ensure(gw, k.kind, k.ref, obj)) changed++;
        } catch (e) {
          failures.push(`${k.kind} ${nsOf(obj)}/${obj.metadata.name}: ${errorMessage(e)}`);
        }
      }
    }
    // Managed objects no Gateway asks for any more.
    for (const k of KINDS) {
      for (const live of this.byKind.get(k.kind)!.objects()) {
        if (desired.has(`${k.kind}/${nsOf(live)}/${live.metadata.name}`) || !ownerGateway(live)) continue;
        if (!this.opts.active()) return;
        try {
          await this.opts.client.delete(objectPath(k.ref, nsOf(live), live.metadata.name), { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { uid: live.metadata.uid }, propagationPolicy: 'Background' });
          this.log.info({ object: `${k.kind} ${nsOf(live)}/${live.metadata.name}` }, 'deleted an object no Gateway asks for');
          changed++;
        } catch (e) {
          if (!isNotFound(e)) failures.push(`delete ${k.kind} ${nsOf(live)}/${live.metadata.name}: ${errorMessage(e)}`);
        }
      }
    }
    if (changed > 0) this.opts.onChange?.();
    if (failures.length > 0) throw new Error(`${failures.length} owned object(s) not reconciled: ${failures.slice(0, 3).join('; ')}`);
  }

  /** Applies one object when missing or different; true when it wrote. */
  private async ensure(gw: KubeObject, kind: string, ref: ResourceRef, want: KubeObject): Promise<boolean> {
    const ns = nsOf(want);
    const name = want.metadata.name;
    let live = this.byKind.get(kind)!.get(name, ns);
    if (!live) {
      // Not one of ours: an object of that name may still exist, owned by someone else.
      live = await this.opts.client.getOptional<KubeObject>(objectPath(ref, ns, name));
    }
    if (live && !controlledBy(live, gw)) {
      const owner = (live.metadata.ownerReferences ?? []).find((o) => o.controller === true);
      const msg = `${kind} ${ns}/${name} already exists${owner ? `, controlled by ${owner.kind} ${owner.name}` : ' and is not managed by this Gateway'}; rename the Gateway or remove that ${kind}`;
      this.conflicts.set(objectKey(gw), msg);
      return false;
    }
    if (live && sameAsWanted(want, live)) return false;
    await this.opts.client.apply(objectPath(ref, ns, name), want, FIELD_MANAGER);
    this.log.info({ object: `${kind} ${ns}/${name}`, gateway: `${nsOf(gw)}/${gw.metadata.name}` }, live ? 'updated an object a Gateway asks for' : 'created an object a Gateway asks for');
    return true;
  }
}

/** The Gateway an object's controller ownerReference names, if any. */
function ownerGateway(o: KubeObject): { name: string; uid?: string } | undefined {
  return (o.metadata.ownerReferences ?? []).find((r) => r.controller === true && r.kind === 'Gateway' && r.apiVersion.startsWith('gateway.networking.k8s.io/'));
}

function controlledBy(o: KubeObject, gw: KubeObject): boolean {
  const r = ownerGateway(o);
  return r !== undefined && r.uid === gw.metadata.uid;
}

/** True when every field `want` sets has that value in `live` (labels and owner references included). */
export function sameAsWanted(want: KubeObject, live: KubeObject): boolean {
  const { metadata: wm, ...wantRest } = want;
  const { metadata: lm, ...liveRest } = live;
  if (!isSubset(wm.labels ?? {}, lm.labels ?? {}) || !isSubset(wm.annotations ?? {}, lm.annotations ?? {})) return false;
  for (const ref of wm.ownerReferences ?? []) {
    if (!(lm.ownerReferences ?? []).some((r) => isSubset(ref, r))) return false;
  }
  return isSubset(wantRest, liveRest);
}

/**
 * `want` ⊆ `have`: objects by key (extra keys in `have` are defaults or others' fields), lists
 * element by element with equal length, scalars equal.
 */
export function isSubset(want: unknown, have: unknown): boolean {
  if (Array.isArray(want)) {
    return Array.isArray(have) && have.length === want.length && want.every((w, i) => isSubset(w, have[i]));
  }
  if (typeof want === 'object' && want !== null) {
    if (typeof have !== 'object' || have === null || Array.isArray(have)) return false;
    return Object.entries(want as Record<string, unknown>).every(([k, v]) => v === undefined || isSubset(v, (have as Record<string, unknown>)[k]));
  }
  return want === have;
}
