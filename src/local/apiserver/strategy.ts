/**
 * What a kind contributes to the generic create/update/delete flow (as the real server's
 * per-kind "strategies"): defaults, admission, validation, status-subresource rules, graceful
 * deletion, selectable fields. The flow itself is in registry.ts and knows no kind by name.
 */
import type { Store } from './store.js';
import type { FieldError } from './status.js';
import type { KubeObject } from './types.js';

/** Cluster-wide settings strategies need (service IPs, node ports, the root CA for pods). */
export interface ClusterSettings {
  /** IPv4 CIDR ClusterIPs are allocated from (the real default is 10.96.0.0/12). */
  serviceCidr: string;
  /** Inclusive NodePort range. */
  nodePortRange: [number, number];
  /** PEM of the API server's CA, published as ConfigMap kube-root-ca.crt in every namespace. */
  rootCaPem: string;
}

export interface StrategyContext {
  now: number;
  /** Read-only view: strategies look things up (service accounts, used IPs), never write. */
  store: Store;
  settings: ClusterSettings;
  /** Random lowercase alphanumerics as the real server uses for generated names. */
  randomSuffix(n: number): string;
}

export interface KindStrategy {
  /** metadata.generation is set to 1 on create and bumped when anything but metadata/status changes. */
  generation?: boolean;
  /** Applied to every object written (create and update), after decoding. */
  defaults?(obj: KubeObject): void;
  /** Admission on create (may throw an ApiError, e.g. a missing ServiceAccount). */
  prepareForCreate?(obj: KubeObject, ctx: StrategyContext): void;
  /** Called on update of the main resource, before validation (e.g. keep allocated ClusterIPs). */
  prepareForUpdate?(obj: KubeObject, old: KubeObject, ctx: StrategyContext): void;
  validate?(obj: KubeObject, ctx: StrategyContext): FieldError[];
  validateUpdate?(obj: KubeObject, old: KubeObject, ctx: StrategyContext): FieldError[];
  /**
   * The object a write to the status subresource stores: by default the old object with the new
   * `status`; pods also keep label and annotation changes.
   */
  statusUpdate?(obj: KubeObject, old: KubeObject): KubeObject;
  validateStatusUpdate?(obj: KubeObject, old: KubeObject): FieldError[];
  /** Grace period for a DELETE (pods); 0 or undefined deletes at once. */
  gracePeriodSeconds?(obj: KubeObject, requested: number | undefined): number;
  /** Paths fieldSelector accepts beyond metadata.name and metadata.namespace. */
  selectableFields?: string[];
  /** Values of selectable fields that are not plain paths (events' `source`). */
  fieldValues?(obj: KubeObject): Record<string, string>;
  /** Whether DELETE answers with the object (pods, services) rather than a Success Status. */
  returnDeletedObject?: boolean;
  /** PUT of a missing object creates it (endpoints, events, leases). */
  allowCreateOnUpdate?: boolean;
  /** PUT without metadata.resourceVersion is refused (custom resources). */
  requireResourceVersionOnUpdate?: boolean;
  /** Create keeps the `status` the client sent (nodes); otherwise it is dropped when a status subresource exists. */
  keepStatusOnCreate?: boolean;
  /** Deletion waits while this is true besides metadata.finalizers (a namespace's spec.finalizers). */
  blocksDeletion?(obj: KubeObject): boolean;
  /** Marks an object whose deletion started (a namespace's phase Terminating). */
  onDeletionStarted?(obj: KubeObject): void;
}

/** A status write that also keeps label and annotation changes (pods/status, nodes/status). */
export function statusWithMetadata(obj: KubeObject, old: KubeObject): KubeObject {
  return {
    ...structuredClone(old),
    metadata: { ...structuredClone(old.metadata), labels: obj.metadata.labels, annotations: obj.metadata.annotations },
    status: structuredClone(obj['status']),
  } as KubeObject;
}

/** Reads a dotted path (`spec.nodeName`) from an object; undefined when absent. */
export function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const seg of path.split('.').filter((s) => s !== '')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/** A field value as fieldSelector compares it (`true`, `10.0.0.1`, `` when absent). */
export function fieldString(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** Field values read from `paths` of `obj`. */
export function fieldsAt(obj: KubeObject, paths: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of paths) out[p] = fieldString(getPath(obj, p));
  return out;
}
