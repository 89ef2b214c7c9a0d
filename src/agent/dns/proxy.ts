/**
 * The agent's DNS proxy (ztunnel's, port 15053 inside each enrolled pod's netns): UDP and TCP
 * listeners per pod on loopback, where capture sends the pod's port-53 traffic. Each query is
 * answered from the mesh config (answer.ts) or forwarded unchanged upstream (upstream.ts).
 *
 * Invariants:
 * - nothing a pod sends throws out of a handler: a message without a readable header, or a
 *   response, is dropped; an unreadable question gets FORMERR; an upstream failure SERVFAIL;
 * - at most `maxInFlightPerPod` forwarded queries per pod are waiting on upstream; more get
 *   SERVFAIL at once, and at most `maxTcpConnectionsPerPod` TCP connections are open per
 *   listener (one pod can not make the agent hold unbounded sockets and timers);
 * - a pod's listeners exist from addPod until removePod (or close).
 */
import type dgram from 'node:dgram';
import type net from 'node:net';
import type { Logger } from '../../shared/log.js';
import { errorMessage } from '../../shared/errors.js';
import { UNKNOWN } from '../../shared/metrics.js';
import { EMPTY_DNS_TABLE, decideDnsQuery, type DnsTable } from './answer.js';
import {
  RCODE_FORMERR,
  RCODE_SERVFAIL,
  errorResponse,
  parseMessage,
  peekHeader,
  queryTypeName,
  serializeForUdp,
  serializeMessage,
  udpLimit,
  DnsParseError,
  type DnsMessage,
} from '../../shared/dns/message.js';
import type { DnsMetrics, DnsLabels } from './metrics.js';
import type { DnsForwarder, DnsTransport } from '../../shared/dns/forwarder.js';
import { serveDnsTcp } from '../../shared/dns/tcp.js';

/** Istio ambient's in-pod DNS port (DESIGN.md, Ports). */
export const DNS_PORT = 15053;
/** Default bound of forwarded queries waiting per pod. */
export const DEFAULT_MAX_IN_FLIGHT_PER_POD = 128;
/** Default bound of open TCP connections per pod listener: each holds an fd of the agent's. */
export const DEFAULT_MAX_TCP_CONNECTIONS_PER_POD = 64;
/** A TCP client connection with no complete query for this long is closed. */
const TCP_IDLE_MS = 30_000;

export interface DnsPod {
  uid: string;
  netnsPath: string;
  namespace: string;
  canonicalService: string;
  canonicalRevision: string;
  /** Also listen on [::1] (the pod has IPv6). */
  ipv6: boolean;
}

export interface DnsProxyOptions {
  log: Logger;
  metrics: DnsMetrics;
  forwarder: DnsForwarder;
  port?: number;
  maxInFlightPerPod?: number;
  /** Open TCP connections per pod listener; more are closed at accept (Node's maxConnections). */
  maxTcpConnectionsPerPod?: number;
  /** A UDP socket bound to address:port inside the netns (native datagramSocket in production). */
  openUdp: (netnsPath: string, address: string, port: number) => dgram.Socket;
  /** A listening TCP server on address:port inside the netns (native listenInNetns in production). */
  openTcp: (netnsPath: string, address: string, port: number) => net.Server;
}

interface PodState {
  pod: DnsPod;
  udp: dgram.Socket[];
  tcp: net.Server[];
  conns: Set<net.Socket>;
  inFlight: number;
}

export class DnsProxy {
  readonly port: number;
  readonly #log: Logger;
  readonly #pods = new Map<string, PodState>();
  #table: DnsTable = EMPTY_DNS_TABLE;
  #closed = false;

  constructor(private readonly opts: DnsProxyOptions) {
    this.port = opts.port ?? DNS_PORT;
    this.#log = opts.log.child({ component: 'dns' });
  }

  /** The names answered locally from now on. */
  setTable(table: DnsTable): void {
    this.#table = table;
  }

