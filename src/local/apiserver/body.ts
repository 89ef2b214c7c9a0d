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

/** Decodes a body by its media type; an empty body is `undefined`. */
export function decodeBody(buf: Buffer, type: string, accepted: string[]): unknown {
  if (buf.length === 0) return undefined;
  const text = buf.toString('utf8');
  if (JSON_TYPES.has(type) || (type === '' && accepted.includes('application/json'))) {
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw badRequest(`error decoding JSON body: ${(e as Error).message}`);
    }
  }
  if (type === PROTOBUF_TYPE && accepted.includes(PROTOBUF_TYPE)) return decodeKubernetesProtobuf(buf);
  if (YAML_TYPES.has(type)) {
    try {
      return parseYaml(text, { maxAliasCount: 100 }) as unknown;
    } catch (e) {
      throw badRequest(`error converting YAML to JSON: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw unsupportedMediaType(accepted);
}
