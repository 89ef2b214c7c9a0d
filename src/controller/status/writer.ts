/**
 * Writes the statuses build.ts wants, on the leader only: through each object's status
 * subresource, as an update carrying the resourceVersion that was read (a 409 means someone wrote
 * in between; the informer brings the new version and the next pass decides again), and only
 * when the wanted status differs from the one the API server holds.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Registry } from 'prom-client';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Issue } from '../../shared/validate.js';
import { Counter } from '../../shared/metrics.js';
import { registerOnce } from '../../shared/xds/metric-util.js';
import { lookupKind, objectKey, REF_GATEWAY_API_GATEWAY, splitApiVersion, type KubeObject } from '../objects.js';
import { ReconcileLoop } from '../reconcile-loop.js';
import { isConflict, isNotFound, type KubeClient } from '../source/kube-client.js';
import { objectPath, resourceOf } from '../source/kube-paths.js';
import type { KubernetesSource } from '../source/kubernetes.js';
import type { TranslateCondition } from '../translate/object-index.js';
import { nsOf } from '../translate/util.js';
import type { OwnedState } from '../owned/reconciler.js';
import { desiredStatus, type ConditionOrigin, type StatusInputs } from './build.js';
import { allocatedEntryAddresses } from '../translate/address-allocation.js';

/** Kinds whose status this controller writes (kind refs). */
export const STATUS_KINDS: readonly string[] = [
  'AuthorizationPolicy',
  'PeerAuthentication',
  'RequestAuthentication',
  'VirtualService',
  'DestinationRule',
  'Gateway.networking.istio.io',
  'ServiceEntry',
  'Sidecar',
  'EnvoyFilter',
  'WorkloadEntry',
  'WorkloadGroup',
  'Service',
  REF_GATEWAY_API_GATEWAY,
  'HTTPRoute',
  'GRPCRoute',
  'TCPRoute',
  'TLSRoute',
];

/** The translation findings the writer reads (the Controller's current translation). */
export interface TranslationView {
  model: readonly TranslateCondition[];
  routes: readonly TranslateCondition[];
  listeners: readonly TranslateCondition[];
}

export interface StatusWriterOptions {
  client: KubeClient;
  source: KubernetesSource;
  translation: () => TranslationView;
  gatewayState: (gw: KubeObject) => OwnedState | undefined;
  /** Writes happen only while this is true (the leader, with a synced source). */
  active: () => boolean;
  log: Logger;
  registry: Registry;
  now?: () => Date;
}

export class StatusWriter {
  private readonly log: Logger;
  private readonly loop: ReconcileLoop;
  private readonly writes: Counter<'kind' | 'result'>;
  private readonly now: () => Date;

  constructor(private readonly opts: StatusWriterOptions) {
    this.log = opts.log.child({ component: 'status-writer' });
    this.now = opts.now ?? (() => new Date());
    const registry = opts.registry;
    this.writes = registerOnce(registry, 'ambit_status_writes_total', () => new Counter({
      name: 'ambit_status_writes_total',
      help: 'Status updates the leader sent to the API server, by kind and result (written, conflict: someone wrote first and it is decided again, error).',
      labelNames: ['kind', 'result'] as const,
      registers: [registry],
    }));
    this.loop = new ReconcileLoop({ name: 'status-writer', run: () => this.pass(), active: opts.active, log: opts.log, debounceMs: 100 });
  }

  /** Translation, objects or leadership changed. */
  trigger(): void {
    this.loop.trigger();
  }

  idle(): Promise<void> {
    return this.loop.idle();
  }

  close(): Promise<void> {
    return this.loop.close();
  }

  private inputs(): StatusInputs {
    const t = this.opts.translation();
    const conditions = new Map<string, Array<TranslateCondition & { origin: ConditionOrigin }>>();
    const add = (list: readonly TranslateCondition[], origin: ConditionOrigin): void => {
      for (const c of list) conditions.set(c.objectKey, [...(conditions.get(c.objectKey) ?? []), { ...c, origin }]);
    };
    add(t.model, 'model');
    add(t.routes, 'routes');
    add(t.listeners, 'listeners');
    const src = this.opts.source;
    const invalid = new Map<string, { issues: readonly Issue[]; kept: boolean }>();
    for (const [key, inv] of src.invalid()) invalid.set(key, { issues: inv.issues, kept: src.inStore(inv.object) });
    return {
      conditions,
      invalid,
      gatewayState: this.opts.gatewayState,
      gateways: new Map(src.liveObjects(REF_GATEWAY_API_GATEWAY).map((g) => [`${nsOf(g)}/${g.metadata.name}`, g])),
      services: new Set(src.liveObjects('Service').map((s) => `${nsOf(s)}/${s.metadata.name}`)),
      namespaces: new Map(src.liveObjects('Namespace').map((n) => [n.metadata.name, n])),
      routes: [...src.liveObjects('HTTPRoute'), ...src.liveObjects('GRPCRoute'), ...src.liveObjects('TCPRoute'), ...src.liveObjects('TLSRoute')],
      entryAddresses: allocatedEntryAddresses(src.liveObjects('ServiceEntry')),
      now: this.now().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    };
  }

  private async pass(): Promise<void> {
    const inputs = this.inputs();
    const failures: string[] = [];
    for (const ref of STATUS_KINDS) {
      for (const obj of this.opts.source.liveObjects(ref)) {
        const want = desiredStatus(obj, inputs);
        if (want === undefined || isDeepStrictEqual(want, obj.status ?? {})) continue;
        if (!this.opts.active()) return;
        const result = await this.write(obj, want).catch((e: unknown) => {
          failures.push(`${objectKey(obj)}: ${errorMessage(e)}`);
          return 'error' as const;
        });
        this.writes.inc({ kind: obj.kind, result });
      }
    }
    if (failures.length > 0) throw new Error(`${failures.length} status write(s) failed: ${failures.slice(0, 3).join('; ')}`);
  }

  private async write(obj: KubeObject, status: Record<string, unknown>): Promise<'written' | 'conflict'> {
    const info = lookupKind(obj.apiVersion, obj.kind);
    if (!info) return 'conflict';
    const { version } = splitApiVersion(obj.apiVersion);
    const { managedFields: _managed, ...metadata } = obj.metadata;
    try {
      await this.opts.client.replace(objectPath(resourceOf(info, version), obj.metadata.namespace, obj.metadata.name, 'status'), { ...obj, metadata, status });
    } catch (e) {
      if (isConflict(e) || isNotFound(e)) return 'conflict';
      throw e;
    }
    this.log.debug({ object: objectKey(obj) }, 'status written');
    return 'written';
  }
}
