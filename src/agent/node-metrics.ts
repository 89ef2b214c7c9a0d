/**
 * Node-level `ambit_` gauges of the agent, computed when scraped: uptime, capture mode, pods by
 * capture state, and the config version in force per resource type (an info metric); plus the
 * pods by state under ztunnel's workload-manager names, which Istio's ztunnel dashboard reads
 * (active: captured and proxied; pending: enrolled, capture not yet in place).
 */
import { Gauge, type Registry } from '../shared/metrics.js';
import type { WorkloadStatus } from '../shared/xds/node.js';

export interface NodeMetricsSources {
  startedAtMs: number;
  now?: () => number;
  /** 'bpf' | 'nft' | 'none'. */
  captureMode: string;
  statuses: () => readonly WorkloadStatus[];
  /** Type label (workload, service, authorization) → version of the set in force. */
  configVersions: () => ReadonlyMap<string, string>;
}

const POD_STATES = ['captured', 'pending', 'failed', 'not_enrolled'] as const;

function stateOf(s: WorkloadStatus): (typeof POD_STATES)[number] {
  if (s.captured) return 'captured';
  if (s.mode === 'pending') return 'pending';
  if (s.mode === 'failed') return 'failed';
  return 'not_enrolled';
}

export function registerNodeMetrics(registry: Registry, src: NodeMetricsSources): void {
  const now = src.now ?? Date.now;
  new Gauge({
    name: 'ambit_agent_uptime_seconds',
    help: 'Seconds since the agent started',
    registers: [registry],
    collect() {
      this.set((now() - src.startedAtMs) / 1000);
    },
  });
  new Gauge({
    name: 'ambit_capture_mode',
    help: 'Capture mechanism in use on this node (1 for the active mode)',
    labelNames: ['mode'],
    registers: [registry],
    collect() {
      this.reset();
      this.set({ mode: src.captureMode }, 1);
    },
  });
  new Gauge({
    name: 'ambit_workloads',
    help: 'Local workloads by capture state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const counts = new Map<string, number>(POD_STATES.map((s) => [s, 0]));
      for (const s of src.statuses()) counts.set(stateOf(s), (counts.get(stateOf(s)) ?? 0) + 1);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  const countOf = (state: (typeof POD_STATES)[number]): number => src.statuses().filter((s) => stateOf(s) === state).length;
  new Gauge({
    name: 'workload_manager_active_proxy_count',
    help: 'Enrolled pods of this node whose traffic the agent captures and proxies (ztunnel\'s name).',
    registers: [registry],
    collect() {
      this.set(countOf('captured'));
    },
  });
  new Gauge({
    name: 'workload_manager_pending_proxy_count',
    help: 'Enrolled pods of this node whose capture is not in place yet (ztunnel\'s name).',
    registers: [registry],
    collect() {
      this.set(countOf('pending'));
    },
  });
  new Gauge({
    name: 'ambit_config_version_info',
    help: 'Config version in force per resource type (value 1; the version is a label)',
    labelNames: ['type', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [type, version] of src.configVersions()) this.set({ type, version }, 1);
    },
  });
}
