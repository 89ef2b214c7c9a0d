/**
 * Local mode's cluster DNS (what CoreDNS is on a kubeadm cluster): UDP and TCP on port 53 of the
 * mesh's bridge address, answering `cluster.local` from the API server's Services and
 * EndpointSlices (cluster-dns-records.ts) and forwarding every other name, unchanged, to the
 * machine's resolvers (/etc/resolv.conf). Pods reach it through the kube-dns Service's ClusterIP
 * (kube-proxy's rules, services.ts), enrolled pods through their agent's DNS proxy, which
 * forwards here. Reads as its own identity (kube-system/ambit-local-dns).
 *
 * Invariants:
 * - nothing the network sends throws out of a handler: a message without a readable header, or a
 *   response, is dropped; an unparseable query gets FORMERR; a failed forward SERVFAIL;
 * - at most `maxInFlight` forwarded queries wait upstream (more get SERVFAIL at once), at most
 *   `maxTcpConnections` TCP connections are open, idle ones close after 30 s;
 * - the index is rebuilt at most once per change burst, on the first query after a change.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { HostPort } from '../shared/address.js';
import { AmbitError, errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { DnsForwarder, type DnsTransport } from '../shared/dns/forwarder.js';
import { DnsParseError, RCODE_FORMERR, RCODE_SERVFAIL, errorResponse, parseMessage, peekHeader, serializeForUdp, serializeMessage, udpLimit, type DnsMessage } from '../shared/dns/message.js';
import { serveDnsTcp } from '../shared/dns/tcp.js';
import { buildClusterDnsIndex, decideClusterDnsQuery, type ClusterDnsIndex } from './cluster-dns-records.js';
import { Informer, type KubeClient } from './kube-client.js';

export const CLUSTER_DNS_PORT = 53;
/** Forwarded queries waiting upstream at once; more get SERVFAIL. */
export const DEFAULT_MAX_IN_FLIGHT = 256;
/** Open TCP connections; more are closed at accept. */
export const DEFAULT_MAX_TCP_CONNECTIONS = 128;
/** Per upstream resolver and query (then the next resolver). */
const UPSTREAM_TIMEOUT_MS = 2000;
const TCP_IDLE_MS = 30_000;

export interface ClusterDnsOptions {
  /** A client as the cluster DNS's identity (reads Services and EndpointSlices). */
  client: KubeClient;
  /** Address to listen on (the bridge address). */
  host: string;
  port?: number;
  /** The cluster domain (the zone answered). */
  domain: string;
  /** Resolvers names outside the zone go to; none: those get SERVFAIL. */
  upstreams: readonly HostPort[];
  log: Logger;
  maxInFlight?: number;
  maxTcpConnections?: number;
  upstreamTimeoutMs?: number;
}

/** The `nameserver`s of a resolv.conf that the cluster DNS may forward to: not itself (a loop). */
export function usableUpstreams(servers: readonly HostPort[], self: HostPort): HostPort[] {
  return servers.filter((s) => !(s.host === self.host && s.port === self.port));
}

export class ClusterDns {
  private readonly log: Logger;
  private readonly services: Informer;
  private readonly slices: Informer;
  private readonly forwarder: DnsForwarder;
  private index: ClusterDnsIndex | undefined;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly conns = new Set<net.Socket>();
  private inFlight = 0;
  private closed = false;
  private boundPort: number | undefined;

