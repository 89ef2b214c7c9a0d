// SPDX-License-Identifier: Apache-2.0
/*
 * libambit-shim: plain-integer wrappers over libbpf 1.x for koffi. libbpf's print callback passes
 * a va_list, which does not cross an FFI portably, so messages are formatted here into a ring
 * that ambit_log_take() empties. The callback stays installed for the process lifetime, so what
 * libbpf says while attaching or pinning is kept too, not only during a load. Calls are expected
 * from one thread (Node's main thread).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include "shim.h"
#include "types.h"

/* The newest LOG_RING bytes libbpf printed; log_len counts all bytes since the last take. */
#define LOG_RING (256 * 1024)
static char log_ring[LOG_RING];
static size_t log_end; /* next write position */
static size_t log_len; /* bytes written since the last take (may exceed LOG_RING) */
static int print_installed;

static void log_append(const char *s, size_t n)
{
	if (n >= LOG_RING) {
		s += n - (LOG_RING - 1);
		n = LOG_RING - 1;
	}
	for (size_t i = 0; i < n; i++) {
		log_ring[log_end] = s[i];
		log_end = (log_end + 1) % LOG_RING;
	}
	log_len += n;
}

static int shim_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char line[4096];
	char *text = line;
	va_list again;
	int n;

	/* Debug output is mostly relocation chatter; the verifier log comes at WARN. */
	if (level == LIBBPF_DEBUG)
		return 0;
	/* A program's whole verifier log can arrive as one message: format it whole, keep its end. */
	va_copy(again, args);
	n = vsnprintf(line, sizeof(line), fmt, args);
	if (n >= (int)sizeof(line)) {
		text = malloc((size_t)n + 1);
		if (text)
			n = vsnprintf(text, (size_t)n + 1, fmt, again);
		else {
			text = line;
			n = sizeof(line) - 1;
		}
	}
	va_end(again);
	if (n > 0)
		log_append(text, (size_t)n);
	if (text != line)
		free(text);
	return 0;
}

static void ensure_print(void)
{
	if (!print_installed) {
		libbpf_set_print(shim_print);
		print_installed = 1;
	}
}

int ambit_shim_abi(void)
{
	ensure_print();
	return AMBIT_SHIM_ABI;
}

int ambit_log_take(char *out, uint32_t size)
{
	size_t n = log_len < LOG_RING - 1 ? log_len : LOG_RING - 1;
	size_t start;

	if (size == 0)
		return 0;
	if (n > size - 1)
		n = size - 1;
	start = (log_end + LOG_RING - n) % LOG_RING;
	for (size_t i = 0; i < n; i++)
		out[i] = log_ring[(start + i) % LOG_RING];
	out[n] = '\0';
	log_len = 0;
	return (int)n;
}

struct bpf_object *ambit_object_open_load(const char *path, const char *pin_root)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_root);
	struct bpf_object *obj;
	int err;

	ensure_print();
	obj = bpf_object__open_file(path, &opts);
	if (!obj)
		return NULL; /* errno set by libbpf */
	err = bpf_object__load(obj);
	if (err) {
		bpf_object__close(obj);
		errno = -err;
		return NULL;
	}
	return obj;
}

void ambit_object_close(struct bpf_object *obj)
{
	bpf_object__close(obj);
}

int ambit_object_map_fd(struct bpf_object *obj, const char *map_name)
{
	struct bpf_map *map = bpf_object__find_map_by_name(obj, map_name);

	if (!map)
		return -ENOENT;
	return bpf_map__fd(map);
}

static struct bpf_program *find_prog(struct bpf_object *obj, const char *prog_name)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, prog_name);

	if (!prog)
		errno = ENOENT;
	return prog;
}

int ambit_object_prog_fd(struct bpf_object *obj, const char *prog_name)
{
	struct bpf_program *prog = find_prog(obj, prog_name);

	return prog ? bpf_program__fd(prog) : -ENOENT;
}

struct bpf_link *ambit_attach_cgroup(struct bpf_object *obj, const char *prog_name, int cgroup_fd)
{
	struct bpf_program *prog = find_prog(obj, prog_name);

	return prog ? bpf_program__attach_cgroup(prog, cgroup_fd) : NULL;
}

