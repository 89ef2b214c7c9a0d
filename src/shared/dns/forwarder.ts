/**
 * Forwards a DNS query unchanged to resolvers and returns their answer (the agent's DNS proxy and
 * local mode's cluster DNS use it): over UDP
 * (one fresh socket per query, so every query has its own random source port; the first reply
 * from the asked server with the query's id wins; on timeout the next server is tried) or over
 * TCP (one connection per query, 2-byte length framing). Sockets come from injected factories:
 * the agent's carry the bypass mark, so capture never takes the proxy's own queries back to itself.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { AmbitError, errorMessage } from '../errors.js';
import type { HostPort } from '../address.js';

export type DnsTransport = 'udp' | 'tcp';

/** Largest DNS message over TCP (the 2-byte length). */
export const TCP_MAX_MESSAGE = 65_535;

export interface DnsForwarderOptions {
  /** The resolvers, tried in order. */
  servers: readonly HostPort[];
  /** Per server and attempt. */
  timeoutMs: number;
  /** A UDP socket for `family` (seam: main marks it with BYPASS_MARK through native). Default plain dgram. */
  createUdp?: (family: 'IPv4' | 'IPv6') => dgram.Socket;
  /** An unconnected TCP socket for `family` (seam, as createUdp). Default a plain net.Socket. */
  createTcp?: (family: 'IPv4' | 'IPv6') => net.Socket;
}

function familyOf(host: string): 'IPv4' | 'IPv6' {
  return net.isIPv6(host) ? 'IPv6' : 'IPv4';
}

export class DnsForwarder {
  constructor(private readonly opts: DnsForwarderOptions) {}

  get servers(): readonly HostPort[] {
    return this.opts.servers;
  }

  /** The upstream's answer (raw), or AMBIT_ERR_DNS_UPSTREAM naming every server's failure. */
  async forward(query: Buffer, transport: DnsTransport): Promise<Buffer> {
    if (this.opts.servers.length === 0) throw new AmbitError('AMBIT_ERR_DNS_UPSTREAM', 'no upstream DNS resolver is configured (no nameserver in resolv.conf, AMBIT_DNS_UPSTREAMS unset)');
    const failures: string[] = [];
    for (const server of this.opts.servers) {
      try {
        return transport === 'udp' ? await this.#udp(query, server) : await this.#tcp(query, server);
      } catch (e) {
        failures.push(`${server.host}:${server.port}: ${errorMessage(e)}`);
      }
    }
    throw new AmbitError('AMBIT_ERR_DNS_UPSTREAM', `no upstream DNS resolver answered over ${transport} (${failures.join('; ')})`, { details: { failures } });
  }

  #udp(query: Buffer, server: HostPort): Promise<Buffer> {
    const family = familyOf(server.host);
    const sock = this.opts.createUdp ? this.opts.createUdp(family) : dgram.createSocket(family === 'IPv6' ? 'udp6' : 'udp4');
    const id = query.readUInt16BE(0);
    return new Promise<Buffer>((resolve, reject) => {
      const done = (err: Error | undefined, answer?: Buffer): void => {
        clearTimeout(timer);
        sock.removeAllListeners('message');
        try {
          sock.close();
        } catch {
          // already closed
        }
        if (err) reject(err);
        else resolve(answer!);
      };
      const timer = setTimeout(() => done(new Error(`timed out after ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
      sock.on('error', (e) => done(e));
      sock.on('message', (msg, rinfo) => {
        // Anything else (another source, a stale id) is not this query's answer.
        if (msg.length < 2 || msg.readUInt16BE(0) !== id || rinfo.port !== server.port || net.isIP(rinfo.address) === 0) return;
        if (rinfo.address.replace(/^::ffff:/, '') !== server.host.replace(/^::ffff:/, '')) return;
        done(undefined, msg);
      });
      sock.send(query, server.port, server.host, (e) => {
        if (e) done(e);
      });
    });
  }

  #tcp(query: Buffer, server: HostPort): Promise<Buffer> {
    const family = familyOf(server.host);
    const sock = this.opts.createTcp ? this.opts.createTcp(family) : new net.Socket();
    return new Promise<Buffer>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      const done = (err: Error | undefined, answer?: Buffer): void => {
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(answer!);
      };
      const timer = setTimeout(() => done(new Error(`timed out after ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
      sock.on('error', (e) => done(e));
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length < 2) return;
        const len = buf.readUInt16BE(0);
        if (buf.length >= 2 + len) done(undefined, buf.subarray(2, 2 + len));
      });
      sock.on('end', () => done(new Error('the resolver closed the connection before answering')));
      sock.connect(server.port, server.host, () => {
        const head = Buffer.alloc(2);
        head.writeUInt16BE(query.length);
        sock.write(Buffer.concat([head, query]));
      });
    });
  }
}

/** The `nameserver` lines of a resolv.conf text, port 53. */
export function parseResolvConf(text: string): HostPort[] {
  const out: HostPort[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const host = m[1]!.replace(/%.*$/, '');
    if (net.isIP(host) !== 0) out.push({ host, port: 53 });
  }
  return out;
}
