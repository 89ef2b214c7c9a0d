/* SPDX-License-Identifier: Apache-2.0 */
/* Sizes and fixed values of the capture programs. Ports match Istio ambient (DESIGN.md, Ports). */
#ifndef AMBIT_CONFIG_H
#define AMBIT_CONFIG_H

/* Sockets the agent opens on a pod's behalf carry this SO_MARK; capture lets them through. */
#define AMBIT_BYPASS_MARK 0x539
/*
 * ... and its transparent dials to a pod's app also this SO_PRIORITY (native/netns.ts
 * DIAL_PRIORITY): sockops exempts only those from the pod's inbound steering, not the agent's
 * other marked sockets in the pod (tunnels, passthrough dials), whose entries would otherwise
 * live as long as those connections.
 */
#define AMBIT_DIAL_PRIORITY 0x539
/* Inbound HBONE is terminated by the agent itself, so sk_lookup never steers it. */
#define AMBIT_HBONE_PORT 15008

/* Enrolled and pending pods of one agent. */
#define AMBIT_MAX_PODS 4096
#define AMBIT_MAX_EXCLUDED_PORTS 16384
/*
 * Per pod: redirected connects between the SYN and the proxy's accept (an entry is handed to the
 * accepted socket at once, or removed when the app's socket closes first). One pod filling its
 * own map only makes its own new connections fail; other pods have maps of their own.
 */
#define AMBIT_MAX_HANDSHAKES_PER_POD 4096
#define AMBIT_MAX_STEER_EXCLUDED_PORTS 256
/*
 * Per pod: the agent's transparent dials to the app from the SYN until the handshake completes
 * (written and deleted by sockops), plus the overflow slot.
 */
#define AMBIT_MAX_STEER_DIRECT 4096
/*
 * After an exemption failed (the pod's map full), the pod's inbound connections that are not
 * exempt are refused for this long: the dial that could not be exempted is among them and must
 * not reach 15006 as plaintext (the inbound proxy would dial again, and again).
 */
#define AMBIT_DIRECT_OVERFLOW_NS 1000000000ULL
/* Most agent worker threads (AMBIT_WORKERS, src/agent/config.ts MAX_WORKERS): listeners per reuseport group. */
#define AMBIT_MAX_WORKERS 256
/* Size of the stats array: reason codes are below this (reasons.h). */
#define AMBIT_MAX_REASONS 64

/* Socket-level constants the uapi headers do not give the BPF target (libc macros). */
#define AMBIT_AF_INET 2
#define AMBIT_AF_INET6 10
#define AMBIT_SOCK_STREAM 1
#define AMBIT_SOL_IP 0
#define AMBIT_SOL_IPV6 41
/* SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST share the number 80. */
#define AMBIT_SO_ORIGINAL_DST 80
/*
 * Bound for optlen before it is added to the optval pointer (the verifier caps packet-style
 * offsets at 0xffff); any larger optlen is certainly beyond the program's one-page buffer.
 */
#define AMBIT_MAX_OPTLEN 0xffff

#endif
