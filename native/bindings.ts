/**
 * The only module that imports koffi: declares libambit-shim.so (over libbpf.so.1), the libc
 * calls native/netns.ts needs, and the koffi layouts of bpf/include/types.h.
 *
 * Invariants: libraries load lazily on first use, so importing this file never fails on a machine
 * without the shim; koffi pointers (BigInt) never leave native/ untyped; every function here is
 * synchronous and must not be called per byte.
 */
import koffi from 'koffi';
import type { LibraryHandle, TypeObject } from 'koffi';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AmbitError } from '../src/shared/errors.js';

/** ABI version the shim must report (AMBIT_SHIM_ABI in native/shim.h). */
export const SHIM_ABI = 2;

/** Opaque libbpf handles: only ever passed back to the shim. */
export const BpfObjectHandle = koffi.opaque('bpf_object');
export const BpfLinkHandle = koffi.opaque('bpf_link');
export type NativePointer = bigint;

/** koffi mirrors of bpf/include/types.h (checked against the C layout by test/unit/native). */
export const PodConfigType = koffi.struct('ambit_pod_config', {
  outbound_port: 'uint16_t',
  flags: 'uint16_t',
  dns_port: 'uint16_t',
  pad: 'uint16_t',
});
export const PortKeyType = koffi.struct('ambit_port_key', {
  netns_cookie: 'uint64_t',
  port: 'uint16_t',
  pad: koffi.array('uint16_t', 3),
});
export const OrigDstType = koffi.struct('ambit_orig_dst', {
  addr: koffi.array('uint8_t', 16, 'Typed'),
  port: 'uint16_t',
  family: 'uint16_t',
  pad: 'uint32_t',
});
export const PeerKeyType = koffi.struct('ambit_peer_key', {
  addr: koffi.array('uint8_t', 16, 'Typed'),
  port: 'uint16_t',
  pad: koffi.array('uint16_t', 3),
});

export const DirectKeyType = koffi.struct('ambit_direct_key', {
  remote_addr: koffi.array('uint8_t', 16, 'Typed'),
  remote_port: 'uint16_t',
  local_port: 'uint16_t',
  pad: 'uint32_t',
});

/**
 * The uapi context of sk_lookup programs (linux/bpf.h), as BPF_PROG_RUN takes it: addresses and
 * remote_port in network order, local_port in host order; `cookie` comes back non-zero (the
 * selected socket's cookie) when the program assigned a socket.
 */
export const SkLookupCtxType = koffi.struct('bpf_sk_lookup', {
  cookie: 'uint64_t',
  family: 'uint32_t',
  protocol: 'uint32_t',
  remote_ip4: koffi.array('uint8_t', 4, 'Typed'),
  remote_ip6: koffi.array('uint8_t', 16, 'Typed'),
  remote_port: koffi.array('uint8_t', 2, 'Typed'),
  pad: 'uint16_t',
  local_ip4: koffi.array('uint8_t', 4, 'Typed'),
  local_ip6: koffi.array('uint8_t', 16, 'Typed'),
  local_port: 'uint32_t',
  ingress_ifindex: 'uint32_t',
});

/** The structs above by their C name, for the layout test. */
export const SHARED_STRUCTS = {
  ambit_pod_config: PodConfigType,
  ambit_port_key: PortKeyType,
  ambit_orig_dst: OrigDstType,
  ambit_peer_key: PeerKeyType,
  ambit_direct_key: DirectKeyType,
  bpf_sk_lookup: SkLookupCtxType,
} as const;

export interface ShimFunctions {
  abi(): number;
  logTake(out: Buffer, size: number): number;
  objectOpenLoad(path: string, pinRoot: string | null): NativePointer | null;
  objectClose(obj: NativePointer): void;
  objectMapFd(obj: NativePointer, name: string): number;
  objectProgFd(obj: NativePointer, name: string): number;
  attachCgroup(obj: NativePointer, prog: string, cgroupFd: number): NativePointer | null;
  attachNetns(obj: NativePointer, prog: string, netnsFd: number): NativePointer | null;
  linkOpen(path: string): NativePointer | null;
  linkUpdate(link: NativePointer, obj: NativePointer, prog: string): number;
  linkPin(link: NativePointer, path: string): number;
  linkUnpin(link: NativePointer): number;
  linkFd(link: NativePointer): number;
  linkDestroy(link: NativePointer): number;
  /** out: 4 × u64 {link type, prog id, target (cgroup id / netns inode), attach type}. */
  linkInfo(fd: number, out: Buffer): number;
  progQuery(targetFd: number, attachType: number, flags: number, ids: Buffer, cap: number): number;
  progName(id: number, name: Buffer, size: number): number;
  progTestRun(progFd: number, ctxIn: Buffer, ctxInSize: number, ctxOut: Buffer, ctxOutSize: number, retval: Buffer): number;
  mapCreate(type: number, name: string, keySize: number, valueSize: number, maxEntries: number, flags: number): number;
  mapFdById(id: number): number;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: bigint): number;
  mapLookup(fd: number, key: Buffer, value: Buffer): number;
  mapDelete(fd: number, key: Buffer): number;
  mapNextKey(fd: number, key: Buffer | null, next: Buffer): number;
  mapInfo(fd: number, out: Buffer): number;
  objGet(path: string): number;
  numPossibleCpus(): number;
  layoutSizeof(type: string): number;
  layoutOffsetof(type: string, field: string): number;
}

