/**
 * L7 section: HTTP/1.1 from a client pod on node1 to an http-echo backend on node2, five paths
 * measured back to back in each round (direct, haproxy, nginx, plain Node, waypoint), so drift of
 * a shared machine hits all five:
 *   direct    bench-l7-plain/client → backend pod IP :8080 (no proxy: the baseline)
 *   haproxy   bench-l7-plain/client → haproxy in bench-l7-plain/proxy (node2) :8081 → backend
 *   nginx     bench-l7-plain/client → nginx in bench-l7-plain/proxy (node2) :8082 → backend
 *   node      bench-l7-plain/client → plain node:http proxy in bench-l7-plain/proxy :8083 → backend
 *             (bench/node-http-proxy.ts: Node's HTTP/1.1 as it comes, none of the waypoint's code)
 *   waypoint  bench-l7/client → node1 agent ═HBONE═► waypoint (node2, VirtualService route)
 *             ═HBONE═► node2 agent → bench-l7/backend
 * Load: a closed loop of keep-alive connections (bench/l7-load.ts) inside the client pod. Proxy CPU
 * per request is the CPU time (/proc/<pid>/stat) the proxy's processes used during the run divided
 * by the requests answered; for Ambit the waypoint plus both agents, and the waypoint alone.
 * haproxy runs one thread and nginx one worker, like the single-threaded waypoint; so does the
 * plain Node proxy.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuSeconds, killGroup, pidAlive, repoRoot, waitExit, type BenchMesh } from '../mesh.js';
import { evaluate, median, type Check, type Metric, type SectionResult } from '../report.js';
import type { BenchContext, BenchOptions, Section } from '../section.js';
import type { L7LoadResult } from '../l7-load.js';

type L7Path = 'direct' | 'haproxy' | 'nginx' | 'node' | 'waypoint';
const ORDER: L7Path[] = ['direct', 'haproxy', 'nginx', 'node', 'waypoint'];
const LABELS: Record<L7Path, string> = { direct: 'direct', haproxy: 'haproxy', nginx: 'nginx', node: 'plain Node proxy', waypoint: 'Ambit waypoint' };
const PLAIN = 'bench-l7-plain';
const MESHED = 'bench-l7';
const BACKEND_PORT = 8080;
const HAPROXY_PORT = 8081;
const NGINX_PORT = 8082;
const NODE_PORT = 8083;
const IDLE_MS = 2000;

interface Plan {
  rounds: number;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  maxRequests: number;
}

export function planFor(quick: boolean): Plan {
  return quick
    ? { rounds: 1, connections: 8, seconds: 2, warmupSeconds: 0.5, maxRequests: 200_000 }
    : { rounds: 3, connections: 8, seconds: 5, warmupSeconds: 1, maxRequests: 1_000_000 };
}

interface Target {
  client: string;
  host: string;
  port: number;
  hostHeader: string;
  /** Processes whose CPU is the proxy's cost (empty for direct). */
  pids: () => number[];
  /** For the waypoint: its own processes only. */
  ownPids?: () => number[];
  /** For the waypoint: its metrics endpoint (requests it routed). */
  metricsUrl?: string;
}

interface Run {
  load: L7LoadResult;
  /** CPU seconds of the proxy's processes (waypoint + agents for Ambit) during the run. */
  cpu?: number;
  /** Waypoint process(es) alone. */
  cpuOwn?: number;
}

/** Processes in a network namespace (as `ip netns pids` reports them). */
export function netnsPids(netns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', netns], { encoding: 'utf8', timeout: 10_000 });
  return (r.stdout ?? '').split('\n').map((x) => Number(x.trim())).filter((n) => Number.isInteger(n) && n > 0);
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function sumCpu(pids: number[]): number | undefined {
  let total = 0;
  for (const p of pids) {
    const c = cpuSeconds(p);
    if (c === undefined) return undefined;
    total += c;
  }
  return total;
}

/** haproxy: http mode, keep-alive both sides, one thread, one backend server, no logging. */
export function renderHaproxyConfig(backendIp: string): string {
  return [
    'global',
    '  nbthread 1',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  option http-keep-alive',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 30s',
    `frontend l7`,
    `  bind 0.0.0.0:${HAPROXY_PORT}`,
    '  default_backend echo',
    'backend echo',
    '  http-reuse always',
    `  server backend ${backendIp}:${BACKEND_PORT}`,
    '',
  ].join('\n');
}

/** nginx: one worker, upstream keep-alive, every path to the one backend, no access log; files under `dir`. */
export function renderNginxConfig(dir: string, backendIp: string): string {
  return [
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 4096; }',
    'http {',
    '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${join(dir, `${t}_temp`)};`),
    '  keepalive_requests 1000000;',
    `  upstream echo { server ${backendIp}:${BACKEND_PORT}; keepalive 32; keepalive_requests 1000000; }`,
    '  server {',
    `    listen ${NGINX_PORT};`,
    '    location / {',
    '      proxy_pass http://echo;',
    '      proxy_http_version 1.1;',
    '      proxy_set_header Connection "";',
    '      proxy_set_header Host $host;',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');
}

function version(cmd: string, args: string[], re: RegExp): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error) throw new Error(`cannot run ${cmd}: ${r.error.message}; install it (apt-get install haproxy nginx-light)`);
  return re.exec(`${r.stdout}${r.stderr}`)?.[0] ?? `${cmd} (unknown version)`;
}

