/**
 * Typed owners of libbpf handles: BpfObject (a loaded .bpf.o), BpfLink (an attachment) and
 * BpfMap (a map fd with key/value codecs). Everything above native/ uses these, never koffi.
 *
 * Invariants: every owner has an idempotent close(); a closed owner refuses further use; a
 * failed call throws AmbitError naming the operation, the path and the errno name, with what
 * libbpf logged meanwhile (the end of it, where the reason is) in details.log. Pinned links stay
 * attached after close() (and after process exit) until their pin is removed.
 */
import { closeSync, existsSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { AmbitError, type ErrorCode } from '../src/shared/errors.js';
import { lastErrno, shim, type NativePointer } from './bindings.js';

/** The end of libbpf's log kept in an error (the verifier's verdict is at the end). */
const LOG_TAIL_BYTES = 64 * 1024;

/**
 * errno values that mean "this machine or these privileges can not do BPF" when loading or
 * attaching. Not EACCES: the verifier rejects a program with EACCES, a load error with a log.
 * For map operations only EPERM means that (EOPNOTSUPP there is e.g. a socket in the wrong state).
 */
const UNSUPPORTED_ERRNOS = new Set(['EPERM', 'ENOSYS', 'EOPNOTSUPP', 'ENOTSUPP']);
const MAP_UNSUPPORTED_ERRNOS = new Set(['EPERM']);

function errnoName(errno: number): string {
  const n = Math.abs(errno);
  try {
    return getSystemErrorName(-n);
  } catch {
    return n === 524 ? 'ENOTSUPP' : `errno ${n}`;
  }
}

/** What libbpf logged since the last call (its tail); empties the shim's ring. */
export function takeLibbpfLog(): string {
  const buf = Buffer.alloc(LOG_TAIL_BYTES);
  const n = shim().logTake(buf, buf.length);
  return buf.toString('utf8', 0, Math.max(0, n));
}

/** The program libbpf names in a failed load ("prog 'ambit_connect4': ..."), if any. */
export function failingProgram(log: string): string | undefined {
  const all = [...log.matchAll(/prog '([^']+)': (?:BPF program load failed|failed to load|-- BEGIN PROG LOAD LOG)/g)];
  return all.length > 0 ? all[all.length - 1]![1] : undefined;
}

/**
 * What an error message quotes of the log: the verifier's verdict (the last line of a program's
 * load log before its statistics) when there is one, else libbpf's last line.
 */
export function logVerdict(log: string): string {
  const lines = log.trimEnd().split('\n');
  const end = lines.lastIndexOf('-- END PROG LOAD LOG --');
  if (end > 0) {
    const verdict = lines
      .slice(0, end)
      .reverse()
      .find((l) => l.trim() !== '' && !/^processed \d+ insns|^verification time|^stack depth/.test(l));
    if (verdict !== undefined) return verdict.trim();
  }
  return (lines.at(-1) ?? '').trim();
}

function bpfError(code: ErrorCode, what: string, errno: number, details: Record<string, unknown> = {}): AmbitError {
  const name = errnoName(errno);
  const unsupported = (code === 'AMBIT_ERR_BPF_MAP' ? MAP_UNSUPPORTED_ERRNOS : UNSUPPORTED_ERRNOS).has(name);
  const hint = unsupported ? '; BPF needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) and a kernel with these program types' : '';
  // Map calls are frequent and libbpf says nothing for them; every other failure carries its log.
  const log = code === 'AMBIT_ERR_BPF_MAP' ? '' : takeLibbpfLog();
  const prog = failingProgram(log);
  const said = log.trim() === '' ? '' : `: ${logVerdict(log)}`;
  return new AmbitError(unsupported ? 'AMBIT_ERR_BPF_UNSUPPORTED' : code, `${what}${prog ? ` (program ${prog})` : ''} failed with ${name}${hint}${said}`, {
    details: { ...details, errno: name, ...(log !== '' ? { log } : {}), ...(prog ? { program: prog } : {}) },
  });
}

/** Where the built objects are: bpf/<name>.bpf.o in the source tree, found from here or dist/. */
export function bpfObjectPath(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [resolve(here, '..', 'bpf', `${name}.bpf.o`), resolve(here, '..', '..', 'bpf', `${name}.bpf.o`)];
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new AmbitError('AMBIT_ERR_BPF_UNSUPPORTED', `bpf object ${name}.bpf.o not found; was "make -C bpf" run?`, {
      details: { candidates },
    });
  }
  return found;
}

