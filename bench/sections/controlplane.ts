/**
 * Control-plane section: the real controller at cluster scale, no mesh needed. For each size (pods;
 * 1,000 services, 500 AuthorizationPolicies, 200 VirtualServices over 100 namespaces, 100 agent
 * clients on 100 nodes) a fresh process runs bench/controlplane/run-size.ts and reports initial
 * load and sync, then single-object changes (a pod, a policy, a service, in turn): store apply →
 * every client ACKed, per-client update times, bytes sent per change, controller CPU and RSS.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../mesh.js';
import { evaluate, median, type Check, type Metric, type SectionResult } from '../report.js';
import type { BenchContext, BenchOptions, Section } from '../section.js';
import type { SizeResult } from '../controlplane/run-size.js';

const MIB = 1_048_576;

export interface ControlPlanePlan {
  /** Pod counts, one column each. */
  pods: number[];
  changes: number;
}

export function controlPlanePlan(opts: Pick<BenchOptions, 'quick' | 'controlPlanePods'>): ControlPlanePlan {
  return { pods: opts.controlPlanePods ?? (opts.quick ? [1000] : [1000, 10_000]), changes: opts.quick ? 12 : 30 };
}

/** Nearest-rank percentile of `values` (undefined when empty). */
export function percentile(values: number[], p: number): number | undefined {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))];
}