struct bpf_link *ambit_attach_netns(struct bpf_object *obj, const char *prog_name, int netns_fd)
{
	struct bpf_program *prog = find_prog(obj, prog_name);

	return prog ? bpf_program__attach_netns(prog, netns_fd) : NULL;
}

struct bpf_link *ambit_link_open(const char *path)
{
	ensure_print();
	return bpf_link__open(path);
}

int ambit_link_update(struct bpf_link *link, struct bpf_object *obj, const char *prog_name)
{
	struct bpf_program *prog = find_prog(obj, prog_name);

	return prog ? bpf_link__update_program(link, prog) : -ENOENT;
}

int ambit_link_pin(struct bpf_link *link, const char *path)
{
	return bpf_link__pin(link, path);
}

int ambit_link_unpin(struct bpf_link *link)
{
	return bpf_link__unpin(link);
}

int ambit_link_fd(struct bpf_link *link)
{
	return bpf_link__fd(link);
}

int ambit_link_destroy(struct bpf_link *link)
{
	return bpf_link__destroy(link);
}

static int neg_errno(int rc)
{
	/* libbpf 1.x low-level calls return -errno already; keep that invariant explicit. */
	return rc < 0 ? (rc == -1 ? -errno : rc) : rc;
}

int ambit_link_info(int link_fd, uint64_t *out)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);
	int rc;

	memset(&info, 0, sizeof(info));
	rc = bpf_obj_get_info_by_fd(link_fd, &info, &len);
	if (rc < 0)
		return neg_errno(rc);
	out[0] = info.type;
	out[1] = info.prog_id;
	out[2] = 0;
	out[3] = 0;
	if (info.type == BPF_LINK_TYPE_CGROUP) {
		out[2] = info.cgroup.cgroup_id;
		out[3] = info.cgroup.attach_type;
	} else if (info.type == BPF_LINK_TYPE_NETNS) {
		out[2] = info.netns.netns_ino;
		out[3] = info.netns.attach_type;
	}
	return 0;
}

int ambit_prog_query(int target_fd, uint32_t attach_type, uint32_t flags, uint32_t *ids, uint32_t cap)
{
	__u32 count = cap;
	int rc = bpf_prog_query(target_fd, (enum bpf_attach_type)attach_type, flags, NULL, ids, &count);

	/* ENOSPC: more programs than cap; count holds the total. */
	if (rc < 0 && errno != ENOSPC)
		return neg_errno(rc);
	return (int)count;
}

int ambit_prog_name(uint32_t prog_id, char *name, uint32_t size)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	int fd, rc;

	fd = bpf_prog_get_fd_by_id(prog_id);
	if (fd < 0)
		return neg_errno(fd);
	memset(&info, 0, sizeof(info));
	rc = bpf_obj_get_info_by_fd(fd, &info, &len);
	close(fd);
	if (rc < 0)
		return neg_errno(rc);
	if (size > 0) {
		size_t n = strnlen(info.name, sizeof(info.name));

		if (n > size - 1)
			n = size - 1;
		memcpy(name, info.name, n);
		name[n] = '\0';
	}
	return (int)info.type;
}

int ambit_prog_test_run(int prog_fd, const void *ctx_in, uint32_t ctx_in_size, void *ctx_out, uint32_t ctx_out_size,
			uint32_t *retval)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = ctx_in, .ctx_size_in = ctx_in_size, .ctx_out = ctx_out,
		    .ctx_size_out = ctx_out_size, .repeat = 1);
	int rc = bpf_prog_test_run_opts(prog_fd, &opts);

	if (rc < 0)
		return neg_errno(rc);
	*retval = opts.retval;
	return 0;
}

int ambit_map_create(uint32_t type, const char *name, uint32_t key_size, uint32_t value_size, uint32_t max_entries,
		     uint32_t flags)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);

	return neg_errno(bpf_map_create((enum bpf_map_type)type, name, key_size, value_size, max_entries, &opts));
}

int ambit_map_fd_by_id(uint32_t id)
{
	return neg_errno(bpf_map_get_fd_by_id(id));
}

int ambit_map_update(int map_fd, const void *key, const void *value, uint64_t flags)
{
	return neg_errno(bpf_map_update_elem(map_fd, key, value, flags));
}

