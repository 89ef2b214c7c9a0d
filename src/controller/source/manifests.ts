/**
 * Loads Kubernetes manifests from files and directories (YAML multi-document, JSON, `kind: List`),
 * validates every object and either returns all of them or throws one error listing every problem.
 * Objects of a kind Ambit does not know at all (a Job, a CRD of another project) are not problems:
 * they are refused one by one, with the reason, and the rest is returned.
 */
import { type Issue, Issues, isRecord } from '../../shared/validate.js';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import { describeObject, isNamespaced, KINDS, objectKey, splitApiVersion, type KubeObject } from '../objects.js';
import { validateObject, type ValidateOptions } from './validate-objects.js';

export interface LoadManifestsOptions extends ValidateOptions {
  /** Namespace given to namespaced objects that do not name one. Default "default". */
  defaultNamespace?: string;
}

/** An object left out of a load because Ambit does not serve its kind. */
export interface RefusedObject {
  /** `<file>#<document>` */
  where: string;
  /** `<Kind> <namespace>/<name>` as written. */
  object: string;
  reason: string;
}

export interface LoadedManifests {
  objects: KubeObject[];
  /** Objects of kinds Ambit does not know, in file order; none of them is in `objects`. */
  refused: RefusedObject[];
}

/**
 * Why Ambit refuses an object of a kind it does not know, or undefined for a known kind (also for
 * a known kind at an unsupported version, or no kind at all: those are mistakes, reported by
 * validateObject).
 */
export function unknownKindReason(v: unknown): string | undefined {
  if (!isRecord(v) || typeof v['apiVersion'] !== 'string' || typeof v['kind'] !== 'string') return undefined;
  const { group } = splitApiVersion(v['apiVersion']);
  const kind = v['kind'];
  if (KINDS.some((k) => k.kind === kind && k.group === group)) return undefined;
  return `kind ${kind}${group ? ` of group ${group}` : ''} is not served by Ambit; the object was not applied`;
}

function describeRaw(v: Record<string, unknown>): string {
  const md = isRecord(v['metadata']) ? v['metadata'] : {};
  const name = typeof md['name'] === 'string' ? md['name'] : '<unnamed>';
  const ns = typeof md['namespace'] === 'string' && md['namespace'] ? `${md['namespace']}/` : '';
  return `${String(v['kind'])} ${ns}${name}`;
}

const MANIFEST_EXT = /\.(ya?ml|json)$/i;

/**
 * Reads `paths` (files, or directories searched recursively for *.yaml, *.yml, *.json in sorted
 * order), validates every object, and returns them in file order. Throws AMBIT_ERR_MANIFEST_READ
 * for an unreadable path and AMBIT_ERR_MANIFEST_INVALID listing every problem otherwise.
 */
export async function loadManifests(paths: string[], opts: LoadManifestsOptions = {}): Promise<LoadedManifests> {
  const defaultNamespace = opts.defaultNamespace ?? 'default';
  const files: string[] = [];
  for (const p of paths) files.push(...(await listManifestFiles(p)));
  const issues = new Issues();
  const found: Array<{ obj: KubeObject; where: string }> = [];
  const refused: RefusedObject[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw readError(file, e);
    }
    for (const { value, where } of parseManifestText(text, file, issues)) {
      const reason = unknownKindReason(value);
      if (reason !== undefined) {
        refused.push({ where, object: describeRaw(value as Record<string, unknown>), reason });
        continue;
      }
      const problems = validateObject(value, where, opts);
      issues.merge(problems);
      if (problems.length === 0) found.push({ obj: withNamespace(value as KubeObject, defaultNamespace), where });
    }
  }
  issues.merge(findDuplicates(found));
  // When the set fails as a whole, the objects of unknown kinds are named in the same error, so
  // one run shows everything to fix.
  if (!issues.ok) for (const r of refused) issues.add(`${r.where}: ${r.object}`, r.reason);
  issues.throwIfAny('AMBIT_ERR_MANIFEST_INVALID', `invalid manifests in ${paths.join(', ')}`);
  return { objects: found.map((f) => f.obj), refused };
}

async function listManifestFiles(path: string): Promise<string[]> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw readError(path, e);
  }
  if (!info.isDirectory()) return [path];
  let entries;
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch (e) {
    throw readError(path, e);
  }
  const out: string[] = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (entry.name.startsWith('.')) continue;
    const full = join(path, entry.name);
    if (entry.isDirectory()) out.push(...(await listManifestFiles(full)));
    else if (MANIFEST_EXT.test(entry.name)) out.push(full);
  }
  return out;
}

function readError(path: string, e: unknown): AmbitError {
  return new AmbitError('AMBIT_ERR_MANIFEST_READ', `cannot read manifest path ${JSON.stringify(path)}: ${errorMessage(e)}; does it exist and is it readable?`, {
    cause: e,
    details: { path },
  });
}

/**
 * Splits one file's text into objects: every YAML document (JSON is YAML), `kind: List` expanded
 * into its items. Syntax errors become issues; empty documents are skipped. `where` is
 * `<file>#<document number>` (1-based), plus ` item <n>` inside a List.
 */
export function parseManifestText(text: string, file: string, issues: Issues): Array<{ value: unknown; where: string }> {
  const out: Array<{ value: unknown; where: string }> = [];
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const where = `${file}#${i + 1}`;
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        const line = err.linePos?.[0];
        issues.add(`${where}${line ? ` line ${line.line} column ${line.col}` : ''}`, `YAML syntax error: ${(err.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}`);
      }
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      issues.add(where, `cannot convert YAML document: ${errorMessage(e)}`);
      return;
    }
    if (value === null || value === undefined) return;
    if (isRecord(value) && value['kind'] === 'List' && value['apiVersion'] === 'v1') {
      const items = value['items'];
      if (!Array.isArray(items)) {
        issues.add(`${where}: List: items`, 'must be a list', items);
        return;
      }
      items.forEach((item, j) => out.push({ value: item, where: `${where} item ${j + 1}` }));
      return;
    }
    out.push({ value, where });
  });
  return out;
}

function withNamespace(obj: KubeObject, defaultNamespace: string): KubeObject {
  if (!isNamespaced(obj) || obj.metadata.namespace) return obj;
  return { ...obj, metadata: { ...obj.metadata, namespace: defaultNamespace } };
}

function findDuplicates(found: Array<{ obj: KubeObject; where: string }>): Issue[] {
  const first = new Map<string, string>();
  const out: Issue[] = [];
  for (const { obj, where } of found) {
    const key = objectKey(obj);
    const prev = first.get(key);
    if (prev !== undefined) {
      out.push({ path: `${where}: ${describeObject(obj)}: metadata.name`, problem: `duplicates the object defined at ${prev}`, value: obj.metadata.name });
    } else first.set(key, where);
  }
  return out;
}
