/**
 * Sockets inside a pod's network namespace, made with libc through koffi.
 *
 * Node creates the socket of `listen(port, host)` / `connect()` a tick later, after any setns()
 * window has closed, so those calls would bind in the agent's own netns. Here the socket is made
 * synchronously under setns() and handed to Node as an fd (`server.listen({ fd })`,
 * `new net.Socket({ fd })`). A socket stays in the netns it was created in.
 *
 * Invariant: the calling thread is back in its own netns when any function here returns or
 * throws; if switching back fails the process aborts (it would otherwise go on serving from a
 * pod's netns). fds made here are non-blocking and close-on-exec, and are closed on every error
 * path.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { isIPv4, isIPv6, type Server, type Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { AmbitError, type ErrorCode } from '../src/shared/errors.js';
import { lastErrno, libc } from './bindings.js';
import {
  AF_INET,
  AF_INET6,
  SOCKADDR_IN6_SIZE,
  SOCKADDR_IN_SIZE,
  SOCKADDR_STORAGE_SIZE,
  decodeSockaddr,
  encodeSockaddr,
  type IpFamily,
  type SocketAddressInfo,
} from './sockaddr.js';

export type { IpFamily, SocketAddressInfo };

const CLONE_NEWNET = 0x40000000;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_REUSEPORT = 15;
const SO_MARK = 36;
const SO_PRIORITY = 12;
const SO_ATTACH_REUSEPORT_EBPF = 52;
const SO_SNDBUF = 7;
const SO_SNDBUFFORCE = 32;
const SO_NETNS_COOKIE = 71;
const SO_COOKIE = 57;
const SOL_IP = 0;
const IP_TRANSPARENT = 19;
const IP_FREEBIND = 15;
/** linux/in.h: bind() records the address only; connect() picks the port for the 4-tuple. */
const IP_BIND_ADDRESS_NO_PORT = 24;
const IPV6_FREEBIND = 78;
const SOL_IPV6 = 41;
const IPV6_TRANSPARENT = 75;
const IPV6_V6ONLY = 26;
/** SO_ORIGINAL_DST (SOL_IP) and IP6T_SO_ORIGINAL_DST (SOL_IPV6) are both 80. */
const SO_ORIGINAL_DST = 80;
const EINPROGRESS = 115;

/** Mark on every socket the agent opens on a pod's behalf; capture lets it through (DESIGN.md). */
export const BYPASS_MARK = 0x539;
/**
 * SO_PRIORITY of the agent's transparent dials (bpf/include/config.h AMBIT_DIAL_PRIORITY): with
 * the bypass mark it tells sockops which connects to exempt from the pod's inbound steering, so
 * the agent's other marked sockets in a pod (its tunnels, passthrough dials) take no entry. The
 * dials go over the pod's loopback, whose queue ignores priorities.
 */
export const DIAL_PRIORITY = 0x539;

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-Math.abs(errno));
  } catch {
    return `errno ${errno}`;
  }
}

function nativeError(code: ErrorCode, what: string, errno: number, details: Record<string, unknown> = {}): AmbitError {
  const name = errnoName(errno);
  const hint = errno === 1 ? '; does the agent run as root (CAP_SYS_ADMIN, CAP_NET_ADMIN)?' : '';
  return new AmbitError(code, `${what} failed with ${name}${hint}`, {
    details: { ...details, errno: name },
  });
}

function familyOf(address: string, family?: IpFamily): number {
  if (family !== undefined) return family === 'IPv6' ? AF_INET6 : AF_INET;
  if (isIPv6(address)) return AF_INET6;
  if (isIPv4(address)) return AF_INET;
  throw new AmbitError('AMBIT_ERR_NATIVE_CALL', `address "${address}" is not an IP literal; resolve names first`, {
    details: { address },
  });
}

/** A netns opened once by the caller (openNetns) and used for several calls; `label` names it in errors. */
export interface NetnsHandle {
  fd: number;
  label: string;
}

/** The path (or handle label) of a netns, for messages. */
function netnsLabel(netns: string | NetnsHandle): string {
  return typeof netns === 'string' ? netns : netns.label;
}

