/**
 * DNS proxy micro-benchmark on loopback (no netns, no root): the agent's DnsProxy with its UDP
 * listener on 127.0.0.1, a table of `--services` Services and ServiceEntries, and a resolver on
 * 127.0.0.1 for forwarded names. `--parallel` clients keep one query each outstanding over UDP.
 *   node dist/bench/dns-micro.js [--queries 20000] [--parallel 16] [--services 1000] [--mode local|forward]
 * Prints one JSON line: queries/s and CPU µs per query (this process's user + system time, which
 * includes the clients' and the resolver's share: compare runs of this tool with each other).
 * Bounded: stops after its queries or 60 s.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { silentLogger } from '../src/shared/log.js';
import { createRegistry } from '../src/shared/metrics.js';
import type { Service } from '../src/shared/model.js';
import { buildDnsTable } from '../src/agent/dns/answer.js';
import { DnsProxy } from '../src/agent/dns/proxy.js';
import { createDnsMetrics } from '../src/agent/dns/metrics.js';
import { DnsForwarder } from '../src/shared/dns/forwarder.js';
import { CLASS_IN, TYPE_A, parseMessage, serializeMessage } from '../src/shared/dns/message.js';

function query(name: string, id: number): Buffer {
  return serializeMessage({
    header: { id, qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, z: 0, rcode: 0 },
    questions: [{ name, type: TYPE_A, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      queries: { type: 'string', default: '20000' },
      parallel: { type: 'string', default: '16' },
      services: { type: 'string', default: '1000' },
      mode: { type: 'string', default: 'local' },
    },
  });
  const total = Number(values.queries);
  const parallel = Number(values.parallel);
  const count = Number(values.services);
  const mode = values.mode;
  for (const [k, v] of Object.entries({ total, parallel, count })) if (!Number.isInteger(v) || v < 1) throw new Error(`--${k}: a whole number, got ${String(v)}`);
  if (mode !== 'local' && mode !== 'forward') throw new Error(`--mode: local or forward, got ${String(mode)}`);

  const services: Service[] = [];
  for (let i = 0; i < count; i++) {
    const kube = i % 2 === 0;
    services.push({
      name: `svc${i}`,
      namespace: `ns${i % 50}`,
      hostname: kube ? `svc${i}.ns${i % 50}.svc.cluster.local` : `host${i}.example.com`,
      vips: [`10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`],
      ports: [],
      subjectAltNames: [],
      routingPreference: [],
      endpoints: [],
    });
  }
  // The resolver for forwarded names: answers NXDOMAIN at once.
  const upstream = dgram.createSocket('udp4');
  let forwarded = 0;
  upstream.on('message', (m, r) => {
    forwarded++;
    const q = parseMessage(m);
    upstream.send(serializeMessage({ ...q, header: { ...q.header, qr: true, rcode: 3 } }), r.port, r.address);
  });
  await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', () => r()));
  let listener: dgram.Socket | undefined;
  const proxy = new DnsProxy({
    log: silentLogger(),
    metrics: createDnsMetrics(createRegistry()),
    forwarder: new DnsForwarder({ servers: [{ host: '127.0.0.1', port: upstream.address().port }], timeoutMs: 2000 }),
    port: 0,
    maxInFlightPerPod: parallel * 2,
    openUdp: (_n, address, port) => {
      listener = dgram.createSocket('udp4');
      listener.bind(port, address);
      return listener;
    },
    // TCP is not measured: an ephemeral listener nobody connects to.
    openTcp: (_n, address) => net.createServer().listen(0, address),
  });
  const started = process.hrtime.bigint();
  proxy.setTable(buildDnsTable(services));
  const tableMs = Number(process.hrtime.bigint() - started) / 1e6;
  proxy.addPod({ uid: 'bench', netnsPath: '', namespace: 'ns0', canonicalService: 'bench', canonicalRevision: 'v1', ipv6: false });
  if (!listener) throw new Error('no listener');
  await new Promise((r) => setTimeout(r, 50));
  const port = listener.address().port;

  let sent = 0;
  let answered = 0;
  const deadline = Date.now() + 60_000;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: parallel }, async (_, w) => {
      const s = dgram.createSocket('udp4');
      try {
        while (sent < total && Date.now() < deadline) {
          const i = sent++;
          const name = mode === 'local' ? (i % 2 === 0 ? `svc${(i * 7) % count & ~1}.ns${((i * 7) % count & ~1) % 50}` : `host${((i * 7) % count) | 1}.example.com`) : `n${i}.outside.test`;
          const id = (w * 4096 + (i & 4095)) & 0xffff;
          const got = await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), 2000);
            s.once('message', () => {
              clearTimeout(timer);
              resolve(true);
            });
            s.send(query(name, id), port, '127.0.0.1');
          });
          if (got) answered++;
        }
      } finally {
        s.close();
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  console.log(
    JSON.stringify({
      mode,
      services: count,
      parallel,
      queries: sent,
      answered,
      forwarded,
      seconds: Number(seconds.toFixed(3)),
      perSec: Math.round(answered / seconds),
      cpuUsPerQuery: Number(((cpu.user + cpu.system) / Math.max(answered, 1)).toFixed(1)),
      tableBuildMs: Number(tableMs.toFixed(1)),
    }),
  );
  proxy.close();
  upstream.close();
}

await main();
