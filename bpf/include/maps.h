/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Maps shared by the capture programs, pinned by name under the agent's pin folder so every
 * object of the agent (one per attach family) and a restarted agent use the same ones.
 *
 * An object file carries (and libbpf creates, pins or opens) only the maps its programs use:
 * each program file defines AMBIT_USE_<MAP> for those before including this header, and only
 * ambit_stats (used by every program) is always there. Without that, each per-pod sk_lookup
 * object would open every map here. (Static maps would say the same more simply, but libbpf 1.1,
 * Debian 12's, refuses them: "unsupported map linkage static".)
 */
#ifndef AMBIT_MAPS_H
#define AMBIT_MAPS_H

#include "config.h"
#include "types.h"
#include "reasons.h"

/* Per-CPU counters indexed by reason code; userspace sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AMBIT_MAX_REASONS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_stats SEC(".maps");

#ifdef AMBIT_USE_PODS
/* Enrolled and pending pods: netns cookie -> config. A connect from any other netns is left alone. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMBIT_MAX_PODS);
	__type(key, __u64);
	__type(value, struct ambit_pod_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_pods SEC(".maps");
#endif

#ifdef AMBIT_USE_EXCLUDED_PORTS
/* Outbound destination ports a pod keeps going direct to (value unused, presence counts). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMBIT_MAX_EXCLUDED_PORTS);
	__type(key, struct ambit_port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_excluded_ports SEC(".maps");
#endif

#ifdef AMBIT_USE_SOCK_ORIG
/*
 * The original destination in the storage of the app's socket: written by connect4/6, read by
 * sockops (to hand it to the proxy) and getpeername4/6. Freed with the socket: nothing to evict,
 * nothing stale, no capacity shared with other pods.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ambit_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_sock_orig SEC(".maps");
#endif

#ifdef AMBIT_USE_ACCEPT_ORIG
/*
 * The same destination in the storage of the proxy's accepted socket: written by sockops when
 * the connection is established (before accept() returns), read by getsockopt. A separate map,
 * so getpeername never rewrites the proxy's own peer.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ambit_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_accept_orig SEC(".maps");
#endif

#ifdef AMBIT_USE_HANDSHAKES
/*
 * Per pod (netns cookie -> map the agent creates at enrolment): the app's client side -> the
 * original destination, from the SYN until the proxy's accepted socket takes it over. Sized per
 * pod so one pod's connection churn can not crowd out another's.
 */
struct ambit_handshake_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, AMBIT_MAX_HANDSHAKES_PER_POD);
	/* Sizes, not BTF types: the inner map template's types would only be forward declarations. */
	__uint(key_size, sizeof(struct ambit_peer_key));
	__uint(value_size, sizeof(struct ambit_orig_dst));
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, AMBIT_MAX_PODS);
	__type(key, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct ambit_handshake_map);
} ambit_handshakes SEC(".maps");
#endif

#ifdef AMBIT_USE_DIRECT_DIALS
/*
 * Per pod (netns cookie -> the pod's sk_lookup instance's ambit_steer_direct, put in by the agent
 * whenever the instance changes): where sockops exempts the agent's transparent dials made in
 * that netns. Keyed by the dialing socket's own netns, so a socket in one pod can never exempt a
 * connection into another.
 */
struct ambit_direct_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, AMBIT_MAX_STEER_DIRECT);
	__uint(key_size, sizeof(struct ambit_direct_key));
	__uint(value_size, sizeof(__u64));
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, AMBIT_MAX_PODS);
	__type(key, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct ambit_direct_map);
} ambit_direct_dials SEC(".maps");
#endif

static __always_inline void __count(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&ambit_stats, &reason);

	if (n)
		*n += 1;
}

#endif