type ProxyName = 'haproxy' | 'nginx' | 'node';
const PROXY_PORTS: Record<ProxyName, number> = { haproxy: HAPROXY_PORT, nginx: NGINX_PORT, node: NODE_PORT };

interface Proxy {
  name: ProxyName;
  version: string;
  child: ChildProcess;
  netns: string;
  log: string[];
}

/** Starts haproxy, nginx or the plain Node proxy in the proxy pod (foreground, a process group we own) and waits for its port. */
async function startProxy(mesh: BenchMesh, name: ProxyName, dir: string, backendIp: string): Promise<Proxy> {
  const pod = await mesh.pod(PLAIN, 'proxy');
  let argv: string[];
  let ver: string;
  if (name === 'haproxy') {
    writeFileSync(join(dir, 'haproxy.cfg'), renderHaproxyConfig(backendIp));
    argv = ['haproxy', '-f', join(dir, 'haproxy.cfg'), '-db'];
    ver = version('haproxy', ['-v'], /HAProxy version \S+/);
  } else if (name === 'node') {
    argv = [process.execPath, join(repoRoot, 'dist/bench/node-http-proxy.js'), String(NODE_PORT), `${backendIp}:${BACKEND_PORT}`];
    ver = `Node ${process.version} node:http`;
  } else {
    const nd = join(dir, 'nginx');
    mkdirSync(nd, { recursive: true });
    writeFileSync(join(nd, 'nginx.conf'), renderNginxConfig(nd, backendIp));
    argv = ['nginx', '-p', nd, '-e', join(nd, 'error.log'), '-c', join(nd, 'nginx.conf'), '-g', 'daemon off;'];
    ver = version('nginx', ['-v'], /nginx\/\S+/);
  }
  const child = mesh.spawnIn(`${PLAIN}/proxy`, argv);
  const log: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (d: string) => log.push(d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => log.push(d));
  child.stdin!.end();
  const proxy: Proxy = { name, version: ver, child, netns: pod.netns, log };
  try {
    await mesh.waitListening(PLAIN, 'proxy', [PROXY_PORTS[name]], 15_000);
  } catch (err) {
    await stopProxy(proxy);
    throw new Error(`${name} did not start: ${err instanceof Error ? err.message : String(err)}\n${log.join('').slice(-1500)}`);
  }
  return proxy;
}

function proxyPids(p: Proxy): number[] {
  // Node 24 names its main thread (and so the process's comm) MainThread.
  const comm = p.name === 'node' ? 'MainThread' : p.name;
  return netnsPids(p.netns).filter((pid) => commOf(pid) === comm);
}