/** Opens the netns file (e.g. /var/run/netns/<pod>) for several calls; close it with closeFd. */
export function openNetns(netnsPath: string): NetnsHandle {
  try {
    return { fd: openSync(netnsPath, 'r'), label: netnsPath };
  } catch (cause) {
    throw new AmbitError('AMBIT_ERR_NETNS_ENTER', `opening netns ${netnsPath} failed; does the pod still exist?`, {
      cause,
      details: { netnsPath },
    });
  }
}

/**
 * The thread could not return to its own netns: every socket it made from now on would be the
 * pod's. Nothing after this is safe, so the process stops here (an orchestrator restarts it).
 */
function abortStuckInNetns(label: string, errno: number): never {
  const text = `ambit: setns back from ${label} failed with ${errnoName(errno)}; aborting rather than run on in a pod's network namespace\n`;
  try {
    writeSync(2, text);
  } catch {
    // stderr gone: abort anyway
  }
  process.abort();
}

/**
 * Runs `fn` synchronously with the calling thread inside the netns at `netns` (a path such as
 * /var/run/netns/<pod>, or a handle from openNetns), always switching back before returning.
 */
export function inNetns<T>(netns: string | NetnsHandle, fn: () => T): T {
  const c = libc();
  const self = homeNetns();
  const target = typeof netns === 'string' ? openNetns(netns) : netns;
  try {
    if (c.setns(target.fd, CLONE_NEWNET) !== 0) {
      throw nativeError('AMBIT_ERR_NETNS_ENTER', `setns into ${target.label}`, lastErrno(), { netnsPath: target.label });
    }
    try {
      return fn();
    } finally {
      if (c.setns(self, CLONE_NEWNET) !== 0) abortStuckInNetns(target.label, lastErrno());
    }
  } finally {
    if (typeof netns === 'string') closeSync(target.fd);
  }
}

/**
 * The calling thread's own netns, opened once and kept (close-on-exec): inNetns always switches
 * back, so a thread's home never changes, and each dial saves an open and a close.
 */
let homeNetnsFd: number | undefined;
function homeNetns(): number {
  if (homeNetnsFd === undefined) {
    try {
      homeNetnsFd = openSync('/proc/thread-self/ns/net', 'r');
    } catch (cause) {
      throw new AmbitError('AMBIT_ERR_NETNS_ENTER', 'opening /proc/thread-self/ns/net failed; is /proc mounted?', { cause });
    }
  }
  return homeNetnsFd;
}

/** setsockopt's value buffer, reused: koffi copies it during the (synchronous) call. */
const intOptValue = Buffer.alloc(4);

function setIntOpt(fd: number, level: number, name: number, value: number, what: string): void {
  intOptValue.writeInt32LE(value);
  if (libc().setsockopt(fd, level, name, intOptValue, 4) !== 0) {
    throw nativeError('AMBIT_ERR_NATIVE_CALL', `setsockopt ${what}`, lastErrno(), { fd });
  }
}

/**
 * Sets a socket's kernel send buffer to `bytes` of payload (the kernel doubles the value for its
 * own bookkeeping and reports the doubled size). SO_SNDBUFFORCE goes past net.core.wmem_max and
 * needs CAP_NET_ADMIN (which an agent has); without it SO_SNDBUF is used, capped by wmem_max.
 */
export function setSendBuffer(fd: number, bytes: number): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(Math.min(bytes, 0x3fffffff));
  if (libc().setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, v, 4) === 0) return;
  if (libc().setsockopt(fd, SOL_SOCKET, SO_SNDBUF, v, 4) !== 0) {
    throw nativeError('AMBIT_ERR_NATIVE_CALL', 'setsockopt SO_SNDBUF', lastErrno(), { fd, bytes });
  }
}

/** SO_SNDBUF as the kernel reports it (twice the payload size asked for). */
export function sendBufferSize(fd: number): number {
  const out = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  if (libc().getsockopt(fd, SOL_SOCKET, SO_SNDBUF, out, len) !== 0) {
    throw nativeError('AMBIT_ERR_NATIVE_CALL', 'getsockopt SO_SNDBUF', lastErrno(), { fd });
  }
  return out.readInt32LE();
}

function newSocket(domain: number, type: number, protocol = 0): number {
  const fd = libc().socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw nativeError('AMBIT_ERR_NATIVE_CALL', 'socket()', lastErrno());
  return fd;
}

