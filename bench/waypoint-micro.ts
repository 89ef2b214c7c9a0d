/**
 * Waypoint micro-benchmark on loopback (no mesh, no root): what one request costs the waypoint's
 * L7 server, next to haproxy on the same backend in the same run.
 *   node dist/bench/waypoint-micro.js [--connections 8] [--seconds 5] [--warmup-seconds 1]
 *        [--rounds 1] [--no-haproxy] [--max-requests N] [--hbone [--workers N] [--sessions S]]
 * This process holds a WaypointServer (plain listener on 127.0.0.1, one VirtualService-style
 * route `prefix /` → `backend:8080`, access log and metrics on, lines written to /dev/null); the
 * backend (the demo http-echo) and the load generator (bench/l7-load.ts, 8 keep-alive HTTP/1.1
 * connections in a closed loop) are child processes, so their CPU is not counted. With `--hbone`
 * this process holds the whole Waypoint as in a waypoint pod: the load arrives in 8 HBONE CONNECT
 * streams (mTLS, one HTTP/2 session, as from a node's agent) and goes upstream over HBONE to a
 * destination agent (the agent's InboundHbone) in front of the backend; the caller, that agent
 * and the backend run in one child process (test/helpers/loopback-net.ts, 127.0.0.0/8). With
 * `--workers N` the Waypoint runs on N worker threads (src/waypoint/workers.ts, SO_REUSEPORT) and
 * goes upstream in plain TCP to the backend (CPU is the whole process's, every thread); the
 * kernel spreads TLS connections, not streams, so `--sessions S` spreads the load connections
 * over S HBONE sessions (default 1, as from one node's agent). haproxy (one
 * thread, as in the L7 section) runs against the same backend. CPU per request is the process's
 * CPU time during the load divided by the requests answered (warm-up included, as the section
 * does). Profile the waypoint with `node --cpu-prof --cpu-prof-dir=DIR dist/bench/waypoint-micro.js`.
 * Prints one JSON line per round and a summary line. Bounded: every load run stops at its
 * deadline or after --max-requests; children are killed by pid at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createLogger, bufferedDestination } from '../src/shared/log.js';
import { createRegistry } from '../src/shared/metrics.js';
import { emptyHeaderOps, type RouteConfig } from '../src/shared/routes.js';
import { createHttpEcho } from '../src/cli/demo-app.js';
import { HttpUpstream } from '../src/waypoint/endpoint/upstream.js';
import { WaypointServer } from '../src/waypoint/server/server.js';
import type { L7LoadResult } from './l7-load.js';
import { cpuSeconds, repoRoot } from './mesh.js';
import type { TunnelCertificate } from '../src/shared/hbone/tunnel.js';
import type { Service } from '../src/shared/model.js';
import { Waypoint } from '../src/waypoint/waypoint.js';
import { WaypointWorkers } from '../src/waypoint/workers.js';
import type { ConfigState } from '../src/shared/xds/client.js';
import * as net from 'node:net';
import { createInterface } from 'node:readline';
import { createLoopbackMesh, testWorkload } from '../test/helpers/loopback-net.js';
import { hboneRequest, hboneTls } from '../test/helpers/hbone-client.js';
import * as http2 from 'node:http2';
import { runHttpLoad } from './l7-load.js';
import { workloadIdentity } from '../src/shared/state/workloads.js';

const HOST = 'backend.bench-l7.svc.cluster.local';

interface Opts {
  hbone: boolean;
  /** HBONE sessions the load connections are spread over. */
  sessions: number;
  /** Worker threads (HBONE mode); undefined: the Waypoint on the main thread. */
  workers: number | undefined;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  rounds: number;
  haproxy: boolean;
  maxRequests: number;
}

/** One line of output: a proxy's figures in one load run. */
interface Figures {
  reqPerSec: number;
  cpuUsPerRequest: number;
  /** Of which in the kernel (system time), when known. */
  sysUsPerRequest?: number;
  p50Us: number;
  requests: number;
  errors: number;
}

