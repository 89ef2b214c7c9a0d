/**
 * Metrics of the HBONE client side, which the agent and the waypoint both expose under the same
 * names: pooled tunnel connections and failed mTLS handshakes.
 */
import { Counter, Gauge, type Registry } from '../metrics.js';

export interface TunnelPoolMetrics {
  /** Open pooled HBONE client connections. */
  poolConnections: Gauge<never>;
  /** mTLS handshakes that failed, by direction (the pool counts `outbound`). */
  handshakeFailures: Counter<'direction'>;
}

export function createTunnelPoolMetrics(registry: Registry): TunnelPoolMetrics {
  return {
    handshakeFailures: new Counter({
      name: 'ambit_mtls_handshake_failures_total',
      help: 'mTLS handshakes that failed, by direction',
      labelNames: ['direction'],
      registers: [registry],
    }),
    poolConnections: new Gauge({
      name: 'ambit_tunnel_pool_connections',
      help: 'Open pooled HBONE client connections',
      registers: [registry],
    }),
  };
}
