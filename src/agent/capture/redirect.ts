/**
 * BPF capture (DESIGN.md, Capture): redirect.bpf.o attached once at a cgroup v2 folder for
 * outbound, and one steer.bpf.o instance per enrolled pod attached to its netns for inbound.
 *
 * Pin layout under pinDir (one folder per agent, on bpffs; names have no dots, bpffs refuses them):
 *   maps/ambit_*         maps pinned by name (shared by all objects)
 *   links/<program>      cgroup links of redirect.bpf.o
 *   pods/<uid>/steer     the pod's sk_lookup link
 * Invariants: a pod is in ambit_pods exactly while it is in #pods; open() starts from an empty
 * pinDir (a crashed run's pins are removed, which detaches its programs); close() leaves no pin,
 * link or program behind.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { CaptureReasons, type CaptureReason } from '../../shared/reasons.js';
import { BpfObject, bpfObjectPath, type BpfLink, type BpfMap, type MapCodec } from '../../../native/bpf.js';
import {
  encodeStruct,
  DirectKeyType,
  PodConfigType,
  PortKeyType,
  OrigDstType,
  TupleKeyType,
  decodeStruct,
} from '../../../native/bindings.js';
import { netnsCookie } from '../../../native/netns.js';
import { bytes16ToIp, ipToBytes16, type SocketAddressInfo } from '../../../native/sockaddr.js';
import { HBONE_PORT, OUTBOUND_PORT, type Capture, type DirectTuple, type EnrollOptions } from './capture.js';
import { installReplyRouting, removeReplyRouting, type ReplyRouteOptions } from './reply-route.js';

/** Programs of redirect.bpf.o attached at the cgroup, in attach order. */
export const CGROUP_PROGRAMS = [
  'ambit_sockops',
  'ambit_getsockopt',
  'ambit_getpeername4',
  'ambit_getpeername6',
  'ambit_connect4',
  'ambit_connect6',
] as const;

const POD_F_IPV6 = 0x1;

export interface BpfCaptureOptions {
  /** cgroup v2 folder to attach at: the root in production, a test cgroup in tests. */
  cgroupPath: string;
  /** This agent's folder on bpffs, e.g. /sys/fs/bpf/ambit. Everything in it is owned by the capture. */
  pinDir: string;
  log: Logger;
  /** nsenter/nft/ip used for each pod's reply routing (reply-route.ts). */
  replyRoute?: ReplyRouteOptions;
}

interface PodConfig {
  outboundPort: number;
  flags: number;
}

interface Enrolled {
  uid: string;
  cookie: bigint;
  steer: BpfObject;
  link: BpfLink;
  excludedOut: number[];
  pinFolder: string;
  netnsPath: string;
  direct: BpfMap<DirectTuple, number>;
  replyRouting: boolean;
}

const u64Codec: MapCodec<bigint, bigint> = {
  encodeKey: (k) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(k);
    return b;
  },
  decodeKey: (b) => b.readBigUInt64LE(0),
  encodeValue: (v) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return b;
  },
  decodeValue: (b) => b.readBigUInt64LE(0),
};

const podsCodec: MapCodec<bigint, PodConfig> = {
  encodeKey: u64Codec.encodeKey,
  decodeKey: u64Codec.decodeKey,
  encodeValue: (v) => encodeStruct(PodConfigType, { outbound_port: v.outboundPort, flags: v.flags, pad: 0 }),
  decodeValue: (b) => {
    const d = decodeStruct(b, PodConfigType);
    return { outboundPort: Number(d['outbound_port']), flags: Number(d['flags']) };
  },
};

const portKeyCodec: MapCodec<{ cookie: bigint; port: number }, number> = {
  encodeKey: (k) => encodeStruct(PortKeyType, { netns_cookie: k.cookie, port: k.port, pad: [0, 0, 0] }),
  decodeKey: (b) => {
    const d = decodeStruct(b, PortKeyType);
    return { cookie: BigInt(d['netns_cookie'] as number | bigint), port: Number(d['port']) };
  },
  encodeValue: (v) => Buffer.from([v]),
  decodeValue: (b) => b[0]!,
};

