/**
 * nftables capture, the fallback when BPF can not load: one table inside each pod's netns that
 * REDIRECTs outbound TCP to the pod's 127.0.0.1:15001 and inbound TCP to :15006. Conntrack
 * answers getsockopt(SO_ORIGINAL_DST) for both, so the proxy code is the same as with BPF.
 *
 * Each enrolled pod also gets reply routing (reply-route.ts) for the agent's transparent dials.
 *
 * Invariant: a pod's netns holds the table exactly while the pod is enrolled; the table lives in
 * the pod's netns, so it disappears with the pod even if the agent dies.
 */
import { AmbitError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { BYPASS_MARK } from '../../../native/netns.js';
import { dropInvalidChains, HBONE_PORT, INBOUND_PORT, OUTBOUND_PORT, type Capture, type DirectTuple, type EnrollOptions } from './capture.js';
import { execInNetns } from './netns-exec.js';
import { installReplyRouting, removeReplyRouting } from './reply-route.js';

/** Name of the table in every pod netns (one per netns, so no per-pod suffix is needed). */
export const NFT_TABLE = 'ambit_capture';

export interface NftCaptureOptions {
  log: Logger;
  /** nft binary (default "nft"); nsenter runs it inside the pod netns. */
  nftPath?: string;
  /** ip binary (default "ip"), for reply routing. */
  ipPath?: string;
  nsenterPath?: string;
  /** Upper bound for one nft run. */
  timeoutMs?: number;
}

interface NftPod {
  netnsPath: string;
  /** Reply routing is installed (transparent dials preserve the source). */
  replyRouting: boolean;
}

function portSet(ports: number[]): string {
  return `{ ${ports.join(', ')} }`;
}

/** The ruleset for one pod (pure, for tests and `ambit` debugging). */
export function buildNftRuleset(opts: EnrollOptions): string {
  const out = opts.outboundPort ?? OUTBOUND_PORT;
  const inb = opts.inboundPort ?? INBOUND_PORT;
  const exIn = [...new Set([HBONE_PORT, inb, ...(opts.excludeInboundPorts ?? [])])].sort((a, b) => a - b);
  const exOut = [...new Set(opts.excludeOutboundPorts ?? [])].sort((a, b) => a - b);
  for (const p of [out, inb, ...exIn, ...exOut]) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) {
      throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `port ${p} is not an integer in 1-65535`, { details: { port: p } });
    }
  }
  const families = opts.ipv6 ? '' : 'meta nfproto ipv4 ';
  const lines = [
    // Declaring then deleting makes the whole file idempotent in one transaction.
    `table inet ${NFT_TABLE} {}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    `  comment "ambit capture for pod ${opts.uid.replace(/[^A-Za-z0-9_.:-]/g, '_')}"`,
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    `    meta mark ${'0x' + BYPASS_MARK.toString(16)} return`,
    '    meta l4proto != tcp return',
    '    ip daddr 127.0.0.0/8 return',
    '    ip6 daddr ::1 return',
    ...(exOut.length > 0 ? [`    tcp dport ${portSet(exOut)} return`] : []),
    `    ${families}meta l4proto tcp redirect to :${out}`,
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority -100; policy accept;',
    '    iifname "lo" return',
    '    meta l4proto != tcp return',
    '    ip saddr 127.0.0.0/8 return',
    `    tcp dport ${portSet(exIn)} return`,
    `    ${families}meta l4proto tcp redirect to :${inb}`,
    '  }',
    ...dropInvalidChains(),
    '}',
  ];
  return lines.join('\n') + '\n';
}

export class NftCapture implements Capture {
  readonly mode = 'nft' as const;
  readonly #log: Logger;
  readonly #nft: string;
  readonly #nsenter: string;
  readonly #ip: string;
  readonly #timeoutMs: number;
  readonly #pods = new Map<string, NftPod>();
  #closed = false;

  constructor(opts: NftCaptureOptions) {
    this.#log = opts.log.child({ component: 'capture', mode: 'nft' });
    this.#nft = opts.nftPath ?? 'nft';
    this.#nsenter = opts.nsenterPath ?? 'nsenter';
    this.#ip = opts.ipPath ?? 'ip';
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
  }

  enrolled(): string[] {
    return [...this.#pods.keys()];
  }

  async enroll(opts: EnrollOptions): Promise<void> {
    if (this.#closed) throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', 'nft capture is closed');
    const ruleset = buildNftRuleset(opts);
    await this.#run(opts.netnsPath, ['-f', '-'], ruleset);
    const replyRouting = await installReplyRouting(opts.netnsPath, this.#routeOpts()).then(
      () => true,
      (e: unknown) => {
        this.#log.warn({ uid: opts.uid, err: e }, 'reply routing failed; inbound dials will use the pod address as source');
        return false;
      },
    );
    this.#pods.set(opts.uid, { netnsPath: opts.netnsPath, replyRouting });
    this.#log.info({ uid: opts.uid, table: NFT_TABLE, replyRouting }, 'pod enrolled');
  }

  preservesSource(uid: string): boolean {
    return this.#pods.get(uid)?.replyRouting === true;
  }

  /** No-op: nat prerouting never sees the agent's locally generated dials (conntrack is made at output). */
  allowDirect(_uid: string, _tuple: DirectTuple): void {}

  forgetDirect(_uid: string, _tuple: DirectTuple): void {}

  async unenroll(uid: string): Promise<void> {
    const pod = this.#pods.get(uid);
    if (pod === undefined) return;
    this.#pods.delete(uid);
    // Idempotent delete: the netns may already be gone with its table.
    await this.#run(pod.netnsPath, ['-f', '-'], `table inet ${NFT_TABLE} {}\ndelete table inet ${NFT_TABLE}\n`).catch(
      (e: unknown) => {
        this.#log.warn({ uid, err: e }, 'removing the nft table failed');
      },
    );
    await removeReplyRouting(pod.netnsPath, this.#routeOpts()).catch((e: unknown) => {
      this.#log.warn({ uid, err: e }, 'removing reply routing failed');
    });
    this.#log.info({ uid }, 'pod unenrolled');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const uid of [...this.#pods.keys()]) await this.unenroll(uid);
  }

  #routeOpts(): { nftPath: string; ipPath: string; nsenterPath: string; timeoutMs: number } {
    return { nftPath: this.#nft, ipPath: this.#ip, nsenterPath: this.#nsenter, timeoutMs: this.#timeoutMs };
  }

  /** Runs nft inside the netns file (nsenter --net=<path>, no need for an `ip netns` name). */
  #run(netnsPath: string, args: string[], stdin: string): Promise<void> {
    return execInNetns(netnsPath, [this.#nft, ...args], stdin, { nsenterPath: this.#nsenter, timeoutMs: this.#timeoutMs });
  }
}
