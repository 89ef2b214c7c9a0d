/**
 * One size of the control-plane benchmark, in a process of its own (so each size's RSS is its
 * own): the real Controller in-process (store → translation → config server, gRPC over TLS with
 * node tokens), the generated cluster applied to its store, `clients` agents spread over
 * `clientProcs` forked processes (clients.ts; real agents are a process each on their own node,
 * and one process holding every client's full state would measure its garbage collector more
 * than the controller), then single-object changes one at a time. For each change: wall time from the
 * store apply to the config server seeing every subscriber ACK (waitForSync, debounce included),
 * when the controller finished writing the change's responses (the config server's last push
 * round), each updated client's onUpdate time, bytes the controller sent (counted by the clients'
 * relay), and this process's CPU. Prints one JSON line (SizeResult).
 *   node dist/bench/controlplane/run-size.js --pods 1000 [--services 1000 --policies 500
 *     --virtual-services 200 --namespaces 100 --clients 100 --client-procs 4 --changes 30
 *     --kinds pod,policy,service]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Controller } from '../../src/controller/controller.js';
import { silentLogger } from '../../src/shared/log.js';
import type { ClientCommand, ClientReply, ClientUpdate } from './clients.js';
import { startProfile } from './profile.js';
import { CHANGE_KINDS, change, generateCluster, nodeName, type ChangeKind, type ClusterSize } from './generate.js';

export interface ChangeResult {
  kind: ChangeKind;
  /** Store apply → every subscriber ACKed (ms). */
  allAckedMs: number;
  /** Store apply → the controller wrote the last response of the change (debounce included; ms). */
  pushedMs: number;
  /** Store apply → each updated client's onUpdate (ms). */
  clientMs: number[];
  /** Clients that received an update. */
  affected: number;
  /** Bytes the controller sent for this change (TLS records, all clients). */
  bytes: number;
  /** CPU of the controller process from apply to all ACKed (ms). */
  cpuMs: number;
  /** CPU of the clients' processes over the change (all clients decoding, applying, ACKing; ms). */
  clientsCpuMs: number;
}

export interface SizeResult {
  size: ClusterSize & { clients: number; clientProcs: number };
  objects: number;
  /** Applying the whole cluster to the store (validation and translation), ms and CPU ms. */
  load: { ms: number; cpuMs: number };
  /** Clients started → all synced with the full snapshot. */
  initialSync: { ms: number; bytes: number; bytesPerClient: number };
  changes: ChangeResult[];
  rssBytes: { idle: number; afterLoad: number; afterSync: number; afterChanges: number };
  heapUsedBytes: number;
}

