// SPDX-License-Identifier: Apache-2.0
/*
 * Inbound capture, the sk_lookup family: an instance attached to one pod's netns steers every
 * inbound TCP connection to that pod's inbound listener (15006), which must live in the same
 * netns (a socket from another netns is accepted by bpf_sk_assign and then silently
 * black-holed). The accepted socket's local address is the original destination.
 *
 * Fail closed: when the listener is missing (the agent is down or restarting, or the pod is
 * pending and has none yet) or can not take the connection (an IPv6 connection and an IPv4-only
 * listener), the connection is refused (SK_DROP: the SYN is answered with a reset), never handed
 * to the app unauthenticated. Pod-internal traffic, 15008, excluded ports and the agent's own
 * transparent dials go to the app's own sockets.
 *
 * One object instance per pod: ambit_steer_socket holds that pod's listener and
 * ambit_steer_excluded its excluded ports. sk_lookup can not read the netns cookie, and pod
 * addresses are not known at enrollment, so a per-pod instance is the simplest correct key. It
 * asks maps.h for no shared map, so it carries only its own three maps and ambit_stats.
 *
 * The agent's own dials to the app from the original client address (IP_TRANSPARENT, mark
 * 0x539) look like any inbound connection here (sk_lookup can not read socket marks), so sockops
 * lists each one in ambit_steer_direct when its SYN is about to leave and removes it once the
 * handshake is done (sockops.bpf.c; the agent registers this map under the pod's netns cookie in
 * ambit_direct_dials); a listed connection goes to the app's own listener. When a dial could not
 * be listed (the map full), every unlisted connection is refused for a second
 * (AMBIT_DIRECT_OVERFLOW_NS): that dial must not reach 15006 as plaintext.
 *
 * License: Apache-2.0 (the program uses no GPL-only helpers).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "config.h"
#include "types.h"
#include "reasons.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Apache-2.0";

/* Key 0: the pod's inbound listener. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ambit_steer_socket SEC(".maps");

/* Local ports served directly by the pod (value unused, presence counts). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMBIT_MAX_STEER_EXCLUDED_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} ambit_steer_excluded SEC(".maps");

/*
 * The agent's transparent dials in flight (value unused, presence counts; the zero key's value is
 * when an exemption last failed). A plain HASH, not an LRU: an LRU would evict a live entry to
 * make room (per-CPU free lists make that happen long before the map is full on many-CPU nodes)
 * and the agent's own dial would be steered back to 15006 as plaintext without the client
 * identity. Its shape is ambit_direct_map's (maps.h), the inner map type of ambit_direct_dials.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, AMBIT_MAX_STEER_DIRECT);
	__type(key, struct ambit_direct_key);
	__type(value, __u64);
} ambit_steer_direct SEC(".maps");

/*
 * Pod-internal traffic stays direct. Checking the ingress interface (lo) is not enough: a pod
 * connecting to its own address arrives with the veth as ingress_ifindex.
 */
static __always_inline int __is_local(struct bpf_sk_lookup *ctx)
{
	/*
	 * Context fields are read unconditionally and combined without branches: when a branch picks
	 * which field to load, clang computes the context offset, and the verifier refuses that.
	 */
	__u32 r0 = ctx->remote_ip6[0], r1 = ctx->remote_ip6[1], r2 = ctx->remote_ip6[2], r3 = ctx->remote_ip6[3];
	__u32 l0 = ctx->local_ip6[0], l1 = ctx->local_ip6[1], l2 = ctx->local_ip6[2], l3 = ctx->local_ip6[3];
	__u32 remote4 = bpf_ntohl(ctx->remote_ip4), local4 = bpf_ntohl(ctx->local_ip4);

	if (ctx->family == AMBIT_AF_INET)
		return (remote4 >> 24) == 127 || (local4 >> 24) == 127 || remote4 == local4;
	return ((r0 | r1 | r2) == 0 & r3 == bpf_htonl(1)) | ((l0 | l1 | l2) == 0 & l3 == bpf_htonl(1)) |
	       (r0 == l0 & r1 == l1 & r2 == l2 & r3 == l3);
}

static __always_inline int __is_direct(struct bpf_sk_lookup *ctx)
{
	struct ambit_direct_key key = {};
	__u32 *words = (__u32 *)key.remote_addr;
	/* Every context field is read unconditionally, one u32 at a time (see __is_local). */
	__u32 ip4 = ctx->remote_ip4;
	__u32 ip6_0 = ctx->remote_ip6[0], ip6_1 = ctx->remote_ip6[1];
	__u32 ip6_2 = ctx->remote_ip6[2], ip6_3 = ctx->remote_ip6[3];

	if (ctx->family == AMBIT_AF_INET) {
		words[2] = bpf_htonl(0xffff);
		words[3] = ip4;
	} else {
		words[0] = ip6_0;
		words[1] = ip6_1;
		words[2] = ip6_2;
		words[3] = ip6_3;
	}
	key.remote_port = bpf_ntohs(ctx->remote_port);
	key.local_port = (__u16)ctx->local_port;
	return bpf_map_lookup_elem(&ambit_steer_direct, &key) != NULL;
}

/* An exemption failed less than AMBIT_DIRECT_OVERFLOW_NS ago. */
static __always_inline int __overflowed(void)
{
	struct ambit_direct_key zero = {};
	__u64 *at = bpf_map_lookup_elem(&ambit_steer_direct, &zero);

	return at && *at != 0 && bpf_ktime_get_ns() - *at < AMBIT_DIRECT_OVERFLOW_NS;
}

SEC("sk_lookup")
int ambit_steer(struct bpf_sk_lookup *ctx)
{
	__u16 port = (__u16)ctx->local_port; /* host order */
	__u32 zero = 0;
	struct bpf_sock *sk;
	long err;

	/* UDP is not captured (docs/capture.md). */
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	if (__is_local(ctx)) {
		__count(AMBIT_REASON_STEER_SKIP_LOCAL);
		return SK_PASS;
	}
	if (__is_direct(ctx)) {
		__count(AMBIT_REASON_STEER_SKIP_DIRECT);
		return SK_PASS;
	}
	if (port == AMBIT_HBONE_PORT || bpf_map_lookup_elem(&ambit_steer_excluded, &port)) {
		__count(AMBIT_REASON_STEER_SKIP_PORT);
		return SK_PASS;
	}
	if (__overflowed()) {
		__count(AMBIT_REASON_STEER_REFUSED_OVERFLOW);
		return SK_DROP;
	}
	sk = bpf_map_lookup_elem(&ambit_steer_socket, &zero);
	if (!sk) {
		__count(AMBIT_REASON_STEER_REFUSED_NO_SOCKET);
		return SK_DROP;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err != 0) {
		__count(AMBIT_REASON_STEER_REFUSED_ASSIGN);
		return SK_DROP;
	}
	__count(AMBIT_REASON_STEER_ASSIGNED);
	return SK_PASS;
}
