/**
 * Agent config-to-workers micro-benchmark (no netns, no root): the agent's real WorkerDataPath
 * with `--workers` threads given a config of `--workloads` workloads and `--services` Services,
 * then `--changes` one-workload changes as the config client makes them (persistent maps, the
 * other resources the same objects). Per change: the main thread's time in setConfig, and the time
 * until every worker has applied it (a round trip queued behind the config message: while a worker
 * applies config, its connections wait).
 *   node dist/bench/agent-config-micro.js [--workloads 10000] [--services 1000] [--workers 2] [--changes 20]
 * Prints one JSON line. Bounded: its changes, or 120 s.
 */
import { parseArgs } from 'node:util';
import { silentLogger } from '../src/shared/log.js';
import { createRegistry } from '../src/shared/metrics.js';
import type { Service, Workload } from '../src/shared/model.js';
import { PersistentMap } from '../src/shared/state/persistent-map.js';
import { WorkloadIndex, type ConfigSnapshot } from '../src/shared/state/workloads.js';
import { WorkerDataPath } from '../src/agent/workers/pool.js';

function workload(i: number, version = 'v1'): Workload {
  const ns = `ns-${i % 100}`;
  const app = `app-${i % 1000}`;
  return {
    uid: `Kubernetes//v1/Pod/${ns}/${app}-${i}`,
    name: `${app}-${i}`,
    namespace: ns,
    serviceAccount: `sa-${i % 10}`,
    trustDomain: 'cluster.local',
    node: `node-${i % 100}`,
    addresses: [`10.${100 + ((i >> 16) & 15)}.${(i >> 8) & 255}.${i & 255}`],
    status: 'Healthy',
    workloadType: 'pod',
    tunnelProtocol: 'HBONE',
    canonicalName: app,
    canonicalRevision: version,
    workloadName: app,
    labels: { app, version },
    services: { [`${ns}/svc-${i % 1000}.${ns}.svc.cluster.local`]: [{ port: 80, targetPort: 8080 }] },
    authorizationPolicies: [`${ns}/allow-${i % 500}`],
    clusterId: 'Kubernetes',
  } as unknown as Workload;
}

function service(i: number): Service {
  const ns = `ns-${i % 100}`;
  return {
    name: `svc-${i}`,
    namespace: ns,
    hostname: `svc-${i}.${ns}.svc.cluster.local`,
    vips: [`10.96.${i >> 8}.${i & 255}`],
    ports: [{ port: 80, targetPort: 8080, protocol: 'http' }],
  } as unknown as Service;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      workloads: { type: 'string', default: '10000' },
      services: { type: 'string', default: '1000' },
      workers: { type: 'string', default: '2' },
      changes: { type: 'string', default: '20' },
    },
  });
  const n = Number(values.workloads);
  const changes = Number(values.changes);
  const dp = new WorkerDataPath({
    count: Number(values.workers),
    nodeName: 'node-1',
    log: silentLogger(),
    logLevel: 'silent',
    registry: createRegistry(),
    host: {
      certificate: () => Promise.reject(new Error('no certificates in this benchmark')),
      listen: { outbound: '127.0.0.1', inbound: '127.0.0.1', hbone: '127.0.0.1', ports: { outbound: 15001, inbound: 15006, hbone: 15008 } },
    },
    onWorkerExit: (w, reason) => {
      process.stderr.write(`worker ${w} exited: ${reason}\n`);
      process.exit(1);
    },
  });
  const deadline = Date.now() + 120_000;
  try {
    let snap: ConfigSnapshot = {
      workloads: PersistentMap.of(Array.from({ length: n }, (_, i) => workload(i)).map((w) => [w.uid, w] as const)),
      services: PersistentMap.of(Array.from({ length: Number(values.services) }, (_, i) => service(i)).map((s) => [`${s.namespace}/${s.hostname}`, s] as const)),
      authorizations: PersistentMap.of<string, never>([]),
    };
    let t = performance.now();
    dp.setConfig(snap, new WorkloadIndex(snap, 'node-1'));
    await dp.counters();
    const firstMs = performance.now() - t;
    const mainMs: number[] = [];
    const appliedMs: number[] = [];
    for (let c = 1; c <= changes && Date.now() < deadline; c++) {
      const i = (c * 7919) % n;
      const next = workload(i, `v${c + 1}`);
      snap = { ...snap, workloads: (snap.workloads as PersistentMap<string, Workload>).withChanges([], [[next.uid, next]]) };
      const index = new WorkloadIndex(snap, 'node-1');
      t = performance.now();
      dp.setConfig(snap, index);
      mainMs.push(performance.now() - t);
      await dp.counters();
      appliedMs.push(performance.now() - t);
    }
    mainMs.sort((a, b) => a - b);
    appliedMs.sort((a, b) => a - b);
    const r = (x: number): number => Math.round(x * 100) / 100;
    process.stdout.write(
      JSON.stringify({
        workloads: n,
        services: Number(values.services),
        workers: Number(values.workers),
        changes: appliedMs.length,
        firstConfigMs: r(firstMs),
        mainSetConfigMs: { p50: r(quantile(mainMs, 0.5)), p99: r(quantile(mainMs, 0.99)) },
        allWorkersAppliedMs: { p50: r(quantile(appliedMs, 0.5)), p99: r(quantile(appliedMs, 0.99)) },
      }) + '\n',
    );
  } finally {
    await dp.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`agent-config-micro: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
