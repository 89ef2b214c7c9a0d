/**
 * Typed owners of libbpf handles: BpfObject (a loaded .bpf.o), BpfLink (an attachment) and
 * BpfMap (a map fd with key/value codecs). Everything above native/ uses these, never koffi.
 *
 * Invariants: every owner has an idempotent close(); a closed owner refuses further use; a
 * failed call throws AmbitError naming the operation, the path and the errno name. Pinned links
 * stay attached after close() (and after process exit) until their pin is removed.
 */
import { closeSync, existsSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { AmbitError, type ErrorCode } from '../src/shared/errors.js';
import { lastErrno, shim, type NativePointer } from './bindings.js';

const LOG_SIZE = 1 << 20;
const BTF_PATH = '/sys/kernel/btf/vmlinux';

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

function bpfError(code: ErrorCode, what: string, errno: number, details: Record<string, unknown> = {}): AmbitError {
  const name = errnoName(errno);
  const unsupported = (code === 'AMBIT_ERR_BPF_MAP' ? MAP_UNSUPPORTED_ERRNOS : UNSUPPORTED_ERRNOS).has(name);
  const hint = unsupported ? '; BPF needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) and a kernel with these program types' : '';
  return new AmbitError(unsupported ? 'AMBIT_ERR_BPF_UNSUPPORTED' : code, `${what} failed with ${name}${hint}`, {
    details: { ...details, errno: name },
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
 * Why BPF can not be used here, or undefined when the prerequisites are present
 * (root, BTF, the shim). Loading can still fail; callers treat that as unsupported too.
 */
export function bpfUnsupportedReason(): string | undefined {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'requires root';
  if (!existsSync(BTF_PATH)) return `kernel BTF ${BTF_PATH} is missing (CONFIG_DEBUG_INFO_BTF)`;
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
}

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
    const out = Buffer.alloc(16);
    const rc = shim().mapInfo(fd, out);
    if (rc < 0) throw bpfError('AMBIT_ERR_BPF_MAP', `reading info of map ${name}`, rc, { map: name });
    this.info = {
      type: out.readUInt32LE(0),
      keySize: out.readUInt32LE(4),
      valueSize: out.readUInt32LE(8),
      maxEntries: out.readUInt32LE(12),
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

/** An attachment. close() detaches it unless it is pinned. */
export class BpfLink {
  readonly description: string;
  #ptr: NativePointer | null;
  #pinPath: string | undefined;

  constructor(description: string, ptr: NativePointer) {
    this.description = description;
    this.#ptr = ptr;
    leaks.register(this, `bpf link ${description}`, this);
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

  /** Frees the handle; detaches the program unless the link is still pinned. */
  close(): void {
    if (this.#ptr === null) return;
    const ptr = this.#ptr;
    this.#ptr = null;
    leaks.unregister(this);
    shim().linkDestroy(ptr);
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
    const log = Buffer.alloc(LOG_SIZE);
    const ptr = shim().objectOpenLoad(path, opts.pinRoot ?? null, log, log.length);
    const errno = lastErrno();
    if (ptr === null || ptr === 0n) {
      const end = log.indexOf(0);
      const text = log.toString('utf8', 0, end < 0 ? log.length : end);
      const err = bpfError('AMBIT_ERR_BPF_LOAD', `loading bpf object ${path}`, errno, { path, log: text });
      throw err;
    }
    return new BpfObject(path, ptr);
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

  /** Attaches program `prog` (sk_lookup) to the netns at `netnsPath`. */
  attachNetns(prog: string, netnsPath: string): BpfLink {
    return this.#attach(prog, netnsPath, 'netns', (fd) => shim().attachNetns(this.#handle(), prog, fd));
  }

  #attach(prog: string, target: string, kind: string, call: (fd: number) => NativePointer | null): BpfLink {
    this.#handle();
    let fd: number;
    try {
      fd = openSync(target, 'r');
    } catch (cause) {
      throw new AmbitError('AMBIT_ERR_BPF_ATTACH', `opening ${kind} ${target} to attach ${prog} failed; does it exist?`, {
        cause,
        details: { prog, target },
      });
    }
    try {
      const ptr = call(fd);
      const errno = lastErrno();
      if (ptr === null || ptr === 0n) {
        throw bpfError('AMBIT_ERR_BPF_ATTACH', `attaching ${prog} to ${kind} ${target}`, errno, { prog, target });
      }
      return new BpfLink(`${prog}@${target}`, ptr);
    } finally {
      // The link holds its own reference to the cgroup/netns.
      closeSync(fd);
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