/** SIGTERM to the process group, then SIGKILL to any of its proxy processes still running (by pid). */
async function stopProxy(p: Proxy): Promise<void> {
  const pids = proxyPids(p);
  killGroup(p.child, 'SIGTERM');
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  await waitExit(p.child, 5000);
  const deadline = Date.now() + 5000;
  while (pids.some(pidAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pid of pids.filter(pidAlive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

async function httpLoad(mesh: BenchMesh, t: Target, plan: Plan, over?: Partial<Plan>): Promise<L7LoadResult> {
  const p = { ...plan, ...over };
  const args = [t.host, String(t.port), '--host-header', t.hostHeader, '--connections', String(p.connections), '--seconds', String(p.seconds), '--warmup-seconds', String(p.warmupSeconds), '--max-requests', String(p.maxRequests)];
  const r = await mesh.exec(t.client, [process.execPath, join(repoRoot, 'dist/bench/l7-load.js'), ...args], (p.seconds + p.warmupSeconds) * 1000 + 60_000);
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  const parsed = line ? (JSON.parse(line) as L7LoadResult & { error?: string }) : undefined;
  if (r.code !== 0 || !parsed || parsed.error) throw new Error(`l7-load ${args.join(' ')} in ${t.client} failed (exit ${r.code}): ${parsed?.error ?? (r.stderr.trim() || r.stdout.trim())}`);
  return parsed;
}

async function metricsText(url: string): Promise<string> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    return await res.text();
  } catch {
    return '';
  }
}

/** Sum of a counter's series whose label text contains every `labels` pair. */
export function counterSum(text: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return total;
}

/** Requests through the waypoint, per its own metrics (0 when unreachable). */
async function waypointCount(url: string): Promise<number> {
  return counterSum(await metricsText(url), 'istio_requests_total', { reporter: 'waypoint' });
}

export const l7Section: Section = {
  name: 'l7',
  manifests(opts: BenchOptions): string[] {
    const files = [join(repoRoot, 'bench/manifests/l7-plain.yaml')];
    if (opts.paths.has('ambit')) files.push(join(repoRoot, 'bench/manifests/l7-mesh.yaml'));
    return files;
  },

  async run(ctx: BenchContext): Promise<SectionResult> {
    const plan = planFor(ctx.quick);
    const mesh = ctx.mesh;
    const st = await mesh.status(true);
    const notes: string[] = [];
    const errors: Partial<Record<L7Path, string>> = {};
    const runs: Partial<Record<L7Path, Run[]>> = {};
    const versions: Record<string, string> = {};
    const dir = mkdtempSync(join(tmpdir(), 'ambit-bench-l7-'));
    const proxies: Proxy[] = [];
    const targets: Partial<Record<L7Path, Target>> = {};
    let waypointThrough: { counted: number; sent: number } | undefined;
    const idleShare: Partial<Record<L7Path, number>> = {};
    try {
      for (const pod of ['client', 'backend', 'proxy']) await mesh.tunePod(PLAIN, pod);
      const backend = await mesh.pod(PLAIN, 'backend');
      await mesh.waitListening(PLAIN, 'backend', [BACKEND_PORT], 15_000);
      targets.direct = { client: `${PLAIN}/client`, host: backend.ip, port: BACKEND_PORT, hostHeader: 'backend', pids: () => [] };
      for (const name of ['haproxy', 'nginx', 'node'] as const) {
        try {
          const p = await startProxy(mesh, name, dir, backend.ip);
          proxies.push(p);
          versions[name] = p.version;
          const proxyPod = await mesh.pod(PLAIN, 'proxy');
          targets[name] = { client: `${PLAIN}/client`, host: proxyPod.ip, port: PROXY_PORTS[name], hostHeader: 'backend', pids: () => proxyPids(p) };
          ctx.progress(`${p.version} up in ${PLAIN}/proxy`);
        } catch (err) {
          errors[name] = err instanceof Error ? err.message : String(err);
          ctx.progress(`${name}: ${errors[name]}`);
        }
      }

      if (!ctx.paths.has('ambit')) errors.waypoint = 'Ambit path not run (--paths)';
      else if (!ctx.agentsConnected) errors.waypoint = 'agents are not connected';
      else {
        try {
          const wp = st.pods.find((p) => p.namespace === MESHED && p.name.startsWith('bench-waypoint-'));
          if (!wp) throw new Error(`no waypoint pod in ${MESHED} (pods there: ${st.pods.filter((p) => p.namespace === MESHED).map((p) => p.name).join(', ') || 'none'})`);
          if (!wp.ready) throw new Error(`waypoint pod ${wp.name} is not ready`);
          const svc = st.services.find((s) => s.namespace === MESHED && s.name === 'backend');
          if (!svc) throw new Error(`service ${MESHED}/backend is missing from the mesh status`);
          await mesh.tunePod(MESHED, 'client');
          const wpPids = (): number[] => netnsPids(wp.netns);
          const agentPids = st.nodes.flatMap((n) => (n.agentPid !== undefined ? [n.agentPid] : []));
          targets.waypoint = { client: `${MESHED}/client`, host: svc.clusterIP, port: BACKEND_PORT, hostHeader: `backend:${BACKEND_PORT}`, pids: () => [...wpPids(), ...agentPids], ownPids: wpPids };
          // The first requests may race the agents learning the waypoint; wait (bounded) until requests pass through it.
          const metricsUrl = `http://${wp.ip}:15020/metrics`;
          const deadline = Date.now() + 60_000;
          let lastErr = '';
          for (let i = 0; i < 60 && Date.now() < deadline; i++) {
            const before = await waypointCount(metricsUrl);
            try {
              const r = await httpLoad(mesh, targets.waypoint, plan, { connections: 1, seconds: 0.3, warmupSeconds: 0, maxRequests: 20 });
              const counted = (await waypointCount(metricsUrl)) - before;
              if (r.errors === 0 && r.statuses['200'] === r.totalRequests && counted >= r.totalRequests) break;
              lastErr = `statuses ${JSON.stringify(r.statuses)}, errors ${r.errors} (${r.firstError ?? ''}), counted by the waypoint ${counted}`;
            } catch (err) {
              lastErr = err instanceof Error ? err.message : String(err);
            }
            if (Date.now() >= deadline - 1000) throw new Error(`requests do not pass through the waypoint: ${lastErr}`);
            await new Promise((r) => setTimeout(r, 1000));
          }
          versions.waypoint = `pod ${wp.name} on ${wp.node}`;
          ctx.progress(`waypoint ${wp.name} on ${wp.node} routes requests`);
          waypointThrough = { counted: -(await waypointCount(metricsUrl)), sent: 0 };
          targets.waypoint.metricsUrl = metricsUrl;
        } catch (err) {
          delete targets.waypoint;
          errors.waypoint = err instanceof Error ? err.message : String(err);
          ctx.progress(`waypoint path pending: ${errors.waypoint}`);
        }
      }

      const active = ORDER.filter((p) => targets[p] !== undefined);
      // Idle CPU of each proxy (no requests), so a per-request figure dominated by background work shows.
      const idle0 = new Map(active.map((p) => [p, sumCpu(targets[p]!.pids())] as const));
      const idleT0 = performance.now();
      await new Promise((r) => setTimeout(r, IDLE_MS));
      for (const p of active) {
        const a = idle0.get(p);
        const b = sumCpu(targets[p]!.pids());
        if (targets[p]!.pids().length > 0 && a !== undefined && b !== undefined) idleShare[p] = ((b - a) / ((performance.now() - idleT0) / 1000)) * 100;
      }
      for (let round = 1; round <= plan.rounds; round++) {
        for (const p of active) {
          const t = targets[p]!;
          ctx.progress(`http ${p}${plan.rounds > 1 ? ` (round ${round}/${plan.rounds})` : ''}`);
          const pids = t.pids();
          const own = t.ownPids?.() ?? [];
          const c0 = sumCpu(pids);
          const o0 = sumCpu(own);
          let load: L7LoadResult;
          try {
            load = await httpLoad(mesh, t, plan);
          } catch (err) {
            errors[p] ??= err instanceof Error ? err.message : String(err);
            ctx.progress(`${p}: ${errors[p]}`);
            continue;
          }
          const c1 = sumCpu(pids);
          const o1 = sumCpu(own);
          const run: Run = { load };
          if (pids.length > 0 && c0 !== undefined && c1 !== undefined) run.cpu = c1 - c0;
          if (own.length > 0 && o0 !== undefined && o1 !== undefined) run.cpuOwn = o1 - o0;
          (runs[p] ??= []).push(run);
          if (p === 'waypoint' && waypointThrough) waypointThrough.sent += load.totalRequests;
          if (load.errors > 0) notes.push(`${p} round ${round}: ${load.errors} errors (${load.firstError ?? '?'})`);
        }
      }
      const url = targets.waypoint?.metricsUrl;
      if (waypointThrough && url) waypointThrough.counted += await waypointCount(url);
    } finally {
      for (const p of proxies) await stopProxy(p);
      rmSync(dir, { recursive: true, force: true });
    }

    const med = (p: L7Path, f: (r: Run) => number | undefined): number | undefined => median((runs[p] ?? []).map(f).filter((x): x is number => x !== undefined));
    const row = (f: (p: L7Path) => number | undefined, only?: L7Path[]): Partial<Record<string, number>> =>
      Object.fromEntries(ORDER.filter((p) => !only || only.includes(p)).flatMap((p) => {
        const v = f(p);
        return v === undefined ? [] : [[p, v]];
      }));
    const rps = (p: L7Path): number | undefined => med(p, (r) => r.load.reqPerSec);
    const p50 = (p: L7Path): number | undefined => med(p, (r) => r.load.p50Us);
    const added = (p: L7Path): number | undefined => {
      const a = p50(p);
      const d = p50('direct');
      return a !== undefined && d !== undefined ? a - d : undefined;
    };
    const cpuPerReq = (p: L7Path): number | undefined => med(p, (r) => (r.cpu !== undefined && r.load.totalRequests > 0 ? (r.cpu / r.load.totalRequests) * 1e6 : undefined));
    const ownPerReq = (p: L7Path): number | undefined => med(p, (r) => (r.cpuOwn !== undefined && r.load.totalRequests > 0 ? (r.cpuOwn / r.load.totalRequests) * 1e6 : undefined));
    const cpuShare = (p: L7Path): number | undefined => med(p, (r) => (r.cpu !== undefined && r.load.totalSeconds > 0 ? (r.cpu / r.load.totalSeconds) * 100 : undefined));

    const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
    const metrics: Metric[] = [
      { key: 'rps', label: `requests/s, ${plan.connections} keep-alive conns`, unit: 'req/s', digits: 0, values: row(rps) },
      { key: 'p50', label: 'latency p50', unit: 'µs', digits: 0, values: row(p50) },
      { key: 'p99', label: 'latency p99', unit: 'µs', digits: 0, values: row((p) => med(p, (r) => r.load.p99Us)) },
      { key: 'addedP50', label: 'added p50 vs direct', unit: 'µs', digits: 0, values: row(added, ['haproxy', 'nginx', 'node', 'waypoint']) },
      { key: 'cpuPerReq', label: 'proxy CPU per request (Ambit: waypoint + 2 agents)', unit: 'µs', digits: 1, values: row(cpuPerReq, ['haproxy', 'nginx', 'node', 'waypoint']) },
      { key: 'cpuPerReqWaypoint', label: 'proxy CPU per request, waypoint process only', unit: 'µs', digits: 1, values: row(ownPerReq, ['waypoint']) },
      { key: 'cpuShare', label: 'proxy CPU during the run', unit: '% of a core', digits: 0, values: row(cpuShare, ['haproxy', 'nginx', 'node', 'waypoint']) },
      { key: 'cpuIdle', label: `proxy CPU idle (no requests, ${IDLE_MS / 1000} s)`, unit: '% of a core', digits: 1, values: row((p) => idleShare[p], ['haproxy', 'nginx', 'node', 'waypoint']) },
      {
        key: 'cpuOverHaproxy',
        label: "proxy CPU per request ÷ haproxy's (Ambit: waypoint alone)",
        unit: '×',
        digits: 2,
        values: row((p) => ratio(p === 'waypoint' ? ownPerReq(p) : cpuPerReq(p), cpuPerReq('haproxy')), ['nginx', 'node', 'waypoint']),
      },
      { key: 'errors', label: 'errors (all rounds)', unit: 'count', digits: 0, values: row((p) => (runs[p] ? runs[p]!.reduce((a, r) => a + r.load.errors, 0) : undefined)) },
    ];

    const why = errors.waypoint ? `waypoint: ${errors.waypoint.split('\n')[0]!.slice(0, 160)}` : errors.haproxy ? `haproxy: ${errors.haproxy.split('\n')[0]!.slice(0, 160)}` : 'not measured';
    const hAdded = added('haproxy');
    const checks: Check[] = [
      // Issue 10's targets: requests/s ≥ 0.4× haproxy's, CPU per request ≤ 2.5× (waypoint alone) and ≤ 4× (with both agents).
      evaluate('requests/s waypoint/haproxy', ratio(rps('waypoint'), rps('haproxy')), '>=', 0.4, '×', 2, why),
      evaluate('CPU/request (waypoint + agents)/haproxy', ratio(cpuPerReq('waypoint'), cpuPerReq('haproxy')), '<=', 4, '×', 2, why),
      evaluate('CPU/request (waypoint alone)/haproxy', ratio(ownPerReq('waypoint'), cpuPerReq('haproxy')), '<=', 2.5, '×', 2, why),
      evaluate('added p50 waypoint vs 2× haproxy', added('waypoint'), '<=', hAdded === undefined ? undefined : 2 * Math.max(0, hAdded), 'µs', 0, why),
    ];
    if (waypointThrough && waypointThrough.sent > 0 && waypointThrough.counted < waypointThrough.sent) {
      notes.push(`the waypoint counted ${waypointThrough.counted} of ${waypointThrough.sent} requests sent on its path`);
    }

    return {
      name: 'l7',
      title: 'L7: HTTP/1.1 client pod (node1) → http-echo pod (node2)',
      columns: ORDER.map((p) => ({ key: p, label: LABELS[p] })),
      metrics,
      checks,
      details: { plan, versions, errors, notes, waypointThrough, idleCpuPercent: idleShare, runs },
    };
  },
};
