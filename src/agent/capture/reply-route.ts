/**
 * Reply routing inside an enrolled pod's netns, for the agent's transparent dials to the app
 * (NetnsPodSockets.connect): the agent's socket is bound to the original client's address, so the
 * app's replies are addressed to a foreign IP and would leave through eth0. As ztunnel does in-pod:
 *
 *   nft table inet ambit_reply, chain output (type route, priority mangle):
 *     a new connection the agent opened (meta mark 0x539) to a local address gets ct mark 0x111;
 *     every later packet of it NOT sent by the agent (the app's replies) gets meta mark 0x111,
 *     and the route chain re-routes it;
 *   ip rule fwmark 0x111/0xfff lookup 133 (pref 32764), table 133: local 0.0.0.0/0 dev lo
 *     (and the same for IPv6), so marked replies are delivered locally to the transparent socket.
 *
 * The agent's own packets keep mark 0x539, so capture's bypass (nft output `meta mark 0x539
 * return`, BPF connect4) is untouched; the nat chains (priority -100) run after this one (-150)
 * and only see new connections, never replies.
 *
 * Both tables also drop TCP packets conntrack finds INVALID (capture.ts dropInvalidChains), since
 * an INVALID reply carries no ct mark and would leave through eth0.
 *
 * Invariant: installed while the pod is enrolled; everything lives in the pod's netns, so it also
 * disappears with the netns.
 */
import { BYPASS_MARK } from '../../../native/netns.js';
import { dropInvalidChains } from './capture.js';
import { execInNetns, type NetnsExecOptions } from './netns-exec.js';

export const REPLY_NFT_TABLE = 'ambit_reply';
/** ct mark / packet mark of the app's replies to the agent's transparent dials (ztunnel's value). */
export const REPLY_MARK = 0x111;
export const REPLY_MARK_MASK = 0xfff;
/** Policy routing table (in the pod's netns) with the `local default dev lo` routes. */
export const REPLY_ROUTE_TABLE = 133;
/** Priority of the fwmark ip rule (before main at 32766; ztunnel uses the same). */
export const REPLY_RULE_PRIORITY = 32764;

export interface ReplyRouteOptions extends NetnsExecOptions {
  nftPath?: string;
  ipPath?: string;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** The nft file for the pod (idempotent: declares, deletes and re-creates the table). */
export function buildReplyRuleset(): string {
  const keep = hex(~REPLY_MARK_MASK >>> 0);
  return [
    `table inet ${REPLY_NFT_TABLE} {}`,
    `delete table inet ${REPLY_NFT_TABLE}`,
    `table inet ${REPLY_NFT_TABLE} {`,
    '  comment "ambit: route app replies to the agent\'s transparent dials back to the agent"',
    '  chain output {',
    '    type route hook output priority mangle; policy accept;',
    `    meta mark ${hex(BYPASS_MARK)} ct state new fib daddr type local ct mark set ct mark and ${keep} or ${hex(REPLY_MARK)}`,
    `    meta mark ${hex(BYPASS_MARK)} return`,
    `    ct mark and ${hex(REPLY_MARK_MASK)} == ${hex(REPLY_MARK)} meta mark set meta mark and ${keep} or ${hex(REPLY_MARK)}`,
    '  }',
    ...dropInvalidChains(),
    '}',
  ].join('\n') + '\n';
}

function ipBatch(family: '-4' | '-6'): string {
  const all = family === '-4' ? '0.0.0.0/0' : '::/0';
  return [
    `rule add fwmark ${hex(REPLY_MARK)}/${hex(REPLY_MARK_MASK)} pref ${REPLY_RULE_PRIORITY} lookup ${REPLY_ROUTE_TABLE}`,
    `route replace local ${all} dev lo table ${REPLY_ROUTE_TABLE}`,
  ].join('\n') + '\n';
}

/** `rule del pref` lines: removes up to `n` rules a crashed run may have left. */
function ipCleanupBatch(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(`rule del pref ${REPLY_RULE_PRIORITY}`);
  lines.push(`route flush table ${REPLY_ROUTE_TABLE}`);
  return lines.join('\n') + '\n';
}

async function cleanupRoutes(netnsPath: string, opts: ReplyRouteOptions): Promise<void> {
  const ip = opts.ipPath ?? 'ip';
  // -force keeps going past "no such rule"; the exit code then says nothing useful.
  for (const family of ['-4', '-6'] as const) {
    await execInNetns(netnsPath, [ip, family, '-force', '-batch', '-'], ipCleanupBatch(4), { ...opts, code: 'AMBIT_ERR_CAPTURE_FAILED' }).catch(
      () => undefined,
    );
  }
}

/**
 * Installs the nft table, ip rules and routes in the pod's netns (replacing any left over).
 * IPv6 failing (kernel or netns without IPv6) is reported in the result, not thrown.
 */
export async function installReplyRouting(netnsPath: string, opts: ReplyRouteOptions = {}): Promise<{ ipv6: boolean }> {
  await execInNetns(netnsPath, [opts.nftPath ?? 'nft', '-f', '-'], buildReplyRuleset(), opts);
  await cleanupRoutes(netnsPath, opts);
  const ip = opts.ipPath ?? 'ip';
  await execInNetns(netnsPath, [ip, '-4', '-batch', '-'], ipBatch('-4'), { ...opts, code: 'AMBIT_ERR_CAPTURE_FAILED' });
  const ipv6 = await execInNetns(netnsPath, [ip, '-6', '-batch', '-'], ipBatch('-6'), { ...opts, code: 'AMBIT_ERR_CAPTURE_FAILED' }).then(
    () => true,
    () => false,
  );
  return { ipv6 };
}

/** Removes the table, rules and routes; succeeds when they are already gone. */
export async function removeReplyRouting(netnsPath: string, opts: ReplyRouteOptions = {}): Promise<void> {
  await execInNetns(netnsPath, [opts.nftPath ?? 'nft', '-f', '-'], `table inet ${REPLY_NFT_TABLE} {}\ndelete table inet ${REPLY_NFT_TABLE}\n`, opts);
  await cleanupRoutes(netnsPath, opts);
}
