/**
 * L4 section: one client pod on node1, one server pod on node2, four paths measured back to back,
 * metric by metric (direct, stunnel pair, plain Node pair, Ambit), so slow drift of a shared
 * machine hits all of them:
 *   direct   bench-plain/client → bench-plain/server pod IP (no mesh, no TLS)
 *   stunnel  bench-plain/client → stunnel client (loopback) → TLS 1.3 mTLS → stunnel server → loopback
 *   node     bench-plain/client → Node relay (loopback) → TLS 1.3 mTLS, HTTP/2 CONNECT → Node relay
 *            → loopback (bench/node-pair.ts: an HBONE hop written plainly on Node, none of Ambit's code)
 *   ambit    bench-mesh/client  → node1 agent → HBONE mTLS → node2 agent → bench-mesh/server
 * plus agent memory idle and while 1000 connections through the mesh are held open; then the same
 * three paths with the server on node1 next to the client (server-local pods), throughput and RR:
 *   ambit    bench-mesh/client → node1 agent → in-process hand-over (same-node fast path) → server-local
 * and last the scaling rows: 1, 2, 4, 8 parallel flows client → server (node2) through the stunnel
 * pair, the plain Node pair and through Ambit with both agents restarted at 1 and then 2 data-path workers
 * (AMBIT_WORKERS), each as aggregate throughput and CPU-seconds per GiB (both agents; both
 * stunnels) with the same-run ratio Ambit/stunnel; the agents are restarted with their default
 * worker count afterwards.
 */
import { join } from 'node:path';
import { killGroup, repoRoot, waitExit, type BenchMesh } from '../mesh.js';
import { evaluate, median, PATH_LABELS, type Check, type Metric, type PathName, type SectionResult } from '../report.js';
import type { BenchContext, BenchOptions, Section } from '../section.js';
import { startStunnelPair } from '../stunnel.js';
import type { RelayPair } from '../relay-pair.js';
import { startNodePair } from '../node-pair.js';
import type { CpsResult, HoldResult, RrResult, ThroughputResult } from '../load.js';
import { RAISE_NOFILE } from '../../src/local/exec.js';

const SINK = 9000;
const ECHO = 9001;
const MB = 1_000_000;
const MIB = 1_048_576;
const GIB = 1_073_741_824;
const ORDER: PathName[] = ['direct', 'stunnel', 'node', 'ambit'];

interface Endpoint {
  client: string;
  host: string;
  sink: number;
  echo: number;
}

interface Plan {
  /** Rounds of throughput, RR and new connections (each round runs every path); figures are medians. */
  rounds: number;
  throughput: { maxBytes: number; maxSeconds: number };
  rr: { count: number; warmup: number };
  cps: { parallel: number; seconds: number };
  hold: { count: number };
  /** Parallel-flow throughput with the agents at each worker count. */
  scaling: { workers: number[]; streams: number[]; maxBytes: number; maxSeconds: number };
}

type ScalePath = 'stunnel' | 'node' | 'ambit';

/** One scaling measurement: `streams` flows on `path` with the agents at `workers` workers. */
interface ScaleRun {
  workers: number;
  streams: number;
  path: ScalePath;
  mibPerSec: number;
  gib: number;
  /** CPU seconds of both agents (Ambit) or both processes of the pair during the run. */
  cpuSeconds: number | undefined;
}

export function planFor(quick: boolean): Plan {
  const flows = { workers: [1, 2], streams: [1, 2, 4, 8] };
  return quick
    ? { rounds: 1, throughput: { maxBytes: 128 * MIB, maxSeconds: 2 }, rr: { count: 1000, warmup: 200 }, cps: { parallel: 4, seconds: 1 }, hold: { count: 1000 }, scaling: { ...flows, maxBytes: 256 * MIB, maxSeconds: 2 } }
    : { rounds: 3, throughput: { maxBytes: 512 * MIB, maxSeconds: 5 }, rr: { count: 5000, warmup: 500 }, cps: { parallel: 4, seconds: 3 }, hold: { count: 1000 }, scaling: { ...flows, maxBytes: 1024 * MIB, maxSeconds: 4 } };
}

