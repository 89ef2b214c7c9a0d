/**
 * Pure conversions between address text and the binary layouts the kernel and the BPF maps use:
 * struct sockaddr_in / sockaddr_in6, and the 16-byte v4-mapped form of bpf/include/types.h.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { AmbitError } from '../src/shared/errors.js';
import { formatIPv6, ipToBytes16, ipv4Bytes, ipv6Bytes, isV4Mapped } from '../src/shared/ip-bytes.js';

export { formatIPv6, ipToBytes16, isV4Mapped };

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCKADDR_IN_SIZE = 16;
export const SOCKADDR_IN6_SIZE = 28;
/** Large enough for any sockaddr the code reads back (sockaddr_storage). */
export const SOCKADDR_STORAGE_SIZE = 128;

export type IpFamily = 'IPv4' | 'IPv6';

export interface SocketAddressInfo {
  address: string;
  port: number;
  family: IpFamily;
}

function invalid(address: string): AmbitError {
  return new AmbitError('AMBIT_ERR_NATIVE_CALL', `address "${address}" is not a valid IPv4 or IPv6 literal`, {
    details: { address },
  });
}

/** The address in 16-byte form as text: IPv4 for v4-mapped bytes, IPv6 otherwise. */
export function bytes16ToIp(bytes: Uint8Array): { address: string; family: IpFamily } {
  if (isV4Mapped(bytes)) return { address: `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`, family: 'IPv4' };
  return { address: formatIPv6(bytes), family: 'IPv6' };
}

/** struct sockaddr_in or sockaddr_in6 for `address:port`. */
export function encodeSockaddr(address: string, port: number): Buffer {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AmbitError('AMBIT_ERR_NATIVE_CALL', `port ${port} is out of range 0-65535`, { details: { port } });
  }
  if (isIPv4(address)) {
    const sa = Buffer.alloc(SOCKADDR_IN_SIZE);
    sa.writeUInt16LE(AF_INET, 0); // sa_family is host order (x86-64, little endian)
    sa.writeUInt16BE(port, 2);
    ipv4Bytes(address).copy(sa, 4);
    return sa;
  }
  if (isIPv6(address)) {
    const sa = Buffer.alloc(SOCKADDR_IN6_SIZE);
    sa.writeUInt16LE(AF_INET6, 0);
    sa.writeUInt16BE(port, 2);
    ipv6Bytes(address).copy(sa, 8);
    return sa;
  }
  throw invalid(address);
}

/** Reads a sockaddr_in / sockaddr_in6; IPv4-mapped IPv6 stays IPv6 text (as Node reports it). */
export function decodeSockaddr(sa: Buffer): SocketAddressInfo {
  const family = sa.readUInt16LE(0);
  if (family === AF_INET && sa.length >= SOCKADDR_IN_SIZE) {
    return { address: `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}`, port: sa.readUInt16BE(2), family: 'IPv4' };
  }
  if (family === AF_INET6 && sa.length >= SOCKADDR_IN6_SIZE) {
    return { address: formatIPv6(sa.subarray(8, 24)), port: sa.readUInt16BE(2), family: 'IPv6' };
  }
  throw new AmbitError('AMBIT_ERR_NATIVE_CALL', `sockaddr family ${family} is neither AF_INET nor AF_INET6`, {
    details: { family, length: sa.length },
  });
}
