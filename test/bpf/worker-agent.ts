/**
 * The real Agent with its data path on worker threads (WorkerDataPath) over a capture, wired as
 * main.ts wires it with AMBIT_WORKERS > 1, minus the controller (the caller applies snapshots).
 * Used in-process by test/bpf/workers.test.ts and in a child process by worker-agent-stub.ts.
 */
import { silentLogger } from '../../src/shared/log.js';
import { createRegistry, type Registry } from '../../src/shared/metrics.js';
import type { Workload } from '../../src/shared/model.js';
import type { Authorization, Service } from '../../src/shared/model.js';
import type { ConfigSnapshot } from '../../src/shared/state/workloads.js';
import { Agent } from '../../src/agent/agent.js';
import type { DnsProxy } from '../../src/agent/dns/proxy.js';
import type { Capture } from '../../src/agent/capture/capture.js';
import { originalDestination } from '../../src/agent/capture/orig-dst.js';
import { NetnsPodSockets } from '../../src/agent/proxy/netns-sockets.js';
import { WorkerDataPath } from '../../src/agent/workers/pool.js';
import { socketFd } from '../../native/netns.js';
import { createTestCa } from '../helpers/test-ca.js';

export function snapshot(workloads: Workload[], authorizations: Authorization[] = [], services: Service[] = []): ConfigSnapshot {
  return {
    workloads: new Map(workloads.map((w) => [w.uid, w])),
    services: new Map(services.map((s) => [`${s.namespace}/${s.hostname}`, s])),
    authorizations: new Map(authorizations.map((a) => [`${a.namespace}/${a.name}`, a])),
  };
}

export interface WorkerAgent {
  agent: Agent;
  registry: Registry;
  /** Workers that ended without being asked to. */
  exits: string[];
}

/** An Agent over `capture` with `workers` data-path threads (1: on this thread, as main.ts does). */
export function startWorkerAgent(capture: Capture, o: { workers: number; sameNodeFastPath?: boolean; dns?: (registry: Registry) => DnsProxy }): WorkerAgent {
  const ca = createTestCa();
  const registry = createRegistry();
  const exits: string[] = [];
  const log = silentLogger();
  const agent = new Agent({
    nodeName: 'node1',
    log,
    registry,
    certs: {
      getCertificate: async (id) => ca.workloadCert(id),
    },
    capture,
    ...(o.dns ? { dns: o.dns(registry) } : {}),
    podSockets: (w) => new NetnsPodSockets(w.netns!, { capture, uid: w.uid }),
    originalDestination: (s, direction) => originalDestination(s, direction),
    listenerFd: (server) => socketFd(server),
    drainDeadlineMs: 200,
    ...(o.sameNodeFastPath !== undefined ? { sameNodeFastPath: o.sameNodeFastPath } : {}),
    ...(o.workers > 1
      ? {
          dataPath: (host) =>
            new WorkerDataPath({
              count: o.workers,
              nodeName: 'node1',
              log,
              logLevel: 'silent',
              registry,
              host,
              ...(o.sameNodeFastPath !== undefined ? { sameNodeFastPath: o.sameNodeFastPath } : {}),
              onWorkerExit: (worker, reason) => exits.push(`${worker}: ${reason}`),
            }),
        }
      : {}),
  });
  return { agent, registry, exits };
}
