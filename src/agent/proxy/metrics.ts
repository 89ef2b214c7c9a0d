/**
 * Connection telemetry of the agent: Istio's four TCP counters with ztunnel's label set, ambit_
 * internals (policy denials, mTLS handshake failures, pooled tunnel connections), and the access
 * log line written once per connection at close.
 */
import type { Counter, Registry } from 'prom-client';
import { accessLogger, infoLineWriter, type Logger } from '../../shared/log.js';
import type { Service, Workload } from '../../shared/model.js';
import { Counter as PromCounter, type CounterCell } from '../../shared/metrics.js';
import {
  createIstioTcpMetrics,
  ISTIO_TCP_LABELS,
  istioTcpLabels,
  labelKey,
  peerOfWorkload,
  serviceLabels,
  type IstioTcpLabel,
  type IstioTcpLabels,
  type IstioTcpMetrics,
} from '../../shared/istio-metrics.js';
import { createTunnelPoolMetrics, type TunnelPoolMetrics } from '../../shared/hbone/metrics.js';
import { workloadIdentity } from '../../shared/state/workloads.js';

/** ztunnel's CommonTrafficLabels, in order (shared/istio-metrics.ts). */
export const TRAFFIC_LABELS = ISTIO_TCP_LABELS;
export type TrafficLabel = IstioTcpLabel;
export type TrafficLabels = IstioTcpLabels;

/** Istio response_flags values used by the agent. */
export type ResponseFlag = '-' | 'DENY' | 'CONNECT' | 'TLS_FAILURE' | 'IDENTITY_ERROR';

export interface ProxyMetrics extends TunnelPoolMetrics {
  connectionsOpened: IstioTcpMetrics['opened'];
  connectionsClosed: IstioTcpMetrics['closed'];
  sentBytes: IstioTcpMetrics['sent'];
  receivedBytes: IstioTcpMetrics['received'];
  policyDenials: Counter<'reason'>;
  connectionsRejected: Counter<'direction' | 'reason'>;
}

