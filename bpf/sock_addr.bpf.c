// SPDX-License-Identifier: Apache-2.0
/*
 * Outbound capture, the cgroup sock_addr family (DESIGN.md, Capture). Attached once at a cgroup
 * v2 folder; only sockets whose netns cookie is in ambit_pods are touched:
 *   connect4/6     rewrite the app's TCP connect to the pod's own loopback outbound port and keep
 *                  the original destination in the socket's storage; refuse the connect when the
 *                  pod is pending, when the destination can not be kept, for native IPv6 without
 *                  an IPv6 listener, and for a direct connect to the capture listener itself;
 *   getpeername4/6 show the app the peer it asked for, not the proxy;
 *   DNS (port 53, ztunnel's DNS capture): UDP connects and sends (connect4/6, sendmsg4/6) and
 *                  TCP connects go to the pod's loopback DNS proxy port instead; recvmsg4/6
 *                  show the app the proxy's replies as coming from the resolver it asked.
 * A refused connect fails with EPERM: capture never lets an enrolled pod's connection go around
 * the mesh because something went wrong.
 *
 * License: Apache-2.0 (the programs use no GPL-only helpers).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "config.h"
#include "types.h"
#include "reasons.h"
/* The shared maps this object uses; maps.h defines only these (and ambit_stats). */
#define AMBIT_USE_PODS
#define AMBIT_USE_EXCLUDED_PORTS
#define AMBIT_USE_SOCK_ORIG
#include "maps.h"
#include "addr.h"

char LICENSE[] SEC("license") = "Apache-2.0";

#define ALLOW 1
#define REFUSE 0
#define AMBIT_DNS_PORT 53
#define AMBIT_SOCK_DGRAM 2

/*
 * The pod's config when this connect is capture's business (the netns is enrolled or pending,
 * the socket is TCP, and it is not one of the agent's own sockets), else NULL.
 */
/* Shows an IPv6 socket the stored original address (IPv4 ones are stored v4-mapped). */
static __always_inline void __set_peer6(struct bpf_sock_addr *ctx, struct ambit_orig_dst *orig)
{
	__u32 *w = (__u32 *)orig->addr;

	ctx->user_ip6[0] = w[0];
	ctx->user_ip6[1] = w[1];
	ctx->user_ip6[2] = w[2];
	ctx->user_ip6[3] = w[3];
}

static __always_inline struct ambit_pod_config *__pod_tcp(struct bpf_sock_addr *ctx, __u64 netns)
{
	struct ambit_pod_config *cfg = bpf_map_lookup_elem(&ambit_pods, &netns);
	struct bpf_sock *sk;

	if (!cfg)
		return NULL;
	__count(AMBIT_REASON_CONNECT_SEEN);
	/*
	 * UDP is not captured (docs/capture.md). An MPTCP socket's connect reaches this hook as its
	 * first subflow, a TCP socket: captured, and it falls back to TCP at the proxy's listener.
	 */
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
	return cfg;
}

/*
 * A connect capture leaves alone: forget what an earlier connect of the same socket recorded, so
 * getpeername and sockops never act on a stale destination.
 */
static __always_inline int __direct(struct bpf_sock_addr *ctx, __u32 reason)
{
	bpf_sk_storage_delete(&ambit_sock_orig, ctx->sk);
	__count(reason);
	return ALLOW;
}

/*
 * Decisions before the rewrite, shared by both families. Returns -1 to go on redirecting, else
 * the verdict. `local` is a loopback or unspecified destination (pod-local traffic).
 */
static __always_inline int __decide(struct bpf_sock_addr *ctx, struct ambit_pod_config *cfg, __u64 netns, __u16 dport,
				    int local, int native6)
{
	struct ambit_port_key pk = {};

	if (local) {
		/* Straight to the capture listener: the proxy could only learn its own address. */
		if (dport == cfg->outbound_port) {
			__count(AMBIT_REASON_CONNECT_CAPTURE_PORT_REFUSED);
			return REFUSE;
		}
		return __direct(ctx, AMBIT_REASON_CONNECT_LOOPBACK);
	}
	if (cfg->flags & AMBIT_POD_F_PENDING) {
		__count(AMBIT_REASON_CONNECT_PENDING_REFUSED);
		return REFUSE;
	}
	pk.netns_cookie = netns;
	pk.port = dport;
	if (bpf_map_lookup_elem(&ambit_excluded_ports, &pk))
		return __direct(ctx, AMBIT_REASON_CONNECT_EXCLUDED_PORT);
	if (native6 && !(cfg->flags & AMBIT_POD_F_IPV6)) {
		__count(AMBIT_REASON_CONNECT_IPV6_REFUSED);
		return REFUSE;
	}
	return -1;
}

