/**
 * BPF capture (DESIGN.md, Capture; docs/capture.md): one object per attach family. sock_addr,
 * sockops and sockopt are loaded once and attached at a cgroup v2 folder (outbound); one
 * sk_lookup instance per pod is attached to its netns (inbound).
 *
 * Pin layout under pinDir (one folder per agent, on bpffs; names have no dots, bpffs refuses them):
 *   maps/<map>                  maps pinned by name (MAP_PINS), shared by every object
 *   links/<program>             the cgroup links (CGROUP_PROGRAMS)
 *   pods/<netns cookie>/steer   a pod's sk_lookup link (enrolled or pending)
 *
 * Invariants:
 * - pins outlive the agent on purpose: while no agent runs, an enrolled pod's connections find no
 *   listener and are refused, never sent direct. open() adopts what a previous run pinned and
 *   updates every link in place (BPF_LINK_UPDATE), so a restart never leaves a hook empty and
 *   never clears ambit_pods;
 * - a netns cookie is in ambit_pods exactly while pods/<cookie> exists (enrolled, pending or
 *   adopted and not yet pruned); the folder is made before the entry and removed after it;
 * - only names Ambit pins are ever removed from pinDir; anything else there is left alone.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AmbitError, errorMessage, isAmbitError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { CaptureReasons, type CaptureReason } from '../../shared/reasons.js';
import {
  AttachType,
  BpfLink,
  BpfMap,
  BpfObject,
  LinkType,
  MAP_F_NO_PREALLOC,
  MapType,
  SOCKET_SLOT_CODEC,
  U32_CODEC,
  U64_CODEC,
  attachedPrograms,
  bpfObjectPath,
  type AttachedProgram,
  type MapCodec,
} from '../../../native/bpf.js';
import { encodeStruct, DirectKeyType, PodConfigType, PortKeyType, OrigDstType, PeerKeyType, decodeStruct } from '../../../native/bindings.js';
import { closeFd, netnsCookie, openNetns, type NetnsHandle } from '../../../native/netns.js';
import { bytes16ToIp, ipToBytes16, type SocketAddressInfo } from '../../../native/sockaddr.js';
import { OUTBOUND_PORT, type Capture, type DirectTuple, type EnrollOptions, type PrepareOptions, type PruneOptions } from './capture.js';
import { HBONE_PORT } from '../../shared/hbone/tunnel.js';
import { checkCgroup2, cgroupId } from './cgroup.js';
import { installReplyRouting, removeReplyRouting, type ReplyRouteOptions } from './reply-route.js';

/** The cgroup programs, in attach order, with their object (attach family) and hook. */
export const CGROUP_PROGRAMS = [
  { object: 'sockops', prog: 'ambit_sockops', attachType: AttachType.cgroupSockOps },
  { object: 'sockopt', prog: 'ambit_getsockopt', attachType: AttachType.cgroupGetsockopt },
  { object: 'sock_addr', prog: 'ambit_getpeername4', attachType: AttachType.cgroupInet4Getpeername },
  { object: 'sock_addr', prog: 'ambit_getpeername6', attachType: AttachType.cgroupInet6Getpeername },
  { object: 'sock_addr', prog: 'ambit_connect4', attachType: AttachType.cgroupInet4Connect },
  { object: 'sock_addr', prog: 'ambit_connect6', attachType: AttachType.cgroupInet6Connect },
  // DNS capture: replies are shown from the resolver before any query is moved to the proxy.
  { object: 'sock_addr', prog: 'ambit_recvmsg4', attachType: AttachType.cgroupUdp4Recvmsg },
  { object: 'sock_addr', prog: 'ambit_recvmsg6', attachType: AttachType.cgroupUdp6Recvmsg },
  { object: 'sock_addr', prog: 'ambit_sendmsg4', attachType: AttachType.cgroupUdp4Sendmsg },
  { object: 'sock_addr', prog: 'ambit_sendmsg6', attachType: AttachType.cgroupUdp6Sendmsg },
] as const;

/** Objects loaded once per agent; sk_lookup is loaded per pod. */
export const CGROUP_OBJECTS = ['sock_addr', 'sockops', 'sockopt'] as const;

/** Every map pinned by name under <pinDir>/maps (bpf/include/maps.h). */
export const MAP_PINS = [
  'ambit_stats',
  'ambit_pods',
  'ambit_excluded_ports',
  'ambit_sock_orig',
  'ambit_accept_orig',
  'ambit_handshakes',
  'ambit_direct_dials',
] as const;
/** Pins of the single-object layout before Ambit split its objects: removed at open. */
const LEGACY_MAP_PINS = ['ambit_orig_by_sock', 'ambit_orig_by_tuple'] as const;

