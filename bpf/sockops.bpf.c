// SPDX-License-Identifier: Apache-2.0
/*
 * Outbound capture, the sockops family: carries the original destination from the app's socket
 * to the proxy's accepted socket through the pod's handshake map (ambit_handshakes):
 *   TCP_CONNECT_CB          app socket, local port bound, SYN not yet sent: enter
 *                           {client ip, client port} -> destination, and ask for state changes;
 *   PASSIVE_ESTABLISHED_CB  the proxy's side of it is established (before accept() returns): move
 *                           the entry into the accepted socket's storage;
 *   STATE_CB (to CLOSE)     the app's socket closed before that: remove its entry.
 * So an entry lives for one handshake, is never evicted, and a reused client port never finds an
 * earlier connection's destination. When the entry can not be made (the pod's map is full) the
 * proxy finds no destination and closes the connection: it never goes direct.
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
/* The shared maps this object uses; maps.h defines only these (and ambit_stats). */
#define AMBIT_USE_SOCK_ORIG
#define AMBIT_USE_ACCEPT_ORIG
#define AMBIT_USE_HANDSHAKES
#include "maps.h"
#include "addr.h"

char LICENSE[] SEC("license") = "Apache-2.0";

/* Context fields are read unconditionally (AMBIT_CTX), then chosen. */
static __always_inline void __key(struct ambit_peer_key *key, __u32 family, __u32 ip4, __u32 w0, __u32 w1, __u32 w2, __u32 w3,
				  __u16 port)
{
	if (family == AMBIT_AF_INET)
		__map_v4(key->addr, ip4);
	else
		__copy6(key->addr, w0, w1, w2, w3);
	key->port = port;
}

static __always_inline void __local_key(struct bpf_sock_ops *skops, struct ambit_peer_key *key)
{
	__u32 family = AMBIT_CTX(skops->family), ip4 = AMBIT_CTX(skops->local_ip4);
	__u32 w0 = AMBIT_CTX(skops->local_ip6[0]), w1 = AMBIT_CTX(skops->local_ip6[1]);
	__u32 w2 = AMBIT_CTX(skops->local_ip6[2]), w3 = AMBIT_CTX(skops->local_ip6[3]);
	__u32 port = AMBIT_CTX(skops->local_port); /* host order in sock_ops */

	__key(key, family, ip4, w0, w1, w2, w3, (__u16)port);
}

static __always_inline void __remote_key(struct bpf_sock_ops *skops, struct ambit_peer_key *key)
{
	__u32 family = AMBIT_CTX(skops->family), ip4 = AMBIT_CTX(skops->remote_ip4);
	__u32 w0 = AMBIT_CTX(skops->remote_ip6[0]), w1 = AMBIT_CTX(skops->remote_ip6[1]);
	__u32 w2 = AMBIT_CTX(skops->remote_ip6[2]), w3 = AMBIT_CTX(skops->remote_ip6[3]);
	/* Network order in the upper half on little endian; bpf_ntohl brings it to host order. */
	__u32 port = bpf_ntohl(AMBIT_CTX(skops->remote_port));

	__key(key, family, ip4, w0, w1, w2, w3, (__u16)port);
}

static __always_inline void *__pod_handshakes(struct bpf_sock_ops *skops)
{
	__u64 netns = bpf_get_netns_cookie(skops);

	return bpf_map_lookup_elem(&ambit_handshakes, &netns);
}

static __always_inline void __record(struct bpf_sock_ops *skops)
{
	struct ambit_peer_key key = {};
	struct ambit_orig_dst *orig;
	struct bpf_sock *sk = skops->sk;
	void *handshakes;

	if (!sk)
		return;
	orig = bpf_sk_storage_get(&ambit_sock_orig, sk, 0, 0);
	if (!orig)
		return; /* not redirected */
	__local_key(skops, &key);
	handshakes = __pod_handshakes(skops);
	if (!handshakes || bpf_map_update_elem(handshakes, &key, orig, BPF_ANY) != 0) {
		__count(AMBIT_REASON_SOCKOPS_RECORD_FAILED);
		return;
	}
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	__count(AMBIT_REASON_SOCKOPS_RECORDED);
}

static __always_inline void __hand_over(struct bpf_sock_ops *skops)
{
	struct ambit_peer_key key = {};
	struct ambit_orig_dst *orig, *dst;
	struct bpf_sock *sk = skops->sk;
	void *handshakes;

	if (!sk)
		return;
	handshakes = __pod_handshakes(skops);
	if (!handshakes)
		return;
	__remote_key(skops, &key);
	orig = bpf_map_lookup_elem(handshakes, &key);
	if (!orig)
		return; /* not a redirected connection */
	dst = bpf_sk_storage_get(&ambit_accept_orig, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!dst)
		return; /* getsockopt falls back to the handshake entry, removed when the app's socket closes */
	*dst = *orig;
	bpf_map_delete_elem(handshakes, &key);
	__count(AMBIT_REASON_SOCKOPS_HANDED_OVER);
}

static __always_inline void __forget(struct bpf_sock_ops *skops)
{
	struct ambit_peer_key key = {};
	void *handshakes = __pod_handshakes(skops);

	if (!handshakes)
		return;
	__local_key(skops, &key);
	if (bpf_map_delete_elem(handshakes, &key) == 0)
		__count(AMBIT_REASON_SOCKOPS_FORGOTTEN);
}

SEC("sockops")
int ambit_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		__record(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		__hand_over(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* Only the app sockets __record asked for; the state is args[1] (args[0] is the old one). */
		if (skops->args[1] == BPF_TCP_CLOSE)
			__forget(skops);
		break;
	}
	return 1;
}