/*
 * Keeps the original destination (16-byte form, host-order port) in the socket's storage.
 * Returns 0, or -1 when it can not be kept (the connect is then refused).
 */
static __always_inline int __record(struct bpf_sock_addr *ctx, __u32 w0, __u32 w1, __u32 w2, __u32 w3, __u16 port, __u16 family)
{
	struct ambit_orig_dst *orig = bpf_sk_storage_get(&ambit_sock_orig, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!orig) {
		__count(AMBIT_REASON_CONNECT_RECORD_REFUSED);
		return -1;
	}
	__copy6(orig->addr, w0, w1, w2, w3);
	orig->port = port;
	orig->family = family;
	orig->pad = 0;
	return 0;
}

/* Where a captured TCP connect goes: the DNS proxy for port 53 when the pod has one, else the outbound listener. */
static __always_inline __u16 __target_port(struct ambit_pod_config *cfg, __u16 dport)
{
	if (dport == AMBIT_DNS_PORT && cfg->dns_port != 0) {
		__count(AMBIT_REASON_DNS_REDIRECTED);
		return cfg->dns_port;
	}
	return cfg->outbound_port;
}

/*
 * The pod's config when this UDP connect or send is a DNS query capture takes (port 53, the pod
 * enrolled with a DNS proxy, not one of the agent's own sockets), else NULL.
 */
static __always_inline struct ambit_pod_config *__pod_dns_udp(struct bpf_sock_addr *ctx, __u64 netns, __u16 dport)
{
	struct ambit_pod_config *cfg;
	struct bpf_sock *sk;

	if (dport != AMBIT_DNS_PORT || ctx->type != AMBIT_SOCK_DGRAM || ctx->protocol != IPPROTO_UDP)
		return NULL;
	cfg = bpf_map_lookup_elem(&ambit_pods, &netns);
	/* A pending pod has no proxy yet: its queries go where they were sent. */
	if (!cfg || cfg->dns_port == 0 || (cfg->flags & AMBIT_POD_F_PENDING))
		return NULL;
	sk = ctx->sk;
	if (!sk || sk->mark == AMBIT_BYPASS_MARK)
		return NULL;
	return cfg;
}

/*
 * Sends a UDP query to the pod's DNS proxy and remembers the resolver the app asked (one per
 * socket: the last one), so recvmsg can show the reply as coming from it. When that can not be
 * kept the query goes to the resolver unchanged: a reply the app would refuse is worse.
 */
static __always_inline int __dns_udp(struct bpf_sock_addr *ctx, struct ambit_pod_config *cfg, __u32 w0, __u32 w1, __u32 w2, __u32 w3,
				     __u16 family, int to6)
{
	if (__record(ctx, w0, w1, w2, w3, AMBIT_DNS_PORT, family) != 0)
		return ALLOW;
	if (!to6) {
		ctx->user_ip4 = bpf_htonl(AMBIT_LOOPBACK4);
	} else if (family == AMBIT_AF_INET) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = bpf_htonl(AMBIT_LOOPBACK4);
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	ctx->user_port = bpf_htons(cfg->dns_port);
	__count(AMBIT_REASON_DNS_REDIRECTED);
	return ALLOW;
}

/* UDP to an IPv4 resolver (connect4 and sendmsg4); loopback resolvers are the pod's own. */
static __always_inline int __dns_udp4(struct bpf_sock_addr *ctx, __u64 netns, __u16 dport)
{
	struct ambit_pod_config *cfg = __pod_dns_udp(ctx, netns, dport);
	__u32 dst = ctx->user_ip4;

	if (!cfg || __is_loopback4(dst) || dst == 0)
		return ALLOW;
	return __dns_udp(ctx, cfg, 0, 0, bpf_htonl(0xffff), dst, AMBIT_AF_INET, 0);
}