/** Endpoints of each path to `server` (`server` on node2, or `server-local` on node1 beside the client). */
async function endpoints(mesh: BenchMesh, paths: ReadonlySet<PathName>, pairs: Pairs, server: string): Promise<Partial<Record<PathName, Endpoint>>> {
  const out: Partial<Record<PathName, Endpoint>> = {};
  if (paths.has('direct')) out.direct = { client: 'bench-plain/client', host: (await mesh.pod('bench-plain', server)).ip, sink: SINK, echo: ECHO };
  for (const p of ['stunnel', 'node'] as const) {
    const pair = pairs[p];
    if (pair) out[p] = { client: 'bench-plain/client', host: '127.0.0.1', sink: pair.ports.sink, echo: pair.ports.echo };
  }
  if (paths.has('ambit')) out.ambit = { client: 'bench-mesh/client', host: (await mesh.pod('bench-mesh', server)).ip, sink: SINK, echo: ECHO };
  return out;
}

/** The relay pairs running (stunnel's and the plain Node one), each from bench-plain/client to one server pod. */
type Pairs = Partial<Record<'stunnel' | 'node', RelayPair>>;

/** Stops the running pairs and starts the requested ones from bench-plain/client to `serverPod`. */
async function pairsTo(mesh: BenchMesh, paths: ReadonlySet<PathName>, running: Pairs, serverPod: string, progress: (line: string) => void): Promise<Pairs> {
  await stopPairs(running);
  const server = await mesh.pod('bench-plain', serverPod);
  const o = { mesh, namespace: 'bench-plain', clientPod: 'client', serverPod, serverIp: server.ip, sinkPort: SINK, echoPort: ECHO };
  const out: Pairs = {};
  try {
    if (paths.has('stunnel')) out.stunnel = await startStunnelPair(o);
    if (paths.has('node')) out.node = await startNodePair(o);
  } catch (err) {
    await stopPairs(out);
    throw err;
  }
  progress(`pairs up to ${serverPod}: ${Object.values(out).map((p) => p.version).join('; ') || 'none'}`);
  return out;
}

async function stopPairs(pairs: Pairs): Promise<void> {
  await Promise.all(Object.values(pairs).map((p) => p.stop()));
  for (const k of Object.keys(pairs) as (keyof Pairs)[]) delete pairs[k];
}

/** The larger agent's RSS growth per connection held open (KiB), from the samples just before and while held. */
function perConnectionRow(held: { hold: HoldResult; rss: Record<string, number | undefined>; before: Record<string, number | undefined> } | undefined): Partial<Record<string, number>> {
  if (!held || held.hold.held <= 0) return {};
  const growth = Object.keys(held.rss).map((n) => (held.rss[n] ?? Number.NaN) - (held.before[n] ?? Number.NaN));
  return growth.every(Number.isFinite) ? { ambit: Math.max(...growth) / held.hold.held / 1024 } : {};
}

function maxOf(rss: Record<string, number | undefined>): number | undefined {
  const v = Object.values(rss).filter((x): x is number => x !== undefined);
  return v.length === Object.keys(rss).length && v.length > 0 ? Math.max(...v) : undefined;
}

