/** Builds the agent's capture: BPF when it loads here, nftables otherwise (or as configured). */
import type { Logger } from '../../shared/log.js';
import type { Capture, CaptureMode } from './capture.js';
import { detectCaptureMode, type CaptureModeDecision } from './detect.js';
import { NftCapture } from './nft.js';
import { BpfCapture } from './redirect.js';

export interface OpenCaptureOptions {
  /** 'auto' (default) runs detectCaptureMode(); a fixed mode skips detection. */
  mode?: CaptureMode | 'auto';
  cgroupPath: string;
  pinDir: string;
  log: Logger;
}

/** Opens the capture; the decision says which mode runs and why BPF is not used. */
export async function openCapture(opts: OpenCaptureOptions): Promise<{ capture: Capture; decision: CaptureModeDecision }> {
  const decision: CaptureModeDecision =
    opts.mode === undefined || opts.mode === 'auto'
      ? detectCaptureMode()
      : opts.mode === 'nft'
        ? { mode: 'nft', reason: 'configured' }
        : { mode: 'bpf' };
  if (decision.mode === 'bpf') {
    const capture = await BpfCapture.open({ cgroupPath: opts.cgroupPath, pinDir: opts.pinDir, log: opts.log });
    opts.log.info({ mode: 'bpf' }, 'capture mode selected');
    return { capture, decision };
  }
  opts.log.warn({ mode: 'nft', reason: decision.reason }, 'capture mode selected');
  return { capture: new NftCapture({ log: opts.log }), decision };
}
