/**
 * Outbound capture for one enrolled pod (port 15001 in its netns): accept, read the original
 * destination, decide (buildOutboundRequest), then tunnel over HBONE, pass through in plaintext
 * from the pod's side (marked), or close. Never throws out of the accept loop.
 */
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../shared/log.js';
import { errorCode, errorMessage } from '../../shared/errors.js';
import { drain } from '../../shared/drain.js';
import type { Service, ServicePort, Workload } from '../../shared/model.js';
import { workloadIdentity, type Endpoint, type WorkloadIndex } from '../../shared/state/workloads.js';
import { buildOutboundRequest, type OutboundRequest } from './request.js';
import { connectVia, logAcceptError, type PodSockets } from './sockets.js';
import { formatAddress, normalizeIp, type Address } from '../../shared/address.js';
import { abort, copyBidirectional, type CopyHandle } from '../../shared/hbone/copy.js';
import { ConnectionTelemetry, newConnId, trafficLabels, type ProxyMetrics, type ResponseFlag } from './metrics.js';
import type { TunnelPool } from '../../shared/hbone/pool.js';
import { buildConnectHeaders } from '../../shared/hbone/tunnel.js';
import { agentPortSet, isLoopback } from './self-call.js';

export const OUTBOUND_PORT = 15001;

export interface OutboundOptions {
  pod: Workload;
  sockets: PodSockets;
  pool: TunnelPool;
  index: () => WorkloadIndex;
  /** Original destination of a captured socket (capture's originalDestination). */
  originalDestination: (socket: net.Socket) => Address | undefined | Promise<Address | undefined>;
  pickEndpoint: (service: Service, port: ServicePort, candidates: readonly Endpoint[], src: Workload) => Endpoint | undefined;
  /** Passive health reporting to the balancer. */
  reportEndpoint?: (endpoint: Endpoint, ok: boolean) => void;
  metrics: ProxyMetrics;
  log: Logger;
  nodeName: string;
  port?: number;
  listenAddress?: string;
  /**
   * A second listener for native IPv6 (capture redirects it to [::1]:port). Best effort: a pod
   * without IPv6 has none, and capture then refuses its IPv6 connects.
   */
  listenAddress6?: string;
  upstreamConnectTimeoutMs?: number;
  now?: () => number;
  /** Ports the agent listens on inside pods (self-call.ts); default the standard three plus `port`. */
  agentPorts?: ReadonlySet<number>;
}

export class OutboundProxy {
  private readonly log: Logger;
  private server: net.Server | undefined;
  private server6: net.Server | undefined;
  private readonly pipes = new Set<CopyHandle>();
  private readonly pending = new Set<net.Socket>();
  private readonly agentPorts: ReadonlySet<number>;

  constructor(private readonly opts: OutboundOptions) {
    this.log = opts.log.child({ component: 'outbound', pod: `${opts.pod.namespace}/${opts.pod.name}` });
    this.agentPorts = opts.agentPorts ?? agentPortSet([opts.port]);
  }

  /** The listening server (its fd goes to capture.enroll for the inbound listener). */
  listener(): net.Server | undefined {
    return this.server;
  }

  address(): net.AddressInfo | undefined {
    return (this.server?.address() as net.AddressInfo | null) ?? undefined;
  }

  /** True when the IPv6 listener (listenAddress6) is up. */
  hasIpv6Listener(): boolean {
    return this.server6 !== undefined;
  }

  get activeConnections(): number {
    return this.pipes.size + this.pending.size;
  }

  async start(): Promise<void> {
    this.server = await this.opts.sockets.listen(this.opts.port ?? OUTBOUND_PORT, this.opts.listenAddress);
    this.server.on('error', (e) => logAcceptError(this.log, e));
    this.server.on('connection', (s: net.Socket) => this.accept(s));
    if (this.opts.listenAddress6 !== undefined) {
      try {
        this.server6 = await this.opts.sockets.listen(this.opts.port ?? OUTBOUND_PORT, this.opts.listenAddress6);
        this.server6.on('error', (e) => logAcceptError(this.log, e));
        this.server6.on('connection', (s: net.Socket) => this.accept(s));
      } catch (e) {
        this.log.warn({ err: e, addr: this.opts.listenAddress6 }, 'no IPv6 outbound listener; IPv6 connects of the pod are refused');
      }
    }
    this.log.info({ addr: this.address(), addr6: this.server6?.address() }, 'listener established');
  }

