/**
 * Telemetry end to end in `ambit local`: mixed HTTP (through a waypoint, with L7 denials) and TCP
 * (carried through the waypoint, and a refused direct dial) traffic; every `istio_*` series every
 * component exports is checked against the one label table (src/shared/istio-metrics.ts), the
 * same workload is labelled alike by every reporter; then a real Prometheus, configured from the
 * shipped scrape config (daemonset/monitoring/prometheus.yml, Kubernetes discovery swapped for
 * file discovery carrying the same pod metadata), scrapes the mesh and every PromQL expression of
 * every shipped dashboard (daemonset/monitoring/dashboards/) is evaluated: each panel that this
 * traffic should fill returns data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, isRoot, metricSum, repoRoot, waitFor } from '../helpers/local-mesh.js';
import { startWaypointMesh } from './waypoint-mesh.js';
import { ISTIO_METRIC_LABELS } from '../../src/shared/istio-metrics.js';

const fx = (f: string): string => join(repoRoot, 'test/fixtures/waypoint-e2e', f);
const skip = isRoot() ? false : 'requires root (network namespaces, BPF, nftables)';
const hasPrometheus = spawnSync('prometheus', ['--version']).status === 0;
const URL = 'http://reviews:9080/reviews/1';
const REVIEWS = 'reviews.bookinfo.svc.cluster.local';
const ECHO = 'echo.bookinfo.svc.cluster.local';

/**
 * Panels a healthy run may leave empty (nothing retried, timed out, or reconnected; local mode's
 * pods resolve through their hosts file and loopback, which DNS capture leaves alone).
 */
const EMPTY_BY_DESIGN = new Set(['ambit-agent/xDS stream terminations', 'ambit-waypoint/Resilience', 'ambit-agent/DNS requests', 'ambit-agent/DNS upstream']);

/** Variable bindings each dashboard is evaluated with (each value must be offered by the dashboard's own variable query). */
const BINDINGS: Record<string, Array<Record<string, string>>> = {
  'ambit-service': [{ service: REVIEWS }, { service: ECHO }],
  'ambit-workload': [
    { namespace: 'bookinfo', workload: 'reviews-v1' },
    { namespace: 'bookinfo', workload: 'client' },
  ],
};

interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every sample of a text exposition. */
function parseMetrics(text: string): Series[] {
  const out: Series[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const brace = line.indexOf('{');
    const end = line.lastIndexOf('}');
    const name = brace < 0 ? line.slice(0, line.indexOf(' ')) : line.slice(0, brace);
    const labels: Record<string, string> = {};
    if (brace >= 0) for (const m of line.slice(brace + 1, end).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!;
    out.push({ name, labels, value: Number(line.slice(line.lastIndexOf(' ') + 1)) });
  }
  return out;
}

/** The family a sample belongs to (a histogram's _bucket/_sum/_count are its family's). */
function familyOf(name: string): string {
  for (const suffix of ['_bucket', '_sum', '_count']) if (name.endsWith(suffix) && ISTIO_METRIC_LABELS[name.slice(0, -suffix.length)]) return name.slice(0, -suffix.length);
  return name;
}

interface Dashboard {
  uid: string;
  title: string;
  templating: { list: Array<{ name: string; type: string; query?: { query: string }; regex?: string }> };
  panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>;
}

function loadDashboards(): Dashboard[] {
  const dir = join(repoRoot, 'daemonset/monitoring/dashboards');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Dashboard);
}

function substitute(expr: string, vars: Record<string, string>): string {
  return expr.replace(/\$__rate_interval/g, '1m').replace(/\$([a-z_]+)/g, (whole, v: string) => vars[v] ?? whole);
}

