import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../../../src/shared/metrics.js';
import { registerNodeMetrics } from '../../../src/agent/node-metrics.js';
import type { WorkloadStatus } from '../../../src/shared/xds/node.js';

test('node gauges: uptime, capture mode, workloads by state, config version info', async () => {
  const registry = createRegistry();
  let now = 10_000;
  let statuses: WorkloadStatus[] = [
    { uid: 'a', captured: true, mode: 'bpf', message: '' },
    { uid: 'b', captured: false, mode: 'pending', message: 'waiting' },
    { uid: 'c', captured: false, mode: 'failed', message: 'EAGAIN' },
    { uid: 'd', captured: true, mode: 'bpf', message: '' },
  ];
  let versions = new Map([['workload', 'v1']]);
  registerNodeMetrics(registry, { startedAtMs: 4_000, now: () => now, captureMode: 'bpf', statuses: () => statuses, configVersions: () => versions });
  const text = await registry.metrics();
  assert.match(text, /^ambit_agent_uptime_seconds 6$/m);
  assert.match(text, /^ambit_capture_mode\{mode="bpf"\} 1$/m);
  assert.match(text, /^ambit_workloads\{state="captured"\} 2$/m);
  assert.match(text, /^ambit_workloads\{state="pending"\} 1$/m);
  assert.match(text, /^ambit_workloads\{state="failed"\} 1$/m);
  assert.match(text, /^workload_manager_active_proxy_count 2$/m, 'ztunnel\'s name for captured pods');
  assert.match(text, /^workload_manager_pending_proxy_count 1$/m);
  assert.match(text, /^ambit_config_version_info\{type="workload",version="v1"\} 1$/m);
  now = 20_000;
  statuses = [];
  versions = new Map([['workload', 'v2']]);
  const later = await registry.metrics();
  assert.match(later, /^ambit_agent_uptime_seconds 16$/m);
  assert.match(later, /^ambit_workloads\{state="captured"\} 0$/m);
  assert.doesNotMatch(later, /version="v1"/, 'an old version leaves the info metric');
  assert.match(later, /^ambit_config_version_info\{type="workload",version="v2"\} 1$/m);
});
