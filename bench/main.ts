/**
 * `npm run bench` (as root): brings up one 2-node `ambit local` mesh, runs every benchmark section
 * on it, prints a table per section and the targets of issue 3 (PASS/MISS with margins), a
 * markdown rendering for README, and writes bench/results/latest.json. The mesh is always taken
 * down. Options:
 *   --quick              short runs (for trying the harness)
 *   --paths a,b,c        subset of direct,stunnel,node,ambit (default all; node is the
 *                        plain Node pair of bench/node-pair.ts, L4 only)
 *   --only s1,s2         run only these sections (l4, l7, controlplane; default all)
 *   --cp-pods N,M        pod counts of the control-plane section (default 1000,10000; --quick 1000)
 *   --name NAME          local mesh name (default "bench")
 *   --out FILE           JSON output (default bench/results/latest.json)
 *   --profile DIR        run the mesh's Node processes with --cpu-prof; keeps the agents'
 *                        profiles as DIR/agent-<node>.cpuprofile, each worker thread's as
 *                        DIR/agent-<node>-thread<id>.cpuprofile (open in Chrome DevTools); pod
 *                        containers (the waypoint's too) get only their pod's environment, so
 *                        profile the waypoint with bench/waypoint-micro.ts
 */
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BenchMesh, lockLocalMesh, repoRoot } from './mesh.js';
import { renderMarkdown, renderText, type PathName, type SectionResult } from './report.js';
import type { BenchOptions, Section } from './section.js';
import { l4Section } from './sections/l4.js';
import { l7Section } from './sections/l7.js';
import { controlPlaneSection } from './sections/controlplane.js';

/** Sections in run order; a later section (e.g. the waypoint benchmark) is appended here. */
export const SECTIONS: Section[] = [l4Section, l7Section, controlPlaneSection];

