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
#define AMBIT_SHIM_ABI 1
int ambit_shim_abi(void);

/*
 * Opens and loads a BPF object. Maps with LIBBPF_PIN_BY_NAME are pinned (or reused) under
 * pin_root (NULL: libbpf's default /sys/fs/bpf). Everything libbpf logs during open and load,
 * verifier output included, is copied NUL-terminated into log (truncated to log_size).
 */
struct bpf_object *ambit_object_open_load(const char *path, const char *pin_root, char *log, uint32_t log_size);
void ambit_object_close(struct bpf_object *obj);
int ambit_object_map_fd(struct bpf_object *obj, const char *map_name);
int ambit_object_prog_fd(struct bpf_object *obj, const char *prog_name);

/* Attach the named program; NULL + errno on failure. */
struct bpf_link *ambit_attach_cgroup(struct bpf_object *obj, const char *prog_name, int cgroup_fd);
struct bpf_link *ambit_attach_netns(struct bpf_object *obj, const char *prog_name, int netns_fd);
int ambit_link_pin(struct bpf_link *link, const char *path);
int ambit_link_unpin(struct bpf_link *link);
int ambit_link_fd(struct bpf_link *link);
/* Detaches (unless pinned) and frees the handle. */
int ambit_link_destroy(struct bpf_link *link);

int ambit_map_update(int map_fd, const void *key, const void *value, uint64_t flags);
int ambit_map_lookup(int map_fd, const void *key, void *value);
int ambit_map_delete(int map_fd, const void *key);
int ambit_map_next_key(int map_fd, const void *key, void *next_key);
/* Writes {type, key_size, value_size, max_entries} into out[4]. */
int ambit_map_info(int map_fd, uint32_t *out);
/* Opens a pinned object (map, link, program); returns an fd. */
int ambit_obj_get(const char *path);
int ambit_num_possible_cpus(void);

/* C layout of bpf/include/types.h, for the struct layout test: -1 when the name is unknown. */
int ambit_layout_sizeof(const char *type_name);
int ambit_layout_offsetof(const char *type_name, const char *field_name);

#endif
