/**
 * `ambit local ...`: the whole mesh on one machine (see src/local/). `ambit local demo` is
 * dispatched by main.ts to demo.ts, which builds on the verbs here (so this file never imports it).
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AmbitError, isAmbitError } from '../shared/errors.js';
import { parseDuration } from '../shared/duration.js';
import { ENV_LOCAL_NAME, ENV_LOCAL_NET } from '../shared/env.js';
import type { RefusedObject } from '../controller/source/manifests.js';
import { objectKey, type KubeObject } from '../controller/objects.js';
import { callControl, type ExecTarget } from '../local/control.js';
import { cleanupLeftovers, meshDaemonPids, removeState } from '../local/cleanup.js';
import type { LocalStatus } from '../local/mesh.js';
import { addressPlan, blockHolders, stateDirFor, validateNet, validatePrefix } from '../local/plan.js';
import { ip, podCommand } from '../local/exec.js';
import { renderTable, type Io } from './io.js';

export const LOCAL_USAGE = `Usage:
  ambit local up -f <file|dir>... [--nodes N] [--name NAME] [--net K] [--capture auto|bpf|nft] [--timeout 120s]
  ambit local apply -f <file|dir>...        change objects live; returns once agents acknowledged
  ambit local delete -f <file|dir>...       remove objects live
  ambit local exec <namespace>/<pod> -- <cmd> [args...]
  ambit local status [-o json]
  ambit local kubeconfig                    prints the kubeconfig path: KUBECONFIG=$(ambit local kubeconfig) kubectl get pods -A
  ambit local down
  ambit local demo                          the README demo: up, traffic, summary
up and apply skip objects of kinds Ambit does not serve (each is listed as refused, the rest is
applied, and the exit code is 3), and list every object Ambit does not serve as written.
Options valid everywhere: --name NAME (default "ambit"; a second mesh needs another name).
--net K (up, demo): address block 0-7 (default $AMBIT_LOCAL_NET or 0); meshes on different blocks run side by side.`;

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function requireRoot(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new AmbitError('AMBIT_ERR_REQUIRES_ROOT', 'ambit local needs root: it creates network namespaces, cgroups and BPF programs; run it with sudo or as root');
  }
}

interface CommonOpts {
  name: string;
  stateDir: string;
}

export function common(values: { name?: string | undefined }): CommonOpts {
  const name = validatePrefix(values.name ?? process.env[ENV_LOCAL_NAME] ?? 'ambit');
  return { name, stateDir: stateDirFor(name) };
}

export async function runLocal(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'up':
      return up(rest, io);
    case 'apply':
    case 'delete':
      return change(sub, rest, io);
    case 'exec':
      return exec(rest, io);
    case 'status':
      return status(rest, io);
    case 'down':
      return down(rest, io);
    case 'kubeconfig':
      return kubeconfig(rest, io);
    default:
      io.err(LOCAL_USAGE + '\n');
      return sub === undefined || sub === 'help' || sub === '--help' ? 0 : 2;
  }
}

/** Exit code of up/apply/delete when some objects were refused (the others were applied). */
export const EXIT_REFUSED = 3;

/** Reads and validates manifests; objects of kinds Ambit does not serve are listed on stderr and left out. */
async function readManifests(files: string[], io: Io): Promise<{ objects: KubeObject[]; refused: RefusedObject[] }> {
  if (files.length === 0) throw new AmbitError('AMBIT_ERR_CLI_USAGE', 'no manifests given; pass -f <file|dir> at least once');
  // Loaded here, not at the top: the short verbs (status, exec, kubeconfig) need none of it.
  const { loadManifests } = await import('../controller/source/manifests.js');
  const loaded = await loadManifests(files.map((f) => resolve(f)));
  for (const r of loaded.refused) io.err(`refused: ${r.where}: ${r.object}: ${r.reason}\n`);
  return loaded;
}

/** `Kind/ns/name` (objectKey) → `Kind ns/name`. */
function describeKey(key: string): string {
  const [kind, ns, ...name] = key.split('/');
  return `${(kind ?? '').split('.')[0]} ${ns ? `${ns}/` : ''}${name.join('/')}`;
}

/** Lines naming what Ambit does not serve as written, one per condition. */
function problemLines(problems: LocalStatus['objectProblems'], keys?: ReadonlySet<string>): string[] {
  return problems.filter((p) => !keys || keys.has(p.object)).map((p) => `! ${describeKey(p.object)}: ${p.type === 'Warning' ? '' : `${p.reason}: `}${p.message}`);
}

