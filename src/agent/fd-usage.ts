/**
 * How many file descriptors the agent holds against its limit, from /proc: readiness turns false
 * when the agent is about to run out (then it can accept and dial nothing, and traffic to the
 * node fails while a probe would still say ready).
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface FdUsage {
  open: number;
  /** The soft RLIMIT_NOFILE. */
  limit: number;
}

/** Open fds and the soft limit of a process (default this one); undefined where /proc is not readable. */
export function readFdUsage(procDir = '/proc/self'): FdUsage | undefined {
  try {
    const open = readdirSync(`${procDir}/fd`).length;
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(readFileSync(`${procDir}/limits`, 'utf8'));
    const limit = !m || m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
    return { open, limit };
  } catch {
    return undefined;
  }
}

/** Fewer free descriptors than this (or 5% of the limit, whichever is larger) makes the agent unready. */
export const FD_RESERVE = 64;

/** Why the agent is short of descriptors, or undefined when it is not. */
export function fdExhaustion(u: FdUsage | undefined): string | undefined {
  if (!u || !Number.isFinite(u.limit)) return undefined;
  const reserve = Math.max(FD_RESERVE, Math.ceil(u.limit * 0.05));
  if (u.limit - u.open > reserve) return undefined;
  return `out of file descriptors: ${u.open} of ${u.limit} open`;
}