/** Closes an fd made here that was not handed to Node; ignores errors. */
export function closeFd(fd: number): void {
  if (fd >= 0) libc().close(fd);
}

/** The netns cookie (SO_NETNS_COOKIE) of the namespace at `netns`, as capture maps key it. */
export function netnsCookie(netns: string | NetnsHandle): bigint {
  const netnsPath = typeof netns === 'string' ? netns : netns.label;
  return inNetns(netns, () => {
    const fd = newSocket(AF_INET, SOCK_DGRAM);
    try {
      const v = Buffer.alloc(8);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(8);
      if (libc().getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, v, len) !== 0) {
        throw nativeError('AMBIT_ERR_NETNS_ENTER', `getsockopt SO_NETNS_COOKIE in ${netnsPath}`, lastErrno(), {
          netnsPath,
        });
      }
      return v.readBigUInt64LE(0);
    } finally {
      libc().close(fd);
    }
  });
}

export interface ListenOptions {
  /** IP literal; "0.0.0.0" / "::" for all addresses of the pod. */
  address: string;
  port: number;
  backlog?: number;
  family?: IpFamily;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT (needed only for tproxy-style capture). */
  transparent?: boolean;
  /** Kernel send buffer (see setSendBuffer); accepted sockets inherit it from the listener. */
  sendBufferBytes?: number;
  /**
   * SO_REUSEPORT: several listeners (one per agent worker thread) share the port, and the kernel
   * spreads new connections over the group (also after an sk_lookup assign of one member).
   */
  reusePort?: boolean;
}

/**
 * A listening TCP socket inside the netns (SO_REUSEADDR, SO_REUSEPORT on request, non-blocking, close-on-exec). "::" is
 * dual-stack (IPV6_V6ONLY off whatever net.ipv6.bindv6only says): IPv4 arrives v4-mapped.
 * Returns the fd; hand it to Node with `net.createServer(...).listen({ fd })`.
 */
export function listenInNetns(netns: string | NetnsHandle, opts: ListenOptions): number {
  const domain = familyOf(opts.address, opts.family);
  const netnsPath = netnsLabel(netns);
  return inNetns(netns, () => {
    const fd = newSocket(domain, SOCK_STREAM);
    try {
      setIntOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1, 'SO_REUSEADDR');
      if (opts.reusePort) setIntOpt(fd, SOL_SOCKET, SO_REUSEPORT, 1, 'SO_REUSEPORT');
      if (domain === AF_INET6 && isIPv6(opts.address) && /^[0:]+$/.test(opts.address)) setIntOpt(fd, SOL_IPV6, IPV6_V6ONLY, 0, 'IPV6_V6ONLY');
      if (opts.sendBufferBytes !== undefined) setSendBuffer(fd, opts.sendBufferBytes);
      if (opts.transparent) {
        if (domain === AF_INET6) setIntOpt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, 'IPV6_TRANSPARENT');
        else setIntOpt(fd, SOL_IP, IP_TRANSPARENT, 1, 'IP_TRANSPARENT');
      }
      const sa = encodeSockaddr(opts.address, opts.port);
      if (libc().bind(fd, sa, sa.length) !== 0) {
        throw nativeError('AMBIT_ERR_NATIVE_CALL', `bind ${opts.address}:${opts.port} in ${netnsPath}`, lastErrno(), {
          netnsPath,
          address: opts.address,
          port: opts.port,
        });
      }
      if (libc().listen(fd, opts.backlog ?? 511) !== 0) {
        throw nativeError('AMBIT_ERR_NATIVE_CALL', `listen on ${opts.address}:${opts.port} in ${netnsPath}`, lastErrno(), {
          netnsPath,
        });
      }
      return fd;
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  });
}

export interface DatagramOptions {
  /** IP literal to bind; "127.0.0.1", "::1", "0.0.0.0". */
  address: string;
  /** 0: any free port. */
  port: number;
  /** SO_MARK; BYPASS_MARK for sockets capture must not catch. */
  mark?: number;
}