  constructor(private readonly opts: ClusterDnsOptions) {
    this.log = opts.log.child({ component: 'cluster-dns' });
    const dirty = (): void => {
      this.index = undefined;
    };
    this.services = new Informer({ client: opts.client, path: '/api/v1/services', apiVersion: 'v1', kind: 'Service', log: this.log, onEvent: dirty });
    this.slices = new Informer({ client: opts.client, path: '/apis/discovery.k8s.io/v1/endpointslices', apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', log: this.log, onEvent: dirty });
    this.forwarder = new DnsForwarder({ servers: opts.upstreams, timeoutMs: opts.upstreamTimeoutMs ?? UPSTREAM_TIMEOUT_MS });
  }

  /** The port served (UDP and TCP alike); with `port: 0`, the one the UDP socket got. */
  get port(): number {
    return this.boundPort ?? this.opts.port ?? CLUSTER_DNS_PORT;
  }

  /** Syncs the Services and EndpointSlices, then listens (so no query meets an empty zone). */
  async start(): Promise<void> {
    await Promise.all([this.services.start(), this.slices.start()]);
    try {
      await this.listen();
    } catch (e) {
      throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `cannot serve the cluster DNS on ${this.opts.host}:${this.port}: ${errorMessage(e)}; does another DNS server hold port 53 on every address?`, { cause: e });
    }
    const upstreams = this.opts.upstreams.map((s) => `${s.host}:${s.port}`);
    if (upstreams.length === 0) this.log.warn({ domain: this.opts.domain }, 'no usable resolver in /etc/resolv.conf; names outside the cluster domain get SERVFAIL');
    this.log.info({ addr: `${this.opts.host}:${this.port}`, domain: this.opts.domain, upstreams }, 'cluster dns listening');
  }

  private async listen(): Promise<void> {
    const { host } = this.opts;
    const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    this.udp = udp;
    udp.on('error', (e) => this.log.warn({ err: e }, 'cluster dns udp socket error'));
    udp.on('message', (msg, rinfo) => {
      void this.handle(msg, 'udp').then((answer) => {
        if (!answer || this.closed) return;
        try {
          udp.send(answer, rinfo.port, rinfo.address, () => undefined);
        } catch (e) {
          this.log.debug({ err: e }, 'dns answer not sent');
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind({ address: host, port: this.port, exclusive: true }, () => {
        udp.off('error', reject);
        this.boundPort = udp.address().port;
        resolve();
      });
    });
    const tcp = net.createServer((s) => {
      this.conns.add(s);
      s.on('close', () => this.conns.delete(s));
      serveDnsTcp(s, (msg) => this.handle(msg, 'tcp'), TCP_IDLE_MS);
    });
    this.tcp = tcp;
    tcp.maxConnections = this.opts.maxTcpConnections ?? DEFAULT_MAX_TCP_CONNECTIONS;
    tcp.on('error', (e) => this.log.warn({ err: e }, 'cluster dns tcp listener error'));
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host, port: this.port }, () => {
        tcp.off('error', reject);
        resolve();
      });
    });
  }

  /** The index as the next query sees it (rebuilt after a change). */
  currentIndex(): ClusterDnsIndex {
    this.index ??= buildClusterDnsIndex(this.opts.domain, this.services.list(), this.slices.list());
    return this.index;
  }

  /** One message from the network: the wire answer, or undefined to drop it. Never rejects. */
  private async handle(msg: Buffer, transport: DnsTransport): Promise<Buffer | undefined> {
    const h = peekHeader(msg);
    if (!h || h.qr) return undefined;
    let query: DnsMessage;
    try {
      query = parseMessage(msg);
    } catch (e) {
      this.log.debug({ err: e instanceof DnsParseError ? e.message : errorMessage(e) }, 'malformed dns query');
      return serializeMessage(errorResponse({ id: h.id, opcode: h.opcode, rd: h.rd }, RCODE_FORMERR));
    }
    const fail = (): Buffer => serializeMessage(errorResponse({ id: h.id, opcode: h.opcode, rd: h.rd, questions: query.questions.slice(0, 1) }, RCODE_SERVFAIL));
    try {
      const decision = decideClusterDnsQuery(query, this.currentIndex());
      if (decision.kind === 'answer') return transport === 'udp' ? serializeForUdp(decision.response, udpLimit(query)) : serializeMessage(decision.response);
    } catch (e) {
      this.log.warn({ name: query.questions[0]?.name, err: e }, 'cluster dns answer could not be made');
      return fail();
    }
    if (this.inFlight >= (this.opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT)) {
      this.log.debug({ inFlight: this.inFlight }, 'too many dns queries waiting upstream; SERVFAIL');
      return fail();
    }
    this.inFlight++;
    try {
      return await this.forwarder.forward(msg, transport);
    } catch (e) {
      this.log.debug({ name: query.questions[0]?.name, err: e }, 'dns forward failed; SERVFAIL');
      return fail();
    } finally {
      this.inFlight--;
    }
  }

  async stop(): Promise<void> {
    this.closed = true;
    this.services.stop();
    this.slices.stop();
    for (const c of this.conns) c.destroy();
    if (this.udp) {
      try {
        this.udp.close();
      } catch {
        // already closed
      }
    }
    if (this.tcp) await new Promise<void>((resolve) => this.tcp!.close(() => resolve()));
  }
}