/** Per-CPU u64 counters summed over CPUs. */
const statsCodec: MapCodec<number, bigint> = {
  encodeKey: (k) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(k);
    return b;
  },
  decodeKey: (b) => b.readUInt32LE(0),
  encodeValue: () => {
    throw new AmbitError('AMBIT_ERR_BPF_MAP', 'ambit_stats is written only by the programs');
  },
  decodeValue: (b) => {
    let sum = 0n;
    for (let off = 0; off + 8 <= b.length; off += 8) sum += b.readBigUInt64LE(off);
    return sum;
  },
};

export interface TupleKey {
  netnsCookie: bigint;
  address: string;
  port: number;
}

const tupleCodec: MapCodec<TupleKey, SocketAddressInfo> = {
  encodeKey: (k) =>
    encodeStruct(TupleKeyType, {
      netns_cookie: k.netnsCookie,
      addr: ipToBytes16(k.address),
      port: k.port,
      pad: [0, 0, 0],
    }),
  decodeKey: (b) => {
    const d = decodeStruct(b, TupleKeyType);
    return {
      netnsCookie: BigInt(d['netns_cookie'] as number | bigint),
      address: bytes16ToIp(d['addr'] as Uint8Array).address,
      port: Number(d['port']),
    };
  },
  encodeValue: () => {
    throw new AmbitError('AMBIT_ERR_BPF_MAP', 'ambit_orig_by_tuple is written only by the programs');
  },
  decodeValue: (b) => {
    const d = decodeStruct(b, OrigDstType);
    const ip = bytes16ToIp(d['addr'] as Uint8Array);
    return { address: ip.address, family: ip.family, port: Number(d['port']) };
  },
};

const steerSocketCodec: MapCodec<number, bigint> = {
  encodeKey: statsCodec.encodeKey,
  decodeKey: statsCodec.decodeKey,
  encodeValue: u64Codec.encodeValue,
  decodeValue: u64Codec.decodeValue,
};

const directCodec: MapCodec<DirectTuple, number> = {
  encodeKey: (k) =>
    encodeStruct(DirectKeyType, {
      remote_addr: ipToBytes16(k.sourceAddress),
      remote_port: k.sourcePort,
      local_port: k.destinationPort,
      pad: 0,
    }),
  decodeKey: (b) => {
    const d = decodeStruct(b, DirectKeyType);
    return {
      sourceAddress: bytes16ToIp(d['remote_addr'] as Uint8Array).address,
      sourcePort: Number(d['remote_port']),
      destinationPort: Number(d['local_port']),
    };
  },
  encodeValue: (v) => Buffer.from([v]),
  decodeValue: (b) => b[0]!,
};

const steerPortCodec: MapCodec<number, number> = {
  encodeKey: (k) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(k);
    return b;
  },
  decodeKey: (b) => b.readUInt16LE(0),
  encodeValue: (v) => Buffer.from([v]),
  decodeValue: (b) => b[0]!,
};

/** bpffs refuses names with dots; pod UIDs are UUIDs, anything else is made safe. */
export function pinName(uid: string): string {
  const safe = uid.replace(/[^A-Za-z0-9_-]/g, '_');
  return safe.length > 0 && safe.length <= 200 ? safe : `uid_${Buffer.from(uid).toString('hex').slice(0, 64)}`;
}

function checkPorts(what: string, ports: number[] | undefined): number[] {
  const out = ports ?? [];
  for (const p of out) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) {
      throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `${what} port ${p} is not an integer in 1-65535`, {
        details: { port: p },
      });
    }
  }
  return out;
}

export class BpfCapture implements Capture {
  readonly mode = 'bpf' as const;
  readonly pinDir: string;
  readonly cgroupPath: string;
  readonly #log: Logger;
  readonly #redirect: BpfObject;
  readonly #links: BpfLink[];
  readonly #pods: BpfMap<bigint, PodConfig>;
  readonly #excluded: BpfMap<{ cookie: bigint; port: number }, number>;
  readonly #stats: BpfMap<number, bigint>;
  readonly #tuples: BpfMap<TupleKey, SocketAddressInfo>;
  readonly #enrolled = new Map<string, Enrolled>();
  readonly #replyRoute: ReplyRouteOptions;
  #closed = false;

  private constructor(opts: BpfCaptureOptions, redirect: BpfObject, links: BpfLink[]) {
    this.pinDir = opts.pinDir;
    this.#replyRoute = opts.replyRoute ?? {};
    this.cgroupPath = opts.cgroupPath;
    this.#log = opts.log;
    this.#redirect = redirect;
    this.#links = links;
    this.#pods = redirect.map('ambit_pods', podsCodec);
    this.#excluded = redirect.map('ambit_excluded_ports', portKeyCodec);
    this.#stats = redirect.map('ambit_stats', statsCodec);
    this.#tuples = redirect.map('ambit_orig_by_tuple', tupleCodec);
  }