/** Runs the load generator (a child process) against port; resolves with its JSON result. */
async function load(port: number, o: Opts): Promise<L7LoadResult> {
  const child = spawn(process.execPath, [join(repoRoot, 'dist', 'bench', 'l7-load.js'), '127.0.0.1', String(port), '--host-header', 'backend:8080', '--connections', String(o.connections), '--seconds', String(o.seconds), '--warmup-seconds', String(o.warmupSeconds), '--max-requests', String(o.maxRequests)], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await once(child, 'exit');
  const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as L7LoadResult & { error?: string };
  if (r.error) throw new Error(`load generator: ${r.error}`);
  return r;
}

function figures(r: L7LoadResult, cpu: number, sys?: number): Figures {
  const perRequest = (s: number): number => Math.round((s / Math.max(1, r.totalRequests)) * 1e6 * 10) / 10;
  return { reqPerSec: Math.round(r.reqPerSec), cpuUsPerRequest: perRequest(cpu), ...(sys !== undefined ? { sysUsPerRequest: perRequest(sys) } : {}), p50Us: r.p50Us, requests: r.totalRequests, errors: r.errors };
}

/** The backend in a child process: the demo http-echo on an ephemeral port. */
async function startBackend(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [new URL(import.meta.url).pathname, '--role', 'backend'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, port: Number(line.toString().trim()) };
}

async function startHaproxy(dir: string, backendPort: number): Promise<{ child: ChildProcess; port: number }> {
  const port = 20_000 + (process.pid % 20_000);
  const cfg = ['global', '  nbthread 1', '  maxconn 4096', 'defaults', '  mode http', '  option http-keep-alive', '  timeout connect 5s', '  timeout client 30s', '  timeout server 30s', 'frontend l7', `  bind 127.0.0.1:${port}`, '  default_backend echo', 'backend echo', '  http-reuse always', `  server backend 127.0.0.1:${backendPort}`, ''].join('\n');
  writeFileSync(join(dir, 'haproxy.cfg'), cfg);
  const child = spawn('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db'], { stdio: ['ignore', 'ignore', 'inherit'] });
  // Bounded wait for the port: 50 tries, 100 ms apart.
  for (let i = 0; i < 50; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      import('node:net').then((net) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      }, () => resolve(false));
    });
    if (ok) return { child, port };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`haproxy did not listen on 127.0.0.1:${port}`);
}

/** Lines are built and written as in a pod (buffered, one write per 4 KiB), to /dev/null. */
function devNullLogger(): ReturnType<typeof createLogger> {
  return createLogger({ level: (process.env['AMBIT_MICRO_LOG_LEVEL'] as 'info' | undefined) ?? 'info', destination: bufferedDestination(openSync('/dev/null', 'w')) });
}

