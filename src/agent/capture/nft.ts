/**
 * nftables capture, the fallback when BPF can not load: one table inside each pod's netns that
 * REDIRECTs outbound TCP (IPv4 and IPv6) to the pod's 127.0.0.1 / [::1]:15001, DNS (UDP and TCP
 * port 53) to its DNS proxy on :15053, and inbound TCP to :15006. Conntrack answers getsockopt(SO_ORIGINAL_DST) for both, so the proxy code is the same
 * as with BPF. A pending pod's table rejects all its TCP instead (pod-local traffic excepted).
 *
 * Each enrolled pod also gets reply routing (reply-route.ts) for the agent's transparent dials.
 *
 * Invariant: a pod's netns holds the table while the pod is pending or enrolled, also while no
 * agent runs (REDIRECT then finds no listener: the connection is refused, never direct); the
 * table is replaced in one transaction, never removed in between, and disappears with the netns.
 */
import { AmbitError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { HBONE_PORT } from '../../shared/hbone/tunnel.js';
import { BYPASS_MARK } from '../../../native/netns.js';
import {
  dropInvalidChains,
  INBOUND_PORT,
  OUTBOUND_PORT,
  sameNetns,
  type Capture,
  type EnrollOptions,
  type PrepareOptions,
  type PruneOptions,
} from './capture.js';
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
  state: 'pending' | 'enrolled';
  /** Reply routing is installed (transparent dials preserve the source). */
  replyRouting: boolean;
}

function portSet(ports: number[]): string {
  return `{ ${ports.join(', ')} }`;
}

/**
 * The opening of the pod's table file: declaring then deleting makes the whole file replace the
 * table in one transaction (pending -> enrolled -> new settings, never absent in between).
 */
