/**
 * Outbound capture for one enrolled pod (port 15001 in its netns): accept, read the original
 * destination, decide (buildOutboundRequest), then tunnel over HBONE, pass through in plaintext
 * from the pod's side (marked), or close. Never throws out of the accept loop.
 */
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { errorCode, errorMessage } from '../../shared/errors.js';
import type { Service, ServicePort, Workload } from '../../shared/model.js';
import { workloadIdentity, type Endpoint, type WorkloadIndex } from '../../shared/state/workloads.js';
import { buildOutboundRequest, type OutboundRequest } from './request.js';
import { connectVia } from './sockets.js';
import { PodProxy, type PodProxyOptions } from './listener.js';
import { formatAddress, normalizeIp, type Address } from '../../shared/address.js';
import { abort, copyBidirectional } from '../../shared/hbone/copy.js';
import { ConnectionTelemetry, newConnId, trafficLabelSet, type ProxyMetrics, type ResponseFlag } from './metrics.js';
import type { TunnelPool } from '../../shared/hbone/pool.js';
import { buildConnectHeaders, HBONE_STATUS } from '../../shared/hbone/tunnel.js';
import type { InboundHbone } from './inbound.js';
import { isLoopback } from './self-call.js';

export const OUTBOUND_PORT = 15001;

export interface OutboundOptions extends PodProxyOptions {
  pod: Workload;
  pool: TunnelPool;
  index: () => WorkloadIndex;
  /** Original destination of a captured socket (capture's originalDestination). */
  originalDestination: (socket: net.Socket) => Address | undefined | Promise<Address | undefined>;
  pickEndpoint: (service: Service, port: ServicePort, candidates: readonly Endpoint[], src: Workload) => Endpoint | undefined;
  /** Passive health reporting to the balancer. */
  reportEndpoint?: (endpoint: Endpoint, ok: boolean) => void;
  metrics: ProxyMetrics;
  nodeName: string;
  /**
   * A second listener for native IPv6 (capture redirects it to [::1]:port). Best effort: a pod
   * without IPv6 has none, and capture then refuses its IPv6 connects.
   */
  listenAddress6?: string;
  upstreamConnectTimeoutMs?: number;
  now?: () => number;
  /**
   * The same-node fast path: the inbound side of a destination pod this agent serves, or
   * undefined (another node, or the fast path is off). A direct tunnel to such a pod is handed
   * over in-process instead (no TLS, no socket between the two).
   */
  sameNodeInbound?: (dst: Workload) => Pick<InboundHbone, 'acceptLocal'> | undefined;
}

export class OutboundProxy extends PodProxy {
  constructor(private readonly opts: OutboundOptions) {
    super(opts, 'outbound', OUTBOUND_PORT, { address6: opts.listenAddress6 });
  }

  /** True when the IPv6 listener (listenAddress6) is up. */
  hasIpv6Listener(): boolean {
    return this.shell.hasIpv6();
  }

  get activeConnections(): number {
    return this.shell.active;
  }

  protected async onConnection(downstream: net.Socket): Promise<void> {
    downstream.pause();
    downstream.on('error', () => undefined);
    const connId = newConnId();
    this.shell.pending.add(downstream);
    try {
      await this.handle(downstream, connId);
    } finally {
      this.shell.pending.delete(downstream);
    }
  }