const POD_F_IPV6 = 0x1;
const POD_F_PENDING = 0x2;
/** Per-pod handshake map (struct ambit_handshake_map in maps.h): same spec, or the kernel refuses it as inner map. */
const HANDSHAKES_PER_POD = 4096;

export interface BpfCaptureOptions {
  /** cgroup v2 folder to attach at: the cgroup2 root in production, a test cgroup in tests. */
  cgroupPath: string;
  /** This agent's folder on bpffs, e.g. /sys/fs/bpf/ambit. Ambit's names in it are owned by the capture. */
  pinDir: string;
  log: Logger;
  /** nsenter/nft/ip used for each pod's reply routing (reply-route.ts). */
  replyRoute?: ReplyRouteOptions;
}

interface PodConfig {
  outboundPort: number;
  flags: number;
  /** The pod's DNS proxy port on loopback; 0: DNS not captured. */
  dnsPort: number;
}

interface PodEntry {
  uid: string;
  cookie: bigint;
  netnsPath: string;
  state: 'pending' | 'enrolled';
  link: BpfLink;
  steer: BpfObject;
  excludedOut: number[];
  replyRouting: boolean;
}

/** A pod a previous agent run captured, found at open() and not yet claimed or pruned. */
interface Adopted {
  cookie: bigint;
  link: BpfLink;
}

const podsCodec: MapCodec<bigint, PodConfig> = {
  encodeKey: U64_CODEC.encodeKey,
  decodeKey: U64_CODEC.decodeKey,
  encodeValue: (v) => encodeStruct(PodConfigType, { outbound_port: v.outboundPort, flags: v.flags, dns_port: v.dnsPort, pad: 0 }),
  decodeValue: (b) => {
    const d = decodeStruct(b, PodConfigType);
    return { outboundPort: Number(d['outbound_port']), flags: Number(d['flags']), dnsPort: Number(d['dns_port']) };
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
  encodeKey: U32_CODEC.encodeKey,
  decodeKey: U32_CODEC.decodeKey,
  encodeValue: () => {
    throw new AmbitError('AMBIT_ERR_BPF_MAP', 'ambit_stats is written only by the programs');
  },
  decodeValue: (b) => {
    let sum = 0n;
    for (let off = 0; off + 8 <= b.length; off += 8) sum += b.readBigUInt64LE(off);
    return sum;
  },
};

/** ambit_handshakes, ambit_direct_dials: netns cookie -> inner map (an fd to update, an id on lookup). */
const outerCodec: MapCodec<bigint, number> = {
  encodeKey: U64_CODEC.encodeKey,
  decodeKey: U64_CODEC.decodeKey,
  encodeValue: U32_CODEC.encodeValue,
  decodeValue: U32_CODEC.decodeValue,
};

/** A client side of a redirected connection, as the proxy's accepted socket sees its peer. */
export interface PeerKey {
  address: string;
  port: number;
}

const origCodec = {
  encodeValue: (v: SocketAddressInfo): Buffer =>
    encodeStruct(OrigDstType, { addr: ipToBytes16(v.address), port: v.port, family: v.family === 'IPv6' ? 10 : 2, pad: 0 }),
  decodeValue: (b: Buffer): SocketAddressInfo => {
    const d = decodeStruct(b, OrigDstType);
    const ip = bytes16ToIp(d['addr'] as Uint8Array);
    return { address: ip.address, family: ip.family, port: Number(d['port']) };
  },
};

/** A pod's handshake map (inner map of ambit_handshakes). */
export const handshakeCodec: MapCodec<PeerKey, SocketAddressInfo> = {
  encodeKey: (k) => encodeStruct(PeerKeyType, { addr: ipToBytes16(k.address), port: k.port, pad: [0, 0, 0] }),
  decodeKey: (b) => {
    const d = decodeStruct(b, PeerKeyType);
    return { address: bytes16ToIp(d['addr'] as Uint8Array).address, port: Number(d['port']) };
  },
  ...origCodec,
};

/** ambit_steer_socket: key 0 -> the listener's fd (sk_lookup.bpf.c). */
export const steerSocketCodec = SOCKET_SLOT_CODEC;

/** The overflow slot of `ambit_steer_direct` (types.h): no dial has port 0. */
const OVERFLOW_SLOT: DirectTuple = { sourceAddress: '::', sourcePort: 0, destinationPort: 0 };

/** `ambit_steer_direct` keys and values (the overflow slot's value: when an exemption last failed, ns). */
export const directCodec: MapCodec<DirectTuple, bigint> = {
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
  encodeValue: U64_CODEC.encodeValue,
  decodeValue: U64_CODEC.decodeValue,
};

/** ambit_steer_excluded: a port (host order) the pod serves directly. */
export const steerPortCodec: MapCodec<number, number> = {
  encodeKey: (k) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(k);
    return b;
  },
  decodeKey: (b) => b.readUInt16LE(0),
  encodeValue: (v) => Buffer.from([v]),
  decodeValue: (b) => b[0]!,
};

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

