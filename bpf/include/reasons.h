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
/* Retired: a failed record let the connect go direct; now CONNECT_RECORD_REFUSED. */
#define AMBIT_REASON_UNUSED_7 7
/* Retired: native IPv6 went direct without an IPv6 listener; now CONNECT_IPV6_REFUSED. */
#define AMBIT_REASON_UNUSED_8 8
#define AMBIT_REASON_SOCKOPS_RECORDED 9
/* The pod's handshake map refused the entry (full): the proxy can not learn the destination and closes. */
#define AMBIT_REASON_SOCKOPS_RECORD_FAILED 10
#define AMBIT_REASON_GETSOCKOPT_ANSWERED 11
/* Not a captured connection: the kernel's own answer (conntrack, or ENOENT) stands. */
#define AMBIT_REASON_GETSOCKOPT_MISS 12
#define AMBIT_REASON_GETPEERNAME_REWRITTEN 13
#define AMBIT_REASON_STEER_ASSIGNED 14
/* Loopback source, or a pod talking to its own address: the app serves it directly. */
#define AMBIT_REASON_STEER_SKIP_LOCAL 15
#define AMBIT_REASON_STEER_SKIP_PORT 16
/* Retired: no listener let the connection through to the app; now STEER_REFUSED_NO_SOCKET. */
#define AMBIT_REASON_UNUSED_17 17
/* Retired: a failed assign let the connection through; now STEER_REFUSED_ASSIGN. */
#define AMBIT_REASON_UNUSED_18 18
/* The agent's own transparent dial to the app (ambit_steer_direct): left to the app. */
#define AMBIT_REASON_STEER_SKIP_DIRECT 19
/* The pod is pending (netns known, listeners not yet in place): TCP connect refused. */
#define AMBIT_REASON_CONNECT_PENDING_REFUSED 20
/* Native IPv6 destination and the pod has no IPv6 outbound listener: connect refused. */
#define AMBIT_REASON_CONNECT_IPV6_REFUSED 21
/* The original destination could not be stored (socket storage): connect refused. */
#define AMBIT_REASON_CONNECT_RECORD_REFUSED 22
/* The app connected straight to its own loopback capture listener: refused (it would loop). */
#define AMBIT_REASON_CONNECT_CAPTURE_PORT_REFUSED 23
/* The proxy accepted a redirected connection: the destination moved to its socket's storage. */
#define AMBIT_REASON_SOCKOPS_HANDED_OVER 24
/* The app's socket closed before the proxy accepted it: its handshake entry was removed. */
#define AMBIT_REASON_SOCKOPS_FORGOTTEN 25
/* SO_ORIGINAL_DST on the capture listener's socket with nothing recorded: EPERM, never the kernel's answer. */
#define AMBIT_REASON_GETSOCKOPT_REFUSED 26
/* Enrolled (or pending) pod and no inbound listener (agent down, or not yet started): refused. */
#define AMBIT_REASON_STEER_REFUSED_NO_SOCKET 27
/* The listener can not take this connection (e.g. IPv6 and an IPv4-only listener): refused. */
#define AMBIT_REASON_STEER_REFUSED_ASSIGN 28

/* A UDP or TCP connect/sendmsg to port 53 went to the pod's DNS proxy instead. */
#define AMBIT_REASON_DNS_REDIRECTED 29
/* A DNS reply from the proxy was shown to the app as coming from the resolver it asked. */
#define AMBIT_REASON_DNS_REPLY_REWRITTEN 30

/* sockops exempted the agent's transparent dial from its pod's inbound steering. */
#define AMBIT_REASON_SOCKOPS_DIAL_EXEMPTED 31
/* ... and could not (the pod's map full, or the pod not enrolled): its inbound is refused a while. */
#define AMBIT_REASON_SOCKOPS_DIAL_EXEMPT_FAILED 32
/* sk_lookup refused a connection because an exemption failed within the last second. */
#define AMBIT_REASON_STEER_REFUSED_OVERFLOW 33
#define AMBIT_REASON_COUNT 34

#endif
