/** JSON request bodies and replies for the small node:http servers Ambit runs on local sockets. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage } from './errors.js';

/** Why a body was not read: too large (answer 413) or not JSON (answer 400). */
export class JsonBodyError extends Error {
  constructor(
    readonly reason: 'too-large' | 'not-json',
    message: string,
  ) {
    super(message);
  }
}

/** Writes one JSON reply, unless an answer already went out. */
export function replyJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Reads the request body as JSON, at most `maxBytes` (the rest is drained, not kept). An empty
 * body reads as `emptyValue`. Rejects with JsonBodyError.
 */
export function readJsonBody(req: IncomingMessage, maxBytes: number, emptyValue?: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > maxBytes) {
        failed = true;
        reject(new JsonBodyError('too-large', `request body larger than ${maxBytes} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (failed) return;
      if (chunks.length === 0 && emptyValue !== undefined) return resolve(emptyValue);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (e) {
        reject(new JsonBodyError('not-json', `request body is not JSON: ${errorMessage(e)}`));
      }
    });
    req.on('error', (e) => {
      if (failed) return;
      failed = true;
      reject(e);
    });
  });
}

/**
 * Reads a client response's body as text, at most `maxBytes`: a larger answer is destroyed and
 * rejects, so a broken or hostile server cannot fill the memory.
 */
export function readAnswerText(m: IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    m.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) m.destroy(new Error(`answer larger than ${maxBytes} bytes`));
      else chunks.push(c);
    });
    m.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    m.on('error', reject);
  });
}

/**
 * Reads newline-separated JSON values from a response (a Kubernetes watch) and hands each to
 * `onValue` while `active()` holds. Blank lines and lines that are not JSON are skipped, as
 * client-go does; a line longer than `maxLineBytes` ends the response with an error.
 */
export function readJsonLines(m: IncomingMessage, onValue: (v: unknown) => void, opts: { active: () => boolean; maxLineBytes: number }): void {
  let buf = '';
  m.setEncoding('utf8');
  m.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0 && opts.active()) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === '') continue;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        continue;
      }
      onValue(v);
    }
    if (buf.length > opts.maxLineBytes) m.destroy(new Error(`a watch event longer than ${opts.maxLineBytes} bytes`));
  });
}
