/**
 * Tunnels the waypoint carries as TCP (ports not declared http, http2, grpc or grpc-web, as Istio
 * does): the CONNECT stream piped to one endpoint, half-close kept, with Istio's TCP metrics
 * (reporter=waypoint, the full label set of shared/istio-metrics.ts).
 */
import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../shared/log.js';
import type { Registry } from '../../shared/metrics.js';
import type { Service } from '../../shared/model.js';
import { createIstioTcpMetrics, ISTIO_TCP_LABELS, istioTcpLabels, labelKey, peerLabels, serviceLabels, type IstioTcpLabels, type IstioTcpMetrics } from '../../shared/istio-metrics.js';
import { copyBidirectional, type CopyHandle } from '../../shared/hbone/copy.js';
import { HBONE_STATUS } from '../../shared/hbone/tunnel.js';
import type { ConnectFn, Endpoint } from '../endpoint/upstream.js';
import type { SourceInfo } from './telemetry.js';

export class TcpForwarder {
  private readonly metrics: IstioTcpMetrics;
  private readonly pipes = new Set<CopyHandle>();

  constructor(
    registry: Registry,
    private readonly log: Logger,
    private readonly connect: ConnectFn,
  ) {
    this.metrics = createIstioTcpMetrics(registry);
  }

  /** Pipes a tunnel stream from `source` to `endpoint`; `service` is the Service the caller addressed, if any. */
  async forward(stream: http2.ServerHttp2Stream, endpoint: Endpoint, service: Service | undefined, source: SourceInfo): Promise<void> {
    const labels = istioTcpLabels({
      reporter: 'waypoint',
      source: peerLabels(source),
      destination: peerLabels(endpoint),
      service: serviceLabels(service),
      protocol: 'tcp',
      // Callers reach a waypoint only over HBONE: a known peer identity is mutual TLS.
      mtls: source.principal !== undefined,
    });
    let upstream: Duplex;
    try {
      upstream = await this.connect(endpoint);
    } catch (e) {
      this.log.warn({ endpoint: endpoint.key, err: e }, 'tcp upstream connect failed');
      this.count({ ...labels, response_flags: 'UF' }, true);
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
    const { key, get } = this.count(labels, false);
    const received = this.metrics.received.cell(key, get);
    const sent = this.metrics.sent.cell(key, get);
    const handle = copyBidirectional(stream, upstream, {
      onDownstreamBytes: (n) => (received.value += n),
      onUpstreamBytes: (n) => (sent.value += n),
      onClose: () => {
        this.pipes.delete(handle);
        this.metrics.closed.cell(key, get).value++;
      },
    });
    this.pipes.add(handle);
  }

  /** Counts an opened connection (and its close at once when it failed); returns its series key. */
  private count(labels: IstioTcpLabels, closed: boolean): { key: string; get: () => IstioTcpLabels } {
    const key = labelKey(labels, ISTIO_TCP_LABELS);
    const get = (): IstioTcpLabels => labels;
    this.metrics.opened.cell(key, get).value++;
    if (closed) this.metrics.closed.cell(key, get).value++;
    return { key, get };
  }

  /** Tears every pipe down. */
  destroy(): void {
    for (const p of this.pipes) p.destroy();
  }
}