/** A bound UDP socket in the current netns, or inside `netns`; hand the fd to Node with `dgram.createSocket(...).bind({ fd })`. */
export function datagramSocket(opts: DatagramOptions, netns?: string | NetnsHandle): number {
  const make = (): number => {
    const domain = familyOf(opts.address);
    const fd = newSocket(domain, SOCK_DGRAM);
    try {
      if (opts.mark !== undefined) setIntOpt(fd, SOL_SOCKET, SO_MARK, opts.mark, 'SO_MARK');
      if (opts.port !== 0) setIntOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1, 'SO_REUSEADDR');
      const sa = encodeSockaddr(opts.address, opts.port);
      if (libc().bind(fd, sa, sa.length) !== 0) {
        throw nativeError('AMBIT_ERR_NATIVE_CALL', `bind udp ${opts.address}:${opts.port}${netns ? ` in ${netnsLabel(netns)}` : ''}`, lastErrno(), { address: opts.address, port: opts.port });
      }
      return fd;
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  };
  return netns === undefined ? make() : inNetns(netns, make);
}

/** An unconnected TCP socket in the current netns with SO_MARK `mark` (connect it with `new net.Socket({ fd }).connect(...)`). */
export function markedStreamSocket(family: IpFamily, mark: number): number {
  const fd = newSocket(family === 'IPv6' ? AF_INET6 : AF_INET, SOCK_STREAM);
  try {
    setIntOpt(fd, SOL_SOCKET, SO_MARK, mark, 'SO_MARK');
    return fd;
  } catch (e) {
    libc().close(fd);
    throw e;
  }
}

export interface SocketOptions {
  family: IpFamily;
  /** IP protocol; default 0 (TCP). 262 is MPTCP. */
  protocol?: number;
  /** SO_MARK; pass BYPASS_MARK for upstream dials capture must not catch again. */
  mark?: number;
  /** Kernel send buffer (see setSendBuffer). */
  sendBufferBytes?: number;
  /** Bind first (SO_REUSEADDR), e.g. to reuse a client port. */
  bind?: { address: string; port: number };
  /** Integer socket options to set, e.g. { level: 6, name: 30, value: 1 } (TCP_FASTOPEN_CONNECT). */
  options?: { level: number; name: number; value: number }[];
}

/**
 * An unconnected TCP socket inside the netns. Node can connect it:
 * `new net.Socket({ fd }).connect(port, address)` (address must be an IP literal of `family`).
 */
export function socketInNetns(netns: string | NetnsHandle, opts: SocketOptions): number {
  const domain = opts.family === 'IPv6' ? AF_INET6 : AF_INET;
  const netnsPath = netnsLabel(netns);
  return inNetns(netns, () => {
    const fd = newSocket(domain, SOCK_STREAM, opts.protocol ?? 0);
    try {
      if (opts.mark !== undefined) setIntOpt(fd, SOL_SOCKET, SO_MARK, opts.mark, 'SO_MARK');
      if (opts.sendBufferBytes !== undefined) setSendBuffer(fd, opts.sendBufferBytes);
      for (const o of opts.options ?? []) setIntOpt(fd, o.level, o.name, o.value, `option ${o.level}/${o.name}`);
      if (opts.bind !== undefined) {
        setIntOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1, 'SO_REUSEADDR');
        const sa = encodeSockaddr(opts.bind.address, opts.bind.port);
        if (libc().bind(fd, sa, sa.length) !== 0) {
          throw nativeError('AMBIT_ERR_NATIVE_CALL', `bind ${opts.bind.address}:${opts.bind.port} in ${netnsPath}`, lastErrno(), { netnsPath });
        }
      }
      return fd;
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  });
}

export interface TransparentSocketOptions {
  /** The address the socket is bound to: usually not one of the netns's own (the original client). */
  source: { address: string; port?: number };
  /** SO_MARK; BYPASS_MARK so capture lets the dial through and reply routing recognises it. */
  mark: number;
}

export interface TransparentSocket {
  fd: number;
  /** The bound source; `port` is 0 until connect when `source.port` was 0. */
  local: SocketAddressInfo;
}