/* UDP to a resolver from an IPv6 socket (connect6 and sendmsg6): v4-mapped, or native with an IPv6 proxy. */
static __always_inline int __dns_udp6(struct bpf_sock_addr *ctx, __u64 netns, __u16 dport)
{
	struct ambit_pod_config *cfg = __pod_dns_udp(ctx, netns, dport);
	__u32 a0, a1, a2, a3;
	int mapped;

	if (!cfg)
		return ALLOW;
	a0 = ctx->user_ip6[0];
	a1 = ctx->user_ip6[1];
	a2 = ctx->user_ip6[2];
	a3 = ctx->user_ip6[3];
	mapped = a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff);
	if (mapped) {
		if (__is_loopback4(a3) || a3 == 0)
			return ALLOW;
		return __dns_udp(ctx, cfg, a0, a1, a2, a3, AMBIT_AF_INET, 1);
	}
	if (a0 == 0 && a1 == 0 && a2 == 0 && (a3 == bpf_htonl(1) || a3 == 0))
		return ALLOW;
	/* Without a [::1] proxy a native IPv6 resolver is asked directly. */
	if (!(cfg->flags & AMBIT_POD_F_IPV6))
		return ALLOW;
	return __dns_udp(ctx, cfg, a0, a1, a2, a3, AMBIT_AF_INET6, 1);
}

SEC("cgroup/connect4")
int ambit_connect4(struct bpf_sock_addr *ctx)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	__u16 dport = bpf_ntohs((__u16)ctx->user_port);
	__u32 dst = ctx->user_ip4;
	struct ambit_pod_config *cfg;
	int verdict;

	cfg = __pod_tcp(ctx, netns);
	if (!cfg)
		return ctx->type == AMBIT_SOCK_DGRAM ? __dns_udp4(ctx, netns, dport) : ALLOW;
	/* 0.0.0.0 connects to the host itself, like 127/8. */
	verdict = __decide(ctx, cfg, netns, dport, __is_loopback4(dst) || dst == 0, 0);
	if (verdict >= 0)
		return verdict;
	/* Stored v4-mapped (::ffff:a.b.c.d), as types.h has every address. */
	if (__record(ctx, 0, 0, bpf_htonl(0xffff), dst, dport, AMBIT_AF_INET) != 0)
		return REFUSE;
	ctx->user_ip4 = bpf_htonl(AMBIT_LOOPBACK4);
	ctx->user_port = bpf_htons(__target_port(cfg, dport));
	__count(AMBIT_REASON_CONNECT_REDIRECTED);
	return ALLOW;
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
	__u32 a0, a1, a2, a3;
	int mapped, local, verdict;

	cfg = __pod_tcp(ctx, netns);
	if (!cfg)
		return ctx->type == AMBIT_SOCK_DGRAM ? __dns_udp6(ctx, netns, dport) : ALLOW;
	a0 = ctx->user_ip6[0];
	a1 = ctx->user_ip6[1];
	a2 = ctx->user_ip6[2];
	a3 = ctx->user_ip6[3];
	mapped = a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff);
	if (mapped)
		local = __is_loopback4(a3) || a3 == 0;
	else
		local = a0 == 0 && a1 == 0 && a2 == 0 && (a3 == bpf_htonl(1) || a3 == 0); /* ::1 or :: */
	verdict = __decide(ctx, cfg, netns, dport, local, !mapped);
	if (verdict >= 0)
		return verdict;
	if (__record(ctx, a0, a1, a2, a3, dport, mapped ? AMBIT_AF_INET : AMBIT_AF_INET6) != 0)
		return REFUSE;
	if (mapped) {
		/* ::ffff:127.0.0.1 reaches an AF_INET 127.0.0.1 listener. */
		ctx->user_ip6[3] = bpf_htonl(AMBIT_LOOPBACK4);
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	ctx->user_port = bpf_htons(__target_port(cfg, dport));
	__count(AMBIT_REASON_CONNECT_REDIRECTED);
	return ALLOW;
}

/* The original destination of a redirected app socket, or NULL (also for the proxy's sockets). */
static __always_inline struct ambit_orig_dst *__redirected(struct bpf_sock_addr *ctx)
{
	__u64 netns = bpf_get_netns_cookie(ctx);

	if (!bpf_map_lookup_elem(&ambit_pods, &netns))
		return NULL;
	return bpf_sk_storage_get(&ambit_sock_orig, ctx->sk, 0, 0);
}

