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