  private async handle(downstream: net.Socket, connId: number): Promise<void> {
    let origDst: Address | undefined;
    try {
      origDst = await this.opts.originalDestination(downstream);
    } catch (e) {
      this.log.warn({ connId, err: e }, 'original destination unavailable');
    }
    const index = this.opts.index();
    const src = index.workloadByUid(this.opts.pod.uid) ?? this.opts.pod;
    if (!origDst) {
      this.opts.metrics.connectionsRejected.inc({ direction: 'outbound', reason: 'no_original_dst' });
      return void abort(downstream);
    }
    const srcIdentity = workloadIdentity(src);
    // Captured connects are redirected to 127.0.0.1:15001, so the peer address is loopback: the
    // source is the pod's own address.
    const remote = normalizeIp(downstream.remoteAddress);
    const srcIp = remote && !isLoopback(remote) ? remote : normalizeIp(src.addresses.find((a) => a.includes(':') === remote.includes(':')) ?? src.addresses[0]);
    // The client's port (capture changes only the destination): the destination dials the app from it.
    const srcPort = downstream.remotePort;
    const req = buildOutboundRequest({ src, origDst, index, nodeName: this.opts.nodeName, pickEndpoint: this.opts.pickEndpoint, agentPorts: this.agentPorts });
    const dst = req.kind === 'deny' ? undefined : req.dstWorkload;
    const service = req.service;
    const mtls = req.kind === 'tunnel';
    const telemetry = new ConnectionTelemetry(
      this.opts.metrics,
      this.log,
      {
        connId,
        direction: 'outbound',
        src: { addr: srcIp, workload: src.name, namespace: src.namespace, identity: srcIdentity },
        dst: {
          addr: formatAddress(origDst),
          ...(req.kind === 'tunnel' ? { hboneAddr: formatAddress(req.target), identity: req.expectedIdentities.join(',') } : {}),
          service: service?.hostname,
          workload: dst?.name,
        },
      },
      trafficLabelSet(index, {
        reporter: 'source',
        src,
        srcIdentity,
        dst,
        ...(req.kind === 'tunnel' && req.viaWaypoint ? { dstIdentity: req.expectedIdentities[0] } : {}),
        ...(service ? { service } : {}),
        mtls,
      }),
      this.opts.now,
    );

    if (req.kind === 'deny') {
      this.opts.metrics.connectionsRejected.inc({ direction: 'outbound', reason: req.reason });
      this.log.warn({ connId, dst: { addr: formatAddress(origDst) }, reason: req.reason }, 'outbound connection refused');
      abort(downstream);
      telemetry.finish(req.reason, 'CONNECT');
      return;
    }

    const local = req.kind === 'tunnel' && !req.viaWaypoint && dst ? this.opts.sameNodeInbound?.(dst) : undefined;
    if (local && req.kind === 'tunnel' && dst) {
      telemetry.info.dst.identity = workloadIdentity(dst);
      const admitted = await local.acceptLocal({ downstream, srcIdentity, srcIp, srcPort, target: req.target, ...(service ? { service } : {}), source: telemetry, sourcePipes: this.shell.pipes });
      if (admitted.ok) {
        if (req.endpoint) this.opts.reportEndpoint?.(req.endpoint, true);
        return;
      }
      abort(downstream);
      if (admitted.reason === 'downstream_closed') return void telemetry.finish('downstream_closed');
      const denied = admitted.status === HBONE_STATUS.DENIED;
      if (req.endpoint && admitted.status === HBONE_STATUS.UPSTREAM_FAILED) this.opts.reportEndpoint?.(req.endpoint, false);
      this.log.warn({ connId, dst: { addr: formatAddress(origDst) }, sameNode: true, reason: admitted.reason }, 'outbound connection failed');
      telemetry.finish(denied ? 'policy_denied' : admitted.status === HBONE_STATUS.UPSTREAM_FAILED ? 'upstream_connect_failed' : 'connect_failed', denied ? 'DENY' : 'CONNECT');
      return;
    }

    let opened: { upstream: Duplex; reply?: Promise<void> };
    try {
      opened = await this.openUpstream(req, src, { address: srcIp, port: srcPort }, telemetry);
    } catch (e) {
      this.failed(e, { connId, origDst, endpoint: req.endpoint, downstream, telemetry });
      return;
    }
    const { upstream, reply } = opened;
    if (downstream.destroyed) {
      upstream.destroy();
      telemetry.finish('downstream_closed');
      return;
    }
    // The client's bytes go behind the CONNECT at once (to the peer the TLS handshake verified,
    // which drops them if it refuses): a new connection waits one tunnel round trip less. The
    // reply decides the telemetry: opened on 200, else finished with the refusal's flags.
    const outcome: Promise<unknown> = reply ? reply.then(() => undefined, (e: unknown) => e ?? new Error('tunnel refused')) : Promise.resolve(undefined);
    const handle = copyBidirectional(downstream, upstream, {
      upstreamReady: outcome.then((err) => err === undefined),
      onDownstreamBytes: (n) => telemetry.addReceived(n),
      onUpstreamBytes: (n) => telemetry.addSent(n),
      onClose: (r) => {
        this.shell.pipes.delete(handle);
        void outcome.then((err) => {
          if (err === undefined) telemetry.finish(r.clean ? 'closed' : r.error ? 'error' : 'reset');
        });
      },
    });
    this.shell.pipes.add(handle);
    void outcome.then((err) => {
      if (err === undefined) {
        telemetry.open();
        if (req.endpoint) this.opts.reportEndpoint?.(req.endpoint, true);
        return;
      }
      upstream.destroy();
      this.failed(err, { connId, origDst, endpoint: req.endpoint, downstream, telemetry });
    });
  }