/** Runs one size in its own process; resolves its JSON line. */
function runSizeProcess(pods: number, changes: number, timeoutMs: number): Promise<SizeResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'dist/bench/controlplane/run-size.js'), '--pods', String(pods), '--changes', String(changes)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`control-plane run at ${pods} pods failed (${signal ?? code}): ${err.slice(-1000)}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as SizeResult);
      } catch {
        reject(new Error(`control-plane run at ${pods} pods printed no result: ${out.slice(-500)} ${err.slice(-500)}`));
      }
    });
  });
}

export const controlPlaneSection: Section = {
  name: 'controlplane',
  needsMesh: false,
  manifests(): string[] {
    return [];
  },

  async run(ctx: BenchContext): Promise<SectionResult> {
    const plan = controlPlanePlan(ctx);
    const runs: SizeResult[] = [];
    for (const pods of plan.pods) {
      ctx.progress(`control plane: ${pods} pods, ${plan.changes} changes`);
      runs.push(await runSizeProcess(pods, plan.changes, 90 * 60_000));
    }
    const col = (r: SizeResult): string => `p${r.size.pods}`;
    const row = (key: string, label: string, unit: string, digits: number, f: (r: SizeResult) => number | undefined): Metric => {
      const values: Partial<Record<string, number>> = {};
      for (const r of runs) {
        const v = f(r);
        if (v !== undefined) values[col(r)] = v;
      }
      return { key, label, unit, digits, values };
    };
    const acked = (r: SizeResult): number[] => r.changes.map((c) => c.allAckedMs);
    const ackedOf = (r: SizeResult, kind: string): number[] => r.changes.filter((c) => c.kind === kind).map((c) => c.allAckedMs);
    const pushed = (r: SizeResult): number[] => r.changes.map((c) => c.pushedMs);
    const perClient = (r: SizeResult): number[] => r.changes.flatMap((c) => c.clientMs);
    const bytesOf = (r: SizeResult, kind?: string): number[] => r.changes.filter((c) => kind === undefined || c.kind === kind).map((c) => c.bytes);
    const metrics: Metric[] = [
      row('objects', 'objects in the store', 'objects', 0, (r) => r.objects),
      row('loadMs', 'apply the whole cluster (validate + translate)', 'ms', 0, (r) => r.load.ms),
      row('syncMs', `initial sync of ${runs[0]?.size.clients ?? 100} clients`, 'ms', 0, (r) => r.initialSync.ms),
      row('syncBytes', 'initial sync bytes per client', 'KiB', 0, (r) => r.initialSync.bytesPerClient / 1024),
      row('pushedP50', 'change → controller wrote every push, p50', 'ms', 1, (r) => percentile(pushed(r), 50)),
      row('pushedP99', 'change → controller wrote every push, p99', 'ms', 1, (r) => percentile(pushed(r), 99)),
      row('ackedP50', 'change → every client ACKed, p50', 'ms', 1, (r) => percentile(acked(r), 50)),
      row('ackedP99', 'change → every client ACKed, p99', 'ms', 1, (r) => percentile(acked(r), 99)),
      row('ackedP99Pod', '— pod change → every client ACKed, p99', 'ms', 1, (r) => percentile(ackedOf(r, 'pod'), 99)),
      row('ackedP99Policy', '— policy change → every client ACKed, p99', 'ms', 1, (r) => percentile(ackedOf(r, 'policy'), 99)),
      row('ackedP99Service', '— Service change → every client ACKed, p99', 'ms', 1, (r) => percentile(ackedOf(r, 'service'), 99)),
      row('clientP50', 'change → a client has the update, p50', 'ms', 1, (r) => percentile(perClient(r), 50)),
      row('clientP99', 'change → a client has the update, p99', 'ms', 1, (r) => percentile(perClient(r), 99)),
      row('affected', 'clients updated per change, median', 'clients', 0, (r) => median(r.changes.map((c) => c.affected))),
      row('bytesPod', 'bytes sent per pod change (all clients), median', 'KiB', 1, (r) => (median(bytesOf(r, 'pod')) ?? Number.NaN) / 1024),
      row('bytesPolicy', 'bytes sent per policy change (all clients), median', 'KiB', 1, (r) => (median(bytesOf(r, 'policy')) ?? Number.NaN) / 1024),
      row('bytesService', 'bytes sent per service change (all clients), median', 'KiB', 1, (r) => (median(bytesOf(r, 'service')) ?? Number.NaN) / 1024),
      row('cpuPerChange', 'controller CPU per change, median', 'ms', 1, (r) => median(r.changes.map((c) => c.cpuMs))),
      row('clientsCpuPerChange', `CPU of the ${runs[0]?.size.clients ?? 100} clients' processes per change, median`, 'ms', 1, (r) => median(r.changes.map((c) => c.clientsCpuMs).filter(Number.isFinite))),
      row('rssSync', 'controller RSS after initial sync', 'MiB', 0, (r) => r.rssBytes.afterSync / MIB),
      row('rssChanges', 'controller RSS after the changes', 'MiB', 0, (r) => r.rssBytes.afterChanges / MIB),
    ];
    const largest = runs.at(-1);
    const smallest = runs[0];
    const why = 'not measured';
    const checks: Check[] = [
      evaluate(`change → every client ACKed p99 at ${largest?.size.pods ?? '?'} pods (ms)`, largest ? percentile(acked(largest), 99) : undefined, '<=', 100, ' ms', 1, why),
      // The controller's own share: the ACK figure adds the clients decoding (several processes on this machine's cores).
      evaluate(`change → controller wrote every push p99 at ${largest?.size.pods ?? '?'} pods (ms)`, largest ? percentile(pushed(largest), 99) : undefined, '<=', 100, ' ms', 1, why),
      evaluate(`controller RSS at ${largest?.size.pods ?? '?'} pods (MB)`, largest ? Math.max(largest.rssBytes.afterSync, largest.rssBytes.afterChanges) / 1e6 : undefined, '<=', 1000, ' MB', 0, why),
      // Deltas, not snapshots: one change costs a small fraction of what a full sync sends.
      evaluate(
        `bytes per change / full-sync bytes at ${largest?.size.pods ?? '?'} pods`,
        largest ? (median(bytesOf(largest)) ?? Number.NaN) / largest.initialSync.bytes : undefined,
        '<=',
        0.05,
        '×',
        4,
        why,
      ),
    ];
    if (smallest && largest && largest !== smallest) {
      // Linear growth: RSS above the idle process grows no faster than the pod count.
      const grow = (r: SizeResult): number => r.rssBytes.afterSync - r.rssBytes.idle;
      const podRatio = largest.size.pods / smallest.size.pods;
      checks.push(evaluate(`RSS growth ${smallest.size.pods}→${largest.size.pods} pods / pod-count growth`, grow(largest) / grow(smallest) / podRatio, '<=', 1.0, '×', 2, why));
    }
    return {
      name: 'controlplane',
      title: `Control plane: the real controller, ${smallest?.size.services ?? 1000} services, ${smallest?.size.policies ?? 500} AuthorizationPolicies, ${smallest?.size.virtualServices ?? 200} VirtualServices, ${smallest?.size.namespaces ?? 100} namespaces, ${smallest?.size.clients ?? 100} agent clients in ${smallest?.size.clientProcs ?? 4} processes`,
      columns: runs.map((r) => ({ key: col(r), label: `${r.size.pods.toLocaleString('en-US')} pods` })),
      metrics,
      checks,
      details: { plan, runs },
    };
  },
};