/** The bench's one route config: every path of the backend Service to the Service. */
function routeConfig(): RouteConfig {
  return {
    name: `bench-l7/${HOST}`,
    namespace: 'bench-l7',
    hostname: HOST,
    aliases: ['backend', 'backend.bench-l7'],
    ports: [{ port: 8080, protocol: 'http' }],
    routes: [{ name: 'backend', match: [{ uri: { prefix: '/' }, headers: [], queryParams: [] }], backends: [{ host: HOST, port: 8080, weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } }],
    authorization: [],
  };
}

async function startWaypoint(backendPort: number): Promise<{ server: WaypointServer; upstream: HttpUpstream; port: number }> {
  const log = devNullLogger();
  const upstream = new HttpUpstream();
  const config = routeConfig();
  const server = new WaypointServer({
    log,
    registry: createRegistry(),
    dispatch: upstream.dispatch,
    resolveEndpoints: () => [{ key: `127.0.0.1:${backendPort}`, address: '127.0.0.1', port: backendPort, workload: 'backend', namespace: 'bench-l7', canonicalService: 'l7-backend', canonicalRevision: 'v1', principal: 'spiffe://cluster.local/ns/bench-l7/sa/l7-backend', cluster: 'Kubernetes' }],
    identifySource: () => ({ principal: 'spiffe://cluster.local/ns/bench-l7/sa/l7-client', namespace: 'bench-l7', workload: 'client', canonicalService: 'l7-client', canonicalRevision: 'latest', cluster: 'Kubernetes' }),
  });
  server.setRoutes([config]);
  const addr: AddressInfo = await server.listen(0, '127.0.0.1');
  return { server, upstream, port: addr.port };
}


/** Addresses of the HBONE mode's pods on loopback. */
const NET = `127.${10 + (process.pid % 200)}.9.`;
const VIP = '10.96.0.80';
const IDS = { waypoint: 'spiffe://cluster.local/ns/bench-l7/sa/bench-waypoint', client: 'spiffe://cluster.local/ns/bench-l7/sa/l7-client' };

function workloads(base: string, plainUpstream = false): { backend: ReturnType<typeof testWorkload>; client: ReturnType<typeof testWorkload> } {
  return {
    backend: testWorkload({ name: 'backend', namespace: 'bench-l7', ip: base + '2', serviceAccount: 'l7-backend', services: { [`bench-l7/${HOST}`]: [{ servicePort: 8080, targetPort: 8080 }] }, ...(plainUpstream ? { tunnelProtocol: 'NONE' as const } : {}) }),
    client: testWorkload({ name: 'client', namespace: 'bench-l7', ip: base + '3', serviceAccount: 'l7-client' }),
  };
}

/** An HBONE session as the agent's pool opens one: mTLS, h2, no Nagle delay; resolves on the server's SETTINGS. */
async function tunnelSession(host: string, port: number, cert: TunnelCertificate, localAddress: string): Promise<http2.ClientHttp2Session> {
  const socket = hboneTls({ host, port, cert, localAddress });
  socket.setNoDelay(true);
  const session = http2.connect(`https://${host}:${port}`, { createConnection: () => socket });
  session.on('error', () => undefined);
  await once(session, 'remoteSettings');
  return session;
}

/**
 * The HBONE mode's child: the destination agent (InboundHbone) with the backend behind it, and
 * the caller. Prints {rootPem, waypointCert, inboundPort}, reads the waypoint's HBONE port per
 * load run on stdin, runs the load through CONNECT streams and prints its result.
 */
async function hbonePeer(base: string, o: Opts): Promise<void> {
  const mesh = await createLoopbackMesh();
  const w = workloads(base);
  await mesh.addPod(w.backend);
  const echo = createHttpEcho({ text: 'l7', pod: 'backend', failStatus: 500, delayMs: 0 });
  const l = await mesh.net.pod(w.backend.addresses[0]!).listen(8080);
  l.on('connection', (s) => echo.emit('connection', s));
  // The same backend on its address's real port 8080, for waypoint workers going upstream in plain TCP.
  await new Promise<void>((resolve) => echo.listen(8080, w.backend.addresses[0]!, () => resolve()));
  const hello = { waypointCert: mesh.certFor(IDS.waypoint), inboundPort: mesh.net.realPort(w.backend.addresses[0]!, 15008) };
  process.stdout.write(JSON.stringify(hello) + '\n');
  for await (const line of createInterface({ input: process.stdin })) {
    const port = Number(line.trim());
    if (!Number.isInteger(port) || port <= 0) break;
    const sessions = await Promise.all(Array.from({ length: o.sessions }, () => tunnelSession(base + '1', port, mesh.certFor(IDS.client), w.client.addresses[0]!)));
    let next = 0;
    const r = await runHttpLoad({
      host: base + '1',
      port,
      hostHeader: 'backend:8080',
      path: '/',
      connections: o.connections,
      seconds: o.seconds,
      warmupSeconds: o.warmupSeconds,
      maxRequests: o.maxRequests,
      open: async () => {
        const { status, stream } = await hboneRequest(sessions[next++ % sessions.length]!, { ':authority': `${VIP}:8080` });
        if (status !== 200) throw new Error(`CONNECT answered ${status}`);
        return stream;
      },
    });
    for (const s of sessions) s.destroy();
    process.stdout.write(JSON.stringify(r) + '\n');
  }
  echo.closeAllConnections();
  await mesh.close();
  process.exit(0);
}

interface HboneRig {
  close(): Promise<void>;
  port: number;
  peer: ChildProcess;
  /** One load run through the waypoint; resolves with the peer's result. */
  run(): Promise<L7LoadResult>;
}

/** The whole Waypoint (HBONE front, L7 server, HBONE upstream) with the config a controller would push. */
async function startHboneRig(o: Opts): Promise<HboneRig> {
  const peer = spawn(process.execPath, [new URL(import.meta.url).pathname, '--role', 'hbone-peer', '--net', NET, '--sessions', String(o.sessions), '--connections', String(o.connections), '--seconds', String(o.seconds), '--warmup-seconds', String(o.warmupSeconds), '--max-requests', String(o.maxRequests)], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } });
  const lines = createInterface({ input: peer.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const r = await lines.next();
    if (r.done) throw new Error('the HBONE peer process exited');
    return r.value;
  };
  const hello = JSON.parse(await next()) as { waypointCert: TunnelCertificate; inboundPort: number };
  const w = workloads(NET, o.workers !== undefined);
  const service: Service = { name: 'backend', namespace: 'bench-l7', hostname: HOST, vips: [VIP], ports: [{ name: 'http', port: 8080, targetPort: 8080, protocol: 'http' }], subjectAltNames: [], routingPreference: [], endpoints: [w.backend.uid] };
  const config = routeConfig();
  const state = {
    workloads: new Map([w.backend, w.client].map((x) => [x.uid, x])),
    services: new Map([[`bench-l7/${HOST}`, service]]),
    authorizations: new Map(),
    routes: new Map([[config.name, config]]),
    versions: new Map(),
    systemVersions: new Map(),
  };
  if (workloadIdentity(w.client) !== IDS.client) throw new Error(`client identity ${workloadIdentity(w.client)} is not ${IDS.client}`);
  const serving = o.workers !== undefined ? await startWorkers(o.workers, hello.waypointCert, state) : await startInProcess(hello, state);
  const port = serving.port;
  return {
    close: () => serving.close(),
    port,
    peer,
    async run() {
      peer.stdin!.write(`${port}\n`);
      const r = JSON.parse(await next()) as L7LoadResult & { error?: string };
      if (r.error) throw new Error(`load generator: ${r.error}`);
      return r;
    },
  };
}

