/** The original destination of an accepted, captured connection (same code for BPF and nftables capture). */
import type { Socket } from 'node:net';
import { AmbitError, isAmbitError } from '../../shared/errors.js';
import { getOriginalDst, socketFd, type SocketAddressInfo } from '../../../native/netns.js';

export type { SocketAddressInfo };

function unmap(address: string): { address: string; family: 'IPv4' | 'IPv6' } {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (m) return { address: m[1]!, family: 'IPv4' };
  return { address, family: address.includes(':') ? 'IPv6' : 'IPv4' };
}

/** 127/8, ::1, 0.0.0.0 and ::: where a captured connection can never have been going. */
function isLocalOnly(address: string): boolean {
  return /^127\./.test(address) || address === '::1' || address === '0.0.0.0' || address === '::';
}

/**
 * outbound: getsockopt(SO_ORIGINAL_DST), answered by cgroup/getsockopt (BPF) or conntrack (nft);
 * throws AMBIT_ERR_CAPTURE_FAILED when the connection was not captured. A loopback or unspecified
 * answer is refused too: capture never redirects those, so it is conntrack describing a direct
 * connect to the capture listener itself (the proxy would dial itself in a loop).
 * inbound: SO_ORIGINAL_DST when conntrack knows it (nft REDIRECT to 15006), otherwise the socket's
 * local address, which sk_lookup leaves as the original destination. IPv4 is never v4-mapped.
 */
export function originalDestination(socket: Socket, direction: 'outbound' | 'inbound'): SocketAddressInfo {
  const fd = socketFd(socket);
  if (direction === 'outbound') {
    const d = getOriginalDst(fd);
    const out = { ...d, ...unmap(d.address) };
    if (isLocalOnly(out.address)) {
      throw new AmbitError(
        'AMBIT_ERR_CAPTURE_FAILED',
        `original destination ${out.address}:${out.port} is local to the pod: the connection was not captured (a direct connect to the capture listener?)`,
        { details: { address: out.address, port: out.port } },
      );
    }
    return out;
  }
  try {
    const d = getOriginalDst(fd);
    return { ...d, ...unmap(d.address) };
  } catch (e) {
    if (!isAmbitError(e, 'AMBIT_ERR_CAPTURE_FAILED')) throw e;
  }
  const address = socket.localAddress;
  const port = socket.localPort;
  if (address === undefined || port === undefined) {
    return getOriginalDst(fd);
  }
  return { port, ...unmap(address) };
}