int ambit_map_lookup(int map_fd, const void *key, void *value)
{
	return neg_errno(bpf_map_lookup_elem(map_fd, key, value));
}

int ambit_map_delete(int map_fd, const void *key)
{
	return neg_errno(bpf_map_delete_elem(map_fd, key));
}

int ambit_map_next_key(int map_fd, const void *key, void *next_key)
{
	return neg_errno(bpf_map_get_next_key(map_fd, key, next_key));
}

int ambit_map_info(int map_fd, uint32_t *out)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	int rc;

	memset(&info, 0, sizeof(info));
	rc = bpf_obj_get_info_by_fd(map_fd, &info, &len);
	if (rc < 0)
		return neg_errno(rc);
	out[0] = info.type;
	out[1] = info.key_size;
	out[2] = info.value_size;
	out[3] = info.max_entries;
	out[4] = info.map_flags;
	out[5] = info.id;
	return 0;
}

int ambit_obj_get(const char *path)
{
	return neg_errno(bpf_obj_get(path));
}

int ambit_num_possible_cpus(void)
{
	return libbpf_num_possible_cpus();
}

#define LAYOUT_TYPE(T)                                                                             \
	if (strcmp(type_name, #T) == 0)                                                            \
		return (int)sizeof(struct T);

int ambit_layout_sizeof(const char *type_name)
{
	LAYOUT_TYPE(ambit_pod_config)
	LAYOUT_TYPE(ambit_port_key)
	LAYOUT_TYPE(ambit_orig_dst)
	LAYOUT_TYPE(ambit_peer_key)
	LAYOUT_TYPE(ambit_direct_key)
	LAYOUT_TYPE(bpf_sk_lookup)
	return -1;
}

#define LAYOUT_FIELD(T, F)                                                                         \
	if (strcmp(type_name, #T) == 0 && strcmp(field_name, #F) == 0)                             \
		return (int)offsetof(struct T, F);

int ambit_layout_offsetof(const char *type_name, const char *field_name)
{
	LAYOUT_FIELD(ambit_pod_config, outbound_port)
	LAYOUT_FIELD(ambit_pod_config, flags)
	LAYOUT_FIELD(ambit_pod_config, dns_port)
	LAYOUT_FIELD(ambit_pod_config, pad)
	LAYOUT_FIELD(ambit_port_key, netns_cookie)
	LAYOUT_FIELD(ambit_port_key, port)
	LAYOUT_FIELD(ambit_port_key, pad)
	LAYOUT_FIELD(ambit_orig_dst, addr)
	LAYOUT_FIELD(ambit_orig_dst, port)
	LAYOUT_FIELD(ambit_orig_dst, family)
	LAYOUT_FIELD(ambit_orig_dst, pad)
	LAYOUT_FIELD(ambit_peer_key, addr)
	LAYOUT_FIELD(ambit_peer_key, port)
	LAYOUT_FIELD(ambit_peer_key, pad)
	LAYOUT_FIELD(ambit_direct_key, remote_addr)
	LAYOUT_FIELD(ambit_direct_key, remote_port)
	LAYOUT_FIELD(ambit_direct_key, local_port)
	LAYOUT_FIELD(ambit_direct_key, pad)
	LAYOUT_FIELD(bpf_sk_lookup, cookie)
	LAYOUT_FIELD(bpf_sk_lookup, family)
	LAYOUT_FIELD(bpf_sk_lookup, protocol)
	LAYOUT_FIELD(bpf_sk_lookup, remote_ip4)
	LAYOUT_FIELD(bpf_sk_lookup, remote_ip6)
	LAYOUT_FIELD(bpf_sk_lookup, remote_port)
	/* The uapi's anonymous `__u16 :16` after remote_port, named pad on the koffi side. */
	if (strcmp(type_name, "bpf_sk_lookup") == 0 && strcmp(field_name, "pad") == 0)
		return (int)(offsetof(struct bpf_sk_lookup, remote_port) + sizeof(__u16));
	LAYOUT_FIELD(bpf_sk_lookup, local_ip4)
	LAYOUT_FIELD(bpf_sk_lookup, local_ip6)
	LAYOUT_FIELD(bpf_sk_lookup, local_port)
	LAYOUT_FIELD(bpf_sk_lookup, ingress_ifindex)
	return -1;
}
