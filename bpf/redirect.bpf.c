// SPDX-License-Identifier: Apache-2.0
/*
 * Outbound capture for enrolled pods (DESIGN.md, Capture). Attached once at a cgroup v2 folder;
 * only sockets whose netns cookie is in ambit_pods are touched:
 *   connect4/6     rewrite the app's TCP connect to the pod's own loopback outbound port and
 *                  remember the original destination by socket cookie;
 *   sockops        at TCP_CONNECT_CB (local port bound, SYN not yet sent) copy it to a map keyed
 *                  by the client tuple, which is what the proxy sees as its peer;
 *   getsockopt     answer SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST from that map, so the proxy
 *                  reads it exactly as after an nftables REDIRECT;
 *   getpeername4/6 show the app the peer it asked for, not the proxy.
 *
 * License: Apache-2.0 (the program uses no GPL-only helpers).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "config.h"
#include "types.h"
#include "reasons.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Apache-2.0";

#define LOOPBACK4 0x7f000001 /* 127.0.0.1, host order */

static __always_inline int __is_loopback4(__u32 ip_be)
{
	return (bpf_ntohl(ip_be) >> 24) == 127;
}

static __always_inline void __map_v4(__u8 addr[16], __u32 ip_be)
{
	__u32 *w = (__u32 *)addr;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0xffff);
	w[3] = ip_be;
}

/*
 * The checks both connect hooks share. Returns the pod's config when this connect must be
 * redirected so far (enrolled, TCP, not the agent's own socket, port not excluded), else NULL.
 */
static __always_inline struct ambit_pod_config *__enrolled_tcp(struct bpf_sock_addr *ctx, __u64 netns,
							       __u16 dport)
{
	struct ambit_pod_config *cfg = bpf_map_lookup_elem(&ambit_pods, &netns);
	struct ambit_port_key pk = {};
	struct bpf_sock *sk;

	if (!cfg)
		return NULL;
	__count(AMBIT_REASON_CONNECT_SEEN);
	if (ctx->type != AMBIT_SOCK_STREAM || ctx->protocol != IPPROTO_TCP) {
		__count(AMBIT_REASON_CONNECT_NOT_TCP);
		return NULL;
	}
	/* The agent dials upstream from inside the pod with this mark; capturing it would loop. */
	sk = ctx->sk;
	if (!sk)
		return NULL;
	if (sk->mark == AMBIT_BYPASS_MARK) {
		__count(AMBIT_REASON_CONNECT_BYPASS_MARK);
		return NULL;
	}
	pk.netns_cookie = netns;
	pk.port = dport;
	if (bpf_map_lookup_elem(&ambit_excluded_ports, &pk)) {
		__count(AMBIT_REASON_CONNECT_EXCLUDED_PORT);
		return NULL;
	}
	return cfg;
}

/* Returns 0 when the original destination was stored, -errno otherwise. */
static __always_inline int __record(void *ctx, struct ambit_orig_dst *orig)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	if (bpf_map_update_elem(&ambit_orig_by_sock, &cookie, orig, BPF_ANY) != 0) {
		__count(AMBIT_REASON_CONNECT_RECORD_FAILED);
		return -1;
	}
	return 0;
}

SEC("cgroup/connect4")
int ambit_connect4(struct bpf_sock_addr *ctx)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	__u16 dport = bpf_ntohs((__u16)ctx->user_port);
	__u32 dst = ctx->user_ip4;
	struct ambit_pod_config *cfg;
	struct ambit_orig_dst orig = {};

	cfg = __enrolled_tcp(ctx, netns, dport);
	if (!cfg)
		return 1;
	/* Loopback includes the redirect target itself: pod-local traffic is never captured. */
	if (__is_loopback4(dst)) {
		__count(AMBIT_REASON_CONNECT_LOOPBACK);
		return 1;
	}
	__map_v4(orig.addr, dst);
	orig.port = dport;
	orig.family = AMBIT_AF_INET;
	if (__record(ctx, &orig) != 0)
		return 1;
	ctx->user_ip4 = bpf_htonl(LOOPBACK4);
	ctx->user_port = bpf_htons(cfg->outbound_port);
	__count(AMBIT_REASON_CONNECT_REDIRECTED);
	return 1;
}