function tableOpening(uid: string, note = ''): string[] {
  return [
    `table inet ${NFT_TABLE} {}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    `  comment "ambit capture for pod ${uid.replace(/[^A-Za-z0-9_.:-]/g, '_')}${note}"`,
    '  chain output {',
  ];
}

const BYPASS_RETURN = `    meta mark ${'0x' + BYPASS_MARK.toString(16)} return`;

/**
 * DNS capture (Istio's in-pod rules): UDP and TCP to port 53 of a resolver off loopback go to the
 * pod's DNS proxy; IPv6 only when the proxy also listens on [::1]. Conntrack un-NATs the replies.
 */
function dnsRules(opts: EnrollOptions): string[] {
  const port = opts.dnsPort;
  if (port === undefined) return [];
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', `dns port ${port} is not an integer in 1-65535`, { details: { port } });
  }
  const rules = [`    ip daddr != 127.0.0.0/8 meta l4proto { tcp, udp } th dport 53 redirect to :${port}`];
  if (opts.ipv6) rules.push(`    ip6 daddr != ::1 meta l4proto { tcp, udp } th dport 53 redirect to :${port}`);
  return rules;
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
  const lines = [
    ...tableOpening(opts.uid),
    '    type nat hook output priority -100; policy accept;',
    BYPASS_RETURN,
    ...dnsRules(opts),
    '    meta l4proto != tcp return',
    '    ip daddr 127.0.0.0/8 return',
    '    ip6 daddr ::1 return',
    ...(exOut.length > 0 ? [`    tcp dport ${portSet(exOut)} return`] : []),
    // IPv6 goes to [::1]:out; without that listener it is refused there, never direct.
    `    meta l4proto tcp redirect to :${out}`,
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority -100; policy accept;',
    '    iifname "lo" return',
    '    meta l4proto != tcp return',
    '    ip saddr 127.0.0.0/8 return',
    `    tcp dport ${portSet(exIn)} return`,
    `    meta l4proto tcp redirect to :${inb}`,
    '  }',
    ...dropInvalidChains(),
    '}',
  ];
  return lines.join('\n') + '\n';
}

/**
 * The pending pod's table: until it is enrolled, every TCP connection it tries to make or
 * receive is rejected with a reset (its SYN), except pod-local traffic (lo) and the agent's own
 * marked sockets.
 */
export function buildPendingRuleset(uid: string): string {
  return [
    ...tableOpening(uid, ' (pending: tcp refused until enrolled)'),
    '    type filter hook output priority 0; policy accept;',
    BYPASS_RETURN,
    '    meta l4proto != tcp return',
    '    oifname "lo" return',
    // Connection attempts only: the resets the input chain sends pass here too.
    '    tcp flags & (syn | ack) == syn reject with tcp reset',
    '  }',
    '  chain input {',
    '    type filter hook input priority 0; policy accept;',
    '    iifname "lo" return',
    '    meta l4proto != tcp return',
    '    tcp flags & (syn | ack) == syn reject with tcp reset',
    '  }',
    '}',
  ].join('\n') + '\n';
}

const DELETE_TABLE = `table inet ${NFT_TABLE} {}\ndelete table inet ${NFT_TABLE}\n`;

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
    return [...this.#pods].filter(([, p]) => p.state === 'enrolled').map(([uid]) => uid);
  }

  pending(): string[] {
    return [...this.#pods].filter(([, p]) => p.state === 'pending').map(([uid]) => uid);
  }

  async prepare(opts: PrepareOptions): Promise<void> {
    this.#open();
    if (this.#pods.has(opts.uid)) return;
    await this.#run(opts.netnsPath, ['-f', '-'], buildPendingRuleset(opts.uid));
    this.#pods.set(opts.uid, { netnsPath: opts.netnsPath, state: 'pending', replyRouting: false });
    this.#log.info({ uid: opts.uid, table: NFT_TABLE }, 'pod pending: its tcp is refused until it is enrolled');
  }

  async enroll(opts: EnrollOptions): Promise<void> {
    this.#open();
    const ruleset = buildNftRuleset(opts);
    const prev = this.#pods.get(opts.uid);
    // The same table name: nft replaces the pending (or older) table in one transaction.
    await this.#run(opts.netnsPath, ['-f', '-'], ruleset);
    const replyRouting =
      prev?.state === 'enrolled' && prev.replyRouting && prev.netnsPath === opts.netnsPath
        ? true
        : await installReplyRouting(opts.netnsPath, this.#routeOpts()).then(
            () => true,
            (e: unknown) => {
              this.#log.warn({ uid: opts.uid, err: e }, 'reply routing failed; inbound dials will use the pod address as source');
              return false;
            },
          );
    // The netns may have been prepared under another uid (the CNI's): one entry per netns.
    for (const [uid, pod] of [...this.#pods]) if (uid !== opts.uid && sameNetns(pod.netnsPath, opts.netnsPath)) this.#pods.delete(uid);
    this.#pods.set(opts.uid, { netnsPath: opts.netnsPath, state: 'enrolled', replyRouting });
    this.#log.info({ uid: opts.uid, table: NFT_TABLE, replyRouting }, 'pod enrolled');
  }

  /** Deletes the tables a previous run left in netns of this node's pods that are not to be captured. */
  async prune(opts: PruneOptions): Promise<number> {
    this.#open();
    let released = 0;
    for (const netnsPath of opts.otherNetns ?? []) {
      if ([...this.#pods.values()].some((p) => p.netnsPath === netnsPath)) continue;
      const had = await this.#hasTable(netnsPath);
      if (!had) continue;
      await this.#run(netnsPath, ['-f', '-'], DELETE_TABLE).catch((e: unknown) => this.#log.warn({ netnsPath, err: e }, 'removing a stale nft table failed'));
      await removeReplyRouting(netnsPath, this.#routeOpts()).catch(() => undefined);
      released++;
    }
    if (released > 0) this.#log.info({ released }, 'released capture of pods a previous run left');
    return released;
  }

  preservesSource(uid: string): boolean {
    return this.#pods.get(uid)?.replyRouting === true;
  }

  async unenroll(uid: string): Promise<void> {
    const pod = this.#pods.get(uid);
    if (pod === undefined) return;
    this.#pods.delete(uid);
    // Idempotent delete: the netns may already be gone with its table.
    await this.#run(pod.netnsPath, ['-f', '-'], DELETE_TABLE).catch(
      (e: unknown) => {
        this.#log.warn({ uid, err: e }, 'removing the nft table failed');
      },
    );
    await removeReplyRouting(pod.netnsPath, this.#routeOpts()).catch((e: unknown) => {
      this.#log.warn({ uid, err: e }, 'removing reply routing failed');
    });
    this.#log.info({ uid }, 'pod unenrolled');
  }

  /** Leaves every table in place: while no agent runs, the pods' connections are refused (no listener). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pods.size > 0) this.#log.info({ pods: this.#pods.size }, 'nft capture released; its pods stay captured until the next agent takes over');
    this.#pods.clear();
  }

  async uninstall(): Promise<void> {
    if (this.#closed) return;
    for (const uid of [...this.#pods.keys()]) await this.unenroll(uid);
    this.#closed = true;
  }

  #open(): void {
    if (this.#closed) throw new AmbitError('AMBIT_ERR_CAPTURE_FAILED', 'nft capture is closed');
  }

  async #hasTable(netnsPath: string): Promise<boolean> {
    return this.#run(netnsPath, ['list', 'table', 'inet', NFT_TABLE], '').then(
      () => true,
      () => false,
    );
  }

  #routeOpts(): { nftPath: string; ipPath: string; nsenterPath: string; timeoutMs: number } {
    return { nftPath: this.#nft, ipPath: this.#ip, nsenterPath: this.#nsenter, timeoutMs: this.#timeoutMs };
  }

  /** Runs nft inside the netns file (nsenter --net=<path>, no need for an `ip netns` name). */
  #run(netnsPath: string, args: string[], stdin: string): Promise<void> {
    return execInNetns(netnsPath, [this.#nft, ...args], stdin, { nsenterPath: this.#nsenter, timeoutMs: this.#timeoutMs });
  }
}