  private accept(s: net.Socket): void {
    this.onConnection(s).catch((e: unknown) => {
      this.log.error({ err: e }, 'outbound handler failed');
      abort(s);
    });
  }

  private async onConnection(downstream: net.Socket): Promise<void> {
    downstream.pause();
    downstream.on('error', () => undefined);
    const connId = newConnId();
    this.pending.add(downstream);
    try {
      await this.handle(downstream, connId);
    } finally {
      this.pending.delete(downstream);
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
      trafficLabels({
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

    let upstream: Duplex;
    try {
      upstream = await this.openUpstream(req, src, srcIp, telemetry);
      if (req.endpoint) this.opts.reportEndpoint?.(req.endpoint, true);
    } catch (e) {
      const code = errorCode(e);
      const flags: ResponseFlag =
        code === 'AMBIT_ERR_TUNNEL_REFUSED' ? 'DENY' : code === 'AMBIT_ERR_TUNNEL_IDENTITY' ? 'IDENTITY_ERROR' : code === 'AMBIT_ERR_TUNNEL_HANDSHAKE' ? 'TLS_FAILURE' : 'CONNECT';
      if (req.endpoint && (flags === 'CONNECT' || code === 'AMBIT_ERR_UPSTREAM_CONNECT')) this.opts.reportEndpoint?.(req.endpoint, false);
      this.log.warn({ connId, dst: { addr: formatAddress(origDst) }, err: { code, message: errorMessage(e) } }, 'outbound connection failed');
      abort(downstream);
      telemetry.finish(reasonOf(code), flags);
      return;
    }
    if (downstream.destroyed) {
      upstream.destroy();
      telemetry.finish('downstream_closed');
      return;
    }
    telemetry.open();
    const handle = copyBidirectional(downstream, upstream, {
      onDownstreamBytes: (n) => telemetry.addReceived(n),
      onUpstreamBytes: (n) => telemetry.addSent(n),
      onClose: (r) => {
        this.pipes.delete(handle);
        telemetry.finish(r.clean ? 'closed' : r.error ? 'error' : 'reset');
      },
    });
    this.pipes.add(handle);
  }

  private async openUpstream(
    req: Exclude<OutboundRequest, { kind: 'deny' }>,
    src: Workload,
    srcIp: string,
    telemetry?: ConnectionTelemetry,
  ): Promise<Duplex> {
    if (req.kind === 'passthrough') {
      return connectVia(this.opts.sockets, { address: req.address, port: req.port }, this.opts.upstreamConnectTimeoutMs ?? 10_000);
    }
    const headers = buildConnectHeaders({ target: req.target, srcIp, src, ...(req.service ? { service: req.service } : {}) });
    const { stream, peerIdentity } = await this.opts.pool.open({
      srcIdentity: workloadIdentity(src),
      expectedIdentities: req.expectedIdentities,
      tunnelAddress: req.tunnelAddress,
      target: req.target,
      headers,
    });
    if (peerIdentity && telemetry) telemetry.info.dst.identity = peerIdentity;
    return stream;
  }

  stopListening(): void {
    this.server?.close();
    this.server6?.close();
  }

  async close(deadlineMs: number): Promise<void> {
    const servers = [this.server, this.server6].filter((s): s is net.Server => s !== undefined);
    await drain(
      async () => {
        await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
        while (this.activeConnections > 0) await new Promise((r) => setTimeout(r, 50));
      },
      () => this.destroy(),
      deadlineMs,
    );
  }

  destroy(): void {
    this.server?.close();
    this.server6?.close();
    for (const s of this.pending) abort(s);
    for (const p of this.pipes) p.destroy();
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