/*
 * Dual-stack sockets connect to v4-mapped addresses through this hook, not connect4, so the
 * mapped case must be captured here or IPv4 traffic from such runtimes would escape.
 */
SEC("cgroup/connect6")
int ambit_connect6(struct bpf_sock_addr *ctx)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	__u16 dport = bpf_ntohs((__u16)ctx->user_port);
	struct ambit_pod_config *cfg;
	struct ambit_orig_dst orig = {};
	__u32 a0, a1, a2, a3;
	int mapped;

	cfg = __enrolled_tcp(ctx, netns, dport);
	if (!cfg)
		return 1;
	a0 = ctx->user_ip6[0];
	a1 = ctx->user_ip6[1];
	a2 = ctx->user_ip6[2];
	a3 = ctx->user_ip6[3];
	mapped = a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff);
	if (mapped ? __is_loopback4(a3) : (a0 == 0 && a1 == 0 && a2 == 0 && a3 == bpf_htonl(1))) {
		__count(AMBIT_REASON_CONNECT_LOOPBACK);
		return 1;
	}
	if (!mapped && !(cfg->flags & AMBIT_POD_F_IPV6)) {
		__count(AMBIT_REASON_CONNECT_IPV6_DISABLED);
		return 1;
	}
	__u32 *w = (__u32 *)orig.addr;
	w[0] = a0;
	w[1] = a1;
	w[2] = a2;
	w[3] = a3;
	orig.port = dport;
	orig.family = mapped ? AMBIT_AF_INET : AMBIT_AF_INET6;
	if (__record(ctx, &orig) != 0)
		return 1;
	if (mapped) {
		/* ::ffff:127.0.0.1 reaches an AF_INET 127.0.0.1 listener. */
		ctx->user_ip6[3] = bpf_htonl(LOOPBACK4);
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	ctx->user_port = bpf_htons(cfg->outbound_port);
	__count(AMBIT_REASON_CONNECT_REDIRECTED);
	return 1;
}

SEC("sockops")
int ambit_sockops(struct bpf_sock_ops *skops)
{
	struct ambit_tuple_key key = {};
	struct ambit_orig_dst *orig;
	__u64 cookie;

	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	orig = bpf_map_lookup_elem(&ambit_orig_by_sock, &cookie);
	if (!orig)
		return 1;
	key.netns_cookie = bpf_get_netns_cookie(skops);
	if (skops->family == AMBIT_AF_INET) {
		__map_v4(key.addr, skops->local_ip4);
	} else {
		__u32 *w = (__u32 *)key.addr;

		w[0] = skops->local_ip6[0];
		w[1] = skops->local_ip6[1];
		w[2] = skops->local_ip6[2];
		w[3] = skops->local_ip6[3];
	}
	key.port = (__u16)skops->local_port; /* host order in sock_ops */
	if (bpf_map_update_elem(&ambit_orig_by_tuple, &key, orig, BPF_ANY) != 0)
		__count(AMBIT_REASON_SOCKOPS_RECORD_FAILED);
	else
		__count(AMBIT_REASON_SOCKOPS_RECORDED);
	return 1;
}

