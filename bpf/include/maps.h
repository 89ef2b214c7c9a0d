/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Maps shared by the capture programs. Pinned by name under the agent's pin folder, so
 * redirect.bpf.o and every steer.bpf.o instance share one ambit_stats, and a restarted agent can
 * read what the last one left.
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

/* Enrolled pods: netns cookie -> config. A connect from any other netns is left alone. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMBIT_MAX_PODS);
	__type(key, __u64);
	__type(value, struct ambit_pod_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_pods SEC(".maps");

/* Outbound destination ports a pod keeps going direct to (value unused, presence counts). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMBIT_MAX_EXCLUDED_PORTS);
	__type(key, struct ambit_port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_excluded_ports SEC(".maps");

/*
 * Socket cookie of the app's socket -> original destination, written by connect4/6, read by
 * sockops (to build the tuple entry) and getpeername4/6. LRU: entries of closed sockets age out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AMBIT_MAX_CONNECTIONS);
	__type(key, __u64);
	__type(value, struct ambit_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_orig_by_sock SEC(".maps");

/*
 * {netns cookie, client ip, client port} -> original destination, read by cgroup/getsockopt on
 * the proxy's accepted socket. The netns cookie is in the key because every pod's client side is
 * 127.0.0.1:<ephemeral> and those collide across pods.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AMBIT_MAX_CONNECTIONS);
	__type(key, struct ambit_tuple_key);
	__type(value, struct ambit_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_orig_by_tuple SEC(".maps");

static __always_inline void __count(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&ambit_stats, &reason);

	if (n)
		*n += 1;
}

#endif
