/**
 * The agent's data path on worker threads (AMBIT_WORKERS, docs/design.md decision 46) with real
 * BPF capture in real namespaces:
 * - SO_REUSEPORT listeners per worker: connections steered by sk_lookup to 15006, redirected to
 *   15001, and tunnels to 15008 are spread over both workers (the kernel's reuseport selection
 *   applies after sk_lookup assigns one member of the group);
 * - /metrics merges the workers' counters: its totals equal the per-worker sums, with the metric
 *   names and labels of a one-thread agent;
 * - a config change reaches every worker before applyConfig resolves (a policy denies on both);
 * - the same spread with nft capture (REDIRECT is an ordinary socket lookup);
 * - a killed agent leaves its pods refused both ways (fail closed), workers or not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createRegistry } from '../../src/shared/metrics.js';
import { emptyMatch, type Authorization } from '../../src/shared/model.js';
import { TRAFFIC_LABELS, createProxyMetrics } from '../../src/agent/proxy/metrics.js';
import type { Agent } from '../../src/agent/agent.js';
import type { DataPathCounters } from '../../src/agent/datapath.js';
import { testWorkload } from '../helpers/loopback-net.js';
import { silentLogger } from '../../src/shared/log.js';
import { NftCapture } from '../../src/agent/capture/nft.js';
import { bpfSkipReason, captureTest, dialFrom, nftSkipReason, outcome, startApps, type Pod } from './fixture.js';
import { snapshot, startWorkerAgent } from './worker-agent.js';

const skip = bpfSkipReason();
const nftSkip = nftSkipReason();
const stubJs = fileURLToPath(new URL('./worker-agent-stub.js', import.meta.url));
const DIALS = 24;

async function get(port: number, path: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  assert.equal(res.status, 200, `${path}: ${res.status === 200 ? "" : await res.clone().text()}`);
  return res.text();
}

async function workerCounters(adminPort: number): Promise<DataPathCounters[]> {
  return (JSON.parse(await get(adminPort, '/debug/connections')) as { workers: DataPathCounters[] }).workers.sort((x, y) => x.worker - y.worker);
}

/** Sum of a metric's samples in Prometheus text. */
function total(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

function familyNames(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('# TYPE '))
    .map((l) => l.split(' ').slice(2).join(' '))
    .sort();
}

/** `n` dials, one at a time; every answer must equal `expected`. */
async function dialMany(n: number, dial: () => Promise<string>, expected: string): Promise<void> {
  for (let i = 0; i < n; i++) assert.equal(await dial(), expected, `dial ${i}`);
}

async function startAdmin(agent: Agent): Promise<{ metrics: number; admin: number }> {
  const local = { host: '127.0.0.1', port: 0 };
  const a = await agent.startAdmin({ metrics: local, ready: local, admin: local });
  return { metrics: a.metrics.port, admin: a.admin.port };
}

