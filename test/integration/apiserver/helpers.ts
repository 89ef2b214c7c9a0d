/** Test helpers: an API server in a temp state folder, the real kubectl against it, raw HTTPS calls. */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../../src/shared/log.js';
import { ApiServer, type ApiServerOptions } from '../../../src/local/apiserver/server.js';

export interface TestServer {
  server: ApiServer;
  dir: string;
  stateDir: string;
  kubeconfig: string;
  kubectl(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<KubectlResult>;
  call(method: string, path: string, body?: unknown, opts?: CallOptions): Promise<CallResult>;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CallOptions {
  token?: string | null;
  contentType?: string;
  accept?: string;
  headers?: Record<string, string>;
  rawBody?: Buffer | string;
}

export interface CallResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

export const silentLog = createLogger({ level: 'silent' });

/** Runs the real kubectl with a fresh cache dir; bounded by a timeout. */
export function runKubectl(kubeconfig: string, cacheDir: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      'kubectl',
      ['--cache-dir', cacheDir, ...args],
      { env: { ...process.env, KUBECONFIG: kubeconfig }, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
        resolve({ code, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** An HTTPS call to the server (admin token unless `token` is given; `null` sends none). */
export function httpsCall(server: ApiServer, method: string, path: string, body?: unknown, opts: CallOptions = {}): Promise<CallResult> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, server.url);
    const headers: Record<string, string> = { accept: opts.accept ?? 'application/json', ...(opts.headers ?? {}) };
    const token = opts.token === undefined ? server.adminToken : opts.token;
    if (token !== null) headers['authorization'] = `Bearer ${token}`;
    let payload: Buffer | undefined;
    if (opts.rawBody !== undefined) payload = Buffer.from(opts.rawBody);
    else if (body !== undefined) payload = Buffer.from(JSON.stringify(body));
    if (payload !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const req = httpsRequest(url, { method, headers, ca: server.caCertPem, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** A streaming watch: lines as they arrive; close() ends it. */
export interface WatchStream {
  lines: any[];
  /** Resolves once `n` events arrived (or rejects after timeoutMs). */
  waitFor(n: number, timeoutMs?: number): Promise<any[]>;
  ended: Promise<void>;
  close(): void;
}

export function httpsWatch(server: ApiServer, path: string, opts: CallOptions = {}): Promise<WatchStream> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, server.url);
    const headers: Record<string, string> = { accept: opts.accept ?? 'application/json' };
    headers['authorization'] = `Bearer ${opts.token ?? server.adminToken}`;
    const lines: any[] = [];
    const waiters: Array<() => void> = [];
    let endResolve: () => void = () => {};
    const ended = new Promise<void>((r) => (endResolve = r));
    const req = httpsRequest(url, { method: 'GET', headers, ca: server.caCertPem }, (res) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => reject(Object.assign(new Error(`watch status ${res.statusCode}: ${Buffer.concat(chunks).toString()}`), { status: res.statusCode })));
        return;
      }
      let buf = '';
      res.on('data', (c: Buffer) => {
        buf += c.toString('utf8');
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line.trim() !== '') lines.push(JSON.parse(line));
          for (const w of waiters.splice(0)) w();
        }
      });
      res.on('end', () => endResolve());
      res.on('close', () => endResolve());
      resolve({
        lines,
        ended,
        close: () => req.destroy(),
        waitFor(n: number, timeoutMs = 10_000) {
          return new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(new Error(`watch ${path}: ${lines.length} of ${n} events within ${timeoutMs} ms: ${JSON.stringify(lines.map((l) => l.type))}`)), timeoutMs);
            const check = (): void => {
              if (lines.length >= n) {
                clearTimeout(timer);
                ok(lines.slice(0, n));
              } else waiters.push(check);
            };
            check();
          });
        },
      });
    });
    req.on('error', (e) => {
      endResolve();
      reject(e);
    });
    req.end();
  });
}

/** Starts an API server in a temp folder; everything is removed in `t.after`. */
export async function startTestServer(t: { after(fn: () => unknown): void }, opts: Partial<ApiServerOptions> = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-apiserver-'));
  const stateDir = opts.stateDir ?? join(dir, 'state');
  const server = await ApiServer.start({ log: silentLog, ...opts, stateDir });
  const kubeconfig = join(dir, 'kubeconfig');
  server.writeKubeconfig(kubeconfig);
  const cacheDir = join(dir, 'kube-cache');
  t.after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    server,
    dir,
    stateDir,
    kubeconfig,
    kubectl: (args, o) => runKubectl(kubeconfig, cacheDir, args, o),
    call: (method, path, body, o) => httpsCall(server, method, path, body, o),
  };
}

/** Polls `check` every 25 ms until it returns a value other than undefined, or fails after timeoutMs. */
export async function waitUntil<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts main.js as its own process; resolves with its first stdout line (url, kubeconfig). */
export function startServerProcess(stateDir: string, extra: string[] = []): Promise<{ child: ChildProcess; url: string; kubeconfig: string }> {
  return new Promise((resolve, reject) => {
    const main = new URL('../../../src/local/apiserver/main.js', import.meta.url).pathname;
    const child = spawn(process.execPath, [main, '--state-dir', stateDir, '--log-level', 'warn', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`api server process did not start within 30 s: ${err}`));
    }, 30_000);
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        const info = JSON.parse(out.slice(0, nl)) as { url: string; kubeconfig: string };
        resolve({ child, url: info.url, kubeconfig: info.kubeconfig });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`api server process exited with ${code}: ${err}`));
    });
  });
}

/** Sends `signal` and waits (bounded) for the process to exit. */
export function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    child.kill(signal);
  });
}
