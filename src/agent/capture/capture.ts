/** The interface both capture modes implement: enroll a pod's netns so its TCP goes through the agent. */

export type CaptureMode = 'bpf' | 'nft';

/** Istio ambient's in-pod ports (DESIGN.md, Ports). */
export const OUTBOUND_PORT = 15001;
export const INBOUND_PORT = 15006;
export const HBONE_PORT = 15008;

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
   * Capture native IPv6 too. The pod then needs an outbound listener on [::1]:outboundPort
   * besides 127.0.0.1. IPv4 through dual-stack sockets is always captured.
   */
  ipv6?: boolean;
}

/**
 * One connection the agent dials to a pod's app from the original client's address
 * (transparent.ts): as the app's side sees it, remote = source, local port = destinationPort.
 */
export interface DirectTuple {
  sourceAddress: string;
  sourcePort: number;
  destinationPort: number;
}

export interface Capture {
  readonly mode: CaptureMode;
  /** Starts capturing the pod's traffic; enrolling an enrolled uid replaces its settings. */
  enroll(opts: EnrollOptions): Promise<void>;
  /** Stops capturing; a uid that is not enrolled is ignored. */
  unenroll(uid: string): Promise<void>;
  /**
   * True when the pod's netns routes replies to foreign (original client) addresses back to the
   * agent's transparent sockets (reply-route.ts), i.e. dialTransparent can preserve the source.
   */
  preservesSource(uid: string): boolean;
  /**
   * Lets the agent's own transparent dial `tuple` reach the app instead of being captured inbound.
   * Call after bind, before connect; BPF: sk_lookup can not see socket marks; nft: no-op
   * (nat prerouting never sees locally generated connections). Ignores a uid not enrolled.
   */
  allowDirect(uid: string, tuple: DirectTuple): void;
  /** Removes what allowDirect added (after connect succeeded or failed). Never throws for a missing entry. */
  forgetDirect(uid: string, tuple: DirectTuple): void;
  /** UIDs currently enrolled. */
  enrolled(): string[];
  /** Unenrolls every pod and detaches everything this instance attached. Idempotent. */
  close(): Promise<void>;
}