test('two workers: connections steered by sk_lookup (15006) and redirected to 15001 are spread over both, tunnels through 15008 work from either; /metrics is their sum; a policy change denies on both', { skip }, async (t) => {
  const { fx, servers, openBpf, own } = captureTest(t, 'w', 2);
  const [a, b] = fx.pods as [Pod, Pod];
  const hits = startApps([a, b], servers);
  const capture = await openBpf();
  // No same-node fast path: a -> b crosses b's 15008 like a connection from another node.
  const { agent, registry, exits } = startWorkerAgent(capture, { workers: 2, sameNodeFastPath: false });
  own({ uninstall: () => agent.close(200) });
  const ports = await startAdmin(agent);
  const wa = testWorkload({ name: 'client', namespace: 'demo', ip: a.ip, netns: a.netnsPath });
  const wb = testWorkload({ name: 'server', namespace: 'other', ip: b.ip, netns: b.netnsPath });
  await agent.applyConfig(snapshot([wa]));
  assert.equal(agent.statusProvider()[0]?.captured, true);
  let before = await workerCounters(ports.admin);
  assert.equal(before.length, 2, 'two workers report');
  assert.notEqual(before[0]!.threadId, before[1]!.threadId);
  assert.ok(before.every((w) => w.pods === 1), 'every worker serves the enrolled pod');
  // Each worker is an isolate of its own: its heap is reported, and is not the main thread's.
  const heaps = before.map((w) => w.heap);
  assert.ok(heaps.every((h) => h.usedBytes > 0 && h.totalBytes >= h.usedBytes), `every worker reports its heap (${JSON.stringify(heaps)})`);

  const spread = async (what: string, run: () => Promise<void>): Promise<void> => {
    await run();
    const after = await workerCounters(ports.admin);
    const served = after.map((w, i) => w.connectionsOpened - before[i]!.connectionsOpened);
    assert.ok(
      served.every((n) => n > 0),
      `${what}: both workers served connections (per worker: ${served.join(', ')})`,
    );
    before = after;
  };

  await spread('inbound plaintext, steered by sk_lookup to the 15006 group', () => dialMany(DIALS, () => dialFrom(b.netnsPath, a.ip, 8080), `app ${a.name} from ${b.ip}`));
  await spread('outbound, redirected to the 15001 group', () => dialMany(DIALS, () => dialFrom(a.netnsPath, b.ip, 8080), `app ${b.name} from ${a.ip}`));

  await agent.applyConfig(snapshot([wa, wb]));
  assert.ok(agent.statusProvider().every((s) => s.captured));
  await spread('outbound from a and HBONE into b (15008 group), source kept', () => dialMany(DIALS, () => dialFrom(a.netnsPath, b.ip, 8080), `app ${b.name} from ${a.ip}`));

  await t.test('/metrics totals equal the per-worker sums; names and labels are those of a one-thread agent', async () => {
    const text = await get(ports.metrics, '/metrics');
    const counters = await workerCounters(ports.admin);
    const opened = counters.reduce((n, w) => n + w.connectionsOpened, 0);
    assert.equal(total(text, 'istio_tcp_connections_opened_total'), opened);
    assert.ok(opened >= 4 * DIALS, `every connection counted (${opened})`);
    assert.ok(total(text, 'istio_tcp_sent_bytes_total') > 0);
    const oneThread = createRegistry();
    createProxyMetrics(oneThread);
    const expected = [...new Set([...familyNames(await registry.metrics()), ...familyNames(await oneThread.metrics())])].sort();
    assert.deepEqual(familyNames(text), expected);
    const labelLine = text.split('\n').find((l) => l.startsWith('istio_tcp_connections_opened_total{'))!;
    const keys = [...labelLine.matchAll(/([a-z_]+)="/g)].map((m) => m[1]).sort();
    assert.deepEqual(keys, [...TRAFFIC_LABELS].sort());
  });

  await t.test('a policy change reaches every worker before applyConfig resolves: denied on both', async () => {
    const deny: Authorization = {
      name: 'deny-b',
      namespace: 'demo',
      scope: 'namespace',
      action: 'DENY',
      dryRun: false,
      rules: [{ clauses: [{ matches: [emptyMatch({ sourceIps: [`${b.ip}/32`] })] }] }],
    };
    // b leaves the mesh (its pod is unenrolled on every worker): its connects to a are plaintext, steered to 15006.
    await agent.applyConfig(snapshot([wa, { ...wb, tunnelProtocol: 'NONE' }], [deny]));
    assert.ok((await workerCounters(ports.admin)).every((w) => w.pods === 1), 'b is unenrolled on every worker');
    const appHits = hits.get(a.name);
    const denied = (await workerCounters(ports.admin)).map((w) => w.policyDenials);
    for (let i = 0; i < DIALS; i++) assert.doesNotMatch(await outcome(dialFrom(b.netnsPath, a.ip, 8080)), /^app /, `dial ${i} is denied`);
    assert.equal(hits.get(a.name), appHits, 'no denied connection reached the app');
    const after = (await workerCounters(ports.admin)).map((w, i) => w.policyDenials - denied[i]!);
    assert.ok(
      after.every((n) => n > 0),
      `both workers denied (per worker: ${after.join(', ')})`,
    );
    assert.equal(
      after.reduce((x, y) => x + y, 0),
      DIALS,
    );
  });
  assert.deepEqual(exits, [], 'no worker ended');
});

test('nft capture with two workers: connections redirected to 15006 and 15001 are spread over both', { skip: nftSkip }, async (t) => {
  const { fx, servers, own } = captureTest(t, 'q', 2);
  const [a, b] = fx.pods as [Pod, Pod];
  startApps([a, b], servers);
  const capture = own(new NftCapture({ log: silentLogger() }));
  const { agent, exits } = startWorkerAgent(capture, { workers: 2 });
  own({ uninstall: () => agent.close(200) });
  const ports = await startAdmin(agent);
  await agent.applyConfig(snapshot([testWorkload({ name: 'client', namespace: 'demo', ip: a.ip, netns: a.netnsPath })]));
  assert.equal(agent.statusProvider()[0]?.captured, true);
  for (const [what, dial, expected] of [
    ['inbound, REDIRECT to 15006', () => dialFrom(b.netnsPath, a.ip, 8080), `app ${a.name} from ${b.ip}`],
    ['outbound, REDIRECT to 15001', () => dialFrom(a.netnsPath, b.ip, 8080), `app ${b.name} from ${a.ip}`],
  ] as const) {
    const before = await workerCounters(ports.admin);
    await dialMany(DIALS, dial, expected);
    const served = (await workerCounters(ports.admin)).map((w, i) => w.connectionsOpened - before[i]!.connectionsOpened);
    assert.ok(
      served.every((n) => n > 0),
      `${what}: both workers served connections (per worker: ${served.join(', ')})`,
    );
  }
  assert.deepEqual(exits, []);
});

test('a killed agent with two workers leaves its pod refused both ways', { skip }, async (t) => {
  const { fx, servers, own } = captureTest(t, 'y', 2);
  const [a, b] = fx.pods as [Pod, Pod];
  const hits = startApps([a, b], servers);
  const arg = {
    cgroupPath: fx.cgroupPath,
    pinDir: `/sys/fs/bpf/${fx.prefix}`,
    workers: 2,
    pods: [{ name: 'client', namespace: 'demo', ip: a.ip, netns: a.netnsPath }],
  };
  const proc = spawn(process.execPath, [stubJs, JSON.stringify(arg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(proc, 'exit');
  own({
    uninstall: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const ready = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /ready (\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`agent exited ${code}: ${err}`)));
  });
  const workers = await workerCounters(Number(ready));
  assert.equal(workers.length, 2);
  assert.equal(await dialFrom(b.netnsPath, a.ip, 8080), `app ${a.name} from ${b.ip}`, 'captured inbound reaches the app');
  assert.equal(await dialFrom(a.netnsPath, b.ip, 8080), `app ${b.name} from ${a.ip}`, 'captured outbound reaches b');
  const reached = { a: hits.get(a.name)!, b: hits.get(b.name)! };

  proc.kill('SIGKILL');
  await exited;
  for (let i = 0; i < 10; i++) {
    assert.equal(await outcome(dialFrom(b.netnsPath, a.ip, 8080)), 'ECONNREFUSED', `inbound attempt ${i}`);
    assert.equal(await outcome(dialFrom(a.netnsPath, b.ip, 8080)), 'ECONNREFUSED', `outbound attempt ${i}`);
  }
  assert.deepEqual({ a: hits.get(a.name), b: hits.get(b.name) }, reached, 'nothing reached an app directly');
});