export function createProxyMetrics(registry: Registry): ProxyMetrics {
  const tcp = createIstioTcpMetrics(registry);
  return {
    connectionsOpened: tcp.opened,
    connectionsClosed: tcp.closed,
    sentBytes: tcp.sent,
    receivedBytes: tcp.received,
    policyDenials: new PromCounter({
      name: 'ambit_policy_denials_total',
      help: 'Connections denied or closed by L4 policy, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    ...createTunnelPoolMetrics(registry),
    connectionsRejected: new PromCounter({
      name: 'ambit_connections_rejected_total',
      help: 'Accepted connections the proxy closed before proxying, by direction and reason',
      labelNames: ['direction', 'reason'],
      registers: [registry],
    }),
  };
}

export interface TrafficLabelInput {
  reporter: 'source' | 'destination';
  src?: Workload;
  /** SPIFFE URI of the source (peer identity on inbound; the pod's own identity on outbound). */
  srcIdentity?: string;
  dst?: Workload;
  dstIdentity?: string;
  service?: Service;
  responseFlags?: ResponseFlag;
  mtls: boolean;
}

/** The agent's TCP label set: both ends described as every component describes them (peerOfWorkload). */
export function trafficLabels(i: TrafficLabelInput): TrafficLabels {
  const dstIdentity = i.dstIdentity ?? (i.dst && i.dst.tunnelProtocol === 'HBONE' && i.mtls ? workloadIdentity(i.dst) : undefined);
  return istioTcpLabels({
    reporter: i.reporter,
    source: peerOfWorkload(i.src, i.srcIdentity),
    destination: peerOfWorkload(i.dst, dstIdentity),
    service: serviceLabels(i.service),
    protocol: 'tcp',
    ...(i.responseFlags ? { responseFlags: i.responseFlags } : {}),
    mtls: i.mtls,
  });
}

/** The map key of a traffic label set (its values in TRAFFIC_LABELS order). */
export function trafficKey(l: TrafficLabels): string {
  return labelKey(l, TRAFFIC_LABELS);
}

/** A label set and its key, shared by every connection between the same two ends. */
export interface TrafficLabelSet {
  readonly labels: TrafficLabels;
  readonly key: string;
}

/** Most label sets kept per config state; past it each connection builds its own (bounded memory). */
const MAX_LABEL_SETS = 10_000;
const labelSets = new WeakMap<object, Map<string, TrafficLabelSet>>();

/**
 * The label set of `i`, built once per config state (`scope`: the WorkloadIndex the connection
 * was decided on; a new config state starts afresh, so a workload's changed labels are picked up):
 * a connection then keeps a reference instead of its own 23-label object and ~500-character key.
 * The ends are named by uid and identity, which within one config state fix every label value.
 */
export function trafficLabelSet(scope: object, i: TrafficLabelInput): TrafficLabelSet {
  let sets = labelSets.get(scope);
  if (!sets) labelSets.set(scope, (sets = new Map()));
  const id = `${i.reporter}\u0001${i.src?.uid ?? ''}\u0001${i.srcIdentity ?? ''}\u0001${i.dst?.uid ?? ''}\u0001${i.dstIdentity ?? ''}\u0001${i.service ? `${i.service.namespace}/${i.service.hostname}` : ''}\u0001${i.responseFlags ?? ''}\u0001${i.mtls ? 1 : 0}`;
  let set = sets.get(id);
  if (!set) {
    const labels = trafficLabels(i);
    set = { labels, key: trafficKey(labels) };
    if (sets.size < MAX_LABEL_SETS) sets.set(id, set);
  }
  return set;
}

type AccessLineWriter = (fields: Record<string, unknown>) => void;
const accessLogs = new WeakMap<Logger, AccessLineWriter>();

/**
 * The access-log line writer of a proxy's logger, made once per logger: one JSON.stringify per
 * line (pino's per-field serialisation of the nested src/dst cost more than the line is worth).
 */
function accessLogOf(log: Logger): AccessLineWriter {
  let a = accessLogs.get(log);
  if (!a) accessLogs.set(log, (a = infoLineWriter(accessLogger(log), 'connection complete')));
  return a;
}

export interface AccessLogPeer {
  addr?: string;
  workload?: string;
  namespace?: string;
  identity?: string;
}

export interface AccessLogDst extends AccessLogPeer {
  hboneAddr?: string;
  service?: string;
}

export interface ConnectionInfo {
  connId: number;
  direction: 'outbound' | 'inbound';
  src: AccessLogPeer;
  dst: AccessLogDst;
}

/**
 * Telemetry of one proxied connection. Byte counters move as bytes flow (so long connections show
 * up before they close); `finish` counts the close and writes the access-log line, once.
 */
export class ConnectionTelemetry {
  readonly info: ConnectionInfo;
  bytesSent = 0;
  bytesReceived = 0;
  private labels: TrafficLabels;
  private key: string;
  private sent: CounterCell | undefined;
  private received: CounterCell | undefined;
  private readonly startedAt: number;
  private opened = false;
  private finished = false;

  constructor(
    private readonly metrics: ProxyMetrics,
    private readonly log: Logger,
    info: ConnectionInfo,
    labels: TrafficLabels | TrafficLabelSet,
    private readonly now: () => number = Date.now,
  ) {
    this.info = info;
    if ('labels' in labels) {
      this.labels = labels.labels;
      this.key = labels.key;
    } else {
      this.labels = labels;
      this.key = trafficKey(labels);
    }
    this.startedAt = now();
  }

  /**
   * Counts the connection as opened (call once the upstream side is decided). Bytes that moved
   * before (a client's first bytes written behind the CONNECT) are counted now.
   */
  open(): void {
    if (this.opened) return;
    this.opened = true;
    const labels = (): TrafficLabels => this.labels;
    this.metrics.connectionsOpened.cell(this.key, labels).value++;
    this.sent = this.metrics.sentBytes.cell(this.key, labels);
    this.received = this.metrics.receivedBytes.cell(this.key, labels);
    this.sent.value += this.bytesSent;
    this.received.value += this.bytesReceived;
  }

  /** Bytes from the downstream (connection initiator) toward the upstream. */
  addReceived(n: number): void {
    this.bytesReceived += n;
    if (this.received) this.received.value += n;
  }

  /** Bytes from the upstream back to the downstream. */
  addSent(n: number): void {
    this.bytesSent += n;
    if (this.sent) this.sent.value += n;
  }

  get durationMs(): number {
    return this.now() - this.startedAt;
  }

  /** Counts the close (opening first if it never opened) and writes the access-log line. */
  finish(reason: string, flags: ResponseFlag = '-', extra: Record<string, unknown> = {}): void {
    if (this.finished) return;
    this.finished = true;
    if (flags !== '-') {
      this.labels = { ...this.labels, response_flags: flags };
      this.key = trafficKey(this.labels);
    }
    const labels = (): TrafficLabels => this.labels;
    if (!this.opened) {
      this.opened = true;
      this.metrics.connectionsOpened.cell(this.key, labels).value++;
    }
    this.metrics.connectionsClosed.cell(this.key, labels).value++;
    accessLogOf(this.log)({
      connId: this.info.connId,
      src: this.info.src,
      dst: this.info.dst,
      direction: this.info.direction,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      durationMs: this.durationMs,
      reason,
      responseFlags: flags,
      ...extra,
    });
  }
}

let nextConnId = 1;
/** Process-wide connection ids for logs (never used as metric labels). */
export function newConnId(): number {
  return nextConnId++;
}