/** Opens `count` connections through the mesh from the client pod, reads agent RSS while held, closes them. */
async function rssWithConnections(ctx: BenchContext, ep: Endpoint, count: number): Promise<{ hold: HoldResult; rss: Record<string, number | undefined>; before: Record<string, number | undefined> }> {
  // Just before the connections open (after the other rounds): the difference is what they cost.
  const before = await ctx.mesh.agentMemory();
  const child = ctx.mesh.spawnIn(ep.client, ['sh', '-c', `${RAISE_NOFILE} exec "$@"`, 'sh', process.execPath, join(repoRoot, 'dist/bench/load.js'), 'hold', ep.host, String(ep.echo), '--count', String(count), '--max-seconds', '120']);
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`hold: no report within 120 s; stderr: ${err.slice(-500)}`)), 120_000);
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          clearTimeout(timer);
          resolve(buf.slice(0, nl));
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`hold exited (code ${code}) before reporting; stdout: ${buf.slice(-300)} stderr: ${err.slice(-500)}`));
      });
    });
    const parsed = JSON.parse(line) as HoldResult & { error?: string };
    if (parsed.error) throw new Error(`hold failed: ${parsed.error}`);
    await new Promise((r) => setTimeout(r, 1000));
    const rss = await ctx.mesh.agentMemory();
    return { hold: parsed, rss, before };
  } finally {
    child.stdin!.end();
    if ((await waitExit(child, 20_000)) !== 0) killGroup(child, 'SIGKILL');
  }
}