async function startWorkers(count: number, cert: TunnelCertificate, state: ConfigState): Promise<{ port: number; close(): Promise<void> }> {
  const workers = await WaypointWorkers.start({ count, init: { waypoint: { name: 'bench-l7/bench-waypoint', podIp: NET + '1', identity: IDS.waypoint, trustDomain: 'cluster.local' }, logLevel: 'info' }, log: devNullLogger(), getCertificate: async () => cert });
  await workers.applyConfig(state);
  const port = await workers.listenHbone(0, NET + '1');
  return { port, close: () => workers.close(1000) };
}

async function startInProcess(hello: { waypointCert: TunnelCertificate; inboundPort: number }, state: ConfigState): Promise<{ port: number; close(): Promise<void> }> {
  const waypoint = new Waypoint({
    name: 'bench-l7/bench-waypoint',
    podIp: NET + '1',
    identity: IDS.waypoint,
    trustDomain: 'cluster.local',
    log: devNullLogger(),
    registry: createRegistry(),
    getCertificate: async () => hello.waypointCert,
    // The destination agent's 15008 is an ephemeral port in the peer's loopback net.
    connectTcp: (a) => net.connect({ host: a.address, port: a.port === 15008 ? hello.inboundPort : a.port, noDelay: true }),
  });
  waypoint.applyConfig(state);
  const { port } = await waypoint.listenHbone(0, NET + '1');
  return { port, close: () => waypoint.close(1000) };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      role: { type: 'string' },
      connections: { type: 'string', default: '8' },
      seconds: { type: 'string', default: '5' },
      'warmup-seconds': { type: 'string', default: '1' },
      rounds: { type: 'string', default: '1' },
      'max-requests': { type: 'string', default: '1000000' },
      'no-haproxy': { type: 'boolean', default: false },
      hbone: { type: 'boolean', default: false },
      workers: { type: 'string' },
      sessions: { type: 'string', default: '1' },
      net: { type: 'string' },
    },
  });
  if (values.role === 'backend') {
    const s = createHttpEcho({ text: 'l7', pod: 'backend', failStatus: 500, delayMs: 0 });
    s.listen(0, '127.0.0.1', () => process.stdout.write(`${(s.address() as AddressInfo).port}\n`));
    return;
  }
  const o: Opts = { hbone: values.hbone!, workers: values.workers !== undefined ? Number(values.workers) : undefined, sessions: Number(values.sessions), connections: Number(values.connections), seconds: Number(values.seconds), warmupSeconds: Number(values['warmup-seconds']), rounds: Number(values.rounds), haproxy: !values['no-haproxy'], maxRequests: Number(values['max-requests']) };
  for (const [k, v] of Object.entries(o)) if (typeof v === 'number' && !(Number.isFinite(v) && v > 0) && k !== 'warmupSeconds') throw new Error(`--${k}: a positive number, got ${v}`);
  if (values.role === 'hbone-peer') return hbonePeer(values.net ?? NET, o);
  const dir = mkdtempSync(join(tmpdir(), 'ambit-wpmicro-'));
  const backend = await startBackend();
  const children: ChildProcess[] = [backend.child];
  try {
    const rig = o.hbone ? await startHboneRig(o) : undefined;
    if (rig) children.push(rig.peer);
    const wp = rig ? undefined : await startWaypoint(backend.port);
    const hap = o.haproxy ? await startHaproxy(dir, backend.port) : undefined;
    if (hap) children.push(hap.child);
    const results: Array<{ waypoint: Figures; haproxy?: Figures }> = [];
    for (let round = 0; round < o.rounds; round++) {
      let haproxy: Figures | undefined;
      if (hap) {
        const c0 = cpuSeconds(hap.child.pid!) ?? 0;
        const r = await load(hap.port, o);
        haproxy = figures(r, (cpuSeconds(hap.child.pid!) ?? 0) - c0);
      }
      const u0 = process.cpuUsage();
      const r = rig ? await rig.run() : await load(wp!.port, o);
      const u = process.cpuUsage(u0);
      const waypoint = figures(r, (u.user + u.system) / 1e6, u.system / 1e6);
      results.push({ waypoint, ...(haproxy ? { haproxy } : {}) });
      process.stdout.write(JSON.stringify({ round, waypoint, ...(haproxy ? { haproxy, reqPerSecRatio: round2(waypoint.reqPerSec / haproxy.reqPerSec), cpuPerRequestRatio: round2(waypoint.cpuUsPerRequest / haproxy.cpuUsPerRequest) } : {}) }) + '\n');
    }
    if (wp) {
      await wp.server.close(1000);
      wp.upstream.close();
    }
    if (rig) {
      rig.peer.stdin!.end('0\n');
      await rig.close();
    }
    const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const summary: Record<string, number> = { waypointReqPerSec: med(results.map((r) => r.waypoint.reqPerSec)), waypointCpuUsPerRequest: med(results.map((r) => r.waypoint.cpuUsPerRequest)) };
    if (hap) {
      summary['haproxyReqPerSec'] = med(results.map((r) => r.haproxy!.reqPerSec));
      summary['haproxyCpuUsPerRequest'] = med(results.map((r) => r.haproxy!.cpuUsPerRequest));
    }
    process.stdout.write(JSON.stringify({ summary }) + '\n');
  } finally {
    for (const c of children) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stdout.write(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }) + '\n');
    process.exitCode = 1;
  });
}
