/** Decides the capture mode at agent start: BPF when its programs really load here, else nftables. */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../../shared/errors.js';
import { BpfObject, bpfObjectPath, bpfUnsupportedReason } from '../../../native/bpf.js';
import type { CaptureMode } from './capture.js';
import { checkCgroup2 } from './cgroup.js';

export interface CaptureModeDecision {
  mode: CaptureMode;
  /** Why BPF is not used (set when mode is nft). */
  reason?: string;
}

export interface DetectOptions {
  /** The cgroup the capture would attach at; checked to be cgroup2 when given. */
  cgroupPath?: string;
  /** bpffs mount point (default /sys/fs/bpf). */
  bpffs?: string;
  /** /proc/mounts content, for tests. */
  mounts?: string;
}

/** The objects a BPF capture loads: the three cgroup families and the per-pod sk_lookup. */
const PROBE_OBJECTS = ['sock_addr', 'sockops', 'sockopt', 'sk_lookup'] as const;

/**
 * Checks root, the shim, a cgroup2 and a bpffs mount (and that cgroupPath is cgroup2), then
 * loads every capture object once (maps pinned under a throwaway folder that is removed again).
 * Never throws.
 */
export function detectCaptureMode(opts: DetectOptions = {}): CaptureModeDecision {
  const bpffs = opts.bpffs ?? '/sys/fs/bpf';
  const reason = bpfUnsupportedReason();
  if (reason !== undefined) return { mode: 'nft', reason };
  let mounts: string;
  try {
    mounts = opts.mounts ?? readFileSync('/proc/mounts', 'utf8');
  } catch (e) {
    return { mode: 'nft', reason: `reading /proc/mounts failed: ${errorMessage(e)}` };
  }
  const lines = mounts.split('\n').map((l) => l.split(' '));
  if (!lines.some((f) => f[2] === 'cgroup2')) return { mode: 'nft', reason: 'no cgroup2 filesystem is mounted' };
  if (!lines.some((f) => f[2] === 'bpf' && f[1] === bpffs)) return { mode: 'nft', reason: `${bpffs} is not a bpf filesystem` };
  if (opts.cgroupPath !== undefined) {
    try {
      checkCgroup2(opts.cgroupPath, mounts);
    } catch (e) {
      return { mode: 'nft', reason: errorMessage(e) };
    }
  }
  // The probe folder is this process's own (pid in the name), made and removed here.
  const probeDir = join(bpffs, `ambit-probe-${process.pid}`);
  try {
    mkdirSync(probeDir, { recursive: true });
    for (const name of PROBE_OBJECTS) BpfObject.open(bpfObjectPath(name), { pinRoot: probeDir }).close();
    return { mode: 'bpf' };
  } catch (e) {
    return { mode: 'nft', reason: errorMessage(e) };
  } finally {
    rmSync(probeDir, { recursive: true, force: true });
  }
}
