/* SPDX-License-Identifier: Apache-2.0 */
/* Address helpers: the 16-byte form of types.h (IPv4 v4-mapped) from context fields. */
#ifndef AMBIT_ADDR_H
#define AMBIT_ADDR_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>

#define AMBIT_LOOPBACK4 0x7f000001 /* 127.0.0.1, host order */

/*
 * Reads a context field unconditionally (a volatile load is never moved into a branch). When a
 * branch picks which field to load, clang computes the context offset at run time, and the
 * verifier refuses a modified context pointer.
 */
#define AMBIT_CTX(field) (*(volatile typeof(field) *)&(field))

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

static __always_inline void __copy6(__u8 addr[16], __u32 w0, __u32 w1, __u32 w2, __u32 w3)
{
	__u32 *w = (__u32 *)addr;

	w[0] = w0;
	w[1] = w1;
	w[2] = w2;
	w[3] = w3;
}

#endif