  /** A tunnel or dial that failed or was refused: resets the client and records why. */
  private failed(e: unknown, c: { connId: number; origDst: Address; endpoint: Endpoint | undefined; downstream: net.Socket; telemetry: ConnectionTelemetry }): void {
    const code = errorCode(e);
    const flags: ResponseFlag =
      code === 'AMBIT_ERR_TUNNEL_REFUSED' ? 'DENY' : code === 'AMBIT_ERR_TUNNEL_IDENTITY' ? 'IDENTITY_ERROR' : code === 'AMBIT_ERR_TUNNEL_HANDSHAKE' ? 'TLS_FAILURE' : 'CONNECT';
    if (c.endpoint && (flags === 'CONNECT' || code === 'AMBIT_ERR_UPSTREAM_CONNECT')) this.opts.reportEndpoint?.(c.endpoint, false);
    this.log.warn({ connId: c.connId, dst: { addr: formatAddress(c.origDst) }, err: { code, message: errorMessage(e) } }, 'outbound connection failed');
    abort(c.downstream);
    c.telemetry.finish(reasonOf(code), flags);
  }

  private async openUpstream(
    req: Exclude<OutboundRequest, { kind: 'deny' }>,
    src: Workload,
    from: { address: string; port: number | undefined },
    telemetry?: ConnectionTelemetry,
  ): Promise<{ upstream: Duplex; reply?: Promise<void> }> {
    if (req.kind === 'passthrough') {
      return { upstream: await connectVia(this.opts.sockets, { address: req.address, port: req.port }, this.opts.upstreamConnectTimeoutMs ?? 10_000) };
    }
    const headers = buildConnectHeaders({ target: req.target, srcIp: from.address, ...(from.port ? { srcPort: from.port } : {}), src, ...(req.service ? { service: req.service } : {}) });
    const { stream, peerIdentity, reply } = await this.opts.pool.send({
      srcIdentity: workloadIdentity(src),
      expectedIdentities: req.expectedIdentities,
      tunnelAddress: req.tunnelAddress,
      target: req.target,
      headers,
    });
    if (peerIdentity && telemetry) telemetry.info.dst.identity = peerIdentity;
    return { upstream: stream, reply };
  }

}

function reasonOf(code: string | undefined): string {
  switch (code) {
    case 'AMBIT_ERR_TUNNEL_REFUSED':
      return 'policy_denied';
    case 'AMBIT_ERR_TUNNEL_IDENTITY':
      return 'identity_mismatch';
    case 'AMBIT_ERR_TUNNEL_HANDSHAKE':
      return 'tls_failure';
    case 'AMBIT_ERR_UPSTREAM_CONNECT':
      return 'upstream_connect_failed';
    case 'AMBIT_ERR_CERT_UNAVAILABLE':
      return 'no_certificate';
    default:
      return 'connect_failed';
  }
}
