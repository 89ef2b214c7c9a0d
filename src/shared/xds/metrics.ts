/**
 * Metrics of a config stream client (agent, waypoint): connection, sync, applied and rejected
 * updates (ambit_config_*), and the two ztunnel names Istio's ztunnel dashboard reads:
 * istio_xds_connection_terminations_total{reason}, istio_xds_message_total{url} and
 * istio_xds_message_bytes_total{url}.
 */
import { Counter, Gauge, type Registry } from '../metrics.js';
import { registerOnce } from './metric-util.js';
import { ISTIO_XDS_METRICS } from '../istio-metrics.js';

export interface ConfigClientMetrics {
  connected: Gauge<string>;
  synced: Gauge<'type'>;
  updates: Counter<'type'>;
  rejected: Counter<'type'>;
  reconnects: Counter<string>;
  terminations: Counter<'reason'>;
  messages: Counter<'url'>;
  messageBytes: Counter<'url'>;
}

/** Why a config stream ended, in ztunnel's words: the server ended it, the client restarted it, the connection failed, or another error. */
export type StreamTermination = 'Complete' | 'Reconnect' | 'ConnectionError' | 'Error';

export function createConfigClientMetrics(registry: Registry): ConfigClientMetrics {
  return {
    connected: registerOnce(registry, 'ambit_config_connected', () => new Gauge({
      name: 'ambit_config_connected',
      help: '1 while the config stream to the controller is up and has delivered a response, else 0.',
      registers: [registry],
    })),
    synced: registerOnce(registry, 'ambit_config_synced', () => new Gauge({
      name: 'ambit_config_synced',
      help: '1 when the latest config response of the type was applied (ACKed), 0 when rejected or not yet received.',
      labelNames: ['type'],
      registers: [registry],
    })),
    updates: registerOnce(registry, 'ambit_config_updates_total', () => new Counter({
      name: 'ambit_config_updates_total',
      help: 'Config responses applied, by resource type.',
      labelNames: ['type'],
      registers: [registry],
    })),
    rejected: registerOnce(registry, 'ambit_config_rejected_total', () => new Counter({
      name: 'ambit_config_rejected_total',
      help: 'Config responses rejected (NACKed): invalid resources or a failed apply; the last good config stays.',
      labelNames: ['type'],
      registers: [registry],
    })),
    reconnects: registerOnce(registry, 'ambit_config_reconnects_total', () => new Counter({
      name: 'ambit_config_reconnects_total',
      help: 'Config stream reconnect attempts after the stream ended or failed.',
      registers: [registry],
    })),
    terminations: registerOnce(registry, ISTIO_XDS_METRICS.terminations, () => new Counter({
      name: ISTIO_XDS_METRICS.terminations,
      help: 'Config (xDS) streams to the controller that ended, by reason (Complete, Reconnect, ConnectionError, Error).',
      labelNames: ['reason'],
      registers: [registry],
    })),
    messages: registerOnce(registry, ISTIO_XDS_METRICS.messages, () => new Counter({
      name: ISTIO_XDS_METRICS.messages,
      help: 'Config (xDS) responses received from the controller, by type URL.',
      labelNames: ['url'],
      registers: [registry],
    })),
    messageBytes: registerOnce(registry, ISTIO_XDS_METRICS.messageBytes, () => new Counter({
      name: ISTIO_XDS_METRICS.messageBytes,
      help: 'Bytes of config (xDS) responses received from the controller, by type URL.',
      labelNames: ['url'],
      registers: [registry],
    })),
  };
}
