/**
 * Tunnels the waypoint carries as TCP (ports not declared http, http2, grpc or grpc-web, as Istio
 * does): the CONNECT stream piped to one endpoint, half-close kept, with Istio's TCP metrics
 * (reporter=waypoint).
 */
import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../shared/log.js';
import { Counter, type Registry } from '../../shared/metrics.js';
import { copyBidirectional, type CopyHandle } from '../../shared/hbone/copy.js';
import { HBONE_STATUS } from '../../shared/hbone/tunnel.js';
import type { ConnectFn, Endpoint } from '../endpoint/upstream.js';

const TCP_LABELS = ['reporter', 'source_principal', 'destination_service', 'destination_workload', 'destination_workload_namespace', 'destination_principal'] as const;
type TcpLabel = (typeof TCP_LABELS)[number];

interface TcpMetrics {
  opened: Counter<TcpLabel>;
  closed: Counter<TcpLabel>;
  sent: Counter<TcpLabel>;
  received: Counter<TcpLabel>;
}

/** Istio TCP metrics for connections the waypoint carries as TCP (reporter=waypoint). */
function createTcpMetrics(registry: Registry): TcpMetrics {
  const counter = (name: string, help: string): Counter<TcpLabel> => new Counter({ name, help, labelNames: TCP_LABELS, registers: [registry] });
  return {
    opened: counter('istio_tcp_connections_opened_total', 'TCP connections the waypoint opened to endpoints.'),
    closed: counter('istio_tcp_connections_closed_total', 'TCP connections through the waypoint that closed.'),
    sent: counter('istio_tcp_sent_bytes_total', 'Response bytes the waypoint sent back to callers on TCP connections.'),
    received: counter('istio_tcp_received_bytes_total', 'Request bytes the waypoint received from callers on TCP connections.'),
  };
}

export class TcpForwarder {
  private readonly metrics: TcpMetrics;
  private readonly pipes = new Set<CopyHandle>();

  constructor(
    registry: Registry,
    private readonly log: Logger,
    private readonly connect: ConnectFn,
  ) {
    this.metrics = createTcpMetrics(registry);
  }

  /** Pipes a tunnel stream to `endpoint`; `service` is the Service hostname the caller addressed, if any. */
  async forward(stream: http2.ServerHttp2Stream, endpoint: Endpoint, service: string | undefined, srcIdentity: string | undefined): Promise<void> {
    let upstream: Duplex;
    try {
      upstream = await this.connect(endpoint);
    } catch (e) {
      this.log.warn({ endpoint: endpoint.key, err: e }, 'tcp upstream connect failed');
      if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': HBONE_STATUS.UPSTREAM_FAILED }, { endStream: true });
      // Accepted already (a TLS-routed tunnel answers before it reads the ClientHello): reset it.
      else if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
      return;
    }
    if (stream.destroyed || stream.closed) {
      upstream.destroy();
      return;
    }
    if (!stream.headersSent) stream.respond({ ':status': HBONE_STATUS.OK });
    const labels: Record<TcpLabel, string> = {
      reporter: 'waypoint',
      source_principal: srcIdentity ?? 'unknown',
      destination_service: service ?? 'unknown',
      destination_workload: endpoint.workload ?? 'unknown',
      destination_workload_namespace: endpoint.namespace ?? 'unknown',
      destination_principal: endpoint.principal ?? 'unknown',
    };
    this.metrics.opened.inc(labels);
    const handle = copyBidirectional(stream, upstream, {
      onDownstreamBytes: (n) => this.metrics.received.inc(labels, n),
      onUpstreamBytes: (n) => this.metrics.sent.inc(labels, n),
      onClose: () => {
        this.pipes.delete(handle);
        this.metrics.closed.inc(labels);
      },
    });
    this.pipes.add(handle);
  }

  /** Tears every pipe down. */
  destroy(): void {
    for (const p of this.pipes) p.destroy();
  }
}
