/**
 * The agent's own ports inside a pod. A connection whose destination port is one of them would
 * make the agent dial itself (15006 → dial pod:15006 → 15006 ...) until it runs out of file
 * descriptors; every path refuses it with the bounded reason `self_call` (ztunnel: `illegal_ports`,
 * `Error::SelfCall`).
 */
import { normalizeIp } from '../../shared/address.js';
import { HBONE_PORT } from '../../shared/hbone/tunnel.js';

/** 15001 outbound capture, 15006 inbound plaintext, 15008 inbound HBONE. */
export const AGENT_POD_PORTS: readonly number[] = [15001, 15006, HBONE_PORT];

/** The bounded reason label (ambit_connections_rejected_total, access log, x-ambit-reason). */
export const SELF_CALL_REASON = 'self_call';

/** The standard ports plus whatever ports this agent was configured to listen on in pods. */
export function agentPortSet(configured: Iterable<number | undefined> = []): ReadonlySet<number> {
  const out = new Set(AGENT_POD_PORTS);
  for (const p of configured) if (p !== undefined) out.add(p);
  return out;
}

/** True for 127.0.0.0/8 and ::1 (also in their v4-mapped form). */
export function isLoopback(ip: string): boolean {
  const n = normalizeIp(ip);
  return n.startsWith('127.') || n === '::1';
}
