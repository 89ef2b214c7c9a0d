/**
 * A request body that can be sent more than once (for retries and mirroring): chunks are kept as
 * they stream through to the first try, up to a byte limit. Past the limit the body still streams
 * but can no longer be replayed, so the request is not retried. Before the first try its first
 * bytes can be held for a check (`hold`, ext_authz's includeRequestBodyInCheck): what is held is
 * kept for the first try whatever the limit.
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
  /** The request got a local reply: read and drop the rest. */
  private discarding = false;
  /** A pending hold(): resolves once this many bytes are kept, or the body ended or failed. */
  private holding: { want: number; done: () => void } | undefined;
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
      if (this.discarding) return;
      if (this.opened === 0) {
        // Read before the first try (a hold): that try needs every byte, so the limit only ends replays.
        this.chunks.push(chunk);
        this.kept += chunk.length;
        if (this.kept > this.maxBytes) this.overflowed = true;
        if (this.holding && this.kept > this.holding.want) this.holding.done();
        return;
      }
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
      this.holding?.done();
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
    this.holding?.done();
    for (const s of this.sinks) s.destroy(e);
    this.sinks.clear();
  }

  /** True while a new stream would carry the whole body. */
  get replayable(): boolean {
    return this.opened === 0 || (!this.overflowed && this.failed === undefined);
  }

  /**
   * Reads the body's first `maxBytes` before any try (the source is paused again after): the bytes
   * and whether they are the whole body. A body that failed resolves with what came.
   */
  hold(maxBytes: number): Promise<{ bytes: Buffer; complete: boolean }> {
    if (this.opened > 0) return Promise.reject(new Error('hold() after the body was opened'));
    return new Promise((resolve) => {
      const done = (): void => {
        this.holding = undefined;
        if (this.opened === 0 && !this.ended) this.source.pause();
        const all = Buffer.concat(this.chunks);
        resolve({ bytes: all.length > maxBytes ? all.subarray(0, maxBytes) : all, complete: this.ended && all.length <= maxBytes });
      };
      if (this.ended || this.failed || this.kept > maxBytes) return done();
      this.holding = { want: maxBytes, done };
      this.source.resume();
    });
  }

  /** The request will not go upstream (a local reply): the rest of the body is read and dropped. */
  discard(): void {
    this.discarding = true;
    this.chunks.length = 0;
    this.kept = 0;
    this.holding?.done();
    this.source.resume();
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
    // Held past the replay limit: delivered to this try, never to another.
    if (this.overflowed) {
      this.chunks.length = 0;
      this.kept = 0;
    }
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