  /** Opens the pod's listeners (127.0.0.1 and, with ipv6, [::1]); replaces the labels of a pod already added. */
  addPod(pod: DnsPod): void {
    if (this.#closed) throw new Error('the DNS proxy is closed');
    const cur = this.#pods.get(pod.uid);
    if (cur && cur.pod.netnsPath === pod.netnsPath && cur.pod.ipv6 === pod.ipv6) {
      cur.pod = pod;
      return;
    }
    if (cur) this.removePod(pod.uid);
    const st: PodState = { pod, udp: [], tcp: [], conns: new Set(), inFlight: 0 };
    try {
      for (const address of pod.ipv6 ? ['127.0.0.1', '::1'] : ['127.0.0.1']) {
        const udp = this.opts.openUdp(pod.netnsPath, address, this.port);
        st.udp.push(udp);
        udp.on('error', (e) => this.#log.warn({ uid: pod.uid, err: e }, 'dns udp socket error'));
        udp.on('message', (msg, rinfo) => {
          void this.#handle(st, msg, 'udp').then((answer) => {
            if (!answer || this.#closed || this.#pods.get(pod.uid) !== st) return;
            try {
              udp.send(answer, rinfo.port, rinfo.address, () => undefined);
            } catch (e) {
              // The socket closed while the query was upstream (the pod left): nobody to answer.
              this.#log.debug({ uid: pod.uid, err: e }, 'dns answer not sent');
            }
          });
        });
        const tcp = this.opts.openTcp(pod.netnsPath, address, this.port);
        st.tcp.push(tcp);
        tcp.on('error', (e) => this.#log.warn({ uid: pod.uid, err: e }, 'dns tcp listener error'));
        tcp.maxConnections = this.opts.maxTcpConnectionsPerPod ?? DEFAULT_MAX_TCP_CONNECTIONS_PER_POD;
        tcp.on('connection', (s) => this.#serveTcp(st, s));
      }
    } catch (e) {
      closeState(st);
      throw e;
    }
    this.#pods.set(pod.uid, st);
    this.#log.debug({ uid: pod.uid, port: this.port, ipv6: pod.ipv6 }, 'dns proxy listening in pod');
  }

  /** What /config_dump shows: the port, the resolvers, the pods served and how many names are answered locally. */
  summary(): { port: number; upstreams: string[]; pods: string[]; names: number; wildcards: number } {
    return {
      port: this.port,
      upstreams: this.opts.forwarder.servers.map((s) => (s.host.includes(':') ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`)),
      pods: [...this.#pods.keys()].sort(),
      names: this.#table.exact.size,
      wildcards: this.#table.wildcards.length,
    };
  }

  hasPod(uid: string): boolean {
    return this.#pods.has(uid);
  }

  removePod(uid: string): void {
    const st = this.#pods.get(uid);
    if (!st) return;
    this.#pods.delete(uid);
    closeState(st);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const st of this.#pods.values()) closeState(st);
    this.#pods.clear();
  }

  /** One message from a pod: the wire answer, or undefined to drop it. Never rejects. */
  async #handle(st: PodState, msg: Buffer, transport: DnsTransport): Promise<Buffer | undefined> {
    const h = peekHeader(msg);
    // Not a query (too short, or a response): nothing sensible to answer.
    if (!h || h.qr) return undefined;
    const labels = (type: string): DnsLabels => ({
      request_query_type: type,
      request_protocol: transport,
      source_canonical_service: st.pod.canonicalService || UNKNOWN,
      source_canonical_revision: st.pod.canonicalRevision || UNKNOWN,
    });
    let query: DnsMessage;
    try {
      query = parseMessage(msg);
    } catch (e) {
      this.opts.metrics.requests.inc(labels(UNKNOWN));
      this.#log.debug({ uid: st.pod.uid, err: e instanceof DnsParseError ? e.message : errorMessage(e) }, 'malformed dns query');
      return serializeMessage(errorResponse({ id: h.id, opcode: h.opcode, rd: h.rd }, RCODE_FORMERR));
    }
    const q = query.questions[0];
    const l = labels(q ? queryTypeName(q.type) : 'none');
    this.opts.metrics.requests.inc(l);
    const fail = (): Buffer => serializeMessage(errorResponse({ id: h.id, opcode: h.opcode, rd: h.rd, questions: query.questions }, RCODE_SERVFAIL));
    const decision = decideDnsQuery(query, this.#table, st.pod);
    if (decision.kind === 'answer') {
      try {
        return transport === 'udp' ? serializeForUdp(decision.response, udpLimit(query)) : serializeMessage(decision.response);
      } catch (e) {
        this.#log.warn({ uid: st.pod.uid, host: decision.host, err: e }, 'local dns answer could not be written');
        return fail();
      }
    }
    const max = this.opts.maxInFlightPerPod ?? DEFAULT_MAX_IN_FLIGHT_PER_POD;
    this.opts.metrics.upstreamRequests.inc(l);
    if (st.inFlight >= max) {
      this.opts.metrics.upstreamFailures.inc(l);
      this.#log.debug({ uid: st.pod.uid, inFlight: st.inFlight }, 'too many dns queries waiting upstream; SERVFAIL');
      return fail();
    }
    st.inFlight++;
    const started = process.hrtime.bigint();
    try {
      const answer = await this.opts.forwarder.forward(msg, transport);
      this.opts.metrics.upstreamDuration.observe(l, Number(process.hrtime.bigint() - started) / 1e9);
      return answer;
    } catch (e) {
      this.opts.metrics.upstreamFailures.inc(l);
      this.#log.warn({ uid: st.pod.uid, name: q?.name, err: e }, 'dns upstream failed; SERVFAIL');
      return fail();
    } finally {
      st.inFlight--;
    }
  }

  #serveTcp(st: PodState, s: net.Socket): void {
    st.conns.add(s);
    s.on('close', () => st.conns.delete(s));
    serveDnsTcp(s, (msg) => this.#handle(st, msg, 'tcp'), TCP_IDLE_MS);
  }
}

function closeState(st: PodState): void {
  for (const u of st.udp) {
    try {
      u.close();
    } catch {
      // already closed
    }
  }
  for (const t of st.tcp) t.close();
  for (const c of st.conns) c.destroy();
}
