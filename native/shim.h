/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libambit-shim: the C API native/bindings.ts binds. Plain integers, strings and buffers only;
 * no libbpf option structs cross the FFI. int results are >= 0 on success and -errno on failure;
 * pointer results are NULL on failure with errno set (read it before any other call).
 */
#ifndef AMBIT_SHIM_H
#define AMBIT_SHIM_H

#include <stdint.h>

struct bpf_object;
struct bpf_link;

/* Increments when this API changes; bindings.ts refuses a mismatched library. */
#define AMBIT_SHIM_ABI 2
int ambit_shim_abi(void);

/*
 * libbpf's messages (warnings and info; debug chatter is dropped) are kept in a ring from the
 * first shim call on, for the lifetime of the process: the newest bytes win, because the reason
 * for a failure (the verifier's verdict, libbpf's "failed to load") is at the end. Copies what
 * was logged since the last call into out (NUL-terminated, the tail if out is too small) and
 * empties the ring; returns the number of bytes copied.
 */
int ambit_log_take(char *out, uint32_t size);

/*
 * Opens and loads a BPF object. Maps with LIBBPF_PIN_BY_NAME are pinned (or reused) under
 * pin_root (NULL: libbpf's default /sys/fs/bpf). On failure ambit_log_take() has libbpf's and
 * the verifier's output.
 */
struct bpf_object *ambit_object_open_load(const char *path, const char *pin_root);
void ambit_object_close(struct bpf_object *obj);
int ambit_object_map_fd(struct bpf_object *obj, const char *map_name);
int ambit_object_prog_fd(struct bpf_object *obj, const char *prog_name);

/* Attach the named program; NULL + errno on failure. */
struct bpf_link *ambit_attach_cgroup(struct bpf_object *obj, const char *prog_name, int cgroup_fd);
struct bpf_link *ambit_attach_netns(struct bpf_object *obj, const char *prog_name, int netns_fd);
/* A link pinned at path (bpf_link__open); NULL + errno when there is none. */
struct bpf_link *ambit_link_open(const char *path);
/* Replaces the link's program in place (BPF_LINK_UPDATE): the attachment never lapses. */
int ambit_link_update(struct bpf_link *link, struct bpf_object *obj, const char *prog_name);
int ambit_link_pin(struct bpf_link *link, const char *path);
int ambit_link_unpin(struct bpf_link *link);
int ambit_link_fd(struct bpf_link *link);
/* Detaches (unless pinned) and frees the handle. */
int ambit_link_destroy(struct bpf_link *link);
/*
 * Writes {link type, program id, target, attach type} into out[4]: target is the cgroup id
 * (inode of the cgroup folder) for cgroup links, the netns inode for netns links (0 once that
 * netns is gone).
 */
int ambit_link_info(int link_fd, uint64_t *out);

/*
 * Programs attached at a cgroup for one attach type (bpf_prog_query; flags 1 = effective, i.e.
 * with the ancestors'): up to cap ids into ids; returns how many are attached (may exceed cap).
 */
int ambit_prog_query(int target_fd, uint32_t attach_type, uint32_t flags, uint32_t *ids, uint32_t cap);
/* Name (up to 16 bytes, NUL-terminated) of the program with this id; returns its type. */
int ambit_prog_name(uint32_t prog_id, char *name, uint32_t size);
/*
 * BPF_PROG_RUN: runs the program once on ctx_in (e.g. a struct bpf_sk_lookup), writes the
 * context back into ctx_out and the program's return value into *retval.
 */
int ambit_prog_test_run(int prog_fd, const void *ctx_in, uint32_t ctx_in_size, void *ctx_out, uint32_t ctx_out_size,
			uint32_t *retval);

/* A new map (no BTF); returns its fd. flags e.g. BPF_F_NO_PREALLOC. */
int ambit_map_create(uint32_t type, const char *name, uint32_t key_size, uint32_t value_size, uint32_t max_entries,
		     uint32_t flags);
int ambit_map_fd_by_id(uint32_t id);
int ambit_map_update(int map_fd, const void *key, const void *value, uint64_t flags);
int ambit_map_lookup(int map_fd, const void *key, void *value);
int ambit_map_delete(int map_fd, const void *key);
int ambit_map_next_key(int map_fd, const void *key, void *next_key);
/* Writes {type, key_size, value_size, max_entries, map_flags, id} into out[6]. */
int ambit_map_info(int map_fd, uint32_t *out);
/* Opens a pinned object (map, link, program); returns an fd. */
int ambit_obj_get(const char *path);
int ambit_num_possible_cpus(void);

/* C layout of bpf/include/types.h, for the struct layout test: -1 when the name is unknown. */
int ambit_layout_sizeof(const char *type_name);
int ambit_layout_offsetof(const char *type_name, const char *field_name);

#endif