/** Runs the undo steps of a half-done change in reverse; their own failures are logged, not thrown. */
function rollback(steps: (() => void)[], log: Logger): void {
  for (const step of steps.reverse()) {
    try {
      step();
    } catch (e) {
      log.warn({ err: e }, 'rolling back a failed capture change hit an error');
    }
  }
}

export class BpfCapture implements Capture {
  readonly mode = 'bpf' as const;
  readonly pinDir: string;
  readonly cgroupPath: string;
  readonly #log: Logger;
  readonly #objects: BpfObject[];
  readonly #links: BpfLink[];
  readonly #podsMap: BpfMap<bigint, PodConfig>;
  readonly #excluded: BpfMap<{ cookie: bigint; port: number }, number>;
  readonly #stats: BpfMap<number, bigint>;
  readonly #handshakes: BpfMap<bigint, number>;
  readonly #directDials: BpfMap<bigint, number>;
  readonly #pods = new Map<bigint, PodEntry>();
  readonly #byUid = new Map<string, bigint>();
  readonly #adopted: Map<bigint, Adopted>;
  readonly #foreign: AttachedProgram[];
  readonly #replyRoute: ReplyRouteOptions;
  #closed = false;
  #orphansChecked = false;

  private constructor(
    opts: BpfCaptureOptions,
    objects: Map<string, BpfObject>,
    links: BpfLink[],
    adopted: Map<bigint, Adopted>,
    foreign: AttachedProgram[],
  ) {
    this.pinDir = opts.pinDir;
    this.#replyRoute = opts.replyRoute ?? {};
    this.cgroupPath = opts.cgroupPath;
    this.#log = opts.log;
    this.#objects = [...objects.values()];
    this.#links = links;
    this.#adopted = adopted;
    this.#foreign = foreign;
    const sockAddr = objects.get('sock_addr')!;
    this.#podsMap = sockAddr.map('ambit_pods', podsCodec);
    this.#excluded = sockAddr.map('ambit_excluded_ports', portKeyCodec);
    this.#stats = sockAddr.map('ambit_stats', statsCodec);
    this.#handshakes = objects.get('sockops')!.map('ambit_handshakes', outerCodec);
    this.#directDials = objects.get('sockops')!.map('ambit_direct_dials', outerCodec);
  }

  /**
   * Loads the cgroup objects (reusing the maps a previous run pinned), attaches their programs at
   * cgroupPath, or updates the links a previous run pinned in place, and adopts the pods it left
   * captured. Throws AMBIT_ERR_BPF_UNSUPPORTED (cgroupPath not cgroup2, no BPF) / _LOAD / _ATTACH.
   */
  static async open(opts: BpfCaptureOptions): Promise<BpfCapture> {
    const log = opts.log.child({ component: 'capture', mode: 'bpf' });
    checkPinDir(opts.pinDir);
    checkCgroup2(opts.cgroupPath);
    const undo: (() => void)[] = [];
    // A failed open removes what it made (empty folders, its map pins), never what a previous run left.
    undo.push(() => {
      for (const sub of ['maps', 'links', 'pods']) rmdirQuiet(join(opts.pinDir, sub));
      rmdirQuiet(opts.pinDir);
    });
    for (const sub of ['maps', 'links', 'pods']) mkdirSync(join(opts.pinDir, sub), { recursive: true });
    removeLegacyPins(opts.pinDir, log);
    const objects = new Map<string, BpfObject>();
    const links: BpfLink[] = [];
    for (const m of MAP_PINS) {
      const pin = join(opts.pinDir, 'maps', m);
      if (!existsSync(pin)) undo.push(() => unlinkQuiet(pin));
    }
    try {
      for (const name of CGROUP_OBJECTS) objects.set(name, loadReusingPins(name, opts.pinDir, log));
      const cgId = cgroupId(opts.cgroupPath);
      let updated = 0;
      for (const { object, prog, attachType } of CGROUP_PROGRAMS) {
        const r = attachOrUpdate(objects.get(object)!, prog, attachType, opts.cgroupPath, cgId, join(opts.pinDir, 'links', prog), undo);
        links.push(r.link);
        if (r.updated) updated++;
      }
      const adopted = adoptPods(opts.pinDir, log);
      const foreign = foreignConnectPrograms(opts.cgroupPath);
      const capture = new BpfCapture({ ...opts, log }, objects, links, adopted, foreign);
      if (foreign.length > 0) {
        log.warn(
          { cgroupPath: opts.cgroupPath, programs: foreign.map((p) => `${p.name} (id ${p.id})`) },
          "other programs rewrite connects at this cgroup; if one is Cilium's socket load balancer, set socketLB.hostNamespaceOnly=true (cilium-agent --bpf-lb-sock-hostns-only) so pods' connects reach Ambit with the Service address and Ambit picks services and waypoints",
        );
      }
      log.info(
        { cgroupPath: opts.cgroupPath, pinDir: opts.pinDir, linksUpdated: updated, podsAdopted: adopted.size },
        updated > 0 ? 'bpf capture taken over from the previous run' : 'bpf capture attached',
      );
      return capture;
    } catch (e) {
      rollback(undo, log);
      for (const l of links) if (!l.closed) l.close();
      for (const o of objects.values()) o.close();
      throw e;
    }
  }