SEC("cgroup/getpeername4")
int ambit_getpeername4(struct bpf_sock_addr *ctx)
{
	struct ambit_orig_dst *orig = __redirected(ctx);

	if (!orig || orig->family != AMBIT_AF_INET)
		return ALLOW;
	ctx->user_ip4 = ((__u32 *)orig->addr)[3];
	ctx->user_port = bpf_htons(orig->port);
	__count(AMBIT_REASON_GETPEERNAME_REWRITTEN);
	return ALLOW;
}

SEC("cgroup/getpeername6")
int ambit_getpeername6(struct bpf_sock_addr *ctx)
{
	struct ambit_orig_dst *orig = __redirected(ctx);
	if (!orig)
		return ALLOW;
	/* IPv4 originals are stored v4-mapped, which is what a dual-stack socket expects. */
	__set_peer6(ctx, orig);
	ctx->user_port = bpf_htons(orig->port);
	__count(AMBIT_REASON_GETPEERNAME_REWRITTEN);
	return ALLOW;
}

/*
 * Unconnected UDP: sendto/sendmsg with a destination. (A connected socket's sends carry none and
 * skip this hook; connect4/6 moved them already.)
 */
SEC("cgroup/sendmsg4")
int ambit_sendmsg4(struct bpf_sock_addr *ctx)
{
	return __dns_udp4(ctx, bpf_get_netns_cookie(ctx), bpf_ntohs((__u16)ctx->user_port));
}

SEC("cgroup/sendmsg6")
int ambit_sendmsg6(struct bpf_sock_addr *ctx)
{
	return __dns_udp6(ctx, bpf_get_netns_cookie(ctx), bpf_ntohs((__u16)ctx->user_port));
}

/*
 * The resolver a socket's DNS query was sent to, when this datagram is the proxy's reply to it
 * (from the pod's DNS port on loopback), else NULL. Without the rewrite resolvers that check the
 * reply's source (glibc, musl, c-ares) would drop it.
 */
static __always_inline struct ambit_orig_dst *__dns_reply(struct bpf_sock_addr *ctx, int from_loopback)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct ambit_pod_config *cfg = bpf_map_lookup_elem(&ambit_pods, &netns);
	struct ambit_orig_dst *orig;

	if (!cfg || cfg->dns_port == 0 || !from_loopback || bpf_ntohs((__u16)ctx->user_port) != cfg->dns_port)
		return NULL;
	orig = bpf_sk_storage_get(&ambit_sock_orig, ctx->sk, 0, 0);
	if (!orig || orig->port != AMBIT_DNS_PORT)
		return NULL;
	return orig;
}

/* recvmsg programs can not refuse a datagram: they only rewrite its source and must return 1. */
SEC("cgroup/recvmsg4")
int ambit_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct ambit_orig_dst *orig = __dns_reply(ctx, ctx->user_ip4 == bpf_htonl(AMBIT_LOOPBACK4));

	if (!orig || orig->family != AMBIT_AF_INET)
		return ALLOW;
	ctx->user_ip4 = ((__u32 *)orig->addr)[3];
	ctx->user_port = bpf_htons(AMBIT_DNS_PORT);
	__count(AMBIT_REASON_DNS_REPLY_REWRITTEN);
	return ALLOW;
}

SEC("cgroup/recvmsg6")
int ambit_recvmsg6(struct bpf_sock_addr *ctx)
{
	__u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1], a2 = ctx->user_ip6[2], a3 = ctx->user_ip6[3];
	int loopback = a0 == 0 && a1 == 0 && ((a2 == 0 && a3 == bpf_htonl(1)) || (a2 == bpf_htonl(0xffff) && a3 == bpf_htonl(AMBIT_LOOPBACK4)));
	struct ambit_orig_dst *orig = __dns_reply(ctx, loopback);
	if (!orig)
		return ALLOW;
	/* IPv4 resolvers are stored v4-mapped, which is what a dual-stack socket expects. */
	__set_peer6(ctx, orig);
	ctx->user_port = bpf_htons(AMBIT_DNS_PORT);
	__count(AMBIT_REASON_DNS_REPLY_REWRITTEN);
	return ALLOW;
}
