// SPDX-License-Identifier: Apache-2.0
/*
 * Spreading, the sk_reuseport family: one instance per pod's HBONE port (15008), attached to the
 * SO_REUSEPORT group of the agent's worker threads' listeners, picks the listener of each new
 * connection in turn. The kernel's default pick hashes the 4-tuple, which spreads many
 * connections well but not a few long-lived ones: an HBONE tunnel carries every stream between
 * two agents' workers, so two tunnels landing on the same worker (one time in two with two
 * workers) put all of a pod's inbound work on one thread.
 *
 * Instances are standalone (no shared or pinned map): the group holds the program, the program
 * its maps, and both go with the listeners. When the pick fails (a listener closed), the kernel
 * hashes as before.
 *
 * License: Apache-2.0 (the program uses no GPL-only helpers).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "config.h"

char LICENSE[] SEC("license") = "Apache-2.0";

/* The group's listeners in turn order, by the agent (index -> socket fd). */
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, AMBIT_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} ambit_spread_socks SEC(".maps");

/* Key 0: how many listeners ambit_spread_socks holds (by the agent); key 1: the next turn. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} ambit_spread_state SEC(".maps");

SEC("sk_reuseport")
int ambit_spread(struct sk_reuseport_md *md)
{
	__u32 count_key = 0, next_key = 1, index;
	__u32 *count = bpf_map_lookup_elem(&ambit_spread_state, &count_key);
	__u32 *next = bpf_map_lookup_elem(&ambit_spread_state, &next_key);

	if (!count || !next || *count == 0)
		return SK_PASS;
	/* Not atomic: two SYNs on two CPUs at once may take the same turn, which only evens out later. */
	index = *next;
	*next = index + 1;
	index %= *count;
	bpf_sk_select_reuseport(md, &ambit_spread_socks, &index, 0);
	return SK_PASS;
}