/** Starts a mesh; used by `up` and the demo. */
/** The address block `--net` asks for, else $AMBIT_LOCAL_NET, else 0. */
export function netOption(flag: string | undefined): number {
  const text = flag ?? process.env[ENV_LOCAL_NET] ?? '0';
  return validateNet(/^\d+$/.test(text) ? Number(text) : Number.NaN, flag !== undefined ? '--net' : ENV_LOCAL_NET);
}

export async function startLocal(opts: { files: string[]; nodes: number; name: string; net: number; capture: string; timeoutMs: number }, io: Io): Promise<LocalStatus & { refused: number }> {
  requireRoot();
  const stateDir = stateDirFor(opts.name);
  // Validate everything before making anything: bad input must not leave a half-built mesh.
  const { objects, refused } = await readManifests(opts.files, io);
  if (await isRunning(stateDir)) {
    throw new AmbitError('AMBIT_ERR_LOCAL_ALREADY_RUNNING', `local mesh "${opts.name}" is already running; use \`ambit local apply\` or \`ambit local down\` first`);
  }
  for (const other of existsSync('/run/ambit') ? readdirSync('/run/ambit') : []) {
    if (other === opts.name) continue;
    const otherNet = await runningNet(stateDirFor(other));
    if (otherNet === opts.net) {
      throw new AmbitError(
        'AMBIT_ERR_LOCAL_ALREADY_RUNNING',
        `local mesh "${other}" is running on address block ${otherNet}; meshes on one block share their address ranges: pick another block (--net ${opts.net === 0 ? 1 : 0}) or stop it (ambit local down --name ${other})`,
      );
    }
  }
  const removed = await cleanupLeftovers(opts.name);
  if (removed.length > 0) io.err(`removed leftovers of an earlier run: ${removed.join(', ')}\n`);
  await claimBlock(opts.name, opts.net, io);
  mkdirSync(join(stateDir, 'logs'), { recursive: true, mode: 0o700 });
  const logPath = join(stateDir, 'logs', 'daemon.log');
  const out = openSync(logPath, 'a');
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'dist/src/local/daemon-main.js'), '--prefix', opts.name, '--nodes', String(opts.nodes), '--net', String(opts.net), '--state-dir', stateDir, '--capture', opts.capture, '--cwd', process.cwd()],
    { detached: true, stdio: ['ignore', out, out] },
  );
  let exited: number | null = null;
  child.on('exit', (code) => (exited = code ?? 1));
  child.unref();
  const deadline = Date.now() + 60_000;
  while (!(await isRunning(stateDir))) {
    if (exited !== null || Date.now() > deadline) {
      const tail = existsSync(logPath) ? readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `local mesh daemon failed to start (log: ${logPath}):\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  try {
    await callControl(stateDir, 'POST', '/apply', { objects, timeoutMs: opts.timeoutMs }, opts.timeoutMs + 10_000);
  } catch (err) {
    io.err(`apply failed; the mesh is still up for inspection (ambit local status --name ${opts.name}; ambit local down --name ${opts.name})\n`);
    throw err;
  }
  return { ...(await callControl<LocalStatus>(stateDir, 'GET', '/status')), refused: refused.length };
}

/**
 * Makes sure nothing else holds address block `net`: a mesh whose daemon died (killed, machine
 * restarted without clearing /run) still holds the block's bridge address and routes, and a second
 * bridge with the same address would leave the new mesh's nodes unable to reach its controller.
 * A stopped mesh's leftovers are removed (and said); a live one, or an interface no mesh made, is refused.
 */
async function claimBlock(name: string, net: number, io: Io): Promise<void> {
  const addrs = await ip(['-o', '-4', 'addr', 'show'], undefined, { allowFailure: true });
  const stopped: string[] = [];
  // Every holder is judged before anything is removed: a refusal leaves the machine as it was.
  for (const holder of blockHolders(addrs.stdout, net)) {
    if (holder.mesh === name) continue;
    if (!holder.mesh) {
      throw new AmbitError(
        'AMBIT_ERR_LOCAL_SETUP',
        `address block ${net}: its bridge address ${addressPlan(net).bridgeIp} is already on interface ${holder.iface}, which no local mesh made; pick another block (--net) or remove that address`,
      );
    }
    const live = await meshDaemonPids(holder.mesh);
    if (live.length > 0 || (await isRunning(stateDirFor(holder.mesh)))) {
      throw new AmbitError(
        'AMBIT_ERR_LOCAL_ALREADY_RUNNING',
        `local mesh "${holder.mesh}" is running on address block ${net}${live.length ? ` (daemon pid ${live.join(', ')})` : ''}; pick another block (--net ${net === 0 ? 1 : 0}) or stop it (ambit local down --name ${holder.mesh})`,
      );
    }
    stopped.push(holder.mesh);
  }
  for (const mesh of stopped) {
    const removed = await cleanupLeftovers(mesh);
    if ((await removeState(stateDirFor(mesh))).length > 0) removed.push(`state (keys, tokens) in ${stateDirFor(mesh)}`);
    io.err(`address block ${net} was held by stopped local mesh "${mesh}" (its daemon is gone); removed its leftovers: ${removed.join(', ')}\n`);
  }
}

/** The address block of a running mesh, or undefined when it is not running. */
async function runningNet(stateDir: string): Promise<number | undefined> {
  try {
    const st = await callControl<Partial<LocalStatus>>(stateDir, 'GET', '/status', undefined, 5000);
    return typeof st.net === 'number' ? st.net : 0;
  } catch (err) {
    if (isAmbitError(err, 'AMBIT_ERR_LOCAL_NOT_RUNNING')) return undefined;
    throw err;
  }
}

async function isRunning(stateDir: string): Promise<boolean> {
  return (await runningNet(stateDir)) !== undefined;
}

async function up(argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      file: { type: 'string', short: 'f', multiple: true },
      nodes: { type: 'string', default: '2' },
      name: { type: 'string' },
      net: { type: 'string' },
      capture: { type: 'string', default: 'auto' },
      timeout: { type: 'string', default: '120s' },
    },
  });
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 16) throw new AmbitError('AMBIT_ERR_CLI_USAGE', `--nodes must be an integer 1..16 (got ${JSON.stringify(values.nodes)})`);
  if (!['auto', 'bpf', 'nft'].includes(values.capture!)) throw new AmbitError('AMBIT_ERR_CLI_USAGE', `--capture must be auto, bpf or nft (got ${JSON.stringify(values.capture)})`);
  const { name } = common(values);
  const st = await startLocal({ files: values.file ?? [], nodes, name, net: netOption(values.net), capture: values.capture!, timeoutMs: parseDuration(values.timeout!, '--timeout') }, io);
  io.out(formatStatus(st));
  return st.refused > 0 ? EXIT_REFUSED : 0;
}

async function change(kind: 'apply' | 'delete', argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { file: { type: 'string', short: 'f', multiple: true }, name: { type: 'string' }, timeout: { type: 'string', default: '90s' } },
  });
  const { stateDir } = common(values);
  const { objects, refused } = await readManifests(values.file ?? [], io);
  const timeoutMs = parseDuration(values.timeout!, '--timeout');
  const r = await callControl<{ changed: string[] }>(stateDir, 'POST', `/${kind}`, { objects, timeoutMs }, timeoutMs + 10_000);
  for (const c of r.changed) io.out(`${c} ${kind === 'apply' ? 'applied' : 'deleted'}\n`);
  if (kind === 'apply') {
    const st = await callControl<LocalStatus>(stateDir, 'GET', '/status');
    for (const line of problemLines(st.objectProblems ?? [], new Set(objects.map(objectKey)))) io.out(line + '\n');
  }
  return refused.length > 0 ? EXIT_REFUSED : 0;
}

async function exec(argv: string[], io: Io): Promise<number> {
  const dash = argv.indexOf('--');
  const head = dash >= 0 ? argv.slice(0, dash) : argv.slice(0, 1);
  const cmd = dash >= 0 ? argv.slice(dash + 1) : argv.slice(1);
  const { values, positionals } = parseArgs({ args: head, options: { name: { type: 'string' } }, allowPositionals: true });
  const target = positionals[0];
  if (!target || cmd.length === 0) throw new AmbitError('AMBIT_ERR_CLI_USAGE', 'usage: ambit local exec <namespace>/<pod> -- <cmd> [args...]');
  const [namespace, name] = target.includes('/') ? (target.split('/', 2) as [string, string]) : ['default', target];
  const { stateDir } = common(values);
  const t = await callControl<ExecTarget>(stateDir, 'GET', `/exec-target?namespace=${encodeURIComponent(namespace)}&name=${encodeURIComponent(name)}`);
  const env = { ...process.env, ...t.env, PATH: [join(repoRoot, 'node_modules/.bin'), join(repoRoot, 'bin'), process.env.PATH ?? '/usr/bin:/bin'].join(':') };
  const [sh, args] = podCommand(t.cgroupProcs, t.netns, cmd);
  const child = spawn(sh, args, { stdio: 'inherit', env });
  void io;
  return new Promise((resolveCode) => {
    child.on('exit', (code, signal) => resolveCode(code ?? (signal ? 128 : 1)));
    child.on('error', () => resolveCode(127));
  });
}

async function status(argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { name: { type: 'string' }, output: { type: 'string', short: 'o' } } });
  const { stateDir } = common(values);
  const st = await callControl<LocalStatus>(stateDir, 'GET', '/status');
  io.out(values.output === 'json' ? JSON.stringify(st, null, 2) + '\n' : formatStatus(st));
  return 0;
}

/** Prints the path of the mesh's kubeconfig (the cluster admin's), for kubectl. */
async function kubeconfig(argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { name: { type: 'string' } } });
  const { name, stateDir } = common(values);
  const file = join(stateDir, 'kubeconfig');
  if (!existsSync(file)) throw new AmbitError('AMBIT_ERR_LOCAL_NOT_RUNNING', `no local mesh "${name}" is running (no ${file}); start one with \`ambit local up\``);
  io.out(file + '\n');
  return 0;
}

