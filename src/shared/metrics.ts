/** prom-client registries: one per component (and per test), never the global default. */
import { Registry, collectDefaultMetrics } from 'prom-client';

export const AMBIT_PREFIX = 'ambit_';

/** The value Istio puts in any traffic label it cannot fill. */
export const UNKNOWN = 'unknown';

export function createRegistry(opts: { processMetrics?: boolean; labels?: Record<string, string> } = {}): Registry {
  const registry = new Registry();
  if (opts.labels) registry.setDefaultLabels(opts.labels);
  if (opts.processMetrics) collectDefaultMetrics({ register: registry, prefix: AMBIT_PREFIX + 'process_' });
  return registry;
}

/** Istio's standard workload/service labels shared by TCP (agent) and HTTP (waypoint) metrics, in order. */
export const ISTIO_COMMON_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
] as const;
