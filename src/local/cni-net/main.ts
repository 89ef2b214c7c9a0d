/**
 * The `ambit-local-net` executable: a node runtime of local mode runs it (through the launcher in
 * the node's CNI bin folder) with CNI_* variables and the network configuration on stdin; it
 * prints the result or the CNI error on stdout. Wires the real `ip` calls and address files into
 * plugin.ts.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runNetPlugin, parseNetPluginConf, type IpamStore, type NetPluginDeps } from './plugin.js';
import { parseNetConf } from '../../cni/protocol.js';

function run(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(args[0]!, args.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => resolve({ code: 127, stdout, stderr: e.message }));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    // `ip` may exit before reading all of its input (a failed batch line): its exit code and
    // stderr say why, so the EPIPE of the unread input must not crash the plugin.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

const inNetns = (path: string, args: string[], input?: string) => run(['nsenter', `--net=${path}`, 'ip', ...args], input);

function ipamStore(dir: string): IpamStore {
  const lastFile = join(dir, 'last_reserved_ip');
  return {
    async reserve(ip, owner) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      try {
        await writeFile(join(dir, ip), owner, { flag: 'wx', mode: 0o600 });
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw e;
      }
    },
    async list() {
      const names = await readdir(dir).catch(() => [] as string[]);
      const out: Array<{ ip: string; owner: string }> = [];
      for (const n of names) {
        if (!/^\d+\.\d+\.\d+\.\d+$/.test(n)) continue;
        out.push({ ip: n, owner: (await readFile(join(dir, n), 'utf8').catch(() => '')).trim() });
      }
      return out;
    },
    release: (ip) => rm(join(dir, ip), { force: true }),
    last: async () => (await readFile(lastFile, 'utf8').catch(() => '')).trim() || undefined,
    setLast: (ip) => writeFile(lastFile, ip, { mode: 0o600 }),
  };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const stdin = await readStdin();
let ipamDir = '/nonexistent';
try {
  ipamDir = parseNetPluginConf(parseNetConf(stdin)).ipamDir;
} catch {
  // runNetPlugin reports the bad configuration
}

const deps: NetPluginDeps = {
  async ipBatch(path, commands) {
    const r = await inNetns(path, ['-batch', '-'], commands.join('\n') + '\n');
    if (r.code !== 0) throw new Error(`ip -batch in ${path} failed: ${(r.stderr || r.stdout).trim()}`);
  },
  async linkMac(path, name) {
    const r = await inNetns(path, ['-j', 'link', 'show', 'dev', name]);
    if (r.code !== 0) return undefined;
    const links = JSON.parse(r.stdout) as Array<{ address?: string }>;
    return links[0]?.address;
  },
  async linkAddresses(path, name) {
    const r = await inNetns(path, ['-j', 'addr', 'show', 'dev', name]);
    if (r.code !== 0) return [];
    const links = JSON.parse(r.stdout) as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>;
    return (links[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
  },
  async deleteLink(path, name) {
    if (!existsSync(path)) return;
    await inNetns(path, ['link', 'del', name]);
  },
  ipam: ipamStore(ipamDir),
  netnsExists: (path) => existsSync(path),
};

const outcome = await runNetPlugin(process.env, stdin, deps);
process.stdout.write(outcome.stdout, () => process.exit(outcome.exitCode));