/**
 * Why BPF can not be used here, or undefined when the prerequisites are present (root, the
 * shim). The programs need no kernel BTF (they read only uapi context structs). Loading can still
 * fail; callers treat that as unsupported too.
 */
export function bpfUnsupportedReason(): string | undefined {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'requires root';
  try {
    shim();
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
}

/**
 * Warns (never frees) when an unclosed owner is garbage collected: the handle leaks until exit,
 * and an unpinned link would stay attached until then.
 */
const leaks = new FinalizationRegistry<string>((what) => {
  process.emitWarning(`${what} was garbage collected without close()`, { code: 'AMBIT_BPF_LEAK' });
});

export interface MapCodec<K, V> {
  encodeKey(key: K): Buffer;
  decodeKey(buf: Buffer): K;
  encodeValue(value: V): Buffer;
  decodeValue(buf: Buffer): V;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function u64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
}

/** u32 keys and values (host order: the little-endian hosts Ambit builds for). */
export const U32_CODEC: MapCodec<number, number> = {
  encodeKey: u32,
  decodeKey: (b) => b.readUInt32LE(0),
  encodeValue: u32,
  decodeValue: (b) => b.readUInt32LE(0),
};

/** u64 keys and values (netns cookies, fds of map-in-map and socket-array values, timestamps). */
export const U64_CODEC: MapCodec<bigint, bigint> = {
  encodeKey: u64,
  decodeKey: (b) => b.readBigUInt64LE(0),
  encodeValue: u64,
  decodeValue: (b) => b.readBigUInt64LE(0),
};

/**
 * Socket maps (SOCKMAP, REUSEPORT_SOCKARRAY): a u32 index to a socket, updated with its fd as a
 * u64 value.
 */
export const SOCKET_SLOT_CODEC: MapCodec<number, bigint> = {
  encodeKey: U32_CODEC.encodeKey,
  decodeKey: U32_CODEC.decodeKey,
  encodeValue: U64_CODEC.encodeValue,
  decodeValue: U64_CODEC.decodeValue,
};

/** Bytes in, bytes out. */
export const RAW_CODEC: MapCodec<Buffer, Buffer> = {
  encodeKey: (k) => k,
  decodeKey: (b) => b,
  encodeValue: (v) => v,
  decodeValue: (b) => b,
};

export interface MapInfo {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** Kernel id of the map (what prog/map-in-map lookups report). */
  id: number;
}

/** bpf_map_type values the agent creates (linux/bpf.h). */
export const MapType = { hash: 1, hashOfMaps: 13 } as const;
/** BPF_F_NO_PREALLOC: entries are allocated on update, so an empty map costs nothing. */
export const MAP_F_NO_PREALLOC = 1;

const PERCPU_TYPES = new Set([5 /* PERCPU_HASH */, 6 /* PERCPU_ARRAY */, 10 /* LRU_PERCPU_HASH */]);

/** BPF_ANY / BPF_NOEXIST / BPF_EXIST */
export const MapUpdate = { any: 0n, noExist: 1n, exist: 2n } as const;

/**
 * A map by fd. Keys and values are checked against the map's sizes before every call, because
 * the kernel reads exactly key_size/value_size bytes from the pointers it is given. Per-CPU maps
 * read `valueSize` rounded up to 8 times the number of possible CPUs per lookup.
 */
export class BpfMap<K = Buffer, V = Buffer> {
  readonly name: string;
  readonly info: MapInfo;
  #fd: number;
  readonly #ownsFd: boolean;
  readonly #codec: MapCodec<K, V>;
  readonly #valueBufSize: number;

  constructor(name: string, fd: number, codec: MapCodec<K, V>, ownsFd: boolean) {
    this.name = name;
    this.#fd = fd;
    this.#codec = codec;
    this.#ownsFd = ownsFd;
    const out = Buffer.alloc(24);
    const rc = shim().mapInfo(fd, out);
    if (rc < 0) throw bpfError('AMBIT_ERR_BPF_MAP', `reading info of map ${name}`, rc, { map: name });
    this.info = {
      type: out.readUInt32LE(0),
      keySize: out.readUInt32LE(4),
      valueSize: out.readUInt32LE(8),
      maxEntries: out.readUInt32LE(12),
      flags: out.readUInt32LE(16),
      id: out.readUInt32LE(20),
    };
    this.#valueBufSize = PERCPU_TYPES.has(this.info.type)
      ? Math.ceil(this.info.valueSize / 8) * 8 * shim().numPossibleCpus()
      : this.info.valueSize;
  }

  /** Opens a pinned map (owns the fd it opens). */
  static fromPin<K, V>(path: string, codec: MapCodec<K, V>): BpfMap<K, V> {
    const fd = shim().objGet(path);
    if (fd < 0) throw bpfError('AMBIT_ERR_BPF_MAP', `opening pinned map ${path}`, fd, { path });
    try {
      return new BpfMap(path, fd, codec, true);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Opens a map by kernel id (e.g. a pod's inner map, as its outer map reports it); owns the fd. */
  static fromId<K, V>(name: string, id: number, codec: MapCodec<K, V>): BpfMap<K, V> {
    const fd = shim().mapFdById(id);
    if (fd < 0) throw bpfError('AMBIT_ERR_BPF_MAP', `opening map ${name} (id ${id})`, fd, { map: name, id });
    try {
      return new BpfMap(name, fd, codec, true);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Creates a map without BTF (owns the fd). */
  static create<K, V>(
    name: string,
    spec: { type: number; keySize: number; valueSize: number; maxEntries: number; flags?: number },
    codec: MapCodec<K, V>,
  ): BpfMap<K, V> {
    // Kernel map names: 15 characters of [A-Za-z0-9_.].
    const kname = name.replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 15);
    const fd = shim().mapCreate(spec.type, kname, spec.keySize, spec.valueSize, spec.maxEntries, spec.flags ?? 0);
    if (fd < 0) throw bpfError('AMBIT_ERR_BPF_MAP', `creating map ${name}`, fd, { map: name });
    try {
      return new BpfMap(name, fd, codec, true);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  get fd(): number {
    if (this.#fd < 0) throw new AmbitError('AMBIT_ERR_BPF_MAP', `map ${this.name} is closed`);
    return this.#fd;
  }

  /** Bytes a lookup returns per key (all CPUs for per-CPU maps). */
  get valueBufferSize(): number {
    return this.#valueBufSize;
  }

  #key(key: K): Buffer {
    const buf = this.#codec.encodeKey(key);
    if (buf.length !== this.info.keySize) {
      throw new AmbitError(
        'AMBIT_ERR_BPF_MAP',
        `key of ${buf.length} bytes for map ${this.name} whose key_size is ${this.info.keySize}`,
        { details: { map: this.name } },
      );
    }
    return buf;
  }

  update(key: K, value: V, flags: bigint = MapUpdate.any): void {
    const v = this.#codec.encodeValue(value);
    if (v.length !== this.#valueBufSize) {
      throw new AmbitError(
        'AMBIT_ERR_BPF_MAP',
        `value of ${v.length} bytes for map ${this.name} that takes ${this.#valueBufSize}`,
        { details: { map: this.name } },
      );
    }
    const rc = shim().mapUpdate(this.fd, this.#key(key), v, flags);
    if (rc < 0) throw bpfError('AMBIT_ERR_BPF_MAP', `updating map ${this.name}`, rc, { map: this.name });
  }

  /** Map-in-map: a lookup answers the inner map's id (u32), an update takes its fd. */
  lookup(key: K): V | undefined {
    const out = Buffer.alloc(this.#valueBufSize);
    const rc = shim().mapLookup(this.fd, this.#key(key), out);
    if (rc === -2) return undefined;
    if (rc < 0) throw bpfError('AMBIT_ERR_BPF_MAP', `looking up map ${this.name}`, rc, { map: this.name });
    return this.#codec.decodeValue(out);
  }

  /** Returns false when the key was not there. */
  delete(key: K): boolean {
    const rc = shim().mapDelete(this.fd, this.#key(key));
    if (rc === -2) return false;
    if (rc < 0) throw bpfError('AMBIT_ERR_BPF_MAP', `deleting from map ${this.name}`, rc, { map: this.name });
    return true;
  }

  /** All keys, bounded by max_entries (entries may change meanwhile). */
  keys(): K[] {
    const out: K[] = [];
    let prev: Buffer | null = null;
    for (let i = 0; i < this.info.maxEntries; i++) {
      const next = Buffer.alloc(this.info.keySize);
      const rc = shim().mapNextKey(this.fd, prev, next);
      if (rc === -2) break;
      if (rc < 0) throw bpfError('AMBIT_ERR_BPF_MAP', `iterating map ${this.name}`, rc, { map: this.name });
      out.push(this.#codec.decodeKey(next));
      prev = next;
    }
    return out;
  }

  /** Closes the fd if this map owns it (maps of a BpfObject are closed with the object). */
  close(): void {
    if (this.#fd >= 0 && this.#ownsFd) closeSync(this.#fd);
    this.#fd = -1;
  }
}

/** What the kernel reports about a link (bpf_link_info). */
export interface LinkInfo {
  /** BPF_LINK_TYPE_*: 3 cgroup, 5 netns. */
  type: number;
  progId: number;
  /** cgroup links: the cgroup id (inode of its folder); netns links: the netns inode, 0 once it is gone. */
  target: bigint;
  attachType: number;
}

export const LinkType = { cgroup: 3, netns: 5 } as const;

/** An attachment. close() detaches it unless it is pinned. */
export class BpfLink {
  readonly description: string;
  #ptr: NativePointer | null;
  #pinPath: string | undefined;

  constructor(description: string, ptr: NativePointer, pinPath?: string) {
    this.description = description;
    this.#ptr = ptr;
    this.#pinPath = pinPath;
    leaks.register(this, `bpf link ${description}`, this);
  }

  /**
   * The link pinned at `path` (a previous run's), or undefined when nothing is pinned there.
   * The handle does not detach it on close() while the pin stays.
   */
  static openPinned(path: string): BpfLink | undefined {
    if (!existsSync(path)) return undefined;
    const ptr = shim().linkOpen(path);
    const errno = lastErrno();
    if (ptr === null || ptr === 0n) {
      if (errno === 2) return undefined;
      throw bpfError('AMBIT_ERR_BPF_ATTACH', `opening pinned link ${path}`, errno, { path });
    }
    return new BpfLink(path, ptr, path);
  }

  get closed(): boolean {
    return this.#ptr === null;
  }

  get pinPath(): string | undefined {
    return this.#pinPath;
  }

  #handle(): NativePointer {
    if (this.#ptr === null) throw new AmbitError('AMBIT_ERR_BPF_ATTACH', `link ${this.description} is closed`);
    return this.#ptr;
  }

  info(): LinkInfo {
    const out = Buffer.alloc(32);
    const rc = shim().linkInfo(shim().linkFd(this.#handle()), out);
    if (rc < 0) throw bpfError('AMBIT_ERR_BPF_ATTACH', `reading info of link ${this.description}`, rc);
    return {
      type: Number(out.readBigUInt64LE(0)),
      progId: Number(out.readBigUInt64LE(8)),
      target: out.readBigUInt64LE(16),
      attachType: Number(out.readBigUInt64LE(24)),
    };
  }

  /**
   * Swaps in `prog` of `obj` (same program type and attach type) without detaching: the hook
   * never runs without a program (BPF_LINK_UPDATE), and the link keeps its place in the
   * cgroup's program order.
   */
  update(obj: BpfObject, prog: string): void {
    const rc = shim().linkUpdate(this.#handle(), obj.handle(), prog);
    if (rc < 0) throw bpfError('AMBIT_ERR_BPF_ATTACH', `updating link ${this.description} to ${prog} of ${obj.path}`, rc, { prog });
  }

  /** Pins the link on bpffs so it survives this process; the parent folder must exist. */
  pin(path: string): void {
    const rc = shim().linkPin(this.#handle(), path);
    if (rc < 0) throw bpfError('AMBIT_ERR_BPF_ATTACH', `pinning link ${this.description} at ${path}`, rc, { path });
    this.#pinPath = path;
  }

  /** Removes the pin; the link stays attached while this handle is open. */
  unpin(): void {
    if (this.#pinPath === undefined) return;
    const rc = shim().linkUnpin(this.#handle());
    if (rc < 0 && rc !== -2) {
      throw bpfError('AMBIT_ERR_BPF_ATTACH', `unpinning link ${this.description} at ${this.#pinPath}`, rc, {
        path: this.#pinPath,
      });
    }
    this.#pinPath = undefined;
  }

  /**
   * Frees the handle; detaches the program unless the link is still pinned. Throws (once the
   * handle is freed) when libbpf reports a failure, so a detach that did not happen is not silent.
   */
  close(): void {
    if (this.#ptr === null) return;
    const ptr = this.#ptr;
    this.#ptr = null;
    leaks.unregister(this);
    const rc = shim().linkDestroy(ptr);
    if (rc < 0) throw bpfError('AMBIT_ERR_BPF_ATTACH', `destroying link ${this.description}`, rc);
  }

  /** Unpin then close: the program is detached when this returns. */
  detach(): void {
    if (this.#ptr === null) return;
    try {
      this.unpin();
    } finally {
      this.close();
    }
  }
}

export interface OpenObjectOptions {
  /** Folder where maps declared with LIBBPF_PIN_BY_NAME are pinned or reused (must exist). */
  pinRoot?: string;
}

/** A loaded BPF object file. */
export class BpfObject {
  readonly path: string;
  #ptr: NativePointer | null;
  readonly #maps = new Map<string, BpfMap<unknown, unknown>>();

  private constructor(path: string, ptr: NativePointer) {
    this.path = path;
    this.#ptr = ptr;
    leaks.register(this, `bpf object ${path}`, this);
  }

  /**
   * Opens and loads `path`. Throws AMBIT_ERR_BPF_UNSUPPORTED when this process or kernel can not
   * do BPF, AMBIT_ERR_BPF_LOAD (details.log = libbpf and verifier output) when the object is
   * rejected.
   */
  static open(path: string, opts: OpenObjectOptions = {}): BpfObject {
    const reason = bpfUnsupportedReason();
    if (reason !== undefined) {
      throw new AmbitError('AMBIT_ERR_BPF_UNSUPPORTED', `loading ${path} is not possible: ${reason}`, {
        details: { path, reason },
      });
    }
    takeLibbpfLog(); // start from an empty log: what follows is this load's
    const ptr = shim().objectOpenLoad(path, opts.pinRoot ?? null);
    const errno = lastErrno();
    if (ptr === null || ptr === 0n) throw bpfError('AMBIT_ERR_BPF_LOAD', `loading bpf object ${path}`, errno, { path });
    return new BpfObject(path, ptr);
  }

  /** The libbpf handle, for BpfLink.update (never leaves native/). */
  handle(): NativePointer {
    return this.#handle();
  }

  /** The fd of program `prog` (owned by the object). */
  progFd(prog: string): number {
    const fd = shim().objectProgFd(this.#handle(), prog);
    if (fd < 0) throw bpfError('AMBIT_ERR_BPF_LOAD', `finding program ${prog} in ${this.path}`, fd, { prog });
    return fd;
  }

  #handle(): NativePointer {
    if (this.#ptr === null) throw new AmbitError('AMBIT_ERR_BPF_LOAD', `bpf object ${this.path} is closed`);
    return this.#ptr;
  }

  /** The object's map `name` (fd owned by the object) with `codec`. */
  map<K = Buffer, V = Buffer>(name: string, codec?: MapCodec<K, V>): BpfMap<K, V> {
    const fd = shim().objectMapFd(this.#handle(), name);
    if (fd < 0) throw bpfError('AMBIT_ERR_BPF_MAP', `finding map ${name} in ${this.path}`, fd, { map: name });
    const m = new BpfMap<K, V>(name, fd, codec ?? (RAW_CODEC as unknown as MapCodec<K, V>), false);
    this.#maps.set(name, m as BpfMap<unknown, unknown>);
    return m;
  }

  /** Attaches program `prog` to the cgroup v2 folder `cgroupPath`. */
  attachCgroup(prog: string, cgroupPath: string): BpfLink {
    return this.#attach(prog, cgroupPath, 'cgroup', (fd) => shim().attachCgroup(this.#handle(), prog, fd));
  }

  /**
   * Attaches program `prog` (sk_lookup) to a netns: a path, or an fd the caller opened once for
   * the whole enrolment (`label` names it in errors).
   */
  attachNetns(prog: string, netns: string | { fd: number; label: string }): BpfLink {
    return this.#attach(prog, netns, 'netns', (fd) => shim().attachNetns(this.#handle(), prog, fd));
  }

  #attach(prog: string, target: string | { fd: number; label: string }, kind: string, call: (fd: number) => NativePointer | null): BpfLink {
    this.#handle();
    const label = typeof target === 'string' ? target : target.label;
    let fd: number;
    if (typeof target === 'string') {
      try {
        fd = openSync(target, 'r');
      } catch (cause) {
        throw new AmbitError('AMBIT_ERR_BPF_ATTACH', `opening ${kind} ${target} to attach ${prog} failed; does it exist?`, {
          cause,
          details: { prog, target },
        });
      }
    } else {
      fd = target.fd;
    }
    try {
      const ptr = call(fd);
      const errno = lastErrno();
      if (ptr === null || ptr === 0n) {
        throw bpfError('AMBIT_ERR_BPF_ATTACH', `attaching ${prog} to ${kind} ${label}`, errno, { prog, target: label });
      }
      return new BpfLink(`${prog}@${label}`, ptr);
    } finally {
      // The link holds its own reference to the cgroup/netns.
      if (typeof target === 'string') closeSync(fd);
    }
  }

  /** Frees the object: programs without links are unloaded, unpinned maps freed. */
  close(): void {
    if (this.#ptr === null) return;
    for (const m of this.#maps.values()) m.close();
    this.#maps.clear();
    const ptr = this.#ptr;
    this.#ptr = null;
    leaks.unregister(this);
    shim().objectClose(ptr);
  }
}

/** bpf_attach_type values of the cgroup hooks capture uses (linux/bpf.h). */
export const AttachType = {
  cgroupInet4Connect: 10,
  cgroupInet6Connect: 11,
  cgroupSockOps: 3,
  cgroupGetsockopt: 21,
  cgroupInet4Getpeername: 29,
  cgroupInet6Getpeername: 30,
  cgroupUdp4Sendmsg: 14,
  cgroupUdp6Sendmsg: 15,
  cgroupUdp4Recvmsg: 19,
  cgroupUdp6Recvmsg: 20,
} as const;

export interface AttachedProgram {
  id: number;
  /** The kernel's copy of the name: at most 15 characters. */
  name: string;
}

/**
 * Programs that run at a cgroup's hook of `attachType`, including those attached at its
 * ancestors (BPF_F_QUERY_EFFECTIVE), in the order they run.
 */
export function attachedPrograms(cgroupPath: string, attachType: number): AttachedProgram[] {
  let fd: number;
  try {
    fd = openSync(cgroupPath, 'r');
  } catch (cause) {
    throw new AmbitError('AMBIT_ERR_BPF_ATTACH', `opening cgroup ${cgroupPath} to list its programs failed`, { cause, details: { cgroupPath } });
  }
  try {
    const cap = 64;
    const ids = Buffer.alloc(4 * cap);
    const n = shim().progQuery(fd, attachType, 1 /* BPF_F_QUERY_EFFECTIVE */, ids, cap);
    if (n < 0) throw bpfError('AMBIT_ERR_BPF_ATTACH', `listing programs at cgroup ${cgroupPath} (attach type ${attachType})`, n, { cgroupPath });
    const out: AttachedProgram[] = [];
    for (let i = 0; i < Math.min(n, cap); i++) {
      const id = ids.readUInt32LE(i * 4);
      const name = Buffer.alloc(16);
      // A program detached meanwhile is simply not listed.
      if (shim().progName(id, name, name.length) < 0) continue;
      out.push({ id, name: name.toString('utf8', 0, Math.max(0, name.indexOf(0))) });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/**
 * BPF_PROG_RUN: runs program `prog` of `obj` once on `ctx` (the program type's uapi context,
 * e.g. struct bpf_sk_lookup) and returns its verdict and the context as the program left it.
 * Only program types the kernel can test-run (sk_lookup among capture's) accept this.
 */
export function testRunProgram(obj: BpfObject, prog: string, ctx: Buffer): { retval: number; ctx: Buffer } {
  const out = Buffer.alloc(ctx.length);
  const retval = Buffer.alloc(4);
  const rc = shim().progTestRun(obj.progFd(prog), ctx, ctx.length, out, out.length, retval);
  if (rc < 0) throw bpfError('AMBIT_ERR_BPF_LOAD', `test-running ${prog} of ${obj.path}`, rc, { prog });
  return { retval: retval.readUInt32LE(0), ctx: out };
}