const wallNow = (): number => performance.timeOrigin + performance.now();
/** Changes made and not counted before the counted ones. */
const WARMUP_CHANGES = 1;
/** Pause after each change's ACKs: longer than the config server's coalescing window (50 ms, Controller's default). */
const GAP_MS = 60;
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Sends `cmd` to one clients' process and waits for the reply of `kind`. */
function ask<K extends ClientReply['kind']>(child: ChildProcess, cmd: ClientCommand, kind: K, timeoutMs: number): Promise<Extract<ClientReply, { kind: K }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`clients process: no ${kind} within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (r: ClientReply): void => {
      if (r.kind === 'error') done(new Error(`clients process: ${r.message}`));
      else if (r.kind === kind) done(undefined, r as Extract<ClientReply, { kind: K }>);
    };
    const onExit = (code: number | null): void => done(new Error(`clients process exited (${code}) before ${kind}`));
    function done(err?: Error, r?: Extract<ClientReply, { kind: K }>): void {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(r!);
    }
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send(cmd);
  });
}

/** `cmd` to every clients' process at once; the replies in process order. */
function askAll<K extends ClientReply['kind']>(children: readonly ChildProcess[], cmd: (i: number) => ClientCommand, kind: K, timeoutMs: number): Promise<Array<Extract<ClientReply, { kind: K }>>> {
  return Promise.all(children.map((c, i) => ask(c, cmd(i), kind, timeoutMs)));
}

/** Client i of n goes to process i mod procs: each process gets every procs-th node. */
export function spreadClients<T>(clients: readonly T[], procs: number): Array<Array<{ client: T; index: number }>> {
  const out = Array.from({ length: Math.min(procs, clients.length) }, () => [] as Array<{ client: T; index: number }>);
  clients.forEach((client, index) => out[index % out.length]!.push({ client, index }));
  return out;
}

export async function runSize(size: ClusterSize & { clients: number; clientProcs: number }, changes: number, kinds: readonly ChangeKind[] = CHANGE_KINDS): Promise<SizeResult> {
  const stateDir = mkdtempSync(join(tmpdir(), 'ambit-bench-cp-'));
  const tokens = new Map<string, string>();
  const clients = Array.from({ length: size.clients }, (_, i) => {
    const token = randomBytes(24).toString('hex');
    tokens.set(token, nodeName(i));
    return { node: nodeName(i), token };
  });
  const rssIdle = process.memoryUsage().rss;
  const controller = await Controller.start({ stateDir, host: '127.0.0.1', port: 0, trustDomain: 'cluster.local', auth: { nodeTokens: tokens }, log: silentLogger() });
  const children: ChildProcess[] = [];
  try {
    const objects = generateCluster(size);
    const c0 = cpuMs();
    const t0 = wallNow();
    controller.store.apply(objects);
    const load = { ms: wallNow() - t0, cpuMs: cpuMs() - c0 };
    const afterLoad = process.memoryUsage().rss;

    const here = fileURLToPath(new URL('.', import.meta.url));
    const groups = spreadClients(clients, size.clientProcs);
    for (let i = 0; i < groups.length; i++) children.push(fork(join(here, 'clients.js'), [], { execPath: process.execPath, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    const rootPem = controller.ca.rootCertPem;
    const s0 = wallNow();
    const ready = await askAll(children, (i) => ({ cmd: 'start', address: controller.address, rootPem, clients: groups[i]!.map((g) => g.client), timeoutMs: 600_000, profileName: `clients-${size.clients}-${i}` }), 'ready', 610_000);
    await controller.configServer.waitForSync(() => true, 120_000, { minSubscribers: size.clients });
    const readyBytes = ready.reduce((a, r) => a + r.bytes, 0);
    const initialSync = { ms: Math.max(...ready.map((r) => r.at)) - s0, bytes: readyBytes, bytesPerClient: readyBytes / size.clients };
    const afterSync = process.memoryUsage().rss;

    const results: ChangeResult[] = [];
    const profile = await startProfile();
    // One warm-up change first, not counted (the first change after a 10,000-pod initial sync
    // pays one-off costs: code compiled for it, caches filled), then the counted ones. Each change
    // comes once the previous one is ACKed and the config server's coalescing window has passed:
    // changes closer together than that window are coalesced into one push by design (decision
    // 65), which is a burst's latency, not a single change's.
    for (let n = 1 - WARMUP_CHANGES; n <= changes; n++) {
      if (n > 1 - WARMUP_CHANGES) await new Promise((r) => setTimeout(r, GAP_MS));
      const kind = kinds[(((n - 1) % kinds.length) + kinds.length) % kinds.length]!;
      const obj = change(size, kind, n < 1 ? 1000 - n : n);
      await askAll(children, () => ({ cmd: 'arm' }), 'armed', 30_000);
      const cpu0 = cpuMs();
      const start = wallNow();
      // The config server's clock is Date.now (ms).
      const startMs = Date.now();
      controller.store.apply([obj]);
      await controller.configServer.waitForSync(() => true, 60_000, { minSubscribers: size.clients });
      const allAckedMs = wallNow() - start;
      const cpu = cpuMs() - cpu0;
      const pushedMs = (controller.configServer.lastFlushAt ?? Number.NaN) - startMs;
      const got = await askAll(children, () => ({ cmd: 'collect' }), 'collected', 30_000);
      const firstPerClient = new Map<number, ClientUpdate>();
      got.forEach((g, p) => {
        for (const u of g.updates) {
          const index = groups[p]![u.client]!.index;
          if (!firstPerClient.has(index)) firstPerClient.set(index, { ...u, client: index });
        }
      });
      if (n < 1) continue;
      results.push({
        kind,
        allAckedMs,
        pushedMs,
        clientMs: [...firstPerClient.values()].map((u) => u.at - start).sort((a, b) => a - b),
        affected: firstPerClient.size,
        bytes: got.reduce((a, g) => a + g.bytes, 0),
        cpuMs: cpu,
        clientsCpuMs: got.reduce((a, g) => a + g.cpuMs, 0),
      });
    }
    await profile?.save(`controller-${size.pods}`);
    return {
      size,
      objects: objects.length,
      load,
      initialSync,
      changes: results,
      rssBytes: { idle: rssIdle, afterLoad, afterSync, afterChanges: process.memoryUsage().rss },
      heapUsedBytes: process.memoryUsage().heapUsed,
    };
  } finally {
    await Promise.all(
      children
        .filter((child) => child.exitCode === null)
        .map(
          (child) =>
            new Promise<void>((resolve) => {
              child.send({ cmd: 'stop' } satisfies ClientCommand);
              const t = setTimeout(() => {
                child.kill('SIGKILL');
                resolve();
              }, 5000);
              child.once('exit', () => {
                clearTimeout(t);
                resolve();
              });
            }),
        ),
    );
    await controller.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

/** Size options shared by the CLI here and the bench section. */
export function sizeFromArgs(argv: string[]): { size: ClusterSize & { clients: number; clientProcs: number }; changes: number; kinds: ChangeKind[] } {
  const { values } = parseArgs({
    args: argv,
    options: {
      pods: { type: 'string', default: '1000' },
      services: { type: 'string', default: '1000' },
      policies: { type: 'string', default: '500' },
      'virtual-services': { type: 'string', default: '200' },
      namespaces: { type: 'string', default: '100' },
      clients: { type: 'string', default: '100' },
      'client-procs': { type: 'string', default: '4' },
      changes: { type: 'string', default: '30' },
      kinds: { type: 'string', default: CHANGE_KINDS.join(',') },
    },
  });
  const kinds = values.kinds!.split(',').filter(Boolean) as ChangeKind[];
  for (const k of kinds) if (!(CHANGE_KINDS as readonly string[]).includes(k)) throw new Error(`--kinds: unknown change kind ${JSON.stringify(k)}; use ${CHANGE_KINDS.join(',')}`);
  if (kinds.length === 0) throw new Error('--kinds: name at least one change kind');
  const num = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: must be an integer ≥ ${min} (got ${JSON.stringify(v)})`);
    return n;
  };
  const clients = num('clients', values.clients, 1);
  return {
    size: {
      pods: num('pods', values.pods, 1),
      services: num('services', values.services, 1),
      policies: num('policies', values.policies, 0),
      virtualServices: num('virtual-services', values['virtual-services'], 0),
      namespaces: num('namespaces', values.namespaces, 1),
      nodes: clients,
      clients,
      clientProcs: num('client-procs', values['client-procs'], 1),
    },
    changes: num('changes', values.changes, 1),
    kinds,
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { size, changes, kinds } = sizeFromArgs(process.argv.slice(2));
  runSize(size, changes, kinds).then(
    (r) => {
      process.stdout.write(JSON.stringify(r) + '\n');
      process.exit(0);
    },
    (e: unknown) => {
      process.stderr.write(`controlplane: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
