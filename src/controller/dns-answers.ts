/**
 * The controller's resolver for DNS ServiceEntries: keeps the addresses of the host names they
 * need (serviceEntryDnsNames), resolving each when first wanted and again every refresh period,
 * and calls onChange when an answer changed so the mesh is translated again. A failed lookup
 * keeps the last answer (none at first); names no longer wanted are dropped.
 */
import { lookup } from 'node:dns/promises';
import type { Logger } from '../shared/log.js';

export interface DnsAnswersOptions {
  log: Logger;
  onChange: () => void;
  /** Resolves a name to its addresses (default: the system resolver, every family). */
  resolve?: (name: string) => Promise<string[]>;
  /** Default 30 s. */
  refreshMs?: number;
}

const systemResolve = async (name: string): Promise<string[]> => (await lookup(name, { all: true })).map((a) => a.address);

export class DnsAnswers {
  private readonly answers = new Map<string, readonly string[]>();
  private wanted = new Set<string>();
  private readonly inFlight = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: DnsAnswersOptions) {}

  /** The current answers (sorted addresses per name). */
  current(): ReadonlyMap<string, readonly string[]> {
    return this.answers;
  }

  /** Sets the names to keep resolved; new ones are looked up now. */
  want(names: readonly string[]): void {
    if (this.closed) return;
    const next = new Set(names);
    for (const n of [...this.answers.keys()]) if (!next.has(n)) this.answers.delete(n);
    const added = names.filter((n) => !this.wanted.has(n));
    this.wanted = next;
    for (const n of added) void this.refresh(n);
    if (this.wanted.size > 0 && !this.timer) {
      this.timer = setInterval(() => {
        for (const n of this.wanted) void this.refresh(n);
      }, this.opts.refreshMs ?? 30_000);
      this.timer.unref();
    } else if (this.wanted.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Resolves `name` once; resolves when done (never rejects). */
  async refresh(name: string): Promise<void> {
    if (this.inFlight.has(name)) return;
    this.inFlight.add(name);
    try {
      const addrs = [...new Set(await (this.opts.resolve ?? systemResolve)(name))].sort();
      if (this.closed || !this.wanted.has(name)) return;
      const prev = this.answers.get(name);
      if (prev && prev.length === addrs.length && prev.every((a, i) => a === addrs[i])) return;
      this.answers.set(name, addrs);
      this.opts.onChange();
    } catch (err) {
      this.opts.log.warn({ host: name, err }, 'service entry host did not resolve; keeping the last answer');
    } finally {
      this.inFlight.delete(name);
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
