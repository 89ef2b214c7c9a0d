/**
 * Spreads a pod's inbound HBONE tunnels over the agent's worker threads in turn
 * (bpf/reuseport.bpf.c), instead of by the kernel's 4-tuple hash: a tunnel carries every stream
 * between two agents' workers, so the few tunnels a pod gets decide which threads do its inbound
 * work, and hashed, two tunnels share a worker one time in two with two workers.
 */
import { BpfObject, bpfObjectPath, type MapCodec } from '../../../native/bpf.js';
import { attachReuseportProgram } from '../../../native/netns.js';

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/** ambit_spread_socks: turn -> listener fd. */
const socksCodec: MapCodec<number, number> = {
  encodeKey: u32,
  decodeKey: (b) => b.readUInt32LE(0),
  encodeValue: (fd) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(fd));
    return b;
  },
  decodeValue: (b) => Number(b.readBigUInt64LE(0)),
};

/** ambit_spread_state: 0 -> how many listeners, 1 -> the next turn. */
const stateCodec: MapCodec<number, number> = { encodeKey: u32, decodeKey: (b) => b.readUInt32LE(0), encodeValue: u32, decodeValue: (b) => b.readUInt32LE(0) };

/**
 * Makes the SO_REUSEPORT group of `listenerFds` (every worker's listener of one port in one pod,
 * in worker order) give each new connection to the next listener in turn. Throws
 * AMBIT_ERR_BPF_* when it can not (no BPF, a listener not in the group); the kernel's hash then
 * stays in charge. Nothing to undo later: the group holds the program until its listeners close.
 */
export function spreadInTurn(listenerFds: number[]): void {
  const obj = BpfObject.open(bpfObjectPath('reuseport'));
  try {
    const socks = obj.map('ambit_spread_socks', socksCodec);
    listenerFds.forEach((fd, turn) => socks.update(turn, fd));
    obj.map('ambit_spread_state', stateCodec).update(0, listenerFds.length);
    attachReuseportProgram(listenerFds[0]!, obj.progFd('ambit_spread'));
  } finally {
    obj.close();
  }
}
