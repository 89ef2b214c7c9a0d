/**
 * The local mesh daemon's control API: JSON over HTTP on a unix socket in the state directory
 * (root-only, 0600). The CLI is its only client; it never listens on a network address.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AmbitError, errorCode, errorMessage, isAmbitError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { KubeObject } from '../controller/objects.js';
import type { LocalMesh, LocalStatus } from './mesh.js';

export const CONTROL_SOCKET = 'control.sock';
const MAX_BODY = 64 * 1024 * 1024;

export function controlSocketPath(stateDir: string): string {
  return join(stateDir, CONTROL_SOCKET);
}

export interface ExecTarget {
  netns: string;
  cgroupProcs: string;
  env: Record<string, string>;
}

/** Serves the control API until `down` is called; `onDown` runs after the reply is sent. */
export async function serveControl(mesh: LocalMesh, stateDir: string, log: Logger, onDown: () => void): Promise<Server> {
  const path = controlSocketPath(stateDir);
  await rm(path, { force: true });
  const server = createServer((req, res) => {
    handle(mesh, req, res, onDown).catch((err) => {
      log.warn({ err: err }, 'control request failed');
      reply(res, 500, { error: { code: errorCode(err) ?? 'AMBIT_ERR_LOCAL_SETUP', message: errorMessage(err) } });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return server;
}

async function handle(mesh: LocalMesh, req: IncomingMessage, res: ServerResponse, onDown: () => void): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://local');
  try {
    if (req.method === 'GET' && url.pathname === '/status') return reply(res, 200, mesh.status());
    if (req.method === 'GET' && url.pathname === '/exec-target') {
      const ns = url.searchParams.get('namespace') ?? 'default';
      const name = url.searchParams.get('name') ?? '';
      return reply(res, 200, mesh.podExecTarget(ns, name));
    }
    if (req.method === 'POST' && (url.pathname === '/apply' || url.pathname === '/delete')) {
      const body = (await readJson(req)) as { objects?: KubeObject[]; timeoutMs?: number };
      const objects = Array.isArray(body.objects) ? body.objects : [];
      const timeoutMs = typeof body.timeoutMs === 'number' ? body.timeoutMs : undefined;
      const changed = url.pathname === '/apply' ? await mesh.apply(objects, timeoutMs) : await mesh.delete(objects, timeoutMs);
      return reply(res, 200, { changed });
    }
    if (req.method === 'POST' && url.pathname === '/restart-agent') {
      const body = (await readJson(req)) as { node?: string; workers?: unknown };
      const w = body.workers;
      if (w !== undefined && w !== null && !(Number.isInteger(w) && (w as number) >= 1 && (w as number) <= 256)) {
        throw new AmbitError('AMBIT_ERR_MANIFEST_INVALID', `restart-agent: workers must be a whole number from 1 to 256 or null, got ${JSON.stringify(w)}`);
      }
      await mesh.restartAgent(String(body.node ?? ''), w === undefined ? {} : { workers: w as number | null });
      return reply(res, 200, { restarted: body.node });
    }
    if (req.method === 'POST' && url.pathname === '/down') {
      res.on('finish', onDown);
      return reply(res, 200, { stopping: true });
    }
    reply(res, 404, { error: { code: 'AMBIT_ERR_CLI_USAGE', message: `no such control endpoint ${req.method} ${url.pathname}` } });
  } catch (err) {
    const status = isAmbitError(err) && (err.code === 'AMBIT_ERR_MANIFEST_INVALID' || err.code === 'AMBIT_ERR_LOCAL_POD_NOT_FOUND') ? 400 : 500;
    reply(res, status, { error: { code: errorCode(err) ?? 'AMBIT_ERR_LOCAL_SETUP', message: errorMessage(err) } });
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new AmbitError('AMBIT_ERR_CLI_USAGE', 'control request body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {});
      } catch (err) {
        reject(new AmbitError('AMBIT_ERR_CLI_USAGE', `control request is not JSON: ${errorMessage(err)}`));
      }
    });
    req.on('error', reject);
  });
}

/** Calls the daemon; throws AMBIT_ERR_LOCAL_NOT_RUNNING when nothing listens, or the daemon's own error. */
export function callControl<T>(stateDir: string, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 180_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath: controlSocketPath(stateDir),
        method,
        path,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return reject(new AmbitError('AMBIT_ERR_LOCAL_SETUP', `local mesh daemon sent a malformed reply to ${path}`));
          }
          const err = (parsed as { error?: { code?: string; message?: string } }).error;
          if ((res.statusCode ?? 500) >= 400 || err) {
            const code = (err?.code ?? 'AMBIT_ERR_LOCAL_SETUP') as ConstructorParameters<typeof AmbitError>[0];
            return reject(new AmbitError(code, err?.message ?? `local mesh daemon answered ${res.statusCode}`));
          }
          resolve(parsed as T);
        });
      },
    );
    req.on('timeout', () => req.destroy(new AmbitError('AMBIT_ERR_LOCAL_TIMEOUT', `local mesh daemon did not answer ${path} within ${timeoutMs} ms`)));
    req.on('error', (err) => {
      const code = errorCode(err);
      if (code === 'ENOENT' || code === 'ECONNREFUSED') {
        reject(new AmbitError('AMBIT_ERR_LOCAL_NOT_RUNNING', 'no local mesh is running; start one with `ambit local up -f <manifests>`'));
      } else reject(err);
    });
    if (payload) req.end(payload);
    else req.end();
  });
}

export type { LocalStatus };