async function down(argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { name: { type: 'string' } } });
  const { name, stateDir } = common(values);
  requireRoot();
  let wasRunning = true;
  try {
    await callControl(stateDir, 'POST', '/down');
  } catch (err) {
    if (!isAmbitError(err, 'AMBIT_ERR_LOCAL_NOT_RUNNING')) throw err;
    wasRunning = false;
  }
  const pidFile = join(stateDir, 'daemon.pid');
  const deadline = Date.now() + 30_000;
  while (existsSync(pidFile) && Date.now() < deadline) {
    const pid = Number(readFileSync(pidFile, 'utf8'));
    try {
      process.kill(pid, 0);
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const removed = await cleanupLeftovers(name);
  // Keys and tokens go with the mesh; the logs stay for a look afterwards.
  await removeState(stateDir);
  io.out(wasRunning ? `local mesh "${name}" stopped\n` : `no local mesh "${name}" was running${removed.length ? `; removed leftovers: ${removed.join(', ')}` : ''}\n`);
  return 0;
}

export function formatStatus(st: LocalStatus): string {
  const lines: string[] = [];
  lines.push(`Local mesh "${st.prefix}"  controller ${st.controller}  API ${st.api?.url ?? '-'}`, `kubeconfig: ${st.api?.kubeconfig ?? '-'}`, '');
  lines.push(
    renderTable(
      ['NODE', 'IP', 'AGENT', 'METRICS'],
      st.nodes.map((n) => [n.name, n.ip, n.connected ? 'connected' : 'not connected', n.metrics]),
    ),
  );
  lines.push('');
  lines.push(
    renderTable(
      ['NAMESPACE', 'POD', 'NODE', 'IP', 'READY', 'MESH', 'CAPTURE'],
      st.pods.map((p) => [p.namespace, p.name, p.node, p.ip, p.ready ? 'yes' : 'no', p.enrolled ? 'ambient' : '-', p.enrolled ? (p.captured ? p.captureMode : `pending`) : '-']),
    ),
  );
  if ((st.waypoints ?? []).length > 0) {
    lines.push('');
    lines.push(renderTable(['NAMESPACE', 'WAYPOINT', 'POD', 'METRICS'], st.waypoints.map((w) => [w.namespace, w.gateway, w.pod, w.metrics])));
  }
  const ingress = (st.ingressGateways ?? []).flatMap((g) =>
    g.listeners.map((l) => [g.namespace, g.pod, g.ip, g.ready ? 'yes' : 'no', `${l.port}/${l.protocol}`, l.hosts.join(',') || '*', l.url]),
  );
  if (ingress.length > 0) {
    lines.push('');
    lines.push(renderTable(['NAMESPACE', 'INGRESS GATEWAY', 'IP', 'READY', 'PORT', 'HOSTS', 'URL'], ingress));
  }
  for (const problem of st.ingressProblems ?? []) lines.push(`! ${problem}`);
  for (const r of st.refusedFromApi ?? []) lines.push(`! ${r.object} refused by the controller: ${r.reason}`);
  for (const p of st.pods.filter((x) => x.waiting)) lines.push(`! pod ${p.namespace}/${p.name} cannot start: ${p.waiting}`);
  const problems = problemLines(st.objectProblems ?? []);
  if (problems.length > 0) lines.push('', 'Not served as written (status conditions of these objects):', ...problems);
  if (st.services.length > 0) {
    lines.push('');
    lines.push(renderTable(['NAMESPACE', 'SERVICE', 'CLUSTER-IP', 'PORTS'], st.services.map((s) => [s.namespace, s.name, s.clusterIP, s.ports.join(',')])));
  }
  return lines.join('\n') + '\n';
}
