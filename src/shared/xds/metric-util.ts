/** Registers a metric once per registry, so several streams in one process can share a registry. */
import type { Metric, Registry } from 'prom-client';

export function registerOnce<M extends Metric<string>>(registry: Registry, name: string, create: () => M): M {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as M;
  return create();
}
