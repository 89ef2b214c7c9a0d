/**
 * Tunnels the waypoint carries as TCP (ports not declared http, http2, grpc or grpc-web, as Istio
 * does): the CONNECT stream piped to one endpoint, half-close kept, with Istio's TCP metrics
 * (reporter=waypoint, the full label set of shared/istio-metrics.ts). Gateways pipe the TCP and
 * passed-through TLS connections of their listeners the same way (reporter=source).
 */
import * as http2 from 'node:http2';
import type * as net from 'node:net';
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
  forward(stream: http2.ServerHttp2Stream, endpoint: Endpoint, service: Service | undefined, source: SourceInfo): Promise<void> {
    // Callers reach a waypoint only over HBONE: a known peer identity is mutual TLS.
    return this.pipe(stream, endpoint, { reporter: 'waypoint', service, source, mtls: source.principal !== undefined }, {
      failed: () => {
        if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': HBONE_STATUS.UPSTREAM_FAILED }, { endStream: true });
        // Accepted already (a TLS-routed tunnel answers before it reads the ClientHello): reset it.
        else if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
      },
      gone: () => stream.destroyed || stream.closed,
      connected: () => {
        if (!stream.headersSent) stream.respond({ ':status': HBONE_STATUS.OK });
      },
    });
  }

  /**
   * Pipes a connection an ingress gateway accepted (TCP, or TLS passed through) to `endpoint`,
   * counted as the gateway reports (reporter=source); a failed upstream resets the client.
   */
  forwardSocket(socket: net.Socket, endpoint: Endpoint, service: Service | undefined, source: SourceInfo): Promise<void> {
    return this.pipe(socket, endpoint, { reporter: 'source', service, source, mtls: false }, { failed: () => socket.resetAndDestroy(), gone: () => socket.destroyed, connected: () => undefined });
  }

  private async pipe(
    down: Duplex,
    endpoint: Endpoint,
    who: { reporter: 'waypoint' | 'source'; service: Service | undefined; source: SourceInfo; mtls: boolean },
    hooks: { failed: () => void; gone: () => boolean; connected: () => void },
  ): Promise<void> {
    const labels = istioTcpLabels({
      reporter: who.reporter,
      source: peerLabels(who.source),
      destination: peerLabels(endpoint),
      service: serviceLabels(who.service),
      protocol: 'tcp',
      mtls: who.mtls,
    });
    let upstream: Duplex;
    try {
      upstream = await this.connect(endpoint);
    } catch (e) {
      this.log.warn({ endpoint: endpoint.key, err: e }, 'tcp upstream connect failed');
      this.count({ ...labels, response_flags: 'UF' }, true);
      hooks.failed();
      return;
    }
    if (hooks.gone()) {
      upstream.destroy();
      return;
    }
    hooks.connected();
    const { key, get } = this.count(labels, false);
    const received = this.metrics.received.cell(key, get);
    const sent = this.metrics.sent.cell(key, get);
    const handle = copyBidirectional(down, upstream, {
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
