/** Who is on the other end of a config stream: the node descriptor and per-pod status reports. */
import type { NodeMessage, RoleName, WorkloadStatusMessage } from './proto.js';

export type NodeRole = 'agent' | 'waypoint' | 'gateway';
export const NODE_ROLES: readonly NodeRole[] = ['agent', 'waypoint', 'gateway'];

export interface NodeInfo {
  /** Unique per process, e.g. `agent~node-1`. */
  id: string;
  /** Kubernetes node the process runs on. */
  nodeName: string;
  role: NodeRole;
  metadata?: Record<string, string>;
}

/** Capture state of one pod, reported by its node's agent on ACKs. */
export interface WorkloadStatus {
  /** Workload uid (resource name). */
  uid: string;
  captured: boolean;
  /** e.g. `ambient`, `none`, `failed`. */
  mode: string;
  message: string;
}

const ROLE_TO_WIRE: Record<NodeRole, RoleName> = {
  agent: 'ROLE_AGENT',
  waypoint: 'ROLE_WAYPOINT',
  gateway: 'ROLE_GATEWAY',
};

export function nodeToMessage(node: NodeInfo): NodeMessage {
  return { id: node.id, nodeName: node.nodeName, role: ROLE_TO_WIRE[node.role], metadata: { ...(node.metadata ?? {}) } };
}

/** The role of a wire node, or undefined for ROLE_UNSPECIFIED / unknown values. */
export function roleFromMessage(role: unknown): NodeRole | undefined {
  for (const r of NODE_ROLES) if (ROLE_TO_WIRE[r] === role) return r;
  return undefined;
}

export function workloadStatusFromMessage(m: WorkloadStatusMessage): WorkloadStatus {
  return { uid: String(m.uid ?? ''), captured: m.captured === true, mode: String(m.mode ?? ''), message: String(m.message ?? '') };
}
