/**
 * The installer's decisions, as pure functions over text: which conflist the runtime uses, how
 * the plugin is chained into it (and out again), the launcher that runs the plugin on a host
 * without Node, the plugin's kubeconfig, and which files the plugin needs on the host.
 *
 * How the plugin runs on a node: the installer copies the pinned Node binary and the plugin's own
 * compiled modules (the import closure of dist/src/cni/main.js: no npm packages) into a
 * content-addressed folder on the host, and writes `<cni bin dir>/ambit-cni`, a script whose
 * `#!` line names that Node binary, so the kernel starts Node without a shell. A new version
 * lands in a new folder before the launcher switches to it, so a plugin run in progress keeps
 * its files.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AmbitError } from '../shared/errors.js';

/** The `type` of the plugin in conflists, and the launcher's file name in the CNI bin folder. */
export const PLUGIN_TYPE = 'ambit-cni';

/** The plugin's conflist entry (snake_case keys, read by decide.ts parsePluginSettings). */
export interface PluginEntry {
  type: typeof PLUGIN_TYPE;
  agent_socket: string;
  agent_timeout: string;
  kubeconfig: string;
  kube_timeout: string;
  exclude_namespaces: string[];
  agent_pod_namespace: string;
  agent_pod_prefix: string;
  log_level: string;
  log_file?: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const CONF_EXTENSIONS = ['.conflist', '.conf', '.json'];

/** The file the runtime loads: the first by name among .conflist/.conf/.json (libcni sorts them). */
export function choosePrimaryConf(fileNames: readonly string[]): string | undefined {
  return [...fileNames].filter((f) => !f.startsWith('.') && CONF_EXTENSIONS.some((e) => f.endsWith(e))).sort()[0];
}

export interface ChainResult {
  /** The file to write (a `.conf` becomes a `.conflist` of the same base name). */
  file: string;
  text: string;
  changed: boolean;
  /** The old single-plugin `.conf` to remove once `file` is written. */
  replaces?: string;
}

function parseConf(text: string, file: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_CNI_INSTALL', `CNI config ${file} is not JSON: ${(e as Error).message}`, { cause: e });
  }
  if (!isRecord(doc)) throw new AmbitError('AMBIT_ERR_CNI_INSTALL', `CNI config ${file} is not a JSON object`);
  return doc;
}

const render = (doc: unknown): string => JSON.stringify(doc, null, 2) + '\n';

/**
 * Appends (or updates) the plugin's entry at the end of the primary config's plugin chain. A
 * single-plugin `.conf` is turned into a conflist holding that plugin first.
 */
export function chainPlugin(text: string, file: string, entry: PluginEntry): ChainResult {
  const doc = parseConf(text, file);
  if (Array.isArray(doc['plugins'])) {
    const plugins = doc['plugins'] as unknown[];
    const at = plugins.findIndex((p) => isRecord(p) && p['type'] === PLUGIN_TYPE);
    if (at >= 0) {
      if (JSON.stringify(plugins[at]) === JSON.stringify(entry) && at === plugins.length - 1) return { file, text, changed: false };
      plugins.splice(at, 1);
    }
    plugins.push(entry);
    return { file, text: render(doc), changed: true };
  }
  if (typeof doc['type'] !== 'string') throw new AmbitError('AMBIT_ERR_CNI_INSTALL', `CNI config ${file} has neither "plugins" nor a plugin "type"`);
  const { cniVersion, name, ...plugin } = doc;
  const list = { cniVersion, name, plugins: [plugin, entry] };
  const base = file.replace(/\.(conf|json)$/, '');
  return { file: `${base}.conflist`, text: render(list), changed: true, replaces: file };
}

/** Removes the plugin's entries from a conflist (uninstall). */
export function unchainPlugin(text: string, file: string): { text: string; changed: boolean } {
  const doc = parseConf(text, file);
  if (!Array.isArray(doc['plugins'])) return { text, changed: false };
  const plugins = (doc['plugins'] as unknown[]).filter((p) => !(isRecord(p) && p['type'] === PLUGIN_TYPE));
  if (plugins.length === (doc['plugins'] as unknown[]).length) return { text, changed: false };
  doc['plugins'] = plugins;
  return { text: render(doc), changed: true };
}

/** Whether a config text chains the plugin. */
export function isChained(text: string, file: string): boolean {
  const doc = parseConf(text, file);
  return Array.isArray(doc['plugins']) && (doc['plugins'] as unknown[]).some((p) => isRecord(p) && p['type'] === PLUGIN_TYPE);
}

/**
 * The launcher written as `<bin dir>/ambit-cni`. The kernel runs `nodeBinary` with this file as
 * its script (CommonJS: no package.json above the bin folder says otherwise), which imports the
 * plugin. If the plugin's files are gone (an uninstall racing a runtime call), DEL still
 * succeeds and other commands fail with a CNI error on stdout.
 */
export function launcherText(nodeBinary: string, pluginMain: string): string {
  const url = pathToFileURL(pluginMain).href;
  return [
    `#!${nodeBinary}`,
    '// ambit-cni launcher, written by the Ambit CNI installer (src/cni/install.ts); do not edit.',
    `import(${JSON.stringify(url)}).catch((e) => {`,
    "  if (process.env.CNI_COMMAND === 'DEL') process.exit(0);",
    "  const msg = 'ambit-cni is not installed completely: ' + (e && e.message ? e.message : String(e));",
    "  process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', code: 5, msg }) + '\\n', () => process.exit(1));",
    '});',
    '',
  ].join('\n');
}

/** The plugin's kubeconfig (JSON, which kubectl reads too): API server, its CA, a token file. */
export function kubeconfigText(server: string, caPem: Buffer | undefined, tokenFile: string): string {
  return render({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'cluster', cluster: { server, ...(caPem ? { 'certificate-authority-data': caPem.toString('base64') } : {}) } }],
    users: [{ name: 'ambit-cni', user: { tokenFile } }],
    contexts: [{ name: 'ambit-cni', context: { cluster: 'cluster', user: 'ambit-cni' } }],
    'current-context': 'ambit-cni',
  });
}

const IMPORT_SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])([^'"]+)\1/g;

/** Module specifiers a compiled ES module imports (static and literal dynamic imports). */
export function importSpecifiers(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(IMPORT_SPECIFIER)) out.push(m[2]!);
  return out;
}

/** Packages the plugin may import besides node: builtins; each optional (caught when absent). */
export const OPTIONAL_PACKAGES: readonly string[] = ['yaml'];

/**
 * The files the plugin needs, relative to `appRoot`: the import closure of `entry` over relative
 * specifiers. Throws AMBIT_ERR_CNI_INSTALL if a module imports a package that would not be
 * copied (only node: builtins and OPTIONAL_PACKAGES are allowed).
 */
export function importClosure(appRoot: string, entry: string, read: (file: string) => string = (f) => readFileSync(f, 'utf8')): string[] {
  const seen = new Set<string>();
  const queue = [resolve(appRoot, entry)];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of importSpecifiers(read(file))) {
      if (spec.startsWith('./') || spec.startsWith('../')) queue.push(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:') && !OPTIONAL_PACKAGES.includes(spec)) {
        throw new AmbitError('AMBIT_ERR_CNI_INSTALL', `${relative(appRoot, file)} imports ${JSON.stringify(spec)}, which the plugin's host payload does not carry; import only node: builtins and sibling modules from src/cni/`);
      }
    }
  }
  return [...seen].map((f) => relative(appRoot, f)).sort();
}

/** Where the plugin's entry module is, relative to the application root. */
export const PLUGIN_MAIN = join('dist', 'src', 'cni', 'main.js');
