// SPDX-License-Identifier: Apache-2.0
/*
 * Outbound capture, the cgroup sockopt family: answers getsockopt(SOL_IP, SO_ORIGINAL_DST) /
 * (SOL_IPV6, IP6T_SO_ORIGINAL_DST) on the proxy's accepted socket from its storage (sockops put
 * the original destination there), so the proxy reads it exactly as after an nftables REDIRECT.
 *
 * On the capture listener's own port with nothing recorded the call fails with EPERM rather than
 * falling through to conntrack, which would answer the listener's own address (the proxy would
 * dial itself). Every other option goes through untouched; attached at the root this runs for
 * every getsockopt on the node, so an optlen beyond the program's one-page buffer is set to 0
 * (keep the kernel's answer), as the kernel selftests do: left as is, kernels before 6.5 fail
 * such calls (iptables-legacy, netlink) with EFAULT.
 *
 * License: Apache-2.0 (the program uses no GPL-only helpers).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "config.h"
#include "types.h"
#include "reasons.h"
/* The shared maps this object uses; maps.h defines only these (and ambit_stats). */
#define AMBIT_USE_PODS
#define AMBIT_USE_ACCEPT_ORIG
#define AMBIT_USE_HANDSHAKES
#include "maps.h"
#include "addr.h"

char LICENSE[] SEC("license") = "Apache-2.0";

#define PASS 1
#define REFUSE 0

/* Leaves the call to the kernel (and any other program), keeping its answer intact. */
static __always_inline int __pass(struct bpf_sockopt *ctx)
{
	__u32 len = (__u32)ctx->optlen;

	/* The bound lets the verifier accept the pointer arithmetic; anything larger is beyond the buffer too. */
	if (len > AMBIT_MAX_OPTLEN || ctx->optval + len > ctx->optval_end)
		ctx->optlen = 0;
	return PASS;
}

/* The handshake entry of the accepted socket's peer: only if sockops could not hand it over. */
static __always_inline struct ambit_orig_dst *__handshake(struct bpf_sockopt *ctx, struct bpf_sock *sk)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct ambit_peer_key key = {};
	void *handshakes = bpf_map_lookup_elem(&ambit_handshakes, &netns);

	/* Fields read unconditionally (AMBIT_CTX), then chosen. */
	__u32 family = AMBIT_CTX(sk->family), ip4 = AMBIT_CTX(sk->dst_ip4), port = AMBIT_CTX(sk->dst_port);
	__u32 w0 = AMBIT_CTX(sk->dst_ip6[0]), w1 = AMBIT_CTX(sk->dst_ip6[1]);
	__u32 w2 = AMBIT_CTX(sk->dst_ip6[2]), w3 = AMBIT_CTX(sk->dst_ip6[3]);

	if (!handshakes)
		return NULL;
	if (family == AMBIT_AF_INET)
		__map_v4(key.addr, ip4);
	else
		__copy6(key.addr, w0, w1, w2, w3);
	key.port = bpf_ntohs((__u16)port);
	return bpf_map_lookup_elem(handshakes, &key);
}

/* True for a socket of the pod's capture listener (its local port is the outbound port). */
static __always_inline int __capture_listener_socket(struct bpf_sockopt *ctx, struct bpf_sock *sk)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct ambit_pod_config *cfg = bpf_map_lookup_elem(&ambit_pods, &netns);

	return cfg && sk->src_port == cfg->outbound_port;
}

SEC("cgroup/getsockopt")
int ambit_getsockopt(struct bpf_sockopt *ctx)
{
	struct ambit_orig_dst *orig;
	struct bpf_sock *sk;
	int want6;

	if (ctx->optname != AMBIT_SO_ORIGINAL_DST)
		return __pass(ctx);
	if (ctx->level == AMBIT_SOL_IP)
		want6 = 0;
	else if (ctx->level == AMBIT_SOL_IPV6)
		want6 = 1;
	else
		return __pass(ctx);
	sk = ctx->sk;
	if (!sk)
		return __pass(ctx);
	orig = bpf_sk_storage_get(&ambit_accept_orig, sk, 0, 0);
	if (!orig)
		orig = __handshake(ctx, sk);
	if (!orig) {
		if (__capture_listener_socket(ctx, sk)) {
			__count(AMBIT_REASON_GETSOCKOPT_REFUSED);
			return REFUSE;
		}
		/* Not a captured connection: the kernel's own answer (conntrack, or ENOENT) stands. */
		__count(AMBIT_REASON_GETSOCKOPT_MISS);
		return __pass(ctx);
	}
	if (!want6 && orig->family == AMBIT_AF_INET) {
		struct sockaddr_in *sin = ctx->optval;

		if ((void *)(sin + 1) > ctx->optval_end)
			return __pass(ctx);
		sin->sin_family = AMBIT_AF_INET;
		sin->sin_port = bpf_htons(orig->port);
		sin->sin_addr.s_addr = ((__u32 *)orig->addr)[3];
		__builtin_memset(sin->__pad, 0, sizeof(sin->__pad));
		ctx->optlen = sizeof(*sin);
	} else if (want6 && orig->family == AMBIT_AF_INET6) {
		struct sockaddr_in6 *sin6 = ctx->optval;

		if ((void *)(sin6 + 1) > ctx->optval_end)
			return __pass(ctx);
		sin6->sin6_family = AMBIT_AF_INET6;
		sin6->sin6_port = bpf_htons(orig->port);
		sin6->sin6_flowinfo = 0;
		__builtin_memcpy(&sin6->sin6_addr, orig->addr, 16);
		sin6->sin6_scope_id = 0;
		ctx->optlen = sizeof(*sin6);
	} else {
		/* The other family's level: the caller asks that one next. */
		return __pass(ctx);
	}
	ctx->retval = 0;
	__count(AMBIT_REASON_GETSOCKOPT_ANSWERED);
	return PASS;
}
