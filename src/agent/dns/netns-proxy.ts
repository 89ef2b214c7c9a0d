/**
 * The DNS proxy as the agent runs it: listeners made inside each pod's netns with native sockets
 * (the UDP one marked, so capture never moves its replies), upstream sockets in the agent's own
 * netns marked 0x539, resolvers from AMBIT_DNS_UPSTREAMS or the agent's resolv.conf.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import type { Logger } from '../../shared/log.js';
import type { Registry } from '../../shared/metrics.js';
import type { HostPort } from '../../shared/address.js';
import { BYPASS_MARK, datagramSocket, listenInNetns, markedStreamSocket } from '../../../native/netns.js';
import { DnsProxy } from './proxy.js';
import { createDnsMetrics } from './metrics.js';
import { DnsForwarder, parseResolvConf } from '../../shared/dns/forwarder.js';

/** Per server and attempt; a resolver that has not answered by then is taken as failed. */
export const DNS_UPSTREAM_TIMEOUT_MS = 2500;

export interface NetnsDnsProxyOptions {
  log: Logger;
  registry: Registry;
  /** Resolvers; undefined: the nameservers of `resolvConf`. */
  upstreams?: readonly HostPort[] | undefined;
  /** Default /etc/resolv.conf. */
  resolvConf?: string;
  port?: number;
  timeoutMs?: number;
  maxInFlightPerPod?: number;
}

/** The resolvers: given ones, else resolv.conf's (none when it can not be read: every forward then SERVFAILs, logged). */
export function dnsUpstreams(o: Pick<NetnsDnsProxyOptions, 'upstreams' | 'resolvConf' | 'log'>): HostPort[] {
  if (o.upstreams !== undefined) return [...o.upstreams];
  const path = o.resolvConf ?? '/etc/resolv.conf';
  try {
    const found = parseResolvConf(readFileSync(path, 'utf8'));
    if (found.length === 0) o.log.warn({ path }, 'no nameserver in resolv.conf; forwarded dns queries will fail (set AMBIT_DNS_UPSTREAMS)');
    return found;
  } catch (e) {
    o.log.warn({ path, err: e }, 'resolv.conf unreadable; forwarded dns queries will fail (set AMBIT_DNS_UPSTREAMS)');
    return [];
  }
}

export function createNetnsDnsProxy(o: NetnsDnsProxyOptions): DnsProxy {
  const servers = dnsUpstreams(o);
  const forwarder = new DnsForwarder({
    servers,
    timeoutMs: o.timeoutMs ?? DNS_UPSTREAM_TIMEOUT_MS,
    createUdp: (family) => {
      const fd = datagramSocket({ address: family === 'IPv6' ? '::' : '0.0.0.0', port: 0, mark: BYPASS_MARK });
      const sock = dgram.createSocket(family === 'IPv6' ? 'udp6' : 'udp4');
      sock.bind({ fd });
      return sock;
    },
    createTcp: (family) => new net.Socket({ fd: markedStreamSocket(family, BYPASS_MARK) }),
  });
  o.log.info({ upstreams: servers.map((s) => `${s.host}:${s.port}`) }, 'dns proxy upstream resolvers');
  return new DnsProxy({
    log: o.log,
    metrics: createDnsMetrics(o.registry),
    forwarder,
    ...(o.port !== undefined ? { port: o.port } : {}),
    ...(o.maxInFlightPerPod !== undefined ? { maxInFlightPerPod: o.maxInFlightPerPod } : {}),
    openUdp: (netnsPath, address, port) => {
      const sock = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
      sock.bind({ fd: datagramSocket({ address, port, mark: BYPASS_MARK }, netnsPath) });
      return sock;
    },
    openTcp: (netnsPath, address, port) => net.createServer({ pauseOnConnect: false }).listen({ fd: listenInNetns(netnsPath, { address, port }) }),
  });
}
