/**
 * The one-way import rule of docs/design.md ("Layout"), checked on the real tree: src/shared/
 * imports no other src/ folder (nor native/, koffi or client-node); the agent and the waypoint
 * never import each other; the binaries import only shared/ (the agent also native/); nothing
 * imports cli/; and no import cycle exists among the files of src/. Imports are read with the
 * TypeScript scanner (static, type-only, re-exports and dynamic import() alike).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

/** Top-level folders under src/ and what each may import besides itself (see docs/design.md). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  shared: [],
  agent: ['shared', 'native'],
  waypoint: ['shared'],
  controller: ['shared'],
  local: ['shared', 'agent', 'waypoint', 'controller', 'native', 'cni', 'crds'],
  cli: ['shared', 'agent', 'waypoint', 'controller', 'local', 'cni', 'crds'],
  /** The CNI plugin and its installer: their own binaries, beside the agent. */
  cni: ['shared'],
  /** The CRD manifests of the kinds the controller reads (a generator binary). */
  crds: ['shared'],
};
/** Packages a folder must not import (shared/ stays free of native bindings and the Kubernetes client). */
const FORBIDDEN_PACKAGES: Record<string, readonly string[]> = {
  shared: ['koffi', '@kubernetes/client-node'],
};

/** file (repo-relative, .ts) → the repo-relative files and the bare packages it imports. */
export type ImportGraph = Map<string, { files: string[]; packages: string[] }>;

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir)).sort()) {
    const rel = join(dir, name);
    if (statSync(join(root, rel)).isDirectory()) out.push(...listTs(rel));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

function readGraph(): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of [...listTs('src'), ...listTs('native')]) {
    const info = ts.preProcessFile(readFileSync(join(root, file), 'utf8'), true, true);
    const files: string[] = [];
    const packages: string[] = [];
    for (const { fileName } of info.importedFiles) {
      if (fileName.startsWith('.')) files.push(normalize(join(dirname(file), fileName)).replace(/\.js$/, '.ts'));
      else if (!fileName.startsWith('node:')) packages.push(fileName);
    }
    graph.set(file, { files, packages });
  }
  return graph;
}

/** `src/agent/x.ts` → `agent`; `native/x.ts` → `native`. */
function folderOf(file: string): string {
  const parts = file.split('/');
  return parts[0] === 'src' ? parts[1]! : parts[0]!;
}

/** The files of every import cycle (strongly connected components of more than one file, or a file importing itself). */
export function findCycles(graph: ImportGraph): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)?.files ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || graph.get(v)!.files.includes(v)) cycles.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
  return cycles;
}

/** Every import that breaks the layer rule, as `from -> to (why)`. */
export function findLayerViolations(graph: ImportGraph): string[] {
  const out: string[] = [];
  for (const [file, { files, packages }] of graph) {
    const from = folderOf(file);
    for (const target of files) {
      const to = folderOf(target);
      if (to === from) continue;
      if (to === 'cli') out.push(`${file} -> ${target} (nothing imports cli/)`);
      else if (from === 'shared') out.push(`${file} -> ${target} (shared/ imports no other folder)`);
      else if ((from === 'agent' && to === 'waypoint') || (from === 'waypoint' && to === 'agent')) out.push(`${file} -> ${target} (the agent and the waypoint never import each other; move what both need to shared/)`);
      else if (to === 'native' && from !== 'agent' && from !== 'local' && from !== 'native') out.push(`${file} -> ${target} (only the agent uses native/)`);
      else if (MAY_IMPORT[from] && !MAY_IMPORT[from].includes(to)) out.push(`${file} -> ${target} (${from}/ may import ${MAY_IMPORT[from].join(', ') || 'nothing else'})`);
    }
    for (const p of packages) {
      if ((FORBIDDEN_PACKAGES[from] ?? []).some((f) => p === f || p.startsWith(`${f}/`))) out.push(`${file} -> ${p} (${from}/ never imports ${p})`);
    }
  }
  return out.sort();
}

test('imports: the checker finds cycles and broken layers (so the tree checks below can fail)', () => {
  const g: ImportGraph = new Map([
    ['src/waypoint/a.ts', { files: ['src/agent/b.ts', 'src/shared/c.ts'], packages: [] }],
    ['src/agent/b.ts', { files: ['src/shared/c.ts'], packages: [] }],
    ['src/shared/c.ts', { files: ['src/shared/d.ts', 'src/controller/e.ts'], packages: ['koffi'] }],
    ['src/shared/d.ts', { files: ['src/shared/c.ts'], packages: [] }],
    ['src/controller/e.ts', { files: ['src/cli/f.ts'], packages: [] }],
    ['src/cli/f.ts', { files: [], packages: [] }],
  ]);
  assert.deepEqual(findCycles(g), [['src/shared/c.ts', 'src/shared/d.ts']]);
  assert.deepEqual(findLayerViolations(g), [
    'src/controller/e.ts -> src/cli/f.ts (nothing imports cli/)',
    'src/shared/c.ts -> koffi (shared/ never imports koffi)',
    'src/shared/c.ts -> src/controller/e.ts (shared/ imports no other folder)',
    'src/waypoint/a.ts -> src/agent/b.ts (the agent and the waypoint never import each other; move what both need to shared/)',
  ]);
});

test('imports: src/ follows the layer rule of docs/design.md', () => {
  const graph = readGraph();
  assert.ok(graph.size > 100, `read the tree (${graph.size} files)`);
  assert.ok([...graph.values()].some((e) => e.files.some((f) => f.startsWith('src/shared/'))), 'imports were resolved');
  assert.deepEqual(findLayerViolations(graph), []);
});

test('imports: no import cycle among the files of src/ and native/', () => {
  const cycles = findCycles(readGraph());
  assert.deepEqual(cycles.map((c) => c.map((f) => relative('.', f)).join(' <-> ')), []);
});
