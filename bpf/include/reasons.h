/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reason codes: the index of each counter in the ambit_stats map. Numbered once, never
 * renumbered; a retired code stays here marked unused. src/shared/reasons.ts mirrors this file
 * and changes in the same commit.
 */
#ifndef AMBIT_REASONS_H
#define AMBIT_REASONS_H

/* 0 is never used, so a zeroed value can not be mistaken for a reason. */
#define AMBIT_REASON_UNUSED_0 0
/* connect4/6 from an enrolled pod's netns, before any decision. */
#define AMBIT_REASON_CONNECT_SEEN 1
#define AMBIT_REASON_CONNECT_REDIRECTED 2
#define AMBIT_REASON_CONNECT_NOT_TCP 3
#define AMBIT_REASON_CONNECT_BYPASS_MARK 4
#define AMBIT_REASON_CONNECT_LOOPBACK 5
#define AMBIT_REASON_CONNECT_EXCLUDED_PORT 6
/* The original destination could not be recorded (map update failed); not redirected. */
#define AMBIT_REASON_CONNECT_RECORD_FAILED 7
/* Native IPv6 destination of a pod enrolled without IPv6 capture; not redirected. */
#define AMBIT_REASON_CONNECT_IPV6_DISABLED 8
#define AMBIT_REASON_SOCKOPS_RECORDED 9
#define AMBIT_REASON_SOCKOPS_RECORD_FAILED 10
#define AMBIT_REASON_GETSOCKOPT_ANSWERED 11
#define AMBIT_REASON_GETSOCKOPT_MISS 12
#define AMBIT_REASON_GETPEERNAME_REWRITTEN 13
#define AMBIT_REASON_STEER_ASSIGNED 14
/* Loopback source, or a pod talking to its own address: the app serves it directly. */
#define AMBIT_REASON_STEER_SKIP_LOCAL 15
#define AMBIT_REASON_STEER_SKIP_PORT 16
#define AMBIT_REASON_STEER_NO_SOCKET 17
#define AMBIT_REASON_STEER_ASSIGN_FAILED 18
/* The agent's own transparent dial to the app (ambit_steer_direct): left to the app. */
#define AMBIT_REASON_STEER_SKIP_DIRECT 19

#define AMBIT_REASON_COUNT 20

#endif
