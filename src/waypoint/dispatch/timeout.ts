/**
 * Overall and per-try deadlines for one proxied request (Istio `timeout`, `perTryTimeout`): the
 * arithmetic. deadline.ts enforces the overall one as a dispatch layer; retry.ts the per-try one.
 */
export interface Deadline {
  /** Absolute end of the whole request (ms, `now()` clock); Infinity when there is none. */
  endsAt: number;
}

export function createDeadline(timeoutMs: number | undefined, now: number): Deadline {
  return { endsAt: timeoutMs === undefined || timeoutMs <= 0 ? Infinity : now + timeoutMs };
}

/** Milliseconds left, at least 0; Infinity without a deadline. */
export function remainingMs(d: Deadline, now: number): number {
  return d.endsAt === Infinity ? Infinity : Math.max(0, d.endsAt - now);
}

/**
 * How long this try may take: the smaller of perTryTimeoutMs and what is left of the overall
 * deadline. Undefined means no limit.
 */
export function tryTimeoutMs(d: Deadline, perTryTimeoutMs: number | undefined, now: number): number | undefined {
  const left = remainingMs(d, now);
  const t = Math.min(left, perTryTimeoutMs ?? Infinity);
  return t === Infinity ? undefined : t;
}

/** True when the overall deadline has passed. */
export function isExpired(d: Deadline, now: number): boolean {
  return d.endsAt !== Infinity && now >= d.endsAt;
}

/** Parses `grpc-timeout` (e.g. `100m`, `2S`) into milliseconds, as a client's own deadline. */
export function parseGrpcTimeout(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
  return n * unit[m[2]!]!;
}
