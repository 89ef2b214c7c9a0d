/**
 * The CNI installer (a sidecar of the agent DaemonSet): puts the plugin on its node and keeps it
 * chained into the runtime's primary conflist until the DaemonSet is deleted.
 *
 * start(): copy Node and the plugin's modules into the install folder (content-addressed), write
 * the launcher into the CNI bin folder, request a token for the plugin's service account and
 * write its kubeconfig, chain the plugin into the primary conflist, mark ready. Then it watches
 * the config folder (a primary CNI that rewrites its conflist drops the chain: it is re-added) and
 * renews the token at 80 % of its lifetime.
 *
 * close(): when the DaemonSet is gone or being deleted, this is an uninstall: unchain, remove the
 * launcher, the payload, the token and the kubeconfig. Otherwise (rolling update, node drain,
 * restart, or the API cannot say) everything stays: new pods that must be captured keep failing
 * closed until the next agent answers, rather than starting uncaptured.
 *
 * Every file is written to a temporary name in its folder and renamed into place.
 */
import { createHash, randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../shared/log.js';
import { AmbitError, errorMessage } from '../shared/errors.js';
import { delay } from '../shared/drain.js';
import type { InstallConfig } from './install-config.js';
import { installPaths } from './install-config.js';
import {
  PLUGIN_MAIN,
  PLUGIN_TYPE,
  chainPlugin,
  choosePrimaryConf,
  importClosure,
  isChained,
  kubeconfigText,
  launcherText,
  unchainPlugin,
  type PluginEntry,
} from './install.js';
import { kubeRequest, statusMessage, type KubeTarget } from './kube.js';

/** How often the config folder is re-read even without a change event (events can be missed). */
const RECONCILE_INTERVAL_MS = 30_000;
/** Retry pause while the primary conflist does not exist yet or a token request fails. */
const RETRY_MS = 2_000;

export interface InstallerDeps {
  /** The API server as the installer's own pod reaches it (in-cluster). */
  kube: KubeTarget;
  log: Logger;
  now?: () => number;
}

export class CniInstaller {
  private readonly log: Logger;
  private readonly now: () => number;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private tokenTimer: NodeJS.Timeout | undefined;
  private reconciling: Promise<void> = Promise.resolve();
  private readonly abort = new AbortController();
  private payload: { nodeBinary: string; pluginMain: string; dirs: string[] } | undefined;

  constructor(
    private readonly cfg: Readonly<InstallConfig>,
    private readonly deps: InstallerDeps,
  ) {
    this.log = deps.log.child({ component: 'cni-installer' });
    this.now = deps.now ?? Date.now;
  }

  /** The plugin's conflist entry. */
  entry(): PluginEntry {
    const e: PluginEntry = {
      type: PLUGIN_TYPE,
      agent_socket: this.cfg.agentSocket,
      agent_timeout: this.cfg.agentTimeout,
      kubeconfig: installPaths(this.cfg.installDir).kubeconfig,
      kube_timeout: this.cfg.kubeTimeout,
      exclude_namespaces: [...this.cfg.excludeNamespaces],
      agent_pod_namespace: this.cfg.pod.namespace,
      agent_pod_prefix: `${this.cfg.daemonSet}-`,
      log_level: this.cfg.pluginLogLevel,
    };
    if (this.cfg.pluginLogFile) e.log_file = this.cfg.pluginLogFile;
    return e;
  }

  async start(): Promise<void> {
    await mkdir(this.cfg.installDir, { recursive: true, mode: 0o700 });
    await chmod(this.cfg.installDir, 0o700);
    this.payload = await this.installPayload();
    await this.writeFileAtomic(join(this.cfg.binDir, PLUGIN_TYPE), launcherText(this.payload.nodeBinary, this.payload.pluginMain), 0o755);
    await this.renewToken();
    await this.writeFileAtomic(installPaths(this.cfg.installDir).kubeconfig, kubeconfigText(this.kubeServer(), this.deps.kube.ca, installPaths(this.cfg.installDir).token), 0o600);
    await this.removeOldPayloads(this.payload.dirs);
    while (!(await this.chain())) {
      if (this.abort.signal.aborted) return;
      await delay(RETRY_MS, this.abort.signal);
    }
    this.watcher = watch(this.cfg.confDir, () => this.scheduleReconcile());
    this.watcher.on('error', (e) => this.log.warn({ err: e }, 'watching the CNI config folder failed; polling only'));
    this.timer = setInterval(() => this.scheduleReconcile(), RECONCILE_INTERVAL_MS);
    this.timer.unref();
    await writeFile(this.cfg.readyFile, `${new Date(this.now()).toISOString()}\n`);
    this.log.info({ binDir: this.cfg.binDir, confDir: this.cfg.confDir }, 'cni plugin installed and chained');
  }

  /** Stops watching; uninstalls when the DaemonSet is gone or being deleted. Never throws. */
  async close(): Promise<{ uninstalled: boolean }> {
    this.abort.abort();
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    if (this.tokenTimer) clearTimeout(this.tokenTimer);
    await this.reconciling;
    await unlink(this.cfg.readyFile).catch(() => undefined);
    const verdict = await this.daemonSetState();
    if (verdict !== 'deleted') {
      this.log.info({ daemonSet: this.cfg.daemonSet, state: verdict }, 'leaving the cni plugin in place (not an uninstall): enrolled pods keep failing closed until the next agent answers');
      return { uninstalled: false };
    }
    await this.uninstall();
    return { uninstalled: true };
  }

  /** Removes the plugin from the node: unchain first, so the runtime stops calling it, then files. */
  async uninstall(): Promise<void> {
    const files = await readdir(this.cfg.confDir).catch(() => [] as string[]);
    for (const f of files) {
      if (f.startsWith('.') || !/\.(conflist|conf|json)$/.test(f)) continue;
      const path = join(this.cfg.confDir, f);
      try {
        const out = unchainPlugin(await readFile(path, 'utf8'), path);
        if (out.changed) await this.writeFileAtomic(path, out.text, 0o644);
      } catch (e) {
        this.log.warn({ file: path, err: e }, 'cannot unchain the plugin from a CNI config');
      }
    }
    await rm(join(this.cfg.binDir, PLUGIN_TYPE), { force: true });
    for (const f of await readdir(this.cfg.installDir).catch(() => [] as string[])) {
      await rm(join(this.cfg.installDir, f), { recursive: true, force: true });
    }
    this.log.info({ binDir: this.cfg.binDir, installDir: this.cfg.installDir }, 'cni plugin uninstalled');
  }

  private kubeServer(): string {
    return this.cfg.kubeServer ?? this.deps.kube.server.origin;
  }

  /**
   * Copies Node and the plugin's modules into `node-<hash>` and `app-<hash>` folders under the
   * install folder (skipped when that version is already there).
   */
  private async installPayload(): Promise<{ nodeBinary: string; pluginMain: string; dirs: string[] }> {
    const files = importClosure(this.cfg.appRoot, PLUGIN_MAIN);
    const appHash = createHash('sha256');
    const contents = new Map<string, Buffer>();
    for (const f of files) {
      const data = await readFile(join(this.cfg.appRoot, f));
      contents.set(f, data);
      appHash.update(f).update('\0').update(data).update('\0');
    }
    const appDir = join(this.cfg.installDir, `app-${appHash.digest('hex').slice(0, 16)}`);
    if (!(await exists(appDir))) {
      const tmp = `${appDir}.tmp-${randomBytes(4).toString('hex')}`;
      for (const [f, data] of contents) {
        await mkdir(dirname(join(tmp, f)), { recursive: true });
        await writeFile(join(tmp, f), data, { mode: 0o644 });
      }
      // ES modules: the folder's package.json says so (Node looks for the nearest one).
      await writeFile(join(tmp, 'package.json'), '{ "type": "module" }\n', { mode: 0o644 });
      await rename(tmp, appDir);
    }
    const nodeHash = createHash('sha256').update(await readFile(this.cfg.nodeBinary)).digest('hex').slice(0, 16);
    const nodeDir = join(this.cfg.installDir, `node-${nodeHash}`);
    const nodeBinary = join(nodeDir, 'node');
    if (!(await exists(nodeBinary))) {
      const tmp = `${nodeDir}.tmp-${randomBytes(4).toString('hex')}`;
      await mkdir(tmp, { recursive: true });
      await copyFile(this.cfg.nodeBinary, join(tmp, 'node'));
      await chmod(join(tmp, 'node'), 0o755);
      await rename(tmp, nodeDir);
    }
    this.log.info({ appDir, nodeDir, files: files.length }, 'cni plugin payload in place');
    return { nodeBinary, pluginMain: join(appDir, PLUGIN_MAIN), dirs: [basename(appDir), basename(nodeDir)] };
  }

  /** Removes payload folders of other versions (the launcher no longer names them). */
  private async removeOldPayloads(keep: string[]): Promise<void> {
    for (const f of await readdir(this.cfg.installDir).catch(() => [] as string[])) {
      if (/^(app|node)-[0-9a-f]{16}(\.tmp-[0-9a-f]+)?$/.test(f) && !keep.includes(f)) {
        await rm(join(this.cfg.installDir, f), { recursive: true, force: true });
      }
    }
  }

  /** Requests a token for the plugin's service account, bound to this pod; schedules the next. */
  private async renewToken(): Promise<void> {
    const { namespace, name, uid } = this.cfg.pod;
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts/${encodeURIComponent(this.cfg.serviceAccount)}/token`;
    const body = {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: this.cfg.tokenTtlSec, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid } },
    };
    for (;;) {
      try {
        const res = await kubeRequest(this.deps.kube, 'POST', path, body, 10_000);
        const status = (res.body as { status?: { token?: unknown; expirationTimestamp?: unknown } }).status;
        if ((res.status !== 200 && res.status !== 201) || typeof status?.token !== 'string') {
          throw new AmbitError('AMBIT_ERR_CNI_INSTALL', `token request for service account ${namespace}/${this.cfg.serviceAccount} answered ${res.status}: ${statusMessage(res.body)}; does the agent's Role allow create on serviceaccounts/token?`);
        }
        await this.writeFileAtomic(installPaths(this.cfg.installDir).token, status.token, 0o600);
        const expires = typeof status.expirationTimestamp === 'string' ? Date.parse(status.expirationTimestamp) : NaN;
        const lifetimeMs = Number.isFinite(expires) ? expires - this.now() : this.cfg.tokenTtlSec * 1000;
        const renewInMs = Math.max(60_000, Math.floor(lifetimeMs * 0.8));
        this.tokenTimer = setTimeout(() => void this.renewToken().catch((e: unknown) => this.log.error({ err: e }, 'token renewal failed')), renewInMs);
        this.tokenTimer.unref();
        this.log.info({ serviceAccount: `${namespace}/${this.cfg.serviceAccount}`, renewInSec: Math.round(renewInMs / 1000) }, 'cni plugin token written');
        return;
      } catch (e) {
        if (this.abort.signal.aborted) return;
        this.log.warn({ err: e }, 'cannot obtain the cni plugin token; retrying');
        await delay(RETRY_MS, this.abort.signal);
      }
    }
  }

  /** Chains the plugin into the primary config; false when there is none yet. */
  private async chain(): Promise<boolean> {
    const files = await readdir(this.cfg.confDir).catch(() => [] as string[]);
    const primary = this.cfg.confFile ?? choosePrimaryConf(files);
    if (primary === undefined || !files.includes(primary)) {
      this.log.info({ confDir: this.cfg.confDir, wanted: primary ?? '(first .conflist/.conf by name)' }, 'no primary CNI config yet; waiting for the cluster\'s network plugin');
      return false;
    }
    const path = join(this.cfg.confDir, primary);
    const text = await readFile(path, 'utf8');
    const out = chainPlugin(text, path, this.entry());
    if (!out.changed) return true;
    await this.writeFileAtomic(out.file, out.text, 0o644);
    if (out.replaces && out.replaces !== out.file) await unlink(out.replaces).catch(() => undefined);
    this.log.info({ file: out.file, replaced: out.replaces }, 'chained the cni plugin into the primary config');
    return true;
  }

  private scheduleReconcile(): void {
    if (this.abort.signal.aborted) return;
    this.reconciling = this.reconciling
      .then(() => delay(100, this.abort.signal))
      .then(async () => {
        if (this.abort.signal.aborted) return;
        await this.chain();
      })
      .catch((e: unknown) => this.log.error({ err: e }, 'cannot keep the cni plugin chained'));
  }

  /** Whether this DaemonSet still exists: 'present', 'deleted' (gone or deleting) or 'unknown'. */
  private async daemonSetState(): Promise<'present' | 'deleted' | 'unknown'> {
    const path = `/apis/apps/v1/namespaces/${encodeURIComponent(this.cfg.pod.namespace)}/daemonsets/${encodeURIComponent(this.cfg.daemonSet)}`;
    try {
      const res = await kubeRequest(this.deps.kube, 'GET', path, undefined, 5_000);
      if (res.status === 404) return 'deleted';
      if (res.status !== 200) {
        this.log.warn({ status: res.status, err: statusMessage(res.body) }, 'cannot read the agent DaemonSet');
        return 'unknown';
      }
      const meta = (res.body as { metadata?: { deletionTimestamp?: unknown } }).metadata;
      return meta?.deletionTimestamp ? 'deleted' : 'present';
    } catch (e) {
      this.log.warn({ err: e }, 'cannot read the agent DaemonSet');
      return 'unknown';
    }
  }

  private async writeFileAtomic(path: string, text: string, mode: number): Promise<void> {
    const tmp = join(dirname(path), `.${basename(path)}.ambit-tmp-${randomBytes(4).toString('hex')}`);
    try {
      await writeFile(tmp, text, { mode });
      await chmod(tmp, mode);
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw new AmbitError('AMBIT_ERR_CNI_INSTALL', `cannot write ${path}: ${errorMessage(e)}`, { cause: e });
    }
  }

  /** Whether the plugin is chained into the primary config right now (for tests and status). */
  async chained(): Promise<boolean> {
    const files = await readdir(this.cfg.confDir).catch(() => [] as string[]);
    const primary = this.cfg.confFile ?? choosePrimaryConf(files);
    if (!primary) return false;
    const path = join(this.cfg.confDir, primary);
    return isChained(await readFile(path, 'utf8'), path);
  }
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}