  enrolled(): string[] {
    return [...this.#pods.values()].filter((p) => p.state === 'enrolled').map((p) => p.uid);
  }

  pending(): string[] {
    return [...this.#pods.values()].filter((p) => p.state === 'pending').map((p) => p.uid);
  }

  /** Netns cookies of pods a previous run left captured that no enroll, prepare or prune has claimed yet. */
  adopted(): bigint[] {
    return [...this.#adopted.keys()];
  }

  /** Programs of other software at this cgroup's connect hooks, found at open(). */
  foreignConnectPrograms(): AttachedProgram[] {
    return [...this.#foreign];
  }

  async prepare(opts: PrepareOptions): Promise<void> {
    this.#open();
    const ns = openNetns(opts.netnsPath);
    try {
      const cookie = netnsCookie(ns);
      const cur = this.#pods.get(cookie);
      if (cur !== undefined) {
        this.#rename(cur, opts.uid);
        return;
      }
      const undo: (() => void)[] = [];
      const steer = BpfObject.open(bpfObjectPath('sk_lookup'), { pinRoot: join(this.pinDir, 'maps') });
      undo.push(() => steer.close());
      let link: BpfLink;
      try {
        // Inbound first (no socket: refused), then outbound (pending: refused).
        this.#registerDirect(cookie, steer, undo);
        link = this.#installSteer(cookie, ns, steer, undo);
        this.#podsMap.update(cookie, { outboundPort: OUTBOUND_PORT, flags: POD_F_PENDING, dnsPort: 0 });
      } catch (e) {
        rollback(undo, this.#log);
        throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `preparing pod ${opts.uid} (${opts.netnsPath}) failed: ${errorMessage(e)}`, {
          cause: e,
          details: { uid: opts.uid, netnsPath: opts.netnsPath },
        });
      }
      this.#adopted.delete(cookie);
      this.#addPod({
        uid: opts.uid,
        cookie,
        netnsPath: opts.netnsPath,
        state: 'pending',
        link,
        steer,
        excludedOut: [],
        replyRouting: false,
      });
      this.#log.info({ uid: opts.uid, netnsCookie: cookie.toString() }, 'pod pending: its tcp is refused until it is enrolled');
    } finally {
      closeFd(ns.fd);
    }
  }

  async enroll(opts: EnrollOptions): Promise<void> {
    this.#open();
    const excludedIn = checkPorts('excluded inbound', opts.excludeInboundPorts);
    const excludedOut = [...new Set(checkPorts('excluded outbound', opts.excludeOutboundPorts))];
    const outboundPort = opts.outboundPort ?? OUTBOUND_PORT;
    const ns = openNetns(opts.netnsPath);
    try {
      const cookie = netnsCookie(ns);
      // The uid moved to another netns (its sandbox was recreated): release the old one first.
      const previous = this.#byUid.get(opts.uid);
      if (previous !== undefined && previous !== cookie) await this.#remove(previous);
      const cur = this.#pods.get(cookie);
      // Ports a previous enrolment (this run's, or an adopted one's) excluded.
      const excludedBefore = cur?.excludedOut ?? (this.#adopted.has(cookie) ? this.#excludedPortsOf(cookie) : []);
      const undo: (() => void)[] = [];
      let steer: BpfObject;
      let link: BpfLink;
      try {
        this.#ensureHandshakeMap(cookie, undo);
        steer = BpfObject.open(bpfObjectPath('sk_lookup'), { pinRoot: join(this.pinDir, 'maps') });
        const s = steer;
        undo.push(() => s.close());
        s.map('ambit_steer_socket', steerSocketCodec).update(0, BigInt(opts.inboundListenerFd));
        const ports = s.map('ambit_steer_excluded', steerPortCodec);
        for (const p of excludedIn) ports.update(p, 1);
        for (const p of excludedOut) {
          if (excludedBefore.includes(p)) continue;
          this.#excluded.update({ cookie, port: p }, 1);
          undo.push(() => this.#excluded.delete({ cookie, port: p }));
        }
        // Inbound steering to the new listener, then outbound redirect (clears PENDING).
        this.#registerDirect(cookie, s, undo);
        link = this.#installSteer(cookie, ns, s, undo);
        this.#podsMap.update(cookie, { outboundPort, flags: opts.ipv6 ? POD_F_IPV6 : 0, dnsPort: opts.dnsPort ?? 0 });
      } catch (e) {
        rollback(undo, this.#log);
        throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `enrolling pod ${opts.uid} (${opts.netnsPath}) failed: ${errorMessage(e)}`, {
          cause: e,
          details: { uid: opts.uid, netnsPath: opts.netnsPath },
        });
      }
      for (const p of excludedBefore) if (!excludedOut.includes(p)) this.#excluded.delete({ cookie, port: p });
      // The link now runs the new instance: the previous one (pending, or older settings) goes.
      cur?.steer.close();
      this.#adopted.delete(cookie);
      const replyRouting =
        cur?.state === 'enrolled' && cur.replyRouting
          ? true
          : await installReplyRouting(opts.netnsPath, this.#replyRoute).then(
              () => true,
              (e: unknown) => {
                this.#log.warn({ uid: opts.uid, err: e }, 'reply routing failed; inbound dials will use the pod address as source');
                return false;
              },
            );
      this.#addPod({
        uid: opts.uid,
        cookie,
        netnsPath: opts.netnsPath,
        state: 'enrolled',
        link,
        steer,
        excludedOut,
        replyRouting,
      });
      this.#log.info(
        { uid: opts.uid, netnsCookie: cookie.toString(), outboundPort, ipv6: opts.ipv6 === true, hbonePort: HBONE_PORT, excludedIn, excludedOut, replyRouting },
        'pod enrolled',
      );
    } finally {
      closeFd(ns.fd);
    }
  }

  preservesSource(uid: string): boolean {
    return this.#podOf(uid)?.replyRouting === true;
  }

  /** Debugging aid: transparent dials of the pod exempt from steering now (their handshake not done). */
  directTuples(uid: string): DirectTuple[] {
    const map = this.directMap(uid);
    try {
      return map?.keys().filter((k) => k.sourcePort !== 0) ?? [];
    } finally {
      map?.close();
    }
  }

  async unenroll(uid: string): Promise<void> {
    const cookie = this.#byUid.get(uid);
    if (cookie !== undefined) await this.#remove(cookie);
  }

  async prune(opts: PruneOptions): Promise<number> {
    this.#open();
    // Called after every config snapshot: only work while a previous run's leftovers remain.
    if (this.#adopted.size === 0 && this.#orphansChecked) return 0;
    const keep = new Set<bigint>();
    if (this.#adopted.size > 0) {
      for (const path of opts.keepNetns) {
        try {
          keep.add(netnsCookie(path));
        } catch {
          // a netns that is gone has nothing to keep
        }
      }
    }
    let released = 0;
    for (const a of [...this.#adopted.values()]) {
      if (keep.has(a.cookie)) continue;
      const cfg = this.#podsMap.lookup(a.cookie);
      const alive = a.link.info().target !== 0n;
      // A pending pod's CNI hand-off is not in the config yet: it stays refused until enrolled or released.
      if (alive && cfg !== undefined && (cfg.flags & POD_F_PENDING) !== 0) continue;
      this.#dropAdopted(a);
      released++;
    }
    // Entries without a folder: a run that crashed halfway through unenrolling (a failed enroll
    // never leaves one), so they belong to no pod anyone wants.
    if (!this.#orphansChecked) {
      for (const cookie of this.#podsMap.keys()) {
        if (this.#pods.has(cookie) || this.#adopted.has(cookie)) continue;
        this.#podsMap.delete(cookie);
        this.#handshakes.delete(cookie);
        this.#directDials.delete(cookie);
        released++;
      }
      this.#orphansChecked = true;
    }
    if (released > 0) this.#log.info({ released }, 'released capture of pods a previous run left');
    return released;
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

  /**
   * Debugging aid: the pod's handshake map (redirected connects not yet accepted by the proxy).
   * The caller closes it.
   */
  handshakeMap(uid: string): BpfMap<PeerKey, SocketAddressInfo> | undefined {
    this.#open();
    const cookie = this.#byUid.get(uid);
    const id = cookie === undefined ? undefined : this.#handshakes.lookup(cookie);
    return id === undefined ? undefined : BpfMap.fromId(`handshakes of ${uid}`, id, handshakeCodec);
  }

  /**
   * Debugging aid: the map sockops exempts the pod's transparent dials in (as registered in
   * ambit_direct_dials; the overflow slot included). The caller closes it.
   */
  directMap(uid: string): BpfMap<DirectTuple, bigint> | undefined {
    this.#open();
    const cookie = this.#byUid.get(uid);
    const id = cookie === undefined ? undefined : this.#directDials.lookup(cookie);
    return id === undefined ? undefined : BpfMap.fromId(`direct dials of ${uid}`, id, directCodec);
  }

  /** The netns cookie an enrolled or pending pod is keyed by. */
  netnsCookieOf(uid: string): bigint | undefined {
    return this.#byUid.get(uid);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#pods.size === 0 && this.#adopted.size === 0 && this.#podsMap.keys().length === 0) {
      await this.uninstall();
      return;
    }
    this.#closed = true;
    const errors: unknown[] = [];
    // Handles only: pinned links stay attached and keep refusing while no agent listens.
    for (const pod of this.#pods.values()) {
      try {
        pod.link.close();
      } catch (e) {
        errors.push(e);
      }
      pod.steer.close();
    }
    for (const a of this.#adopted.values()) a.link.close();
    for (const l of this.#links) {
      try {
        l.close();
      } catch (e) {
        errors.push(e);
      }
    }
    for (const o of this.#objects) o.close();
    this.#log.info({ pinDir: this.pinDir, pods: this.#pods.size + this.#adopted.size }, 'bpf capture released; its pods stay captured until the next agent takes over');
    this.#pods.clear();
    this.#byUid.clear();
    this.#adopted.clear();
    if (errors.length > 0) throw closeError(errors);
  }

  async uninstall(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const errors: unknown[] = [];
    for (const cookie of [...this.#pods.keys()]) {
      try {
        await this.#remove(cookie);
      } catch (e) {
        errors.push(e);
      }
    }
    for (const a of [...this.#adopted.values()]) {
      try {
        this.#dropAdopted(a);
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
    for (const o of this.#objects) o.close();
    const left = removeOwnPins(this.pinDir);
    this.#log.info({ pinDir: this.pinDir, left }, 'bpf capture detached');
    if (errors.length > 0) throw closeError(errors);
  }

  #open(): void {
    if (this.#closed) throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `bpf capture at ${this.pinDir} is closed`);
  }

  #podOf(uid: string): PodEntry | undefined {
    const cookie = this.#byUid.get(uid);
    return cookie === undefined ? undefined : this.#pods.get(cookie);
  }

  #addPod(pod: PodEntry): void {
    // The netns may have been prepared under another uid (the CNI's): that name no longer points here.
    const before = this.#pods.get(pod.cookie);
    if (before !== undefined && before.uid !== pod.uid && this.#byUid.get(before.uid) === pod.cookie) this.#byUid.delete(before.uid);
    this.#pods.set(pod.cookie, pod);
    this.#byUid.set(pod.uid, pod.cookie);
  }

  /** The same netns handed over under another uid (e.g. the CNI's id, then the pod's): follow it. */
  #rename(pod: PodEntry, uid: string): void {
    if (pod.uid === uid) return;
    this.#byUid.delete(pod.uid);
    pod.uid = uid;
    this.#byUid.set(uid, pod.cookie);
  }

  /** The pod's handshake map, made (and registered) if it has none yet. */
  #ensureHandshakeMap(cookie: bigint, undo: (() => void)[]): void {
    if (this.#handshakes.lookup(cookie) !== undefined) return;
    const inner = BpfMap.create(
      `ambit_hs_${cookie}`,
      { type: MapType.hash, keySize: 24, valueSize: 24, maxEntries: HANDSHAKES_PER_POD, flags: MAP_F_NO_PREALLOC },
      handshakeCodec,
    );
    try {
      this.#handshakes.update(cookie, inner.fd);
      undo.push(() => this.#handshakes.delete(cookie));
    } finally {
      // The outer map holds the inner one from here on.
      inner.close();
    }
  }

  /**
   * Makes `steer`'s ambit_steer_direct the map sockops exempts the pod's transparent dials in (its
   * overflow slot in place, so a failed exemption can always be recorded). Undo puts back the map
   * of the instance the link still runs.
   */
  #registerDirect(cookie: bigint, steer: BpfObject, undo: (() => void)[]): void {
    const direct = steer.map('ambit_steer_direct', directCodec);
    direct.update(OVERFLOW_SLOT, 0n);
    // The instance the link runs now (this run's or a previous run's), by id: undo puts it back.
    const previousId = this.#directDials.lookup(cookie);
    this.#directDials.update(cookie, direct.fd);
    undo.push(() => {
      if (previousId === undefined) return void this.#directDials.delete(cookie);
      const previous = BpfMap.fromId('ambit_steer_direct', previousId, directCodec);
      try {
        this.#directDials.update(cookie, previous.fd);
      } finally {
        previous.close();
      }
    });
  }

  /**
   * Points the netns's sk_lookup link at `steer`: the existing one (this run's or a previous
   * run's) is updated in place, so the hook is never empty; otherwise a new link is attached
   * and pinned.
   */
  #installSteer(cookie: bigint, ns: NetnsHandle, steer: BpfObject, undo: (() => void)[]): BpfLink {
    const existing = this.#pods.get(cookie)?.link ?? this.#adopted.get(cookie)?.link;
    if (existing !== undefined) {
      existing.update(steer, 'ambit_steer');
      return existing;
    }
    const folder = join(this.pinDir, 'pods', cookie.toString());
    const link = steer.attachNetns('ambit_steer', ns);
    undo.push(() => link.detach());
    mkdirSync(folder, { recursive: true });
    undo.push(() => rmdirQuiet(folder));
    link.pin(join(folder, 'steer'));
    return link;
  }

  async #remove(cookie: bigint): Promise<void> {
    const pod = this.#pods.get(cookie);
    if (pod === undefined) return;
    this.#pods.delete(cookie);
    this.#byUid.delete(pod.uid);
    // Outbound first: once the cookie is gone no new connect is redirected or refused.
    this.#podsMap.delete(cookie);
    for (const p of pod.excludedOut) this.#excluded.delete({ cookie, port: p });
    this.#handshakes.delete(cookie);
    this.#directDials.delete(cookie);
    pod.link.detach();
    pod.steer.close();
    rmdirQuiet(join(this.pinDir, 'pods', cookie.toString()));
    if (pod.state === 'enrolled' && pod.replyRouting) {
      await removeReplyRouting(pod.netnsPath, this.#replyRoute).catch((e: unknown) => {
        this.#log.warn({ uid: pod.uid, err: e }, 'removing reply routing failed');
      });
    }
    this.#log.info({ uid: pod.uid, state: pod.state }, 'pod unenrolled');
  }

  #excludedPortsOf(cookie: bigint): number[] {
    return this.#excluded
      .keys()
      .filter((k) => k.cookie === cookie)
      .map((k) => k.port);
  }

  #dropAdopted(a: Adopted): void {
    this.#adopted.delete(a.cookie);
    this.#podsMap.delete(a.cookie);
    for (const port of this.#excludedPortsOf(a.cookie)) this.#excluded.delete({ cookie: a.cookie, port });
    this.#handshakes.delete(a.cookie);
    this.#directDials.delete(a.cookie);
    a.link.detach();
    rmdirQuiet(join(this.pinDir, 'pods', a.cookie.toString()));
  }
}

function closeError(errors: unknown[]): AmbitError {
  return new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `closing bpf capture hit ${errors.length} error(s): ${errorMessage(errors[0])}`, {
    cause: errors[0],
  });
}

/**
 * Loads bpf/<name>.bpf.o reusing the maps pinned under <pinDir>/maps. A pinned map whose shape
 * changed (an upgrade) can not be reused: its pin is removed, with a warning, and the load retried.
 */
function loadReusingPins(name: string, pinDir: string, log: Logger): BpfObject {
  const path = bpfObjectPath(name);
  const pinRoot = join(pinDir, 'maps');
  try {
    return BpfObject.open(path, { pinRoot });
  } catch (e) {
    const text = isAmbitError(e, 'AMBIT_ERR_BPF_LOAD') ? String((e.details as { log?: string } | undefined)?.log ?? '') : '';
    const stale = [...text.matchAll(/couldn't reuse pinned map at '([^']+)'/g)].map((m) => m[1]!);
    if (stale.length === 0) throw e;
    for (const pin of stale) {
      if (!MAP_PINS.some((m) => resolve(pin) === resolve(pinRoot, m))) throw e;
      unlinkSync(pin);
    }
    log.warn({ maps: stale }, 'pinned maps of an older layout were replaced; their pods are captured again when re-enrolled');
    return BpfObject.open(path, { pinRoot });
  }
}

/**
 * Attaches `prog` at the cgroup and pins it at `pin`, or, when a previous run pinned a link
 * there for the same cgroup and hook, swaps the program in place. A pinned link for another
 * cgroup (AMBIT_CGROUP_PATH changed) is replaced only after the new one is attached.
 */
function attachOrUpdate(
  obj: BpfObject,
  prog: string,
  attachType: number,
  cgroupPath: string,
  cgId: bigint,
  pin: string,
  undo: (() => void)[],
): { link: BpfLink; updated: boolean } {
  const old = BpfLink.openPinned(pin);
  if (old !== undefined) {
    const info = old.info();
    if (info.type === LinkType.cgroup && info.target === cgId && info.attachType === attachType) {
      try {
        old.update(obj, prog);
      } catch (e) {
        old.close();
        throw e;
      }
      return { link: old, updated: true };
    }
  }
  const link = obj.attachCgroup(prog, cgroupPath);
  if (old !== undefined) {
    old.unpin();
    old.close();
  }
  link.pin(pin);
  undo.push(() => link.detach());
  return { link, updated: false };
}

/** The pods a previous run left under pods/<netns cookie>/steer. */
function adoptPods(pinDir: string, log: Logger): Map<bigint, Adopted> {
  const out = new Map<bigint, Adopted>();
  const dir = join(pinDir, 'pods');
  for (const name of readdirSync(dir)) {
    const folder = join(dir, name);
    if (!/^\d+$/.test(name)) {
      // The layout before netns-cookie folders (pods/<uid>/steer): those pods are enrolled again.
      const legacy = BpfLink.openPinned(join(folder, 'steer'));
      legacy?.detach();
      rmdirQuiet(folder);
      log.warn({ folder }, 'removed a pod pin of an older layout; the pod is captured again when re-enrolled');
      continue;
    }
    const link = BpfLink.openPinned(join(folder, 'steer'));
    if (link === undefined) {
      rmdirQuiet(folder);
      continue;
    }
    out.set(BigInt(name), { cookie: BigInt(name), link });
  }
  return out;
}

/** Programs other than Ambit's at the cgroup's connect hooks (its own and its ancestors'). */
function foreignConnectPrograms(cgroupPath: string): AttachedProgram[] {
  const out: AttachedProgram[] = [];
  for (const type of [AttachType.cgroupInet4Connect, AttachType.cgroupInet6Connect]) {
    for (const p of attachedPrograms(cgroupPath, type)) {
      // Other Ambit agents on the same host (local mode) attach their own programs here too.
      if (!p.name.startsWith('ambit_') && !out.some((o) => o.id === p.id)) out.push(p);
    }
  }
  return out;
}

/**
 * pinDir must be a folder of its own, never a mount point such as /sys/fs/bpf itself, whose
 * other pins belong to other programs.
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

function rmdirQuiet(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty (something that is not Ambit's) or already gone
  }
}

function unlinkQuiet(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}

function removeLegacyPins(pinDir: string, log: Logger): void {
  const removed = LEGACY_MAP_PINS.filter((m) => unlinkQuiet(join(pinDir, 'maps', m)));
  if (removed.length > 0) log.warn({ maps: removed }, 'removed map pins of an older layout');
}

/**
 * Removes what Ambit pins under pinDir, by name (maps/<MAP_PINS>, links/<program>,
 * pods/<cookie>/steer), then the folders if they are empty. Anything else is left where it is.
 * Returns the entries left behind (not Ambit's).
 */
export function removeOwnPins(pinDir: string): string[] {
  for (const m of [...MAP_PINS, ...LEGACY_MAP_PINS]) unlinkQuiet(join(pinDir, 'maps', m));
  for (const { prog } of CGROUP_PROGRAMS) unlinkQuiet(join(pinDir, 'links', prog));
  const pods = join(pinDir, 'pods');
  if (existsSync(pods)) {
    for (const name of readdirSync(pods)) {
      unlinkQuiet(join(pods, name, 'steer'));
      rmdirQuiet(join(pods, name));
    }
  }
  for (const sub of ['maps', 'links', 'pods']) rmdirQuiet(join(pinDir, sub));
  rmdirQuiet(pinDir);
  const left: string[] = [];
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else left.push(join(dir, e.name));
    }
  };
  walk(pinDir);
  return left;
}