/** `--cp-pods 1000,10000`: positive integers. */
export function parsePodCounts(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const out = text.split(',').map((x) => x.trim()).filter(Boolean).map(Number);
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--cp-pods: a comma-separated list of positive integers, got ${JSON.stringify(text)}`);
  return out;
}

const ALL_PATHS: PathName[] = ['direct', 'stunnel', 'node', 'ambit'];

export function parseSections(text: string | undefined): Section[] {
  if (text === undefined) return SECTIONS;
  const names = text.split(',').map((x) => x.trim()).filter(Boolean);
  for (const n of names) if (!SECTIONS.some((s) => s.name === n)) throw new Error(`--only: unknown section ${JSON.stringify(n)}; use ${SECTIONS.map((s) => s.name).join(',')}`);
  if (names.length === 0) throw new Error('--only: name at least one section');
  return SECTIONS.filter((s) => names.includes(s.name));
}

export function parsePaths(text: string): Set<PathName> {
  const out = new Set<PathName>();
  for (const p of text.split(',').map((x) => x.trim()).filter(Boolean)) {
    if (!(ALL_PATHS as string[]).includes(p)) throw new Error(`--paths: unknown path ${JSON.stringify(p)}; use ${ALL_PATHS.join(',')}`);
    out.add(p as PathName);
  }
  if (out.size === 0) throw new Error('--paths: name at least one path');
  return out;
}

/** Environment for `ambit local up`: with a profile dir, every Node process of the mesh profiles itself. */
function profileEnv(dir: string | undefined): NodeJS.ProcessEnv {
  if (!dir) return process.env;
  const flags = `--cpu-prof --cpu-prof-dir=${dir}`;
  return { ...process.env, NODE_OPTIONS: [process.env.NODE_OPTIONS, flags].filter(Boolean).join(' ') };
}

/**
 * Renames the agents' and the waypoint's profiles (Node names them
 * CPU.<date>.<pid>.<tid>.<seq>.cpuprofile; `names` maps pid → file stem) and drops the rest.
 */
function keepProfiles(dir: string, names: Map<number, string>, progress: (line: string) => void): void {
  for (const f of readdirSync(dir)) {
    const m = /^CPU\.[\d.]+?\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(f);
    if (!m) continue;
    const pidStem = names.get(Number(m[1]));
    // Worker threads (the agent's data-path workers) write one profile each, named by thread id.
    const stem = pidStem && m[2] !== '0' ? `${pidStem}-thread${m[2]}` : pidStem;
    if (stem) {
      renameSync(join(dir, f), join(dir, `${stem}.cpuprofile`));
      progress(`profile: ${join(dir, `${stem}.cpuprofile`)}`);
    } else rmSync(join(dir, f), { force: true });
  }
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      paths: { type: 'string', default: ALL_PATHS.join(',') },
      only: { type: 'string' },
      name: { type: 'string', default: 'bench' },
      out: { type: 'string', default: join(repoRoot, 'bench/results/latest.json') },
      profile: { type: 'string' },
      'cp-pods': { type: 'string' },
    },
  });
  const sectionsWanted = parseSections(values.only);
  if (sectionsWanted.some((x) => x.needsMesh !== false) && typeof process.getuid === 'function' && process.getuid() !== 0) {
    process.stderr.write('bench: needs root (it runs `ambit local up`, which creates network namespaces); run it as root\n');
    return 2;
  }
  const started = new Date();
  const progress = (line: string): void => void process.stderr.write(`[bench ${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)}s] ${line}\n`);
  const cpPods = parsePodCounts(values['cp-pods']);
  const opts: BenchOptions = { quick: values.quick!, paths: parsePaths(values.paths!), progress, ...(cpPods ? { controlPlanePods: cpPods } : {}) };
  const sections = parseSections(values.only);
  const meshNeeded = sections.some((s) => s.needsMesh !== false);
  const files = [...new Set(sections.flatMap((s) => s.manifests(opts)))];
  const mesh = new BenchMesh(values.name!);
  const profileDir = values.profile === undefined ? undefined : resolve(values.profile);
  let agentPids = new Map<number, string>();
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const results: SectionResult[] = [];
  if (meshNeeded) {
    progress('waiting for the local-mesh lock');
    const unlock = await lockLocalMesh(15 * 60_000);
    let cleaning: Promise<void> | undefined;
    const cleanup = (): Promise<void> =>
      (cleaning ??= (async () => {
        progress('ambit local down');
        const down = await mesh.down();
        if (down.code !== 0) process.stderr.write(`bench: ambit local down failed: ${down.stderr}\n`);
        unlock();
      })());
    const onSignal = (): void => {
      progress('interrupted; taking the mesh down');
      void cleanup().finally(() => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      progress(`ambit local up --name ${mesh.name} --nodes 2 (${files.map((f) => f.replace(`${repoRoot}/`, '')).join(', ')})`);
      // Agents are optional for the direct and stunnel paths; the Ambit path needs them (and its
      // enrolled pods make `up` fail when capture does not work).
      const { agentsConnected } = await mesh.up(files, { timeoutMs: opts.paths.has('ambit') ? 120_000 : 30_000, agentsOptional: true, env: profileEnv(profileDir) });
      if (profileDir) agentPids = new Map((await mesh.status(true)).nodes.flatMap((n) => (n.agentPid !== undefined ? [[n.agentPid, `agent-${n.name}`] as const] : [])));
      if (!agentsConnected) progress('agents are not connected: the Ambit path and agent memory are skipped');
      for (const s of sections.filter((x) => x.needsMesh !== false)) {
        progress(`section ${s.name}`);
        results.push(await s.run({ ...opts, mesh, agentsConnected }));
      }
    } finally {
      await cleanup();
      if (profileDir) keepProfiles(profileDir, agentPids, progress);
    }
  }
  // Sections without the mesh run after it is down, so its idle processes do not share the CPU.
  for (const s of sections.filter((x) => x.needsMesh === false)) {
    progress(`section ${s.name}`);
    results.push(await s.run({ ...opts, mesh, agentsConnected: false }));
  }
  // Report in the order sections are listed.
  results.sort((a, b) => SECTIONS.findIndex((s) => s.name === a.name) - SECTIONS.findIndex((s) => s.name === b.name));

  const report = {
    date: started.toISOString(),
    quick: opts.quick,
    paths: [...opts.paths],
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', kernel: release(), node: process.version },
    sections: Object.fromEntries(results.map((r) => [r.name, r])),
  };
  const out = resolve(values.out!);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');

  process.stdout.write(`\nAmbit benchmark ${report.date}  ${report.machine.cpus} CPUs (${report.machine.cpuModel}), Linux ${report.machine.kernel}, Node ${report.machine.node}${opts.quick ? '  [quick]' : ''}\n\n`);
  for (const r of results) process.stdout.write(renderText(r) + '\n');
  process.stdout.write('Markdown (for README):\n\n');
  for (const r of results) process.stdout.write(renderMarkdown(r) + '\n');
  process.stdout.write(`results written to ${out.replace(`${repoRoot}/`, '')}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
