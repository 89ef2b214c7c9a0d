/**
 * The shipped Grafana dashboards (daemonset/monitoring/dashboards/) are well formed and read only
 * metrics Ambit exports: every metric name in every PromQL expression and variable query is
 * registered by some component's registry. (test/netns/telemetry.test.ts evaluates the same
 * expressions in a real Prometheus against a running mesh.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../helpers/local-mesh.js';
import { createRegistry, type Registry } from '../../../src/shared/metrics.js';
import { createProxyMetrics } from '../../../src/agent/proxy/metrics.js';
import { createDnsMetrics } from '../../../src/agent/dns/metrics.js';
import { registerNodeMetrics } from '../../../src/agent/node-metrics.js';
import { createWaypointMetrics } from '../../../src/waypoint/metrics.js';
import { createIstioTcpMetrics } from '../../../src/shared/istio-metrics.js';
import { createConfigClientMetrics } from '../../../src/shared/xds/metrics.js';
import { createConfigServerMetrics } from '../../../src/controller/xds/metrics.js';
import { CertManager } from '../../../src/shared/certs/cert-manager.js';

interface Dashboard {
  uid: string;
  title: string;
  templating: { list: Array<{ name: string; type: string; query?: { query: string } | string }> };
  panels: Array<{ id: number; type: string; title: string; datasource?: { uid: string }; gridPos: { x: number; y: number; w: number; h: number }; targets?: Array<{ refId: string; expr: string }> }>;
}

const DIR = join(repoRoot, 'daemonset/monitoring/dashboards');

function dashboards(): Dashboard[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(DIR, f), 'utf8')) as Dashboard);
}

/** Every metric name some Ambit registry exports (histograms with their series suffixes). */
async function exportedNames(): Promise<Set<string>> {
  const registries: Registry[] = [];
  const add = (fill: (r: Registry) => void): void => {
    const r = createRegistry();
    fill(r);
    registries.push(r);
  };
  registries.push(createRegistry({ processMetrics: true, build: { component: 'ztunnel', tag: 't' } }));
  add((r) => {
    createProxyMetrics(r);
    createConfigClientMetrics(r);
    createDnsMetrics(r);
    registerNodeMetrics(r, { startedAtMs: 0, captureMode: 'bpf', statuses: () => [], configVersions: () => new Map() });
    new CertManager({ registry: r, fetcher: { fetchCertificate: () => Promise.reject(new Error('unused')) } });
  });
  add((r) => {
    createWaypointMetrics(r);
    createIstioTcpMetrics(r);
  });
  add((r) => createConfigServerMetrics(r));
  const names = new Set<string>();
  for (const r of registries) {
    for (const m of await r.getMetricsAsJSON()) {
      names.add(m.name);
      if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
    }
  }
  return names;
}

const PROMQL_WORDS = new Set(['sum', 'by', 'rate', 'irate', 'round', 'max', 'min', 'or', 'vector', 'histogram_quantile', 'label_values', 'without', 'on', 'ignoring', 'le', 'and', 'unless', 'count', 'label_replace', 'query_result']);

/** Identifiers of an expression that are metric names (not functions, keywords, labels or strings). */
function metricNames(expr: string): string[] {
  // label_values(selector, label): the last argument is a label name.
  const noStrings = expr.replace(/^label_values\((.*), *[a-z_]+\)$/, '$1').replace(/\[[^\]]*\]/g, '').replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '{}').replace(/\((?:[a-z_, ]*)\)/g, (m) => (/^\(([a-z_]+(, *)?)+\)$/.test(m) ? '()' : m));
  const out: string[] = [];
  for (const m of noStrings.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)/g)) {
    const w = m[1]!;
    if (PROMQL_WORDS.has(w) || /^\d/.test(w)) continue;
    out.push(w);
  }
  return out;
}

test('five dashboards, unique uids, panels on the datasource variable, every panel with PromQL', () => {
  const ds = dashboards();
  assert.deepEqual(ds.map((d) => d.uid), ['ambit-agent', 'ambit-mesh', 'ambit-service', 'ambit-waypoint', 'ambit-workload']);
  for (const d of ds) {
    assert.equal(d.templating.list[0]?.name, 'datasource', `${d.uid}: the first variable picks the Prometheus data source`);
    const ids = new Set<number>();
    for (const p of d.panels) {
      assert.ok(!ids.has(p.id), `${d.uid}: panel id ${p.id} is unique`);
      ids.add(p.id);
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${d.uid}/${p.title} fits the grid`);
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, '${datasource}', `${d.uid}/${p.title} uses the datasource variable`);
      assert.ok((p.targets ?? []).length > 0, `${d.uid}/${p.title} has queries`);
      for (const t of p.targets!) assert.ok(t.expr.trim().length > 0 && t.refId, `${d.uid}/${p.title} ${t.refId}`);
    }
  }
});

test('every metric a dashboard reads is one Ambit exports', async () => {
  const exported = await exportedNames();
  const missing: string[] = [];
  for (const d of dashboards()) {
    const exprs = [
      ...d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `${d.uid}/${p.title}`, expr: t.expr }))),
      ...d.templating.list.filter((v) => v.type === 'query').map((v) => ({ where: `${d.uid}/$${v.name}`, expr: typeof v.query === 'string' ? v.query : v.query!.query })),
    ];
    for (const { where, expr } of exprs) {
      const alternatives = /__name__=~"([^"]+)"/.exec(expr)?.[1]?.split('|') ?? [];
      for (const name of [...metricNames(expr), ...alternatives]) if (!exported.has(name)) missing.push(`${where}: ${name}`);
    }
  }
  assert.deepEqual(missing, []);
  assert.ok(exported.has('istio_build') && exported.has('process_resident_memory_bytes') && exported.has('pilot_xds'), 'the registries were really built');
});
