/**
 * The local-files source: loads manifest files/directories into the object store at start, then
 * watches them and re-applies every change as a whole.
 *
 * Invariants:
 * - A reload is all-or-nothing: the changed files are read and validated together; any problem
 *   rejects the whole set (logged once with file, object, field and value) and the store keeps
 *   the last good objects.
 * - The source owns exactly the objects it last applied (by objectKey): objects that disappear
 *   from the files are deleted from the store; objects others put in the store are never touched.
 * - At most one reload runs at a time; changes arriving meanwhile cause one more reload after it.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { Counter, type Registry } from 'prom-client';
import { AmbitError, errorCode, errorMessage, isAmbitError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { formatIssue, type Issue } from '../../shared/validate.js';
import { registerOnce } from '../../shared/xds/metric-util.js';
import { objectKey, type KubeObject } from '../objects.js';
import type { ObjectRef, ObjectStore } from '../store.js';
import { loadManifests, type LoadManifestsOptions } from './manifests.js';

export type ReloadResult =
  | { result: 'applied'; applied: number; deleted: number }
  | { result: 'unchanged' }
  | { result: 'rejected'; code: string | undefined; issues: Issue[]; message: string };

export interface FileSourceOptions {
  /** Files or directories (searched recursively for *.yaml, *.yml, *.json). */
  paths: readonly string[];
  store: ObjectStore;
  log: Logger;
  /** Counts reloads by result (`ambit_config_source_reloads_total`). */
  registry?: Registry;
  /** Quiet period after the last file event before reloading. Default 200ms. */
  debounceMs?: number;
  load?: LoadManifestsOptions;
  /** Called after every reload (tests, readiness). */
  onReload?: (r: ReloadResult) => void;
}

const MAX_LOGGED_ISSUES = 20;

/** Keeps the store in step with manifest files on disk. */
export class FileSource {
  private readonly log: Logger;
  private readonly debounceMs: number;
  private readonly reloads: Counter<'result'> | undefined;
  private readonly watchers: FSWatcher[] = [];
  /** objectKey → ref of every object the last good load put in the store. */
  private owned = new Map<string, ObjectRef>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<ReloadResult> | undefined;
  private again = false;
  private closed = false;
  private loadedOnce = false;

  constructor(private readonly opts: FileSourceOptions) {
    this.log = opts.log.child({ component: 'file-source' });
    this.debounceMs = opts.debounceMs ?? 200;
    const registry = opts.registry;
    this.reloads = registry
      ? registerOnce(registry, 'ambit_config_source_reloads_total', () => new Counter({
          name: 'ambit_config_source_reloads_total',
          help: 'Manifest reloads of the local-files source, by result (applied, unchanged, rejected).',
          labelNames: ['result'],
          registers: [registry],
        }))
      : undefined;
  }

  /** True once the initial load succeeded. */
  get ready(): boolean {
    return this.loadedOnce;
  }

  /**
   * Loads every path into the store and starts watching. Throws (AMBIT_ERR_MANIFEST_INVALID or
   * AMBIT_ERR_MANIFEST_READ) when the initial set is invalid: starting on half a config is worse
   * than not starting.
   */
  async start(): Promise<void> {
    // Watch first, so an edit made while the initial load runs is not missed.
    for (const p of this.opts.paths) await this.watchPath(resolve(p));
    const r = await this.reload();
    if (r.result === 'rejected') {
      this.close();
      const code = r.code === 'AMBIT_ERR_MANIFEST_READ' ? 'AMBIT_ERR_MANIFEST_READ' : 'AMBIT_ERR_MANIFEST_INVALID';
      throw new AmbitError(code, r.message, { details: { issues: r.issues } });
    }
  }

  /** Reloads now (also what a file event triggers after the debounce). */
  reload(): Promise<ReloadResult> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.reloadOnce().finally(() => {
      this.running = undefined;
      if (this.again && !this.closed) {
        this.again = false;
        void this.reload();
      }
    });
    return this.running;
  }

  /** Stops watching; stored objects stay. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.watchers.splice(0)) w.close();
  }

  private async reloadOnce(): Promise<ReloadResult> {
    const r = await this.apply();
    this.reloads?.inc({ result: r.result });
    if (r.result === 'rejected') {
      this.log.error(
        { code: r.code, paths: this.opts.paths, problems: r.issues.length, issues: r.issues.slice(0, MAX_LOGGED_ISSUES).map(formatIssue) },
        'manifest change rejected as a whole; the store keeps the last good objects',
      );
    } else if (r.result === 'applied') {
      this.log.info({ applied: r.applied, deleted: r.deleted, objects: this.owned.size }, 'manifests applied');
    }
    try {
      this.opts.onReload?.(r);
    } catch (e) {
      this.log.warn({ err: e }, 'reload listener failed');
    }
    return r;
  }

  private async apply(): Promise<ReloadResult> {
    let objects: KubeObject[];
    try {
      const loaded = await loadManifests([...this.opts.paths], this.opts.load);
      objects = loaded.objects;
      for (const r of loaded.refused) this.log.warn({ where: r.where, object: r.object }, r.reason);
    } catch (e) {
      return rejected(e);
    }
    const next = new Map<string, ObjectRef>();
    for (const o of objects) next.set(objectKey(o), refOf(o));
    const gone = [...this.owned].filter(([k]) => !next.has(k)).map(([, ref]) => ref);
    let applied = 0;
    let deleted = 0;
    try {
      // Apply first so a renamed object's replacement exists before the old one goes; the config
      // server debounces both store events into one push.
      applied = this.opts.store.apply(objects).applied.length;
      deleted = gone.length > 0 ? this.opts.store.delete(gone).deleted.length : 0;
    } catch (e) {
      return rejected(e);
    }
    this.owned = next;
    this.loadedOnce = true;
    return applied + deleted === 0 ? { result: 'unchanged' } : { result: 'applied', applied, deleted };
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.reload();
    }, this.debounceMs);
  }

  /**
   * Directories are watched recursively. A file is watched through its directory, filtered by
   * name, so editors that save by writing a new file and renaming it over the old one are seen.
   */
  private async watchPath(path: string): Promise<void> {
    let isDir = false;
    try {
      isDir = (await stat(path)).isDirectory();
    } catch {
      // the initial load already read it; a vanished path is handled by the next reload
    }
    const target = isDir ? path : dirname(path);
    const name = isDir ? undefined : basename(path);
    let w: FSWatcher;
    try {
      w = watch(target, { recursive: isDir, persistent: false }, (_event, file) => {
        if (name === undefined || file === null || file === name) this.schedule();
      });
    } catch (e) {
      this.log.warn({ path: target, err: e }, 'cannot watch manifest path; changes need a restart');
      return;
    }
    w.on('error', (e) => {
      this.log.warn({ path: target, err: e }, 'manifest watch failed; changes need a restart');
      w.close();
    });
    this.watchers.push(w);
  }
}

function refOf(o: KubeObject): ObjectRef {
  const metadata: ObjectRef['metadata'] = { name: o.metadata.name };
  if (o.metadata.namespace !== undefined) metadata.namespace = o.metadata.namespace;
  return { apiVersion: o.apiVersion, kind: o.kind, metadata };
}

function rejected(e: unknown): ReloadResult {
  const issues: Issue[] = isAmbitError(e) && Array.isArray(e.details?.['issues']) ? (e.details['issues'] as Issue[]) : [];
  return { result: 'rejected', code: errorCode(e), issues: issues.length > 0 ? issues : [{ path: 'manifests', problem: errorMessage(e) }], message: errorMessage(e) };
}
