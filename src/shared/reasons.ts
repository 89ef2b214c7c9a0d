/**
 * Mirror of bpf/include/reasons.h: the index of each capture counter in the ambit_stats map.
 * Numbered once, never renumbered; a retired code keeps its number and is marked unused.
 * Changes in the same commit as reasons.h (test/unit/native checks they agree).
 */
export const CaptureReasons = {
  UNUSED_0: 0,
  CONNECT_SEEN: 1,
  CONNECT_REDIRECTED: 2,
  CONNECT_NOT_TCP: 3,
  CONNECT_BYPASS_MARK: 4,
  CONNECT_LOOPBACK: 5,
  CONNECT_EXCLUDED_PORT: 6,
  /** Retired: a failed record let the connect go direct (now CONNECT_RECORD_REFUSED). */
  UNUSED_7: 7,
  /** Retired: native IPv6 went direct without an IPv6 listener (now CONNECT_IPV6_REFUSED). */
  UNUSED_8: 8,
  SOCKOPS_RECORDED: 9,
  SOCKOPS_RECORD_FAILED: 10,
  GETSOCKOPT_ANSWERED: 11,
  GETSOCKOPT_MISS: 12,
  GETPEERNAME_REWRITTEN: 13,
  STEER_ASSIGNED: 14,
  STEER_SKIP_LOCAL: 15,
  STEER_SKIP_PORT: 16,
  /** Retired: no listener let the connection through (now STEER_REFUSED_NO_SOCKET). */
  UNUSED_17: 17,
  /** Retired: a failed assign let the connection through (now STEER_REFUSED_ASSIGN). */
  UNUSED_18: 18,
  STEER_SKIP_DIRECT: 19,
  CONNECT_PENDING_REFUSED: 20,
  CONNECT_IPV6_REFUSED: 21,
  CONNECT_RECORD_REFUSED: 22,
  CONNECT_CAPTURE_PORT_REFUSED: 23,
  SOCKOPS_HANDED_OVER: 24,
  SOCKOPS_FORGOTTEN: 25,
  GETSOCKOPT_REFUSED: 26,
  STEER_REFUSED_NO_SOCKET: 27,
  STEER_REFUSED_ASSIGN: 28,
  DNS_REDIRECTED: 29,
  DNS_REPLY_REWRITTEN: 30,
  SOCKOPS_DIAL_EXEMPTED: 31,
  SOCKOPS_DIAL_EXEMPT_FAILED: 32,
  STEER_REFUSED_OVERFLOW: 33,
} as const;

export type CaptureReason = keyof typeof CaptureReasons;

/** Number of defined codes (AMBIT_REASON_COUNT). */
export const CAPTURE_REASON_COUNT = 34;

/** Lowercase snake_case label for metrics (`reason` label): CONNECT_REDIRECTED -> connect_redirected. */
export function captureReasonLabel(reason: CaptureReason): string {
  return reason.toLowerCase();
}