export interface LibcFunctions {
  setns(fd: number, nstype: number): number;
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  /** `len` is a 4-byte socklen_t buffer, in and out. */
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: Buffer): number;
  getsockname(fd: number, addr: Buffer, len: Buffer): number;
  bind(fd: number, addr: Buffer, len: number): number;
  listen(fd: number, backlog: number): number;
  connect(fd: number, addr: Buffer, len: number): number;
  sendto(fd: number, data: Buffer, len: number, flags: number, addr: Buffer, addrLen: number): number;
  close(fd: number): number;
  /** glibc: returns free heap memory to the kernel; 1 when some was released. */
  mallocTrim(pad: number): number;
}

/** errno of the last native call; read it before making any other native call. */
export function lastErrno(): number {
  return koffi.errno();
}

/** Where libambit-shim.so is looked for: next to this file (source tree) or ../../native (dist/). */
export function shimPathCandidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  return [join(here, 'libambit-shim.so'), resolve(here, '..', '..', 'native', 'libambit-shim.so')];
}

let shimCache: ShimFunctions | undefined;
let libcCache: LibcFunctions | undefined;

/** The shim's functions; throws AMBIT_ERR_BPF_UNSUPPORTED when the library is not built or loadable. */
export function shim(): ShimFunctions {
  if (shimCache) return shimCache;
  const path = shimPathCandidates().find((p) => existsSync(p));
  if (path === undefined) {
    throw new AmbitError(
      'AMBIT_ERR_BPF_UNSUPPORTED',
      `native shim libambit-shim.so not found in ${shimPathCandidates().join(', ')}; was "make -C native" run?`,
      { details: { candidates: shimPathCandidates() } },
    );
  }
  let lib: LibraryHandle;
  try {
    lib = koffi.load(path);
  } catch (cause) {
    throw new AmbitError('AMBIT_ERR_BPF_UNSUPPORTED', `native shim ${path} failed to load; is libbpf1 installed?`, {
      cause,
      details: { path },
    });
  }
  const obj = koffi.pointer(BpfObjectHandle);
  const link = koffi.pointer(BpfLinkHandle);
  const f = {
    abi: lib.func('ambit_shim_abi', 'int', []),
    logTake: lib.func('ambit_log_take', 'int', ['void *', 'uint32_t']),
    objectOpenLoad: lib.func('ambit_object_open_load', obj, ['str', 'str']),
    objectClose: lib.func('ambit_object_close', 'void', [obj]),
    objectMapFd: lib.func('ambit_object_map_fd', 'int', [obj, 'str']),
    objectProgFd: lib.func('ambit_object_prog_fd', 'int', [obj, 'str']),
    attachCgroup: lib.func('ambit_attach_cgroup', link, [obj, 'str', 'int']),
    attachNetns: lib.func('ambit_attach_netns', link, [obj, 'str', 'int']),
    linkOpen: lib.func('ambit_link_open', link, ['str']),
    linkUpdate: lib.func('ambit_link_update', 'int', [link, obj, 'str']),
    linkPin: lib.func('ambit_link_pin', 'int', [link, 'str']),
    linkUnpin: lib.func('ambit_link_unpin', 'int', [link]),
    linkFd: lib.func('ambit_link_fd', 'int', [link]),
    linkDestroy: lib.func('ambit_link_destroy', 'int', [link]),
    linkInfo: lib.func('ambit_link_info', 'int', ['int', 'void *']),
    progQuery: lib.func('ambit_prog_query', 'int', ['int', 'uint32_t', 'uint32_t', 'void *', 'uint32_t']),
    progName: lib.func('ambit_prog_name', 'int', ['uint32_t', 'void *', 'uint32_t']),
    progTestRun: lib.func('ambit_prog_test_run', 'int', ['int', 'void *', 'uint32_t', 'void *', 'uint32_t', 'void *']),
    mapCreate: lib.func('ambit_map_create', 'int', ['uint32_t', 'str', 'uint32_t', 'uint32_t', 'uint32_t', 'uint32_t']),
    mapFdById: lib.func('ambit_map_fd_by_id', 'int', ['uint32_t']),
    mapUpdate: lib.func('ambit_map_update', 'int', ['int', 'void *', 'void *', 'uint64_t']),
    mapLookup: lib.func('ambit_map_lookup', 'int', ['int', 'void *', 'void *']),
    mapDelete: lib.func('ambit_map_delete', 'int', ['int', 'void *']),
    mapNextKey: lib.func('ambit_map_next_key', 'int', ['int', 'void *', 'void *']),
    mapInfo: lib.func('ambit_map_info', 'int', ['int', 'void *']),
    objGet: lib.func('ambit_obj_get', 'int', ['str']),
    numPossibleCpus: lib.func('ambit_num_possible_cpus', 'int', []),
    layoutSizeof: lib.func('ambit_layout_sizeof', 'int', ['str']),
    layoutOffsetof: lib.func('ambit_layout_offsetof', 'int', ['str', 'str']),
  } as unknown as ShimFunctions;
  const abi = f.abi();
  if (abi !== SHIM_ABI) {
    throw new AmbitError(
      'AMBIT_ERR_BPF_UNSUPPORTED',
      `native shim ${path} has ABI ${abi}, expected ${SHIM_ABI}; rebuild it with "make -C native"`,
      { details: { path, abi } },
    );
  }
  shimCache = f;
  return f;
}

