/**
 * Spreads a pod's inbound HBONE tunnels over the agent's worker threads in turn
 * (bpf/reuseport.bpf.c), instead of by the kernel's 4-tuple hash: a tunnel carries every stream
 * between two agents' workers, so the few tunnels a pod gets decide which threads do its inbound
 * work, and hashed, two tunnels share a worker one time in two with two workers.
 */
import { BpfObject, SOCKET_SLOT_CODEC, U32_CODEC, bpfObjectPath } from '../../../native/bpf.js';
import { attachReuseportProgram } from '../../../native/netns.js';

/**
 * Makes the SO_REUSEPORT group of `listenerFds` (every worker's listener of one port in one pod,
 * in worker order) give each new connection to the next listener in turn. Throws
 * AMBIT_ERR_BPF_* when it can not (no BPF, a listener not in the group); the kernel's hash then
 * stays in charge. Nothing to undo later: the group holds the program until its listeners close.
 */
export function spreadInTurn(listenerFds: number[]): void {
  const obj = BpfObject.open(bpfObjectPath('reuseport'));
  try {
    // ambit_spread_socks: turn -> listener fd.
    const socks = obj.map('ambit_spread_socks', SOCKET_SLOT_CODEC);
    listenerFds.forEach((fd, turn) => socks.update(turn, BigInt(fd)));
    // ambit_spread_state: 0 -> how many listeners, 1 -> the next turn.
    obj.map('ambit_spread_state', U32_CODEC).update(0, listenerFds.length);
    attachReuseportProgram(listenerFds[0]!, obj.progFd('ambit_spread'));
  } finally {
    obj.close();
  }
}
