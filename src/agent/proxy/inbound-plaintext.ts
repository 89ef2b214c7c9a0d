/**
 * Inbound plaintext for one enrolled pod (port 15006 in its netns; capture steers every other
 * inbound port here): original destination = the accepted socket's local address; PeerAuthentication
 * STRICT refuses (close, counted), PERMISSIVE authorizes by source IP (no principal) and pipes.
 */
import type * as net from 'node:net';
import type { Workload } from '../../shared/model.js';
import { authorize, type ConnAttributes } from '../policy/authorize.js';
import { workloadIdentity, type WorkloadIndex } from '../../shared/state/workloads.js';
import { connectVia } from './sockets.js';
import { PodProxy, type PodProxyOptions } from './listener.js';
import { formatAddress, normalizeIp, type Address } from '../../shared/address.js';
import { abort } from '../../shared/hbone/copy.js';
import { ConnectionTelemetry, newConnId, trafficLabelSet, type ProxyMetrics } from './metrics.js';
import { pipeTracked, type ConnectionRegistry } from './connections.js';
import { SELF_CALL_REASON } from './self-call.js';

export const INBOUND_PLAINTEXT_PORT = 15006;
/** The agent's own ports in every enrolled pod (DESIGN.md, Ports): never a destination to dial. */

export interface InboundPlaintextOptions extends PodProxyOptions {
  pod: Workload;
  index: () => WorkloadIndex;
  metrics: ProxyMetrics;
  connections: ConnectionRegistry;
  /** Default: the accepted socket's local address (sk_lookup / REDIRECT keep it). */
  originalDestination?: (socket: net.Socket) => Address | undefined;
  upstreamConnectTimeoutMs?: number;
  now?: () => number;
}

export class InboundPlaintext extends PodProxy {
  constructor(private readonly opts: InboundPlaintextOptions) {
    super(opts, 'inbound-plaintext', INBOUND_PLAINTEXT_PORT);
  }

  protected async onConnection(downstream: net.Socket): Promise<void> {
    downstream.pause();
    downstream.on('error', () => undefined);
    const connId = newConnId();
    const origDst = this.opts.originalDestination
      ? this.opts.originalDestination(downstream)
      : { address: normalizeIp(downstream.localAddress), port: downstream.localPort ?? 0 };
    if (!origDst) {
      this.opts.metrics.connectionsRejected.inc({ direction: 'inbound', reason: 'no_original_dst' });
      this.log.warn({ connId }, 'plaintext connection without original destination; closing');
      return void abort(downstream);
    }
    if (this.agentPorts.has(origDst.port)) {
      this.opts.metrics.connectionsRejected.inc({ direction: 'inbound', reason: SELF_CALL_REASON });
      this.log.warn({ connId, src: { addr: normalizeIp(downstream.remoteAddress) }, dst: { port: origDst.port } }, 'plaintext connection to an agent port refused');
      return void abort(downstream);
    }
    const index = this.opts.index();
    const pod = index.workloadByUid(this.opts.pod.uid) ?? this.opts.pod;
    const srcIp = normalizeIp(downstream.remoteAddress);
    const src = index.workloadByIp(srcIp);
    const dstIp = normalizeIp(origDst.address);
    const telemetry = new ConnectionTelemetry(
      this.opts.metrics,
      this.log,
      {
        connId,
        direction: 'inbound',
        src: { addr: srcIp, workload: src?.name, namespace: src?.namespace },
        dst: { addr: formatAddress({ address: dstIp, port: origDst.port }), workload: pod.name, identity: workloadIdentity(pod) },
      },
      trafficLabelSet(index, { reporter: 'destination', src, dst: pod, service: index.serviceOfWorkloadPort(pod, origDst.port), mtls: false }),
      this.opts.now,
    );
    const attrs: ConnAttributes = { srcIp, dstIp, dstPort: origDst.port };
    const check = (ix: WorkloadIndex) => {
      const w = ix.workloadByUid(pod.uid) ?? pod;
      return authorize(ix.policiesFor(w), attrs, { peerAuthentication: ix.peerAuthenticationFor(w, origDst.port) });
    };
    const decision = check(index);
    if (!decision.allowed) {
      this.opts.metrics.policyDenials.inc({ reason: decision.reason });
      this.log.warn({ connId, src: { addr: srcIp }, reason: decision.reason, policy: decision.policy }, 'plaintext connection denied');
      abort(downstream);
      telemetry.finish('policy_denied', 'DENY', { policy: decision.policy, authz: decision.reason });
      return;
    }
    this.shell.pending.add(downstream);
    let upstream: net.Socket;
    try {
      // Not from the client's port: the captured socket is in this netns with the tuple the app's
      // accepted socket would have, and the kernel drops a duplicate.
      upstream = await connectVia(
        this.opts.sockets,
        { address: dstIp, port: origDst.port, ...(this.opts.sockets.preservesSource ? { localAddress: srcIp } : {}) },
        this.opts.upstreamConnectTimeoutMs ?? 10_000,
      );
    } catch (e) {
      this.shell.pending.delete(downstream);
      this.log.warn({ connId, err: e }, 'plaintext upstream connect failed');
      abort(downstream);
      telemetry.finish('upstream_connect_failed', 'CONNECT');
      return;
    } finally {
      this.shell.pending.delete(downstream);
    }
    pipeTracked({
      downstream: downstream,
      upstream,
      telemetry,
      pipes: this.shell.pipes,
      connections: this.opts.connections,
      entry: { connId, direction: 'inbound', workloadUid: pod.uid, attrs, mtls: false, check },
    });
  }

}