  /**
   * Removes what a previous (crashed) run left under pinDir, loads redirect.bpf.o and attaches its
   * programs at cgroupPath, pinning each link. Throws AMBIT_ERR_BPF_UNSUPPORTED / _LOAD / _ATTACH.
   */
  static async open(opts: BpfCaptureOptions): Promise<BpfCapture> {
    const log = opts.log.child({ component: 'capture', mode: 'bpf' });
    checkPinDir(opts.pinDir);
    const stale = removePins(opts.pinDir);
    if (stale > 0) log.warn({ pinDir: opts.pinDir, pins: stale }, 'removed stale pins of a previous run');
    mkdirSync(join(opts.pinDir, 'maps'), { recursive: true });
    mkdirSync(join(opts.pinDir, 'links'), { recursive: true });
    mkdirSync(join(opts.pinDir, 'pods'), { recursive: true });
    const links: BpfLink[] = [];
    let redirect: BpfObject | undefined;
    try {
      redirect = BpfObject.open(bpfObjectPath('redirect'), { pinRoot: join(opts.pinDir, 'maps') });
      for (const prog of CGROUP_PROGRAMS) {
        const link = redirect.attachCgroup(prog, opts.cgroupPath);
        links.push(link);
        link.pin(join(opts.pinDir, 'links', prog));
      }
      const capture = new BpfCapture({ ...opts, log }, redirect, links);
      log.info({ cgroupPath: opts.cgroupPath, pinDir: opts.pinDir }, 'bpf capture attached');
      return capture;
    } catch (e) {
      for (const l of links.reverse()) l.detach();
      redirect?.close();
      removePins(opts.pinDir);
      throw e;
    }
  }

