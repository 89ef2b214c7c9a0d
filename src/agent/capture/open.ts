/** Builds the agent's capture: BPF when it loads here, nftables otherwise (or as configured). */
import type { Logger } from '../../shared/log.js';
import type { Capture, CaptureMode } from './capture.js';
import { findCgroup2Root } from './cgroup.js';
import { detectCaptureMode, type CaptureModeDecision } from './detect.js';
import { NftCapture } from './nft.js';
import { BpfCapture } from './redirect.js';

export interface OpenCaptureOptions {
  /** 'auto' (default) runs detectCaptureMode(); a fixed mode skips detection. */
  mode?: CaptureMode | 'auto';
  /** cgroup v2 folder to attach at; default the cgroup2 mount found in /proc/mounts. */
  cgroupPath?: string;
  pinDir: string;
  log: Logger;
}

/** Opens the capture; the decision says which mode runs and why BPF is not used. */
export async function openCapture(opts: OpenCaptureOptions): Promise<{ capture: Capture; decision: CaptureModeDecision }> {
  let cgroupPath = opts.cgroupPath;
  let decision: CaptureModeDecision;
  if (opts.mode === 'nft') {
    decision = { mode: 'nft', reason: 'configured' };
  } else {
    try {
      cgroupPath ??= findCgroup2Root();
      decision = opts.mode === 'bpf' ? { mode: 'bpf' } : detectCaptureMode({ cgroupPath });
    } catch (e) {
      if (opts.mode === 'bpf') throw e;
      decision = { mode: 'nft', reason: (e as Error).message };
    }
  }
  if (decision.mode === 'bpf') {
    const capture = await BpfCapture.open({ cgroupPath: cgroupPath!, pinDir: opts.pinDir, log: opts.log });
    opts.log.info({ mode: 'bpf', cgroupPath }, 'capture mode selected');
    return { capture, decision };
  }
  opts.log.warn({ mode: 'nft', reason: decision.reason }, 'capture mode selected');
  return { capture: new NftCapture({ log: opts.log }), decision };
}
