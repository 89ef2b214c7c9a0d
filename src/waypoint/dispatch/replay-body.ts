/**
 * A request body that can be sent more than once (for retries and mirroring): chunks are kept as
 * they stream through to the first try, up to a byte limit. Past the limit the body still streams
 * but can no longer be replayed, so the request is not retried.
 */
import { PassThrough, type Readable } from 'node:stream';

export class ReplayableBody {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private overflowed = false;
  private ended = false;
  private failed: Error | undefined;
  private sinks = new Set<PassThrough>();
  private opened = 0;
  /** Bytes read from the source so far. */
  bytes = 0;

  constructor(
    private readonly source: Readable,
    private readonly maxBytes: number,
  ) {
    // Paused until the first open(): nothing is read (or dropped) before a try wants it.
    source.pause();
    source.on('data', (c: Buffer | string) => {
      const chunk = typeof c === 'string' ? Buffer.from(c) : c;
      this.bytes += chunk.length;
      if (!this.overflowed) {
        if (this.kept + chunk.length > this.maxBytes) {
          this.overflowed = true;
          this.chunks.length = 0;
        } else {
          this.chunks.push(chunk);
          this.kept += chunk.length;
        }
      }
      let blocked = false;
      for (const s of this.sinks) if (!s.write(chunk)) blocked = true;
      if (blocked) {
        source.pause();
        const resume = (): void => {
          if ([...this.sinks].every((s) => !s.writableNeedDrain)) source.resume();
        };
        for (const s of this.sinks) s.once('drain', resume);
      }
    });
    source.once('end', () => {
      this.ended = true;
      for (const s of this.sinks) s.end();
      this.sinks.clear();
    });
    source.once('error', (e) => this.fail(e));
    source.once('close', () => {
      if (!this.ended) this.fail(new Error('request body aborted by the client'));
    });
  }

  private fail(e: Error): void {
    if (this.failed || this.ended) return;
    this.failed = e;
    for (const s of this.sinks) s.destroy(e);
    this.sinks.clear();
  }

  /** True while a new stream would carry the whole body. */
  get replayable(): boolean {
    return this.opened === 0 || (!this.overflowed && this.failed === undefined);
  }

  /** A fresh stream of the whole body (what was kept, then the rest as it arrives). */
  open(): Readable {
    const out = new PassThrough();
    if (this.opened > 0 && !this.replayable) {
      out.destroy(new Error('request body is too large to replay'));
      return out;
    }
    this.opened++;
    for (const c of this.chunks) out.write(c);
    if (this.failed) out.destroy(this.failed);
    else if (this.ended) out.end();
    else {
      this.sinks.add(out);
      out.once('close', () => this.sinks.delete(out));
      this.source.resume();
    }
    return out;
  }

  /** Stop forwarding to streams opened so far (a try was abandoned). */
  detachAll(): void {
    for (const s of this.sinks) s.destroy();
    this.sinks.clear();
  }
}
