/** Fault injection decisions (Istio HTTPFaultInjection): delay and/or abort by percentage. */
import type { FaultPolicy } from '../../shared/routes.js';
import type { RandomSource } from '../route/weighted.js';

export interface FaultDecision {
  delayMs: number;
  abort?: { httpStatus: number; grpcStatus?: number };
}

/** True with probability percent/100. */
export function rollPercent(percent: number, random: RandomSource): boolean {
  if (percent <= 0) return false;
  if (percent >= 100) return true;
  return random() * 100 < percent;
}

/**
 * Decides independently whether to delay and whether to abort this request. A gRPC abort replies
 * HTTP 200 with `grpc-status` (as Envoy does); `httpStatus` is then 200.
 */
export function decideFault(fault: FaultPolicy | undefined, random: RandomSource): FaultDecision {
  const out: FaultDecision = { delayMs: 0 };
  if (!fault) return out;
  if (fault.delay && rollPercent(fault.delay.percent, random)) out.delayMs = fault.delay.fixedDelayMs;
  if (fault.abort && rollPercent(fault.abort.percent, random)) {
    out.abort = fault.abort.grpcStatus !== undefined ? { httpStatus: 200, grpcStatus: fault.abort.grpcStatus } : { httpStatus: fault.abort.httpStatus ?? 503 };
  }
  return out;
}