/** libc's socket and namespace calls. */
export function libc(): LibcFunctions {
  if (libcCache) return libcCache;
  let lib: LibraryHandle;
  try {
    lib = koffi.load('libc.so.6');
  } catch (cause) {
    throw new AmbitError('AMBIT_ERR_NATIVE_CALL', 'libc.so.6 failed to load; is this a glibc Linux system?', {
      cause,
    });
  }
  libcCache = {
    setns: lib.func('setns', 'int', ['int', 'int']),
    socket: lib.func('socket', 'int', ['int', 'int', 'int']),
    setsockopt: lib.func('setsockopt', 'int', ['int', 'int', 'int', 'void *', 'uint32_t']),
    getsockopt: lib.func('getsockopt', 'int', ['int', 'int', 'int', 'void *', 'void *']),
    getsockname: lib.func('getsockname', 'int', ['int', 'void *', 'void *']),
    bind: lib.func('bind', 'int', ['int', 'void *', 'uint32_t']),
    listen: lib.func('listen', 'int', ['int', 'int']),
    connect: lib.func('connect', 'int', ['int', 'void *', 'uint32_t']),
    sendto: lib.func('sendto', 'long', ['int', 'void *', 'size_t', 'int', 'void *', 'uint32_t']),
    close: lib.func('close', 'int', ['int']),
    mallocTrim: lib.func('malloc_trim', 'int', ['size_t']),
  } as unknown as LibcFunctions;
  return libcCache;
}

/**
 * Hands free heap memory back to the kernel (glibc malloc_trim). glibc keeps freed pages resident,
 * and after it frees large blocks it raises its own trim threshold, so a burst of native setup work
 * (libbpf parsing the ~5 MB kernel BTF per object, key generation, TLS contexts) stays in RSS.
 */
export function trimMallocHeap(): void {
  libc().mallocTrim(0);
}

/** Writes `value` laid out as `type` into a fresh Buffer of exactly the type's size. */
export function encodeStruct(type: TypeObject, value: Record<string, unknown>): Buffer {
  const buf = Buffer.alloc(koffi.sizeof(type));
  koffi.encode(buf, type, value);
  return buf;
}

/** Reads a `type` laid out at the start of `buf`. */
export function decodeStruct(buf: Buffer, type: TypeObject): Record<string, unknown> {
  if (buf.length < koffi.sizeof(type)) {
    throw new AmbitError('AMBIT_ERR_NATIVE_CALL', `buffer of ${buf.length} bytes is shorter than ${type.name}`, {
      details: { type: type.name, size: koffi.sizeof(type) },
    });
  }
  return koffi.decode(buf, type) as Record<string, unknown>;
}

/** Size and member offsets of a koffi type, for the layout test. */
export function koffiLayout(type: TypeObject): { size: number; offsets: Record<string, number> } {
  const offsets: Record<string, number> = {};
  for (const name of Object.keys(koffi.type(type).members ?? {})) offsets[name] = koffi.offsetof(type, name);
  return { size: koffi.sizeof(type), offsets };
}