test('telemetry: Istio label sets on real /metrics, and every dashboard panel filled in a real Prometheus', { skip: skip || (hasPrometheus ? false : 'prometheus is not installed (Debian package prometheus)'), timeout: 600_000 }, async (t) => {
  const m = await startWaypointMesh(t, 'tt', [fx('app.yaml')], 'bookinfo');
  const st = await m.status();
  const wp = st.pods.find((p) => p.namespace === 'bookinfo' && p.name.startsWith('waypoint-'));
  assert.ok(wp, 'a waypoint pod runs');
  const v1 = st.pods.find((p) => p.name.startsWith('reviews-v1-'))!;
  const controllerMetrics = `http://${st.controller.slice(0, st.controller.lastIndexOf(':'))}:15014/metrics`;
  // Both versions get requests before Prometheus starts: a series the load below creates would
  // have no sample before the load, and rate() over it would be 0 (the split is random, so three
  // requests all went to one version now and then).
  await waitFor('requests through the waypoint to both reviews versions', async () => {
    await m.load([URL, '3', '1']);
    const text = await fetch(`http://${wp.ip}:15020/metrics`).then((r) => r.text()).catch(() => '');
    const to = (w: string): number => metricSum(text, 'istio_requests_total', { reporter: 'waypoint', destination_workload: w });
    return to('reviews-v1') > 0 && to('reviews-v2') > 0 ? true : undefined;
  });

  // Prometheus from the shipped config: each job's Kubernetes discovery becomes file discovery
  // of targets carrying the pod metadata Kubernetes discovery would give these pods.
  const dir = mkdtempSync(join(tmpdir(), 'ambit-telemetry-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const meta = (addr: string, pod: { name: string; namespace: string; node: string; port: string; labels: Record<string, string> }) => ({
    targets: [addr],
    labels: {
      __meta_kubernetes_namespace: pod.namespace,
      __meta_kubernetes_pod_name: pod.name,
      __meta_kubernetes_pod_node_name: pod.node,
      __meta_kubernetes_pod_container_port_number: pod.port,
      ...Object.fromEntries(Object.entries(pod.labels).flatMap(([k, v]) => {
        const key = k.replace(/[^a-zA-Z0-9_]/g, '_');
        return [[`__meta_kubernetes_pod_label_${key}`, v], [`__meta_kubernetes_pod_labelpresent_${key}`, 'true']];
      })),
    },
  });
  const wpNode = st.pods.find((p) => p.name === wp.name)?.node ?? '';
  const groups: Record<string, unknown[]> = {
    'ambit-agent': st.nodes.map((n) => meta(`${n.ip}:15020`, { name: `ambit-agent-${n.name}`, namespace: 'istio-system', node: n.name, port: '15020', labels: { 'app.kubernetes.io/name': 'ambit-agent' } })),
    'ambit-waypoint': [meta(`${wp.ip}:15020`, { name: wp.name, namespace: 'bookinfo', node: wpNode, port: '15020', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } })],
    'ambit-controller': [meta(controllerMetrics.slice('http://'.length, -'/metrics'.length), { name: 'ambit-controller-0', namespace: 'istio-system', node: '', port: '15014', labels: { 'app.kubernetes.io/name': 'ambit-controller' } })],
  };
  let config = readFileSync(join(repoRoot, 'daemonset/monitoring/prometheus.yml'), 'utf8').replace(/scrape_interval: 15s/, 'scrape_interval: 1s');
  for (const job of Object.keys(groups)) {
    writeFileSync(join(dir, `${job}.json`), JSON.stringify(groups[job]));
  }
  let jobIndex = 0;
  config = config.replace(/kubernetes_sd_configs:\n\s+- role: pod/g, () => {
    const job = ['ambit-agent', 'ambit-waypoint', 'ambit-controller'][jobIndex++]!;
    return `file_sd_configs:\n      - files: ['${join(dir, `${job}.json`)}']`;
  });
  assert.equal(jobIndex, 3, 'the shipped config has the three jobs');
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const check = spawnSync('promtool', ['check', 'config', join(dir, 'prometheus.yml')], { encoding: 'utf8' });
  assert.equal(check.status, 0, `promtool accepts the scrape config: ${check.stdout} ${check.stderr}`);
  const port = await freePort();
  const prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
  t.after(() => {
    if (prom.exitCode === null) prom.kill('SIGKILL');
  });
  const api = async <T>(path: string): Promise<T | undefined> => {
    const r = await fetch(`http://127.0.0.1:${port}${path}`).catch(() => undefined);
    if (!r?.ok) return undefined;
    return ((await r.json()) as { data: T }).data;
  };
  const query = async (q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> => (await api<{ result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(`/api/v1/query?query=${encodeURIComponent(q)}`))?.result ?? [];
  await waitFor('every target up, labelled by the relabel rules', async () => {
    const up = await query('up == 1');
    const jobs = new Set(up.map((s) => `${s.metric['job']}/${s.metric['pod']}/${s.metric['namespace']}`));
    return up.length === st.nodes.length + 2 && up.every((s) => s.metric['pod'] && s.metric['namespace']) ? jobs : undefined;
  }, 60_000);

  // Mixed traffic while Prometheus scrapes.
  const ok = await m.load([URL, '400', '4']);
  assert.equal(ok.statuses['200'], 400, JSON.stringify(ok));
  const denied = await m.load(['http://reviews:9080/admin/x', '10', '2']);
  assert.deepEqual(denied.statuses, { '403': 10 }, JSON.stringify(denied));
  for (let i = 0; i < 5; i++) {
    const marker = `telemetry-${process.pid}-${i}`;
    const r = await m.exec([process.execPath, join(repoRoot, 'dist/test/helpers/netload.js'), 'send', 'echo', '9000', marker]);
    assert.equal((JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { reply?: string }).reply, marker, `${r.stdout} ${r.stderr}`);
  }
  const direct = await m.exec(['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${v1.ip}:9080/direct`]);
  assert.ok(direct.code !== 0 || direct.stdout.trim() === '000', 'a direct dial to a waypoint-bound pod is refused');

  const endpoints = [...st.nodes.map((n) => n.metrics), `http://${wp.ip}:15020/metrics`, controllerMetrics];
  const scraped = await waitFor('the refused direct dial and the TCP echoes in the agents\' metrics', async () => {
    const all = await Promise.all(endpoints.map(async (u) => ({ url: u, series: parseMetrics(await fetch(u).then((r) => r.text())) })));
    const agents = all.slice(0, st.nodes.length).flatMap((e) => e.series);
    const deniedConn = agents.some((s) => s.name === 'istio_tcp_connections_closed_total' && s.labels['reporter'] === 'destination' && s.labels['response_flags'] === 'DENY');
    const echoed = agents.filter((s) => s.name === 'istio_tcp_connections_closed_total' && s.labels['reporter'] === 'destination' && s.labels['destination_service'] === ECHO).reduce((n, s) => n + s.value, 0);
    return deniedConn && echoed >= 5 ? all : undefined;
  });

  await t.test('every istio_* series carries exactly the label set of the table', () => {
    let checked = 0;
    for (const { url, series } of scraped) {
      for (const s of series) {
        if (!s.name.startsWith('istio_')) continue;
        const family = familyOf(s.name);
        const want = ISTIO_METRIC_LABELS[family];
        assert.ok(want, `${url}: ${s.name} is in the label table`);
        const names = Object.keys(s.labels).filter((l) => !(l === 'le' && s.name.endsWith('_bucket')));
        assert.deepEqual(names.sort(), [...want].sort(), `${url}: labels of ${s.name}`);
        checked++;
      }
    }
    assert.ok(checked > 50, `series checked: ${checked}`);
    const components = scraped.flatMap((e) => e.series).filter((s) => s.name === 'istio_build').map((s) => s.labels['component']);
    assert.deepEqual([...new Set(components)].sort(), ['pilot', 'proxy', 'ztunnel']);
  });

  await t.test('every reporter labels the same workload and cluster alike; no label is an address', () => {
    const all = scraped.flatMap((e) => e.series).filter((s) => s.name.startsWith('istio_') && s.labels['reporter']);
    for (const s of all) {
      for (const side of ['source', 'destination']) assert.ok(['Kubernetes', 'unknown'].includes(s.labels[`${side}_cluster`]!), `${s.name} ${side}_cluster=${s.labels[`${side}_cluster`]}`);
      assert.doesNotMatch(s.labels['destination_service_name'] ?? '', /^\d+$/, `${s.name}: no destination_service_name made of an address`);
    }
    // The waypoint is `waypoint` wherever it is named: as the client of the destination agents,
    // and those agents name the Service it called (not "unknown").
    const fromWaypoint = all.filter((s) => s.name === 'istio_tcp_connections_opened_total' && s.labels['reporter'] === 'destination' && s.labels['source_principal'] === 'spiffe://cluster.local/ns/bookinfo/sa/waypoint');
    assert.ok(fromWaypoint.length > 0, 'destination agents count the waypoint\'s connections');
    for (const s of fromWaypoint) {
      assert.equal(s.labels['source_workload'], 'waypoint');
      assert.equal(s.labels['source_canonical_service'], 'waypoint');
      assert.ok([REVIEWS, ECHO].includes(s.labels['destination_service']!), `waypoint->pod connection names its Service: ${s.labels['destination_service']}`);
      assert.equal(s.labels['connection_security_policy'], 'mutual_tls');
      assert.equal(s.labels['source_cluster'], 'Kubernetes');
    }
    // reviews-v1 as the waypoint sees it (its endpoint) and as its own agent sees it.
    const byWaypoint = all.find((s) => s.name === 'istio_requests_total' && s.labels['reporter'] === 'waypoint' && s.labels['destination_workload'] === 'reviews-v1');
    const byAgent = fromWaypoint.find((s) => s.labels['destination_workload'] === 'reviews-v1');
    assert.ok(byWaypoint && byAgent, 'both reporters saw reviews-v1');
    for (const l of ['destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version', 'destination_canonical_service', 'destination_canonical_revision', 'destination_cluster', 'destination_service', 'destination_service_name', 'destination_service_namespace']) {
      assert.equal(byWaypoint.labels[l], byAgent.labels[l], l);
    }
    // The client as the waypoint names it and as its own agent names it.
    const clientAtWaypoint = all.find((s) => s.name === 'istio_requests_total' && s.labels['source_workload'] === 'client');
    const clientAtAgent = all.find((s) => s.name === 'istio_tcp_connections_opened_total' && s.labels['reporter'] === 'source' && s.labels['source_workload'] === 'client');
    assert.ok(clientAtWaypoint && clientAtAgent, 'both reporters saw the client');
    for (const l of ['source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version', 'source_canonical_service', 'source_canonical_revision', 'source_cluster']) {
      assert.equal(clientAtWaypoint.labels[l], clientAtAgent.labels[l], l);
    }
  });

  // rate() needs two samples of a series in its window, and series the traffic created (denials,
  // say) only start with it: wait for two successful scrapes of every target after the traffic
  // (a fixed pause was not enough when the machine was busy and scrapes timed out).
  const scrapedAfter = async (at: number): Promise<number> =>
    waitFor('a successful scrape of every target after the traffic', async () => {
      // timestamp() of a selector is the sample's (of an expression it would be the query's).
      const r = await query(`(timestamp(up) > ${(at + 0.5).toFixed(3)}) and (up == 1)`);
      return r.length === st.nodes.length + 2 ? Math.max(...r.map((x) => Number(x.value[1]))) : undefined;
    }, 60_000);
  await scrapedAfter(await scrapedAfter(Date.now() / 1000));

  await t.test('every PromQL expression of every shipped dashboard evaluates; panels the traffic fills have data', async () => {
    /** What Grafana offers for a variable: label_values(selector, label), or query_result(expr) through the variable's regex. */
    const variableValues = async (q: string, regex: string, b: Record<string, string>): Promise<string[]> => {
      const lv = /^label_values\((.*), *([a-z_]+)\)$/.exec(q);
      if (lv) return (await api<string[]>(`/api/v1/label/${lv[2]}/values?match[]=${encodeURIComponent(substitute(lv[1]!, b))}`)) ?? [];
      const qr = /^query_result\((.*)\)$/.exec(q);
      assert.ok(qr && regex.startsWith('/'), `variable query ${q} is label_values or query_result with a regex`);
      const re = new RegExp(regex.slice(1, regex.lastIndexOf('/')));
      const rows = await query(substitute(qr[1]!, b));
      return rows.map((r) => re.exec(`{${Object.entries(r.metric).map(([k, val]) => `${k}="${val}"`).join(',')}}`)?.[1]).filter((x): x is string => x !== undefined);
    };
    const dashboards = loadDashboards();
    assert.deepEqual(dashboards.map((d) => d.uid), ['ambit-agent', 'ambit-mesh', 'ambit-service', 'ambit-waypoint', 'ambit-workload']);
    const problems: string[] = [];
    for (const d of dashboards) {
      const bindings = BINDINGS[d.uid] ?? [{}];
      // Each bound value is one the dashboard's variable query offers.
      for (const v of d.templating.list.filter((x) => x.type === 'query')) {
        for (const b of bindings) {
          const values = await variableValues(v.query!.query, v.regex ?? '', b);
          if (!values.includes(b[v.name]!)) problems.push(`${d.uid}: variable ${v.name} offers ${JSON.stringify(values)}, not ${b[v.name]}`);
        }
      }
      for (const p of d.panels.filter((x) => x.type !== 'row')) {
        let filled = false;
        for (const target of p.targets ?? []) {
          for (const b of bindings) {
            const expr = substitute(target.expr, b);
            const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`);
            const body = (await r.json()) as { status: string; error?: string; data?: { result: Array<{ value: [number, string] }> } };
            if (body.status !== 'success') {
              problems.push(`${d.uid}/${p.title}: ${expr}: ${body.error}`);
              continue;
            }
            if ((body.data?.result ?? []).some((s) => Number.isFinite(Number(s.value[1])))) filled = true;
          }
        }
        const key = `${d.uid}/${p.title}`;
        if (!filled && !EMPTY_BY_DESIGN.has(key)) problems.push(`${key}: no data`);
      }
    }
    assert.deepEqual(problems, []);
  });
});
