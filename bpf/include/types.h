/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Map keys and values shared with native/ (and checked there against koffi's layout).
 * Fixed-width fields, explicit padding, no bitfields. Addresses are 16 bytes in network order,
 * IPv4 as v4-mapped (::ffff:a.b.c.d), so one key type serves both families. Ports are in HOST
 * order: the programs convert, userspace never has to.
 */
#ifndef AMBIT_TYPES_H
#define AMBIT_TYPES_H

#include <linux/types.h>

/* ambit_pods value, keyed by the pod's netns cookie (__u64). */
struct ambit_pod_config {
	__u16 outbound_port; /* the pod's own outbound listener, e.g. 15001 */
	__u16 flags;         /* AMBIT_POD_F_* */
	/*
	 * The pod's DNS proxy (15053) on loopback: UDP and TCP to port 53 go there; 0: DNS is not
	 * captured (the pod opted out, or the agent runs without a DNS proxy).
	 */
	__u16 dns_port;
	__u16 pad;
};

/* The pod has an outbound listener on [::1]:outbound_port: native IPv6 is redirected there. */
#define AMBIT_POD_F_IPV6 0x1
/*
 * The pod's netns is known but its listeners are not in place yet (the CNI hand-off at pod
 * start, before enrolment): every TCP connect is refused, inbound finds no socket and is refused.
 */
#define AMBIT_POD_F_PENDING 0x2

/* ambit_excluded_ports key: a destination port a pod's outbound traffic keeps going direct to. */
struct ambit_port_key {
	__u64 netns_cookie;
	__u16 port;
	__u16 pad[3];
};

/* The destination the application asked for. */
struct ambit_orig_dst {
	__u8 addr[16];
	__u16 port;
	__u16 family; /* AF_INET (addr v4-mapped) or AF_INET6 */
	__u32 pad;
};

/*
 * Key of a pod's handshake map (ambit_handshakes inner map): the client side of a redirected
 * connection, as the proxy's accepted socket sees its peer. The netns is the outer key, so
 * pods' identical 127.0.0.1:<port> client sides never collide.
 */
struct ambit_peer_key {
	__u8 addr[16];
	__u16 port;
	__u16 pad[3];
};

/*
 * ambit_steer_direct key (sk_lookup.bpf.c, one map per pod): a connection the agent itself dials
 * to the pod's app from a foreign source address (IP_TRANSPARENT, original client IP). sk_lookup
 * sees it as remote = source, local port = the app's port, and must not steer it to 15006.
 * sockops writes it when the dial's SYN is about to leave (sockops.bpf.c). The all-zero key (no
 * dial has port 0) is the map's overflow slot: its value is when an exemption last failed.
 */
struct ambit_direct_key {
	__u8 remote_addr[16];
	__u16 remote_port;
	__u16 local_port;
	__u32 pad;
};

#endif
