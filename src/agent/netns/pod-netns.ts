/**
 * The agent's own record of where each pod's network namespace is on this node, so it never needs
 * the controller to say: what the CNI handed over at ADD (persisted in a node-local state file, so
 * a restarted agent keeps it), else what a host scan found by the pod's IPs (host-scan.ts).
 *
 * Invariants:
 * - a record names the namespace by path and by key (`<dev>:<inode>`); a path that no longer
 *   names the same namespace (the sandbox is gone, its bind mount reused) is a vanished record;
 * - only CNI records are written to the state file; the file is replaced whole (write + rename),
 *   mode 0600, after every CNI change; an unreadable or invalid file is logged and ignored;
 * - a scanned namespace with no bind mount is held open by a file descriptor of this process
 *   (its path is `/proc/<pid>/fd/<fd>`), so it stays the pod's namespace while the record lives;
 *   forgetting the record closes it.
 */
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../shared/log.js';
import type { Workload } from '../../shared/model.js';
import { boundNetnsPaths, matchNetns, netnsKey, type HostNetns } from './host-scan.js';

export type NetnsSource = 'cni' | 'scan';

export interface NetnsRecord {
  /** Workload uid (`<cluster>//v1/Pod/<ns>/<name>`). */
  uid: string;
  netnsPath: string;
  /** `<dev>:<inode>` of the namespace when recorded. */
  key: string;
  source: NetnsSource;
  /** The CNI's sandbox id (CNI records): a DEL for another sandbox of the pod leaves it. */
  containerId?: string;
  /** The pod's metadata.uid (CNI records). */
  podUid?: string;
  /** Held descriptor of a scanned namespace without a bind mount. */
  fd?: number;
}

/** What the CNI hands over at ADD. */
export interface HandOver {
  uid: string;
  netnsPath: string;
  containerId?: string;
  podUid?: string;
}

export interface PodNetnsOptions {
  log: Logger;
  /** Node-local state file of CNI records; absent: kept in memory only. */
  stateFile?: string;
  /**
   * Lists the host's namespaces (scanHostNetns in production); absent: no scanning, a pod's
   * namespace is only known from the CNI or the controller.
   */
  scan?: () => Promise<HostNetns[]>;
  /** Folders where runtimes bind-mount sandbox namespaces; a scanned namespace found there is named by that path. */
  netnsDirs?: readonly string[];
  /** This process's id, for `/proc/<pid>/fd/<fd>` paths (default process.pid). */
  pid?: number;
}

interface StateFile {
  version: 1;
  pods: Array<{ uid: string; netnsPath: string; key: string; containerId?: string; podUid?: string }>;
}

const STATE_VERSION = 1;