  enrolled(): string[] {
    return [...this.#enrolled.keys()];
  }

  async enroll(opts: EnrollOptions): Promise<void> {
    this.#open();
    const excludedIn = checkPorts('excluded inbound', opts.excludeInboundPorts);
    const excludedOut = checkPorts('excluded outbound', opts.excludeOutboundPorts);
    const outboundPort = opts.outboundPort ?? OUTBOUND_PORT;
    if (this.#enrolled.has(opts.uid)) await this.unenroll(opts.uid);
    const cookie = netnsCookie(opts.netnsPath);
    const pinFolder = join(this.pinDir, 'pods', pinName(opts.uid));
    const steer = BpfObject.open(bpfObjectPath('steer'), { pinRoot: join(this.pinDir, 'maps') });
    let link: BpfLink | undefined;
    try {
      steer.map('ambit_steer_socket', steerSocketCodec).update(0, BigInt(opts.inboundListenerFd));
      const ports = steer.map('ambit_steer_excluded', steerPortCodec);
      for (const p of excludedIn) ports.update(p, 1);
      link = steer.attachNetns('ambit_steer', opts.netnsPath);
      mkdirSync(pinFolder, { recursive: true });
      link.pin(join(pinFolder, 'steer'));
      for (const p of excludedOut) this.#excluded.update({ cookie, port: p }, 1);
      this.#pods.update(cookie, { outboundPort, flags: opts.ipv6 ? POD_F_IPV6 : 0 });
    } catch (e) {
      for (const p of excludedOut) this.#excluded.delete({ cookie, port: p });
      link?.detach();
      steer.close();
      rmSync(pinFolder, { recursive: true, force: true });
      throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `enrolling pod ${opts.uid} (${opts.netnsPath}) failed: ${errorMessage(e)}`, {
        cause: e,
        details: { uid: opts.uid, netnsPath: opts.netnsPath },
      });
    }
    const direct = steer.map('ambit_steer_direct', directCodec);
    const replyRouting = await installReplyRouting(opts.netnsPath, this.#replyRoute).then(
      () => true,
      (e: unknown) => {
        this.#log.warn({ uid: opts.uid, err: e }, 'reply routing failed; inbound dials will use the pod address as source');
        return false;
      },
    );
    this.#enrolled.set(opts.uid, {
      uid: opts.uid,
      cookie,
      steer,
      link,
      excludedOut,
      pinFolder,
      netnsPath: opts.netnsPath,
      direct,
      replyRouting,
    });
    this.#log.info(
      { uid: opts.uid, netnsCookie: cookie.toString(), outboundPort, hbonePort: HBONE_PORT, excludedIn, excludedOut, replyRouting },
      'pod enrolled',
    );
  }

  preservesSource(uid: string): boolean {
    return this.#enrolled.get(uid)?.replyRouting === true;
  }

  allowDirect(uid: string, tuple: DirectTuple): void {
    this.#enrolled.get(uid)?.direct.update(tuple, 1);
  }

  forgetDirect(uid: string, tuple: DirectTuple): void {
    try {
      this.#enrolled.get(uid)?.direct.delete(tuple);
    } catch (e) {
      // The LRU map ages a stale entry out; it only exempts one exact tuple from steering.
      this.#log.debug({ uid, err: e }, 'forgetting a direct tuple failed');
    }
  }

  /** Debugging aid: transparent dials of the pod currently exempt from steering. */
  directTuples(uid: string): DirectTuple[] {
    return this.#enrolled.get(uid)?.direct.keys() ?? [];
  }

  async unenroll(uid: string): Promise<void> {
    const pod = this.#enrolled.get(uid);
    if (pod === undefined) return;
    this.#enrolled.delete(uid);
    // Outbound first: once the cookie is gone no new connect is redirected.
    this.#pods.delete(pod.cookie);
    for (const p of pod.excludedOut) this.#excluded.delete({ cookie: pod.cookie, port: p });
    pod.link.detach();
    pod.steer.close();
    rmSync(pod.pinFolder, { recursive: true, force: true });
    if (pod.replyRouting) {
      await removeReplyRouting(pod.netnsPath, this.#replyRoute).catch((e: unknown) => {
        this.#log.warn({ uid, err: e }, 'removing reply routing failed');
      });
    }
    this.#log.info({ uid }, 'pod unenrolled');
  }

  /** Counter per reason code (summed over CPUs). */
  stats(): Record<CaptureReason, number> {
    this.#open();
    const out = {} as Record<CaptureReason, number>;
    for (const [name, index] of Object.entries(CaptureReasons) as [CaptureReason, number][]) {
      out[name] = Number(this.#stats.lookup(index) ?? 0n);
    }
    return out;
  }

  /** Debugging aid: the original destination recorded for a client tuple of a pod's netns. */
  recordedOriginal(key: TupleKey): SocketAddressInfo | undefined {
    this.#open();
    return this.#tuples.lookup(key);
  }

  /** The netns cookie an enrolled pod is keyed by. */
  netnsCookieOf(uid: string): bigint | undefined {
    return this.#enrolled.get(uid)?.cookie;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const errors: unknown[] = [];
    for (const uid of [...this.#enrolled.keys()]) {
      try {
        await this.unenroll(uid);
      } catch (e) {
        errors.push(e);
      }
    }
    for (const l of [...this.#links].reverse()) {
      try {
        l.detach();
      } catch (e) {
        errors.push(e);
      }
    }
    this.#redirect.close();
    removePins(this.pinDir);
    this.#log.info({ pinDir: this.pinDir }, 'bpf capture detached');
    if (errors.length > 0) {
      throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `closing bpf capture hit ${errors.length} error(s): ${errorMessage(errors[0])}`, {
        cause: errors[0],
      });
    }
  }

  #open(): void {
    if (this.#closed) throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `bpf capture at ${this.pinDir} is closed`);
  }
}

/**
 * pinDir is wiped on open() and close(), so it must be a folder of its own, never a mount point
 * such as /sys/fs/bpf itself (whose other pins belong to other programs).
 */
function checkPinDir(pinDir: string): void {
  const abs = resolve(pinDir);
  let mountPoints: string[] = [];
  try {
    mountPoints = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '');
  } catch {
    // without /proc only the root check below applies
  }
  if (abs === '/' || mountPoints.includes(abs)) {
    throw new AmbitError(
      'AMBIT_ERR_CAPTURE_FAILED',
      `pin folder ${pinDir} is a mount point; use a folder of its own such as /sys/fs/bpf/ambit`,
      { details: { pinDir } },
    );
  }
}

/** Removes pinDir and everything in it (unpinning detaches pinned links); returns how many pins there were. */
export function removePins(pinDir: string): number {
  let count = 0;
  const walk = (dir: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else count++;
    }
  };
  walk(pinDir);
  rmSync(pinDir, { recursive: true, force: true });
  return count;
}
