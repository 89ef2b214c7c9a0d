/** Where the rendered CRDs live in the repository, and how to tell whether they are current. */
import { readFile, readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** daemonset/crds/ of the repository this module was built from (dist/src/crds/ → ../../../). */
export const CRD_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'daemonset', 'crds');

/** Paths (relative to `dir`) whose content differs from `files`, or that exist in only one. */
export async function diffCrdDir(dir: string, files: Map<string, string>): Promise<string[]> {
  const present = new Set<string>();
  for (const sub of await readdir(dir).catch(() => [] as string[])) {
    for (const f of await readdir(join(dir, sub)).catch(() => [] as string[])) present.add(`${sub}/${f}`);
  }
  const differ: string[] = [];
  for (const [path, text] of files) {
    const current = await readFile(join(dir, path), 'utf8').catch(() => undefined);
    if (current !== text) differ.push(path);
    present.delete(path);
  }
  return [...differ, ...present].sort();
}
