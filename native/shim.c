// SPDX-License-Identifier: Apache-2.0
/*
 * libambit-shim: plain-integer wrappers over libbpf 1.x for koffi. libbpf's print callback passes
 * a va_list, which does not cross an FFI portably, so the log is formatted here into the caller's
 * buffer while an open/load runs. Calls are expected from one thread (Node's main thread).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "shim.h"
#include "types.h"

static char *log_buf;
static size_t log_size;
static size_t log_len;

static int shim_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	int n;

	/* Debug output is mostly relocation chatter; the verifier log comes at WARN. */
	if (level == LIBBPF_DEBUG || !log_buf || log_len + 1 >= log_size)
		return 0;
	n = vsnprintf(log_buf + log_len, log_size - log_len, fmt, args);
	if (n > 0)
		log_len += (size_t)n < log_size - log_len ? (size_t)n : log_size - log_len - 1;
	return 0;
}

int ambit_shim_abi(void)
{
	return AMBIT_SHIM_ABI;
}

struct bpf_object *ambit_object_open_load(const char *path, const char *pin_root, char *log, uint32_t size)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_root);
	struct bpf_object *obj;
	int err;

	log_buf = size > 0 ? log : NULL;
	log_size = size;
	log_len = 0;
	if (log_buf)
		log_buf[0] = '\0';
	libbpf_set_print(shim_print);
	obj = bpf_object__open_file(path, &opts);
	if (!obj) {
		err = errno;
		goto fail;
	}
	err = bpf_object__load(obj);
	if (err) {
		bpf_object__close(obj);
		obj = NULL;
		err = -err;
		goto fail;
	}
	libbpf_set_print(NULL);
	log_buf = NULL;
	return obj;
fail:
	libbpf_set_print(NULL);
	log_buf = NULL;
	errno = err;
	return NULL;
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

int ambit_object_prog_fd(struct bpf_object *obj, const char *prog_name)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, prog_name);

	if (!prog)
		return -ENOENT;
	return bpf_program__fd(prog);
}

struct bpf_link *ambit_attach_cgroup(struct bpf_object *obj, const char *prog_name, int cgroup_fd)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, prog_name);

	if (!prog) {
		errno = ENOENT;
		return NULL;
	}
	return bpf_program__attach_cgroup(prog, cgroup_fd);
}

struct bpf_link *ambit_attach_netns(struct bpf_object *obj, const char *prog_name, int netns_fd)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, prog_name);

	if (!prog) {
		errno = ENOENT;
		return NULL;
	}
	return bpf_program__attach_netns(prog, netns_fd);
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
	LAYOUT_TYPE(ambit_tuple_key)
	LAYOUT_TYPE(ambit_direct_key)
	return -1;
}

#define LAYOUT_FIELD(T, F)                                                                         \
	if (strcmp(type_name, #T) == 0 && strcmp(field_name, #F) == 0)                             \
		return (int)offsetof(struct T, F);

int ambit_layout_offsetof(const char *type_name, const char *field_name)
{
	LAYOUT_FIELD(ambit_pod_config, outbound_port)
	LAYOUT_FIELD(ambit_pod_config, flags)
	LAYOUT_FIELD(ambit_pod_config, pad)
	LAYOUT_FIELD(ambit_port_key, netns_cookie)
	LAYOUT_FIELD(ambit_port_key, port)
	LAYOUT_FIELD(ambit_port_key, pad)
	LAYOUT_FIELD(ambit_orig_dst, addr)
	LAYOUT_FIELD(ambit_orig_dst, port)
	LAYOUT_FIELD(ambit_orig_dst, family)
	LAYOUT_FIELD(ambit_orig_dst, pad)
	LAYOUT_FIELD(ambit_tuple_key, netns_cookie)
	LAYOUT_FIELD(ambit_tuple_key, addr)
	LAYOUT_FIELD(ambit_tuple_key, port)
	LAYOUT_FIELD(ambit_tuple_key, pad)
	LAYOUT_FIELD(ambit_direct_key, remote_addr)
	LAYOUT_FIELD(ambit_direct_key, remote_port)
	LAYOUT_FIELD(ambit_direct_key, local_port)
	LAYOUT_FIELD(ambit_direct_key, pad)
	return -1;
}