/**
 * An unconnected TCP socket inside the netns bound to `source` with IP_TRANSPARENT and
 * IP_FREEBIND (IPV6_* for IPv6), so its packets leave with a source address the netns does not
 * own. Connect it with `new net.Socket({ fd }).connect(port, address)`. Without a port the kernel
 * picks one at connect (IP_BIND_ADDRESS_NO_PORT), unique for the 4-tuple: bind's own search
 * would skip every port any socket from that address holds, whatever its destination, TIME_WAIT
 * included. With a port the socket has SO_REUSEADDR, so it shares the port with the agent's
 * other dials from that address (TIME_WAIT included); bind fails with EADDRINUSE only against a
 * listener, and connect with EADDRNOTAVAIL when the same 4-tuple is still in use. Replies only
 * come back when the netns routes them to the socket (capture's reply routing). Needs
 * CAP_NET_ADMIN.
 */
export function transparentSocketInNetns(netns: string | NetnsHandle, opts: TransparentSocketOptions): TransparentSocket {
  const domain = familyOf(opts.source.address);
  const port = opts.source.port ?? 0;
  const netnsPath = netnsLabel(netns);
  return inNetns(netns, () => {
    const fd = newSocket(domain, SOCK_STREAM);
    try {
      setIntOpt(fd, SOL_SOCKET, SO_MARK, opts.mark, 'SO_MARK');
      if (domain === AF_INET6) {
        setIntOpt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, 'IPV6_TRANSPARENT');
        setIntOpt(fd, SOL_IPV6, IPV6_FREEBIND, 1, 'IPV6_FREEBIND');
      } else {
        setIntOpt(fd, SOL_IP, IP_TRANSPARENT, 1, 'IP_TRANSPARENT');
        setIntOpt(fd, SOL_IP, IP_FREEBIND, 1, 'IP_FREEBIND');
      }
      // SOL_IP for both families (an IPv6 TCP socket takes SOL_IP options too).
      if (port === 0) setIntOpt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1, 'IP_BIND_ADDRESS_NO_PORT');
      else setIntOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1, 'SO_REUSEADDR');
      setIntOpt(fd, SOL_SOCKET, SO_PRIORITY, DIAL_PRIORITY, 'SO_PRIORITY');
      const sa = encodeSockaddr(opts.source.address, port);
      if (libc().bind(fd, sa, sa.length) !== 0) {
        throw nativeError('AMBIT_ERR_NATIVE_CALL', `bind ${opts.source.address}:${port} (transparent) in ${netnsPath}`, lastErrno(), {
          netnsPath,
          address: opts.source.address,
          port,
        });
      }
      return { fd, local: socketLocalAddress(fd) };
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  });
}

export interface ConnectOptions {
  address: string;
  port: number;
  mark?: number;
  family?: IpFamily;
}

/**
 * A TCP socket inside the netns with a non-blocking connect already started (EINPROGRESS).
 * Prefer socketInNetns + `socket.connect()`, which reports 'connect' and errors the normal way.
 * With this fd, `new net.Socket({ fd, readable: true, writable: true })` is treated as already
 * connected: no 'connect' event; a refused connect surfaces as an 'error' on the first read/write.
 */
