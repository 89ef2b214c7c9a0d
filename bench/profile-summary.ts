/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self and inclusive time per function
 * (name, file:line), largest first, as percentages of the sampled time.
 *   node dist/bench/profile-summary.js FILE.cpuprofile [--top 40] [--by self|total] [--filter SUBSTR]
 * Inclusive time counts a function once per sample however often it is on the stack (recursion).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function label(n: ProfileNode): string {
  const f = n.callFrame;
  const file = f.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^node:/, '');
  return `${f.functionName || '(anonymous)'} ${file}${file ? ':' + (f.lineNumber + 1) : ''}`;
}

export function summarise(p: Profile): { total: number; rows: Array<{ fn: string; self: number; total: number }> } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    total += dt;
    let id: number | undefined = p.samples[i]!;
    const leaf = byId.get(id)!;
    self.set(label(leaf), (self.get(label(leaf)) ?? 0) + dt);
    const seen = new Set<string>();
    while (id !== undefined) {
      const l = label(byId.get(id)!);
      if (!seen.has(l)) {
        seen.add(l);
        incl.set(l, (incl.get(l) ?? 0) + dt);
      }
      id = parent.get(id);
    }
  }
  const rows = [...incl.keys()].map((fn) => ({ fn, self: self.get(fn) ?? 0, total: incl.get(fn) ?? 0 }));
  return { total, rows };
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '40' }, by: { type: 'string', default: 'self' }, filter: { type: 'string' } } });
  const file = positionals[0];
  if (!file) throw new Error('usage: profile-summary FILE.cpuprofile [--top N] [--by self|total] [--filter S]');
  const { total, rows } = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile);
  const key = values.by === 'total' ? 'total' : 'self';
  const shown = rows.filter((r) => !values.filter || r.fn.includes(values.filter)).sort((a, b) => b[key] - a[key]).slice(0, Number(values.top));
  const pct = (x: number): string => ((100 * x) / total).toFixed(1).padStart(5);
  process.stdout.write(`sampled ${(total / 1e6).toFixed(2)} s; self% total% function\n`);
  for (const r of shown) process.stdout.write(`${pct(r.self)} ${pct(r.total)} ${r.fn}\n`);
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) main();
