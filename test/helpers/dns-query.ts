/**
 * A one-question DNS client for tests, as a function and as a program run inside a pod
 * (`node dns-query.js <server> <name> <A|AAAA|SRV> <udp|tcp>` prints {rcode, answers} as JSON):
 * unlike getaddrinfo it tells NXDOMAIN from NODATA and SERVFAIL, and it can ask over TCP.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_SRV, parseMessage, serializeMessage, type DnsMessage } from '../../src/shared/dns/message.js';

export interface DnsQueryResult {
  rcode: number;
  /** A/AAAA addresses and CNAME targets; other record data as hex. */
  answers: string[];
  /** Types of the authority records (the SOA of a negative answer). */
  authorities: number[];
}

const TYPES: Record<string, number> = { A: TYPE_A, AAAA: TYPE_AAAA, SRV: TYPE_SRV };

/** A query with one question (class IN, RD set). */
export function questionMessage(name: string, type: number, id: number, extra: Partial<DnsMessage> = {}): DnsMessage {
  return {
    header: { id, qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, z: 0, rcode: 0 },
    questions: [{ name, type, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
    ...extra,
  };
}

/** Asks `server` (port 53 unless given) one question; rejects after `timeoutMs` without an answer. */
export function dnsQuery(server: string, name: string, type: string, transport: 'udp' | 'tcp', timeoutMs = 3000, port = 53): Promise<DnsQueryResult> {
  const id = Math.floor(Math.random() * 0xffff);
  const query = serializeMessage(questionMessage(name, TYPES[type] ?? Number(type), id));
  const decode = (buf: Buffer): DnsQueryResult => {
    const m = parseMessage(buf);
    if (m.header.id !== id) throw new Error(`answer id ${m.header.id} is not the query's ${id}`);
    return { rcode: m.header.rcode, answers: m.answers.map((a) => (typeof a.data === 'string' ? a.data : a.data.toString('hex'))), authorities: m.authorities.map((a) => a.type) };
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`no answer from ${server} for ${name} ${type} over ${transport} within ${timeoutMs} ms`)), timeoutMs);
    let close = (): void => undefined;
    const finish = (err: Error | undefined, buf?: Buffer): void => {
      clearTimeout(timer);
      close();
      if (err) return reject(err);
      try {
        resolve(decode(buf!));
      } catch (e) {
        reject(e as Error);
      }
    };
    if (transport === 'udp') {
      const s = dgram.createSocket(net.isIPv6(server) ? 'udp6' : 'udp4');
      close = () => s.close();
      s.on('error', (e) => finish(e));
      s.on('message', (msg) => finish(undefined, msg));
      s.send(query, port, server);
    } else {
      const s = net.connect(port, server);
      close = () => s.destroy();
      let buf = Buffer.alloc(0);
      s.on('error', (e) => finish(e));
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) finish(undefined, buf.subarray(2, 2 + buf.readUInt16BE(0)));
      });
      const head = Buffer.alloc(2);
      head.writeUInt16BE(query.length);
      s.write(Buffer.concat([head, query]));
    }
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [server, name, type, transport] = process.argv.slice(2) as [string, string, string, string];
  dnsQuery(server, name, type, transport === 'tcp' ? 'tcp' : 'udp').then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (e: Error) => {
      process.stderr.write(`${e.message}\n`);
      process.exit(1);
    },
  );
}