SEC("cgroup/getsockopt")
int ambit_getsockopt(struct bpf_sockopt *ctx)
{
	struct ambit_tuple_key key = {};
	struct ambit_orig_dst *orig;
	struct bpf_sock *sk;
	int want6;

	if (ctx->optname != AMBIT_SO_ORIGINAL_DST)
		return 1;
	if (ctx->level == AMBIT_SOL_IP)
		want6 = 0;
	else if (ctx->level == AMBIT_SOL_IPV6)
		want6 = 1;
	else
		return 1;
	sk = ctx->sk;
	if (!sk)
		return 1;
	/* The proxy's accepted socket: its peer is the app's client side. */
	key.netns_cookie = bpf_get_netns_cookie(ctx);
	if (sk->family == AMBIT_AF_INET) {
		__map_v4(key.addr, sk->dst_ip4);
	} else {
		__u32 *w = (__u32 *)key.addr;

		w[0] = sk->dst_ip6[0];
		w[1] = sk->dst_ip6[1];
		w[2] = sk->dst_ip6[2];
		w[3] = sk->dst_ip6[3];
	}
	key.port = bpf_ntohs((__u16)sk->dst_port);
	orig = bpf_map_lookup_elem(&ambit_orig_by_tuple, &key);
	if (!orig) {
		/* Leave the kernel's own answer (conntrack, or ENOENT) untouched. */
		__count(AMBIT_REASON_GETSOCKOPT_MISS);
		return 1;
	}
	if (!want6 && orig->family == AMBIT_AF_INET) {
		struct sockaddr_in *sin = ctx->optval;

		if ((void *)(sin + 1) > ctx->optval_end)
			return 1;
		sin->sin_family = AMBIT_AF_INET;
		sin->sin_port = bpf_htons(orig->port);
		sin->sin_addr.s_addr = ((__u32 *)orig->addr)[3];
		__builtin_memset(sin->__pad, 0, sizeof(sin->__pad));
		ctx->optlen = sizeof(*sin);
	} else if (want6 && orig->family == AMBIT_AF_INET6) {
		struct sockaddr_in6 *sin6 = ctx->optval;

		if ((void *)(sin6 + 1) > ctx->optval_end)
			return 1;
		sin6->sin6_family = AMBIT_AF_INET6;
		sin6->sin6_port = bpf_htons(orig->port);
		sin6->sin6_flowinfo = 0;
		__builtin_memcpy(&sin6->sin6_addr, orig->addr, 16);
		sin6->sin6_scope_id = 0;
		ctx->optlen = sizeof(*sin6);
	} else {
		return 1;
	}
	ctx->retval = 0;
	__count(AMBIT_REASON_GETSOCKOPT_ANSWERED);
	return 1;
}

SEC("cgroup/getpeername4")
int ambit_getpeername4(struct bpf_sock_addr *ctx)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	__u64 cookie;
	struct ambit_orig_dst *orig;

	if (!bpf_map_lookup_elem(&ambit_pods, &netns))
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	orig = bpf_map_lookup_elem(&ambit_orig_by_sock, &cookie);
	if (!orig || orig->family != AMBIT_AF_INET)
		return 1;
	ctx->user_ip4 = ((__u32 *)orig->addr)[3];
	ctx->user_port = bpf_htons(orig->port);
	__count(AMBIT_REASON_GETPEERNAME_REWRITTEN);
	return 1;
}

SEC("cgroup/getpeername6")
int ambit_getpeername6(struct bpf_sock_addr *ctx)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	__u64 cookie;
	struct ambit_orig_dst *orig;
	__u32 *w;

	if (!bpf_map_lookup_elem(&ambit_pods, &netns))
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	orig = bpf_map_lookup_elem(&ambit_orig_by_sock, &cookie);
	if (!orig)
		return 1;
	/* IPv4 originals are stored v4-mapped, which is what a dual-stack socket expects. */
	w = (__u32 *)orig->addr;
	ctx->user_ip6[0] = w[0];
	ctx->user_ip6[1] = w[1];
	ctx->user_ip6[2] = w[2];
	ctx->user_ip6[3] = w[3];
	ctx->user_port = bpf_htons(orig->port);
	__count(AMBIT_REASON_GETPEERNAME_REWRITTEN);
	return 1;
}
