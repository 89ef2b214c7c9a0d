/**
 * The status a local node writes for a pod (pure): phase, the conditions kubectl and controllers
 * read (PodScheduled, PodReadyToStartContainers, Initialized, ContainersReady, Ready), addresses,
 * and one containerStatus per container (waiting with the reason the pod cannot start yet,
 * running, or terminated, with restarts and the last termination).
 */
import type { KubeObject } from '../../controller/objects.js';
import { rec, stableJson } from '../controllers/queue.js';

export interface ContainerState {
  name: string;
  running: boolean;
  ready: boolean;
  restarts: number;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number;
  last?: { exitCode: number; startedAt?: string; finishedAt: string };
}

export interface PodRuntimeState {
  /** Why the pod cannot run yet (sandbox, volumes, container config), with the waiting reason. */
  waiting?: { reason: string; message: string };
  sandboxReady: boolean;
  podIp?: string;
  hostIp: string;
  startTime?: string;
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  containers: ContainerState[];
}

function cond(type: string, ok: boolean, reason?: string, message?: string): Record<string, unknown> {
  return { type, status: ok ? 'True' : 'False', ...(reason ? { reason } : {}), ...(message ? { message } : {}) };
}

export function buildPodStatus(pod: KubeObject, st: PodRuntimeState): Record<string, unknown> {
  const names = ((rec(pod.spec).containers ?? []) as Array<Record<string, unknown>>).map((c) => ({ name: String(c['name'] ?? ''), image: String(c['image'] ?? '') }));
  const byName = new Map(st.containers.map((c) => [c.name, c]));
  const allReady = names.length > 0 && names.every((n) => byName.get(n.name)?.ready === true) && st.phase === 'Running';
  const notReady = names.filter((n) => byName.get(n.name)?.ready !== true).map((n) => n.name);
  const readyMsg = allReady ? undefined : `containers with unready status: [${notReady.join(' ')}]`;
  const containerStatuses = names.map((n) => {
    const c = byName.get(n.name);
    let state: Record<string, unknown>;
    if (!c || (!c.running && c.exitCode === undefined)) state = { waiting: { reason: st.waiting?.reason ?? 'ContainerCreating', ...(st.waiting ? { message: st.waiting.message } : {}) } };
    else if (c.running) state = { running: { startedAt: c.startedAt } };
    else if (c.exitCode !== undefined && st.phase === 'Running') state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off restarting failed container ${n.name}` } };
    else state = { terminated: { exitCode: c.exitCode, reason: c.exitCode === 0 ? 'Completed' : 'Error', startedAt: c.startedAt, finishedAt: c.finishedAt } };
    return {
      name: n.name,
      image: n.image,
      imageID: '',
      ready: c?.ready === true,
      started: c?.running === true,
      restartCount: c?.restarts ?? 0,
      state,
      ...(c?.last && c.restarts > 0 ? { lastState: { terminated: { exitCode: c.last.exitCode, reason: c.last.exitCode === 0 ? 'Completed' : 'Error', startedAt: c.last.startedAt, finishedAt: c.last.finishedAt } } } : { lastState: {} }),
    };
  });
  const initialized = st.sandboxReady && st.waiting === undefined;
  return {
    phase: st.phase,
    conditions: [
      cond('PodReadyToStartContainers', st.sandboxReady, st.sandboxReady ? undefined : st.waiting?.reason, st.sandboxReady ? undefined : st.waiting?.message),
      cond('Initialized', initialized),
      cond('ContainersReady', allReady, allReady ? undefined : 'ContainersNotReady', readyMsg),
      cond('Ready', allReady, allReady ? undefined : 'ContainersNotReady', readyMsg),
      cond('PodScheduled', true),
    ],
    hostIP: st.hostIp,
    hostIPs: [{ ip: st.hostIp }],
    ...(st.podIp ? { podIP: st.podIp, podIPs: [{ ip: st.podIp }] } : {}),
    ...(st.startTime ? { startTime: st.startTime } : {}),
    containerStatuses,
    qosClass: rec(pod.status).qosClass ?? 'BestEffort',
  };
}

/** Status compared without timestamps (a write only when something a reader cares about changed). */
export function statusKey(status: unknown): string {
  const s = structuredClone(rec(status));
  delete s['startTime'];
  for (const c of (s['conditions'] ?? []) as Array<Record<string, unknown>>) {
    delete c['lastTransitionTime'];
    delete c['lastProbeTime'];
  }
  return stableJson(s);
}

/** Adds lastTransitionTime to conditions (kept from `current` while a condition's status stays). */
export function withTransitionTimes(next: Record<string, unknown>, current: unknown, now: string): Record<string, unknown> {
  const cur = (rec(current).conditions ?? []) as Array<Record<string, unknown>>;
  return {
    ...next,
    conditions: ((next['conditions'] ?? []) as Array<Record<string, unknown>>).map((c) => {
      const prev = cur.find((p) => p['type'] === c['type']);
      const t = prev && prev['status'] === c['status'] && typeof prev['lastTransitionTime'] === 'string' ? prev['lastTransitionTime'] : now;
      return { ...c, lastProbeTime: null, lastTransitionTime: t };
    }),
  };
}
