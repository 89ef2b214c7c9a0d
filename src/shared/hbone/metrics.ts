/**
 * Metrics of the HBONE client side, which the agent and the waypoint both expose under the same
 * names: pooled tunnel connections, failed mTLS handshakes and sessions ended by liveness.
 */
import { Counter, Gauge, type Registry } from '../metrics.js';

export interface TunnelPoolMetrics {
  /** Open pooled HBONE client connections. */
  poolConnections: Gauge<never>;
  /** mTLS handshakes that failed, by direction (the pool counts `outbound`). */
  handshakeFailures: Counter<'direction'>;
  /** HBONE sessions liveness ended (liveness.ts), by direction (`outbound` client, `inbound` server) and reason. */
  sessionsEnded: Counter<'direction' | 'reason'>;
}

export function createTunnelPoolMetrics(registry: Registry): TunnelPoolMetrics {
  return {
    handshakeFailures: new Counter({
      name: 'ambit_mtls_handshake_failures_total',
      help: 'mTLS handshakes that failed, by direction',
      labelNames: ['direction'],
      registers: [registry],
    }),
    sessionsEnded: new Counter({
      name: 'ambit_tunnel_sessions_ended_total',
      help: 'HBONE sessions ended because the peer closed its side, stopped answering PINGs, or stayed idle, by direction and reason',
      labelNames: ['direction', 'reason'],
      registers: [registry],
    }),
    poolConnections: new Gauge({
      name: 'ambit_tunnel_pool_connections',
      help: 'Open pooled HBONE client connections',
      registers: [registry],
    }),
  };
}
