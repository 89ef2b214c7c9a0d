/** The original destination of an accepted, captured connection (same code for BPF and nftables capture). */
import type { Socket } from 'node:net';
import { isAmbitError } from '../../shared/errors.js';
import { getOriginalDst, socketFd, type SocketAddressInfo } from '../../../native/netns.js';

export type { SocketAddressInfo };

function unmap(address: string): { address: string; family: 'IPv4' | 'IPv6' } {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (m) return { address: m[1]!, family: 'IPv4' };
  return { address, family: address.includes(':') ? 'IPv6' : 'IPv4' };
}

/**
 * outbound: getsockopt(SO_ORIGINAL_DST), answered by cgroup/getsockopt (BPF) or conntrack (nft);
 * throws AMBIT_ERR_CAPTURE_FAILED when the connection was not captured.
 * inbound: SO_ORIGINAL_DST when conntrack knows it (nft REDIRECT to 15006), otherwise the socket's
 * local address, which sk_lookup leaves as the original destination. IPv4 is never v4-mapped.
 */
export function originalDestination(socket: Socket, direction: 'outbound' | 'inbound'): SocketAddressInfo {
  const fd = socketFd(socket);
  if (direction === 'outbound') {
    const d = getOriginalDst(fd);
    return { ...d, ...unmap(d.address) };
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
