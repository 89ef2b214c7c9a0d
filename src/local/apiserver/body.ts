/**
 * Request bodies: read with the real server's 3 MiB limit, decoded as JSON, YAML or Kubernetes
 * protobuf by Content-Type; anything else is a 415. Malformed input is a 400 naming the problem.
 */
import type { IncomingMessage } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { decodeKubernetesProtobuf } from './proto/decode.js';
import { badRequest, tooLarge, unsupportedMediaType } from './status.js';

/** kube-apiserver's --max-request-bytes default for non-etcd-bound limits (3 MiB). */
export const MAX_BODY_BYTES = 3 * 1024 * 1024;

/** Reads the whole body; rejects with 413 past `limit` (and stops reading). */
export function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > limit) {
      req.resume();
      reject(tooLarge(limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        reject(tooLarge(limit));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on('error', (e) => {
      if (!failed) {
        failed = true;
        reject(e);
      }
    });
  });
}

/** The media type without parameters, lowercased (`application/json`). */
export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

const JSON_TYPES = new Set(['application/json', 'application/json-patch+json', 'application/merge-patch+json', 'application/strategic-merge-patch+json']);
const YAML_TYPES = new Set(['application/yaml', 'application/apply-patch+yaml']);
export const PROTOBUF_TYPE = 'application/vnd.kubernetes.protobuf';

/**
 * Deepest nesting a body may have. Go's decoder stops at 10000; the JavaScript engine's own
 * recursion (JSON.stringify, structuredClone) fails near 5000, so the limit is lower here.
 */
export const MAX_BODY_DEPTH = 1000;

/** Nesting depth of a decoded value, counted without recursion. */
function depthOf(v: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null) continue;
    if (d > max) max = d;
    if (max > MAX_BODY_DEPTH) return max;
    for (const c of Array.isArray(x) ? x : Object.values(x)) if (typeof c === 'object' && c !== null) stack.push([c, d + 1]);
  }
  return max;
}

function checkDepth<T>(v: T): T {
  if (depthOf(v) > MAX_BODY_DEPTH) throw badRequest(`the request body is nested deeper than ${MAX_BODY_DEPTH} levels`);
  return v;
}

/** Decodes a body by its media type; an empty body is `undefined`. */
export function decodeBody(buf: Buffer, type: string, accepted: string[]): unknown {
  if (buf.length === 0) return undefined;
  const text = buf.toString('utf8');
  if (JSON_TYPES.has(type) || (type === '' && accepted.includes('application/json'))) {
    let v: unknown;
    try {
      v = JSON.parse(text) as unknown;
    } catch (e) {
      throw badRequest(`error decoding JSON body: ${(e as Error).message}`);
    }
    return checkDepth(v);
  }
  if (type === PROTOBUF_TYPE && accepted.includes(PROTOBUF_TYPE)) return decodeKubernetesProtobuf(buf);
  if (YAML_TYPES.has(type)) {
    let v: unknown;
    try {
      v = parseYaml(text, { maxAliasCount: 100 }) as unknown;
    } catch (e) {
      throw badRequest(`error converting YAML to JSON: ${(e as Error).message.split('\n')[0]}`);
    }
    return checkDepth(v);
  }
  throw unsupportedMediaType(accepted);
}
