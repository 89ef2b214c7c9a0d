/**
 * The API server's state folder: a snapshot (`objects.json`, replaced atomically by rename) and an
 * append-only log of every write since (`objects.log`, one JSON line per put/delete). A write is
 * on disk (in the page cache, so it survives a crash of the process) before the API answers.
 * Compaction folds the log into a new snapshot. A torn last log line (a crash mid-append) is
 * ignored; nothing else that fails to parse is: a corrupt state stops the server with a message.
 *
 * Invariants: every log record has an rv above the snapshot's rv, or is skipped on load; the
 * snapshot is written and fsynced before the log is truncated.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, ftruncateSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import type { KubeObject } from './types.js';

export interface LogRecord {
  rv: number;
  op: 'put' | 'del';
  /** Resource id (`<group>/<plural>`). */
  r: string;
  o: KubeObject;
}

export interface HistoryEntry {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  rv: number;
  object: KubeObject;
}

export interface Snapshot {
  version: 1;
  rv: number;
  objects: Record<string, KubeObject[]>;
  /** Per resource: the watch history kept across restarts, and the rv below which it is incomplete. */
  history: Record<string, { floor: number; events: HistoryEntry[] }>;
}

export const SNAPSHOT_FILE = 'objects.json';
export const LOG_FILE = 'objects.log';

/** Log records after which the next write compacts. */
const COMPACT_RECORDS = 4000;

export class StateFile {
  private fd: number;
  private records = 0;

  private constructor(
    private readonly dir: string,
    fd: number,
    records: number,
  ) {
    this.fd = fd;
    this.records = records;
  }

  /** Opens (creating) the folder; returns the snapshot and the log records to replay after it. */
  static open(dir: string): { file: StateFile; snapshot: Snapshot | undefined; records: LogRecord[] } {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new AmbitError('AMBIT_ERR_APISERVER_STATE', `cannot create the API server state folder ${dir}: ${errorMessage(e)}`, { cause: e });
    }
    const snapPath = join(dir, SNAPSHOT_FILE);
    let snapshot: Snapshot | undefined;
    if (existsSync(snapPath)) {
      try {
        snapshot = JSON.parse(readFileSync(snapPath, 'utf8')) as Snapshot;
      } catch (e) {
        throw new AmbitError('AMBIT_ERR_APISERVER_STATE', `API server snapshot ${snapPath} is unreadable (${errorMessage(e)}); move it away to start empty`, { cause: e });
      }
      if (snapshot.version !== 1 || typeof snapshot.rv !== 'number') {
        throw new AmbitError('AMBIT_ERR_APISERVER_STATE', `API server snapshot ${snapPath} has an unknown format (version ${String(snapshot.version)})`);
      }
    }
    const logPath = join(dir, LOG_FILE);
    const records: LogRecord[] = [];
    if (existsSync(logPath)) {
      const lines = readFileSync(logPath, 'utf8').split('\n');
      const floor = snapshot?.rv ?? 0;
      lines.forEach((line, i) => {
        if (line.trim() === '') return;
        let rec: LogRecord;
        try {
          rec = JSON.parse(line) as LogRecord;
        } catch (e) {
          // Only the last line may be torn by a crash mid-append.
          if (lines.slice(i + 1).every((l) => l.trim() === '')) return;
          throw new AmbitError('AMBIT_ERR_APISERVER_STATE', `API server log ${logPath} line ${i + 1} is corrupt (${errorMessage(e)})`, { cause: e });
        }
        if (rec.rv > floor) records.push(rec);
      });
    }
    const fd = openSync(logPath, 'a', 0o600);
    return { file: new StateFile(dir, fd, records.length), snapshot, records };
  }

  append(rec: LogRecord): void {
    writeSync(this.fd, JSON.stringify(rec) + '\n');
    this.records++;
  }

  get needsCompaction(): boolean {
    return this.records >= COMPACT_RECORDS;
  }

  /** Writes `snapshot` atomically, then empties the log. */
  compact(snapshot: Snapshot): void {
    writeAtomic(join(this.dir, SNAPSHOT_FILE), JSON.stringify(snapshot));
    ftruncateSync(this.fd, 0);
    this.records = 0;
  }

  /** Bytes in the log (for tests and status). */
  logBytes(): number {
    return fstatSync(this.fd).size;
  }

  close(): void {
    if (this.fd >= 0) {
      try {
        fsyncSync(this.fd);
      } catch {
        // The log may live on a filesystem without fsync; the data is already written.
      }
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}

/** Writes `text` to `path` through a temp file, fsync and rename, so readers see old or new. */
export function writeAtomic(path: string, text: string, mode = 0o600): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