export function connectInNetns(netnsPath: string, opts: ConnectOptions): number {
  const domain = familyOf(opts.address, opts.family);
  return inNetns(netnsPath, () => {
    const fd = newSocket(domain, SOCK_STREAM);
    try {
      if (opts.mark !== undefined) setIntOpt(fd, SOL_SOCKET, SO_MARK, opts.mark, 'SO_MARK');
      const sa = encodeSockaddr(opts.address, opts.port);
      if (libc().connect(fd, sa, sa.length) !== 0) {
        const errno = lastErrno();
        if (errno !== EINPROGRESS) {
          throw nativeError('AMBIT_ERR_UPSTREAM_CONNECT', `connect to ${opts.address}:${opts.port} in ${netnsPath}`, errno, {
            netnsPath,
          });
        }
      }
      return fd;
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  });
}

/** The socket's cookie (SO_COOKIE), as BPF programs see it (bpf_get_socket_cookie). */
export function socketCookie(fd: number): bigint {
  const v = Buffer.alloc(8);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(8);
  if (libc().getsockopt(fd, SOL_SOCKET, SO_COOKIE, v, len) !== 0) {
    throw nativeError('AMBIT_ERR_NATIVE_CALL', `getsockopt SO_COOKIE on fd ${fd}`, lastErrno(), { fd });
  }
  return v.readBigUInt64LE(0);
}

/**
 * sendto(MSG_FASTOPEN) inside the netns: a TCP Fast Open connect that carries `data` in the SYN
 * when the kernel holds a cookie for the destination. Returns the fd (non-blocking, connect in
 * progress); Node treats it as connected: `new net.Socket({ fd, readable: true, writable: true })`.
 */
export function fastOpenConnectInNetns(netnsPath: string, opts: { address: string; port: number; data: Buffer }): number {
  const MSG_FASTOPEN = 0x20000000;
  const domain = familyOf(opts.address);
  return inNetns(netnsPath, () => {
    const fd = newSocket(domain, SOCK_STREAM);
    const sa = encodeSockaddr(opts.address, opts.port);
    const n = Number(libc().sendto(fd, opts.data, opts.data.length, MSG_FASTOPEN, sa, sa.length));
    if (n < 0) {
      const errno = lastErrno();
      if (errno !== EINPROGRESS) {
        libc().close(fd);
        throw nativeError('AMBIT_ERR_UPSTREAM_CONNECT', `sendto(MSG_FASTOPEN) ${opts.address}:${opts.port} in ${netnsPath}`, errno, { netnsPath });
      }
    }
    return fd;
  });
}

/** SO_MARK on an existing socket. */
export function setSocketMark(fd: number, mark: number): void {
  setIntOpt(fd, SOL_SOCKET, SO_MARK, mark, 'SO_MARK');
}

/** The socket's local address (getsockname). */
export function socketLocalAddress(fd: number): SocketAddressInfo {
  const sa = Buffer.alloc(SOCKADDR_STORAGE_SIZE);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(sa.length);
  if (libc().getsockname(fd, sa, len) !== 0) {
    throw nativeError('AMBIT_ERR_NATIVE_CALL', `getsockname on fd ${fd}`, lastErrno(), { fd });
  }
  return decodeSockaddr(sa.subarray(0, len.readUInt32LE(0)));
}

function originalDstAt(fd: number, level: number): SocketAddressInfo | number {
  const size = level === SOL_IPV6 ? SOCKADDR_IN6_SIZE : SOCKADDR_IN_SIZE;
  const sa = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size);
  if (libc().getsockopt(fd, level, SO_ORIGINAL_DST, sa, len) !== 0) return lastErrno();
  return decodeSockaddr(sa.subarray(0, len.readUInt32LE(0)));
}

/**
 * The destination a captured connection was sent to before redirection:
 * getsockopt(SO_ORIGINAL_DST), answered by the BPF capture (cgroup/getsockopt) or by conntrack
 * after an nftables REDIRECT. IPv4 originals on a dual-stack socket come back as IPv4.
 * Throws AMBIT_ERR_CAPTURE_FAILED (details.errno ENOENT) for a connection that was not captured.
 */
export function getOriginalDst(fd: number): SocketAddressInfo {
  const local = socketLocalAddress(fd);
  const levels = local.family === 'IPv6' ? [SOL_IPV6, SOL_IP] : [SOL_IP];
  let errno = 0;
  for (const level of levels) {
    const r = originalDstAt(fd, level);
    if (typeof r !== 'number') return r;
    errno = errno || r;
  }
  throw nativeError('AMBIT_ERR_CAPTURE_FAILED', `reading the original destination (SO_ORIGINAL_DST) of fd ${fd}`, errno, {
    fd,
    local: `${local.address}:${local.port}`,
  });
}

/**
 * Attaches an sk_reuseport program (its fd) to the SO_REUSEPORT group `listenerFd` belongs to: it
 * then picks the listener of each new connection for the whole group (replacing any program
 * attached before). The group keeps the program; the caller may close its fd.
 */
export function attachReuseportProgram(listenerFd: number, progFd: number): void {
  setIntOpt(listenerFd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, progFd, 'SO_ATTACH_REUSEPORT_EBPF');
}

/** The fd under a connected net.Socket or listening net.Server (Node internal `_handle.fd`). */
export function socketFd(sock: Socket | Server): number {
  const handle = (sock as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new AmbitError('AMBIT_ERR_NATIVE_CALL', 'socket has no file descriptor; is it closed or not yet connected?', {
      details: { fd },
    });
  }
  return fd;
}
