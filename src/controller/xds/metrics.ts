/**
 * Metrics of the config server: pushes, NACKs, subscribers by role, notify → ACK latency, refused
 * streams (ambit_config_*), and the same figures under the names Istio's control-plane dashboard
 * reads from istiod: pilot_xds (connected streams), pilot_xds_pushes{type},
 * pilot_total_xds_rejects{type}.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { registerOnce } from '../../shared/xds/metric-util.js';

export interface ConfigServerMetrics {
  pushes: Counter<'type'>;
  nacks: Counter<'type'>;
  invalid: Counter<'type'>;
  subscribers: Gauge<'role'>;
  pushLatency: Histogram<string>;
  refused: Counter<'reason'>;
  istioConnected: Gauge<string>;
  istioPushes: Counter<'type'>;
  istioRejects: Counter<'type'>;
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
    istioConnected: registerOnce(registry, 'pilot_xds', () => new Gauge({
      name: 'pilot_xds',
      help: 'Connected config (xDS) streams, all roles (istiod\'s name).',
      registers: [registry],
    })),
    istioPushes: registerOnce(registry, 'pilot_xds_pushes', () => new Counter({
      name: 'pilot_xds_pushes',
      help: 'Config (xDS) responses sent, by resource type (istiod\'s name).',
      labelNames: ['type'],
      registers: [registry],
    })),
    istioRejects: registerOnce(registry, 'pilot_total_xds_rejects', () => new Counter({
      name: 'pilot_total_xds_rejects',
      help: 'Config (xDS) responses rejected (NACKed) by subscribers, by resource type (istiod\'s name).',
      labelNames: ['type'],
      registers: [registry],
    })),
  };
}
