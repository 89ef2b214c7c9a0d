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
 * It also exempts the agent's transparent dials (mark 0x539 and priority 0x539, bound to the
 * original client's address, connecting to the pod's app inside the pod's netns) from the pod's
 * inbound steering:
 *   TCP_CONNECT_CB          the kernel chose the local port (the agent binds with
 *                           IP_BIND_ADDRESS_NO_PORT), SYN not yet sent: enter the tuple in the
 *                           map ambit_direct_dials holds for the socket's own netns;
 *   PASSIVE_ESTABLISHED_CB  the app's side is established (the handshake's last ACK reached it,
 *                           through its request socket or as a SYN cookie, which sk_lookup sees
 *                           too): remove it;
 *   STATE_CB (to CLOSE)     the dial closed first (failed): remove it.
 * A socket can only exempt connections into its own netns. When the entry can not be made, the
 * map's overflow slot records the time and sk_lookup refuses unlisted connections for a second.
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
#define AMBIT_USE_DIRECT_DIALS
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

/* The pod's inner map of `outer` (ambit_handshakes, ambit_direct_dials), by the socket's netns. */
static __always_inline void *__pod_map(struct bpf_sock_ops *skops, void *outer)
{
	__u64 netns = bpf_get_netns_cookie(skops);

	return bpf_map_lookup_elem(outer, &netns);
}

static __always_inline void *__pod_handshakes(struct bpf_sock_ops *skops)
{
	return __pod_map(skops, &ambit_handshakes);
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

static __always_inline void *__pod_direct_map(struct bpf_sock_ops *skops)
{
	return __pod_map(skops, &ambit_direct_dials);
}

/* The sk_lookup key of a dial: remote = the client (the dial's source), local = the app's port. */
static __always_inline void __direct_key(struct ambit_direct_key *key, const struct ambit_peer_key *client, __u16 app_port)
{
	__builtin_memcpy(key->remote_addr, client->addr, sizeof(key->remote_addr));
	key->remote_port = client->port;
	key->local_port = app_port;
}

/* ... seen from the dial's socket: the client is its local end. */
static __always_inline void __dial_key(struct bpf_sock_ops *skops, struct ambit_direct_key *key)
{
	struct ambit_peer_key local = {};

	__local_key(skops, &local);
	__direct_key(key, &local, (__u16)bpf_ntohl(AMBIT_CTX(skops->remote_port)));
}

/* ... seen from the app's accepted socket: the client is its remote end. */
static __always_inline void __app_key(struct bpf_sock_ops *skops, struct ambit_direct_key *key)
{
	struct ambit_peer_key remote = {};

	__remote_key(skops, &remote);
	__direct_key(key, &remote, (__u16)AMBIT_CTX(skops->local_port));
}

/* The agent's transparent dial to a pod's app: the bypass mark and the dial priority. */
static __always_inline int __is_agent_dial(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;

	return sk && sk->mark == AMBIT_BYPASS_MARK && sk->priority == AMBIT_DIAL_PRIORITY;
}

static __always_inline void __exempt(struct bpf_sock_ops *skops)
{
	struct ambit_direct_key key = {}, zero = {};
	__u64 value = 0, *at;
	void *direct = __pod_direct_map(skops);

	if (!direct)
		return; /* not an enrolled pod's netns (the node's own, or a pending pod's) */
	__dial_key(skops, &key);
	if (bpf_map_update_elem(direct, &key, &value, BPF_ANY) != 0) {
		at = bpf_map_lookup_elem(direct, &zero);
		if (at)
			*at = bpf_ktime_get_ns();
		__count(AMBIT_REASON_SOCKOPS_DIAL_EXEMPT_FAILED);
		return;
	}
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	__count(AMBIT_REASON_SOCKOPS_DIAL_EXEMPTED);
}

/*
 * Removes a dial's entry: from the app's side once its socket is established (the dial it came
 * from, if it was one, needs no entry now), or from the dial's when it closed first.
 */
static __always_inline void __unexempt(struct bpf_sock_ops *skops, int from_app)
{
	struct ambit_direct_key key = {};
	void *direct = __pod_direct_map(skops);

	if (!direct)
		return;
	if (from_app)
		__app_key(skops, &key);
	else
		__dial_key(skops, &key);
	bpf_map_delete_elem(direct, &key);
}

SEC("sockops")
int ambit_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		if (__is_agent_dial(skops))
			__exempt(skops);
		else
			__record(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		__hand_over(skops);
		__unexempt(skops, 1);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/*
		 * Only sockets that asked (__record's app sockets, __exempt's dials); the state is args[1]
		 * (args[0] is the old one).
		 */
		if (skops->args[1] == BPF_TCP_CLOSE) {
			if (__is_agent_dial(skops))
				__unexempt(skops, 0);
			else
				__forget(skops);
		}
		break;
	}
	return 1;
}
