/**
 * The interface both capture modes implement: enroll a pod's netns so its TCP goes through the
 * agent, or refuse it while it can not (pending, agent down).
 */

import { statSync } from 'node:fs';

export type CaptureMode = 'bpf' | 'nft';

/**
 * True when both paths name the same network namespace (the CNI's path and the controller's may
 * differ: /var/run/netns/<name>, /proc/<pid>/ns/net).
 */
export function sameNetns(a: string | undefined, b: string | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.ino === y.ino && x.dev === y.dev;
  } catch {
    return false;
  }
}

/** Istio ambient's in-pod ports (DESIGN.md, Ports). */
export const OUTBOUND_PORT = 15001;
export const INBOUND_PORT = 15006;

/**
 * nft chains (for a pod-netns table) that drop TCP packets conntrack marks INVALID, in both
 * directions. Capture and reply routing hang on conntrack (REDIRECT's NAT, the reply ct mark); an
 * out-of-window packet under heavy load is INVALID, skips both, and would reach the wrong socket
 * (an app behind a NAT it does not know, or a peer through eth0) which answers with a reset. Dropped,
 * it is retransmitted and then matches. Kubernetes' kube-proxy and Istio's sidecar capture
 * (DROP_INVALID) do the same for the same reason.
 */
export function dropInvalidChains(): string[] {
  const chain = (name: string, hook: 'output' | 'prerouting'): string[] => [
    `  chain ${name} {`,
    `    type filter hook ${hook} priority mangle; policy accept;`,
    '    meta l4proto tcp ct state invalid drop',
    '  }',
  ];
  return [...chain('invalid_out', 'output'), ...chain('invalid_in', 'prerouting')];
}

export interface EnrollOptions {
  /** Pod UID: the enrollment's identity (pin folder name, table comment). */
  uid: string;
  /** The pod's netns file, e.g. /var/run/netns/<name> or /proc/<pid>/ns/net. */
  netnsPath: string;
  /**
   * The pod's inbound listener, made inside the pod netns with listenInNetns(). Bind it to
   * 0.0.0.0:15006 (or [::]:15006): sk_lookup (BPF) steers to the socket itself, nftables REDIRECT
   * rewrites to the ingress interface's address, and 0.0.0.0 serves both.
   */
  inboundListenerFd: number;
  /** Local ports the pod serves directly (never captured inbound). 15008 is never captured. */
  excludeInboundPorts?: number[];
  /** Destination ports the pod's outbound traffic reaches directly. */
  excludeOutboundPorts?: number[];
  /** The pod's outbound listener port on loopback (default 15001). */
  outboundPort?: number;
  /** The inbound listener's port (default 15006; nft mode redirects to it). */
  inboundPort?: number;
  /**
   * The pod has an outbound listener on [::1]:outboundPort besides 127.0.0.1, so native IPv6 is
   * captured too. Without it native IPv6 connects are refused (IPv4, dual-stack sockets included,
   * is always captured): never direct.
   */
  ipv6?: boolean;
  /**
   * The pod's DNS proxy port on loopback (15053): UDP and TCP to port 53 of a non-loopback
   * resolver go there. Undefined: DNS is not captured.
   */
  dnsPort?: number;
}

/** A pod whose netns is known before its listeners exist (the CNI hand-off at pod start). */
export interface PrepareOptions {
  uid: string;
  netnsPath: string;
}

export interface PruneOptions {
  /** Netns of pods the agent still wants captured (enrolled, pending, or failing to enroll). */
  keepNetns: string[];
  /** Netns of this node's pods that must not be captured (nft mode removes tables a previous run left there). */
  otherNetns?: string[];
}

/**
 * One connection the agent dials to a pod's app from the original client's address
 * (NetnsPodSockets.connect with localAddress): as the app's side sees it, remote = source, local
 * port = destinationPort. The key of a BPF pod's ambit_steer_direct (BpfCapture.directTuples
 * lists the ones in flight).
 */
export interface DirectTuple {
  sourceAddress: string;
  sourcePort: number;
  destinationPort: number;
}

/**
 * Lifecycle of one netns: prepare() (pending: all TCP in and out refused) -> enroll() (captured)
 * -> unenroll() (direct again). Capture outlives the agent process on purpose: close() leaves
 * enrolled and pending pods captured, so while no agent runs their connections are refused
 * (there is no listener), never direct; the next agent takes them over without a gap.
 */
export interface Capture {
  readonly mode: CaptureMode;
  /**
   * Puts the pod's netns in the pending state: every TCP connect and every inbound TCP connection
   * is refused until enroll(). Resolves once that is in force; a pod already enrolled or pending
   * is left as it is.
   */
  prepare(opts: PrepareOptions): Promise<void>;
  /** Starts capturing the pod's traffic; enrolling an enrolled uid replaces its settings in place. */
  enroll(opts: EnrollOptions): Promise<void>;
  /** Stops capturing (or refusing); a uid that is not enrolled or pending is ignored. */
  unenroll(uid: string): Promise<void>;
  /**
   * Removes capture a previous agent left for pods no longer wanted (after the first config
   * snapshot). Pending netns that still exist are kept. Returns how many pods were released.
   */
  prune(opts: PruneOptions): Promise<number>;
  /**
   * True when the pod's netns routes replies to foreign (original client) addresses back to the
   * agent's transparent sockets (reply-route.ts), i.e. the inbound dial can preserve the source.
   * Inbound capture leaves those dials (mark 0x539) alone by itself: BPF exempts each one in the
   * kernel when its SYN leaves (sockops.bpf.c), nft's nat prerouting never sees locally made
   * connections.
   */
  preservesSource(uid: string): boolean;
  /** UIDs currently enrolled. */
  enrolled(): string[];
  /** UIDs currently pending. */
  pending(): string[];
  /**
   * Releases this process's handles. Enrolled and pending pods stay captured (refused while no
   * agent listens); when none is left, everything is removed. Idempotent.
   */
  close(): Promise<void>;
  /** Unenrolls every pod and removes everything capture installed. Idempotent. */
  uninstall(): Promise<void>;
}