export const l4Section: Section = {
  name: 'l4',
  manifests(opts: BenchOptions): string[] {
    const files = [join(repoRoot, 'bench/manifests/plain.yaml')];
    if (opts.paths.has('ambit')) files.push(join(repoRoot, 'bench/manifests/mesh.yaml'));
    return files;
  },

  async run(ctx: BenchContext): Promise<SectionResult> {
    const plan = planFor(ctx.quick);
    const mesh = ctx.mesh;
    const paths = new Set(ORDER.filter((p) => ctx.paths.has(p) && (p !== 'ambit' || ctx.agentsConnected)));
    const skipped = ORDER.filter((p) => ctx.paths.has(p) && !paths.has(p));
    if (skipped.length > 0) ctx.progress(`skipping ${skipped.join(', ')}: agents are not connected`);
    let pairs: Pairs = {};
    let versions: Record<string, string> = {};
    const tput: Partial<Record<PathName, ThroughputResult[]>> = {};
    const rr: Partial<Record<PathName, RrResult[]>> = {};
    const cps: Partial<Record<PathName, CpsResult[]>> = {};
    const sameTput: Partial<Record<PathName, ThroughputResult[]>> = {};
    const sameRr: Partial<Record<PathName, RrResult[]>> = {};
    let idleRss: Record<string, number | undefined> | undefined;
    let idlePrivate: Record<string, number | undefined> | undefined;
    let afterRss: Record<string, number | undefined> | undefined;
    let held: { hold: HoldResult; rss: Record<string, number | undefined>; before: Record<string, number | undefined> } | undefined;
    const agentCpu = { throughput: [] as number[], rr: [] as number[], cps: [] as number[], sameThroughput: [] as number[], sameRr: [] as number[] };
    const scale: ScaleRun[] = [];
    const pods = (await mesh.status(true)).pods.map((p) => ({ pod: `${p.namespace}/${p.name}`, node: p.node, ip: p.ip, enrolled: p.enrolled, captureMode: p.captureMode }));
    try {
      for (const ns of ['bench-plain', ...(paths.has('ambit') ? ['bench-mesh'] : [])]) {
        for (const pod of ['client', 'server', 'server-local']) await mesh.tunePod(ns, pod);
      }
      pairs = await pairsTo(mesh, paths, pairs, 'server', ctx.progress);
      versions = Object.fromEntries(Object.entries(pairs).map(([k, p]) => [k, p.version]));
      let eps = await endpoints(mesh, paths, pairs, 'server');
      const run = (p: PathName): Endpoint => eps[p]!;
      const active = ORDER.filter((p) => eps[p] !== undefined);

      if (paths.has('ambit')) {
        await new Promise((r) => setTimeout(r, 2000));
        idleRss = await mesh.agentMemory();
        idlePrivate = await mesh.agentMemory('private');
      }
      // Runs one measurement; on the Ambit path also records the busier agent's CPU share during it.
      const measure = async <T,>(p: PathName, what: keyof typeof agentCpu, args: string[]): Promise<T> => {
        if (p !== 'ambit') return mesh.load<T>(run(p).client, args, 120_000);
        const c0 = await mesh.agentCpu();
        const t0 = performance.now();
        const r = await mesh.load<T>(run(p).client, args, 120_000);
        // The load generator's own measuring time: the exec and Node start-up around it are not load.
        const wall = (r as { seconds?: number }).seconds ?? (performance.now() - t0) / 1000;
        const c1 = await mesh.agentCpu();
        const shares = Object.keys(c1).map((n) => ((c1[n] ?? Number.NaN) - (c0[n] ?? Number.NaN)) / wall);
        if (shares.every(Number.isFinite)) agentCpu[what].push(Math.max(...shares) * 100);
        return r;
      };
      for (let round = 1; round <= plan.rounds; round++) {
        const tag = plan.rounds > 1 ? ` (round ${round}/${plan.rounds})` : '';
        for (const p of active) {
          ctx.progress(`throughput ${p}${tag}`);
          (tput[p] ??= []).push(await measure<ThroughputResult>(p, 'throughput', ['throughput', run(p).host, String(run(p).sink), '--max-bytes', String(plan.throughput.maxBytes), '--max-seconds', String(plan.throughput.maxSeconds)]));
        }
        for (const p of active) {
          ctx.progress(`request/response ${p}${tag}`);
          (rr[p] ??= []).push(await measure<RrResult>(p, 'rr', ['rr', run(p).host, String(run(p).echo), '--count', String(plan.rr.count), '--warmup', String(plan.rr.warmup), '--max-seconds', '60']));
        }
        for (const p of active) {
          ctx.progress(`new connections ${p}${tag}`);
          (cps[p] ??= []).push(await measure<CpsResult>(p, 'cps', ['cps', run(p).host, String(run(p).echo), '--parallel', String(plan.cps.parallel), '--seconds', String(plan.cps.seconds)]));
        }
      }
      if (paths.has('ambit')) {
        ctx.progress(`agent memory with ${plan.hold.count} open connections`);
        held = await rssWithConnections(ctx, run('ambit'), plan.hold.count);
        await new Promise((r) => setTimeout(r, 2000));
        afterRss = await mesh.agentMemory();
      }

      // Same node: the server beside the client on node1 (Ambit takes the fast path: no TLS, no tunnel).
      pairs = await pairsTo(mesh, paths, pairs, 'server-local', ctx.progress);
      eps = await endpoints(mesh, paths, pairs, 'server-local');
      for (let round = 1; round <= plan.rounds; round++) {
        const tag = plan.rounds > 1 ? ` (round ${round}/${plan.rounds})` : '';
        for (const p of active) {
          ctx.progress(`same-node throughput ${p}${tag}`);
          (sameTput[p] ??= []).push(await measure<ThroughputResult>(p, 'sameThroughput', ['throughput', run(p).host, String(run(p).sink), '--max-bytes', String(plan.throughput.maxBytes), '--max-seconds', String(plan.throughput.maxSeconds)]));
        }
        for (const p of active) {
          ctx.progress(`same-node request/response ${p}${tag}`);
          (sameRr[p] ??= []).push(await measure<RrResult>(p, 'sameRr', ['rr', run(p).host, String(run(p).echo), '--count', String(plan.rr.count), '--warmup', String(plan.rr.warmup), '--max-seconds', '60']));
        }
      }

      // Scaling: parallel flows across nodes with the agents at each worker count (ratios need both paths).
      if (paths.has('ambit') && paths.has('stunnel')) {
        pairs = await pairsTo(mesh, paths, pairs, 'server', ctx.progress);
        eps = await endpoints(mesh, paths, pairs, 'server');
        const running = pairs;
        const agentPorts = [
          { namespace: 'bench-mesh', name: 'client', ports: [15001] },
          { namespace: 'bench-mesh', name: 'server', ports: [15008] },
        ];
        const agentsCpu = async (): Promise<number | undefined> => {
          const c = Object.values(await mesh.agentCpu());
          return c.every((x): x is number => x !== undefined) ? c.reduce((a, b) => a + b, 0) : undefined;
        };
        try {
          for (const workers of plan.scaling.workers) {
            ctx.progress(`agents restarted with ${workers} data-path worker(s)`);
            await mesh.restartAgents(workers, agentPorts);
            for (const streams of plan.scaling.streams) {
              for (const p of (['stunnel', 'node', 'ambit'] as const).filter((x) => eps[x] !== undefined)) {
                ctx.progress(`${streams} flow(s) ${p}, ${workers} worker(s)`);
                const cpu = p === 'ambit' ? agentsCpu : async (): Promise<number | undefined> => running[p]?.cpuSeconds();
                const c0 = await cpu();
                const r = await mesh.load<ThroughputResult>(run(p).client, ['throughput', run(p).host, String(run(p).sink), '--max-bytes', String(plan.scaling.maxBytes), '--max-seconds', String(plan.scaling.maxSeconds), '--streams', String(streams)], 120_000);
                const c1 = await cpu();
                scale.push({ workers, streams, path: p, mibPerSec: r.mibPerSec, gib: r.serverBytes / GIB, cpuSeconds: c0 !== undefined && c1 !== undefined ? c1 - c0 : undefined });
              }
            }
          }
        } finally {
          ctx.progress('agents restarted with their default worker count');
          await mesh.restartAgents(null, agentPorts);
        }
      }
    } finally {
      await stopPairs(pairs);
    }

    // Each figure is the median over rounds of that figure (p99 = median of the rounds' p99s).
    const med = <T,>(m: Partial<Record<PathName, T[]>>, p: PathName, f: (v: T) => number): number | undefined => median((m[p] ?? []).map(f));
    const pick = <T,>(m: Partial<Record<PathName, T[]>>, f: (v: T) => number): Partial<Record<string, number>> => {
      const out: Partial<Record<string, number>> = {};
      for (const p of ORDER) {
        const v = med(m, p, f);
        if (v !== undefined) out[p] = v;
      }
      return out;
    };
    const cpuRow = (v: number[]): Partial<Record<string, number>> => {
      const m = median(v);
      return m === undefined ? {} : { ambit: m };
    };
    const rssRow = (r: Record<string, number | undefined> | undefined): Partial<Record<string, number>> => (r && maxOf(r) !== undefined ? { ambit: maxOf(r)! / MIB } : {});
    const metrics: Metric[] = [
      { key: 'throughput', label: 'single-stream throughput', unit: 'MiB/s', digits: 0, values: pick(tput, (v) => v.mibPerSec) },
      { key: 'rrP50', label: '1-byte RR p50', unit: 'µs', digits: 0, values: pick(rr, (v) => v.p50Us) },
      { key: 'rrP99', label: '1-byte RR p99', unit: 'µs', digits: 0, values: pick(rr, (v) => v.p99Us) },
      { key: 'cps', label: 'new connections/s', unit: 'conn/s', digits: 0, values: pick(cps, (v) => v.perSec) },
      { key: 'cpsP50', label: 'connect+exchange p50', unit: 'µs', digits: 0, values: pick(cps, (v) => v.p50Us) },
      { key: 'cpuThroughput', label: 'busier agent CPU during throughput', unit: '% of a core', digits: 0, values: cpuRow(agentCpu.throughput) },
      { key: 'cpuRr', label: 'busier agent CPU during RR', unit: '% of a core', digits: 0, values: cpuRow(agentCpu.rr) },
      { key: 'cpuCps', label: 'busier agent CPU during new connections', unit: '% of a core', digits: 0, values: cpuRow(agentCpu.cps) },
      { key: 'sameThroughput', label: 'same node: single-stream throughput', unit: 'MiB/s', digits: 0, values: pick(sameTput, (v) => v.mibPerSec) },
      { key: 'sameRrP50', label: 'same node: 1-byte RR p50', unit: 'µs', digits: 0, values: pick(sameRr, (v) => v.p50Us) },
      { key: 'sameRrP99', label: 'same node: 1-byte RR p99', unit: 'µs', digits: 0, values: pick(sameRr, (v) => v.p99Us) },
      { key: 'cpuSameThroughput', label: 'same node: busier agent CPU during throughput', unit: '% of a core', digits: 0, values: cpuRow(agentCpu.sameThroughput) },
      { key: 'rssIdle', label: 'agent RSS idle, max of 2', unit: 'MiB', digits: 1, values: rssRow(idleRss) },
      { key: 'privateIdle', label: 'agent private memory idle (no shared binary pages), max of 2', unit: 'MiB', digits: 1, values: rssRow(idlePrivate) },
      { key: 'rssHeld', label: `agent RSS, ${plan.hold.count} conns open, max of 2`, unit: 'MiB', digits: 1, values: rssRow(held?.rss) },
      { key: 'rssAfter', label: 'agent RSS after load, max of 2', unit: 'MiB', digits: 1, values: rssRow(afterRss) },
      { key: 'rssPerConnection', label: 'agent RSS per open connection (held − just before), max of 2', unit: 'KiB', digits: 1, values: perConnectionRow(held) },
    ];

    // Each path's figure over the stunnel pair's, same run: the plain Node pair's says what Node's
    // TLS and HTTP/2 give as they come, Ambit's what the whole agent gives.
    const overStunnel = (f: (p: PathName) => number | undefined, key: string, label: string): Metric => {
      const values: Partial<Record<string, number>> = {};
      const st = f('stunnel');
      for (const p of ['node', 'ambit'] as const) {
        const v = f(p);
        if (v !== undefined && st !== undefined && st > 0) values[p] = v / st;
      }
      return { key, label, unit: '×', digits: 2, values };
    };
    const added = (m: Partial<Record<PathName, RrResult[]>>, p: PathName, f: (v: RrResult) => number): number | undefined => {
      const a = med(m, p, f);
      const d = med(m, 'direct', f);
      return a !== undefined && d !== undefined ? a - d : undefined;
    };
    metrics.push(
      overStunnel((p) => med(tput, p, (v) => v.mibPerSec), 'throughputOverStunnel', 'single-stream throughput ÷ stunnel pair'),
      overStunnel((p) => added(rr, p, (v) => v.p50Us), 'addedRrOverStunnel', 'added RR p50 ÷ stunnel pair'),
      overStunnel((p) => med(cps, p, (v) => v.perSec), 'cpsOverStunnel', 'new connections/s ÷ stunnel pair'),
    );

    const scaleOf = (w: number, n: number, p: ScalePath): ScaleRun | undefined => scale.find((r) => r.workers === w && r.streams === n && r.path === p);
    const perGiB = (r: ScaleRun | undefined): number | undefined => (r && r.cpuSeconds !== undefined && r.gib > 0 ? r.cpuSeconds / r.gib : undefined);
    const scaleRow = (key: string, label: string, unit: string, digits: number, st: number | undefined, am: number | undefined, nd: number | undefined): Metric => {
      const values: Partial<Record<string, number>> = {};
      if (st !== undefined) values['stunnel'] = st;
      if (nd !== undefined) values['node'] = nd;
      if (am !== undefined) values['ambit'] = am;
      if (st !== undefined && am !== undefined && st > 0) values['ratio'] = am / st;
      return { key, label, unit, digits, values };
    };
    for (const w of plan.scaling.workers) {
      for (const n of plan.scaling.streams) {
        const st = scaleOf(w, n, 'stunnel');
        const am = scaleOf(w, n, 'ambit');
        const nd = scaleOf(w, n, 'node');
        if (!st && !am) continue;
        const flows = `${n} flow${n > 1 ? 's' : ''}, ${w} worker${w > 1 ? 's' : ''}`;
        metrics.push(scaleRow(`scaleW${w}N${n}`, `${flows}: aggregate throughput`, 'MiB/s', 0, st?.mibPerSec, am?.mibPerSec, nd?.mibPerSec));
        metrics.push(scaleRow(`scaleCpuW${w}N${n}`, `${flows}: CPU-seconds per GiB`, 's/GiB', 2, perGiB(st), perGiB(am), perGiB(nd)));
      }
    }

    const why = paths.has('ambit') ? 'not measured' : 'Ambit path not run';
    const whyStunnel = paths.has('stunnel') ? why : 'stunnel path not run';
    const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
    const tp = (p: PathName): number | undefined => med(tput, p, (v) => v.mibPerSec);
    const cs = (p: PathName): number | undefined => med(cps, p, (v) => v.perSec);
    const stunnelP99 = added(rr, 'stunnel', (v) => v.p99Us);
    const checks: Check[] = [
      evaluate('throughput Ambit/stunnel', ratio(tp('ambit'), tp('stunnel')), '>=', 1.0, '×', 2, paths.has('stunnel') ? why : whyStunnel),
      evaluate('added RR p50 (Ambit−direct) vs stunnel−direct', added(rr, 'ambit', (v) => v.p50Us), '<=', added(rr, 'stunnel', (v) => v.p50Us), 'µs', 0, paths.has('stunnel') ? why : whyStunnel),
      evaluate('added RR p99 (Ambit−direct) vs 1.5× stunnel−direct', added(rr, 'ambit', (v) => v.p99Us), '<=', stunnelP99 === undefined ? undefined : 1.5 * stunnelP99, 'µs', 0, paths.has('stunnel') ? why : whyStunnel),
      evaluate('new connections/s Ambit/stunnel', ratio(cs('ambit'), cs('stunnel')), '>=', 3.0, '×', 2, paths.has('stunnel') ? why : whyStunnel),
      evaluate('agent RSS idle (MB)', idleRss && maxOf(idleRss) !== undefined ? maxOf(idleRss)! / MB : undefined, '<=', 80, ' MB', 1, why),
      evaluate(`agent RSS with ${plan.hold.count} open connections (MB)`, held && maxOf(held.rss) !== undefined ? maxOf(held.rss)! / MB : undefined, '<=', 120, ' MB', 1, why),
    ];
    for (const w of plan.scaling.workers) {
      const maxFlows = Math.max(...plan.scaling.streams);
      checks.push(
        evaluate(
          `${maxFlows}-flow aggregate Ambit/stunnel, ${w} worker${w > 1 ? 's' : ''}`,
          ratio(scaleOf(w, maxFlows, 'ambit')?.mibPerSec, scaleOf(w, maxFlows, 'stunnel')?.mibPerSec),
          '>=',
          1.0,
          '×',
          2,
          paths.has('ambit') && paths.has('stunnel') ? why : 'needs the stunnel and Ambit paths',
        ),
      );
    }
    if (held && held.hold.held < plan.hold.count) {
      checks[5] = { ...checks[5]!, verdict: 'MISS', note: `only ${held.hold.held} of ${plan.hold.count} connections opened (${held.hold.failed} failed: ${held.hold.firstError ?? '?'}); ${checks[5]!.note}` };
    }

    return {
      name: 'l4',
      title: 'L4: client pod (node1) → server pod (node2); "same node" rows → server pod on node1',
      columns: [...ORDER.filter((p) => ctx.paths.has(p)).map((p) => ({ key: p, label: PATH_LABELS[p] })), ...(scale.length > 0 ? [{ key: 'ratio', label: 'Ambit/stunnel', digits: 2 }] : [])],
      metrics,
      checks,
      details: {
        plan,
        pods,
        pairs: versions,
        throughput: tput,
        rr,
        cps,
        sameNode: { throughput: sameTput, rr: sameRr },
        scaling: scale,
        agentCpuPercent: agentCpu,
        agentRssBytes: { idle: idleRss, beforeHold: held?.before, held: held?.rss, afterLoad: afterRss },
        agentPrivateBytes: { idle: idlePrivate },
        hold: held?.hold,
        skipped,
      },
    };
  },
};