/** uid → where the pod's network namespace is. */
export class PodNetnsTable {
  private readonly records = new Map<string, NetnsRecord>();
  private readonly log: Logger;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly opts: PodNetnsOptions) {
    this.log = opts.log.child({ component: 'pod-netns' });
  }

  /**
   * Loads the state file: records whose path still names the namespace they named are kept, the
   * others dropped (their sandbox is gone). Never throws.
   */
  async load(): Promise<void> {
    const file = this.opts.stateFile;
    if (!file) return;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file, err: e }, 'pod netns state file unreadable; starting without it');
      return;
    }
    const pods = parseState(text);
    if (!pods) {
      this.log.warn({ file }, 'pod netns state file is not valid; starting without it');
      return;
    }
    let dropped = 0;
    for (const p of pods) {
      if ((await netnsKey(p.netnsPath)) !== p.key) {
        dropped++;
        continue;
      }
      this.records.set(p.uid, { ...p, source: 'cni' });
    }
    this.log.info({ file, pods: this.records.size, dropped }, 'pod netns records loaded');
    if (dropped > 0) await this.persist();
  }

  get(uid: string): NetnsRecord | undefined {
    return this.records.get(uid);
  }

  /** The namespace path recorded for `uid`. */
  pathOf(uid: string): string | undefined {
    return this.records.get(uid)?.netnsPath;
  }

  list(): NetnsRecord[] {
    return [...this.records.values()];
  }

  /** Records the CNI's hand-over (replacing what was known of the pod) and persists it. */
  async handOver(h: HandOver): Promise<void> {
    const key = await netnsKey(h.netnsPath);
    if (key === undefined) throw new Error(`${h.netnsPath} does not exist`);
    this.drop(h.uid);
    this.records.set(h.uid, {
      uid: h.uid,
      netnsPath: h.netnsPath,
      key,
      source: 'cni',
      ...(h.containerId ? { containerId: h.containerId } : {}),
      ...(h.podUid ? { podUid: h.podUid } : {}),
    });
    await this.persist();
  }

  /** Whether `uid` was handed over in a sandbox other than `containerId` (a late DEL of its previous one). */
  isOtherSandbox(uid: string, containerId: string): boolean {
    const r = this.records.get(uid);
    return r?.source === 'cni' && r.containerId !== undefined && r.containerId !== containerId;
  }

  /** Forgets `uid` (DEL, or the pod is gone), closing a held descriptor. */
  async forget(uid: string): Promise<void> {
    const r = this.records.get(uid);
    if (!r) return;
    this.drop(uid);
    if (r.source === 'cni') await this.persist();
  }

  /** Records whose path no longer names the namespace recorded (the sandbox is gone). */
  async vanished(): Promise<NetnsRecord[]> {
    const out: NetnsRecord[] = [];
    for (const r of this.records.values()) if ((await netnsKey(r.netnsPath)) !== r.key) out.push(r);
    return out;
  }

  /**
   * Finds by host scan the namespaces of `workloads` that have no record, matching each by its
   * addresses. Returns the uids found; a pod not found (no address yet, no process in it, or its
   * address in two namespaces) stays unknown and is retried by the caller.
   */
  async locate(workloads: readonly Workload[]): Promise<string[]> {
    const scan = this.opts.scan;
    const missing = workloads.filter((w) => !this.records.has(w.uid) && w.addresses.length > 0);
    if (!scan || missing.length === 0) return [];
    let host: HostNetns[];
    try {
      host = await scan();
    } catch (e) {
      this.log.warn({ err: e }, 'scanning the host for pod network namespaces failed');
      return [];
    }
    const claimed = new Set([...this.records.values()].map((r) => r.key));
    const bound = await boundNetnsPaths(this.opts.netnsDirs ?? []);
    const found: string[] = [];
    for (const w of missing) {
      const m = matchNetns(host, w.addresses);
      if (m.kind === 'ambiguous') {
        this.log.warn({ uid: w.uid, addresses: w.addresses, netns: m.keys }, 'pod address found in several network namespaces; not capturing until one is left');
        continue;
      }
      if (m.kind === 'none') continue;
      if (claimed.has(m.netns.key)) {
        this.log.warn({ uid: w.uid, addresses: w.addresses }, 'pod address found in a network namespace another pod holds; not capturing it');
        continue;
      }
      const record = this.holdScanned(w.uid, m.netns, bound.get(m.netns.key));
      if (!record) continue;
      claimed.add(record.key);
      this.records.set(w.uid, record);
      found.push(w.uid);
      this.log.info({ uid: w.uid, netns: record.netnsPath, pid: m.netns.pids[0] }, 'pod network namespace found by host scan');
    }
    return found;
  }

  /** Closes held descriptors (records stay in the state file). */
  close(): void {
    for (const r of this.records.values()) if (r.fd !== undefined) closeFd(r.fd);
    this.records.clear();
  }

  /** A record for a scanned namespace: its bind mount when there is one, else a held descriptor. */
  private holdScanned(uid: string, netns: HostNetns, boundPath: string | undefined): NetnsRecord | undefined {
    if (boundPath) return { uid, netnsPath: boundPath, key: netns.key, source: 'scan' };
    for (const pid of netns.pids) {
      let fd: number;
      try {
        fd = openSync(`/proc/${pid}/ns/net`, 'r');
      } catch {
        continue;
      }
      return { uid, netnsPath: `/proc/${this.opts.pid ?? process.pid}/fd/${fd}`, key: netns.key, source: 'scan', fd };
    }
    return undefined;
  }

  private drop(uid: string): void {
    const r = this.records.get(uid);
    if (!r) return;
    if (r.fd !== undefined) closeFd(r.fd);
    this.records.delete(uid);
  }

  /** Writes the CNI records (serialized: the last write wins, in order). */
  private persist(): Promise<void> {
    const file = this.opts.stateFile;
    if (!file) return Promise.resolve();
    const state: StateFile = {
      version: STATE_VERSION,
      pods: [...this.records.values()]
        .filter((r) => r.source === 'cni')
        .map((r) => ({ uid: r.uid, netnsPath: r.netnsPath, key: r.key, ...(r.containerId ? { containerId: r.containerId } : {}), ...(r.podUid ? { podUid: r.podUid } : {}) })),
    };
    const text = JSON.stringify(state, null, 1) + '\n';
    const run = this.writing.then(async () => {
      await mkdir(dirname(file), { recursive: true, mode: 0o700 });
      const tmp = `${file}.tmp`;
      await writeFile(tmp, text, { mode: 0o600 });
      await rename(tmp, file);
    });
    this.writing = run.catch((e: unknown) => this.log.error({ file, err: e }, 'writing the pod netns state file failed'));
    return this.writing;
  }
}

function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed.
  }
}

/** The pods of a state file, or undefined when it is not one. */
export function parseState(text: string): StateFile['pods'] | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || (doc as { version?: unknown }).version !== STATE_VERSION) return undefined;
  const pods = (doc as { pods?: unknown }).pods;
  if (!Array.isArray(pods)) return undefined;
  const out: StateFile['pods'] = [];
  for (const p of pods as unknown[]) {
    if (typeof p !== 'object' || p === null) return undefined;
    const r = p as Record<string, unknown>;
    const str = (k: string): boolean => typeof r[k] === 'string' && r[k] !== '';
    const opt = (k: string): boolean => r[k] === undefined || str(k);
    if (!str('uid') || !str('netnsPath') || !(r['netnsPath'] as string).startsWith('/') || !str('key') || !opt('containerId') || !opt('podUid')) return undefined;
    out.push({
      uid: r['uid'] as string,
      netnsPath: r['netnsPath'] as string,
      key: r['key'] as string,
      ...(r['containerId'] !== undefined ? { containerId: r['containerId'] as string } : {}),
      ...(r['podUid'] !== undefined ? { podUid: r['podUid'] as string } : {}),
    });
  }
  return out;
}
