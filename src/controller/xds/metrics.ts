/** Metrics of the config server: pushes, NACKs, subscribers by role, notify → ACK latency, refused streams. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { registerOnce } from '../../shared/xds/metric-util.js';

export interface ConfigServerMetrics {
  pushes: Counter<'type'>;
  nacks: Counter<'type'>;
  invalid: Counter<'type'>;
  subscribers: Gauge<'role'>;
  pushLatency: Histogram<string>;
  refused: Counter<'reason'>;
}

/** Why a config stream was refused or ended before it subscribed (bounded label values). */
export type StreamRefusal = 'unauthenticated' | 'forbidden' | 'peer_limit' | 'pending_limit' | 'caller_limit' | 'identify_timeout' | 'flood';

export function createConfigServerMetrics(registry: Registry): ConfigServerMetrics {
  return {
    pushes: registerOnce(registry, 'ambit_config_pushes_total', () => new Counter({
      name: 'ambit_config_pushes_total',
      help: 'Config responses sent to subscribers, by resource type.',
      labelNames: ['type'],
      registers: [registry],
    })),
    nacks: registerOnce(registry, 'ambit_config_nacks_total', () => new Counter({
      name: 'ambit_config_nacks_total',
      help: 'Config responses rejected (NACKed) by subscribers, by resource type.',
      labelNames: ['type'],
      registers: [registry],
    })),
    invalid: registerOnce(registry, 'ambit_config_invalid_resources_total', () => new Counter({
      name: 'ambit_config_invalid_resources_total',
      help: 'Resources the server refused to send because they failed validation (last good version kept).',
      labelNames: ['type'],
      registers: [registry],
    })),
    subscribers: registerOnce(registry, 'ambit_config_subscribers', () => new Gauge({
      name: 'ambit_config_subscribers',
      help: 'Connected config stream subscribers, by role.',
      labelNames: ['role'],
      registers: [registry],
    })),
    pushLatency: registerOnce(registry, 'ambit_config_push_latency_seconds', () => new Histogram({
      name: 'ambit_config_push_latency_seconds',
      help: 'Time from a config change (notify) to the subscriber ACKing the push that carried it.',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    })),
    refused: registerOnce(registry, 'ambit_config_streams_refused_total', () => new Counter({
      name: 'ambit_config_streams_refused_total',
      help: 'Config streams refused before they subscribed, by reason (unauthenticated, forbidden, peer_limit, pending_limit, caller_limit, identify_timeout, flood).',
      labelNames: ['reason'],
      registers: [registry],
    })),
  };
}
