/**
 * The few Kubernetes API requests the CNI plugin and its installer make (GET a pod and its
 * namespace, GET a DaemonSet, request a token), over node:https, with the cluster, CA and
 * credentials of a kubeconfig or of the pod's in-cluster service account.
 *
 * Not @kubernetes/client-node: the plugin is a process started for every pod sandbox on a node
 * and runs from a small payload copied to the host; client-node's import alone costs more time
 * than the whole ADD should, and its dependency tree would have to be copied with it.
 */
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { AmbitError, errorMessage } from '../shared/errors.js';

/** Where to send requests and how to authenticate. */
export interface KubeTarget {
  /** https://host:port (an http:// server is refused: tokens only travel over TLS). */
  server: URL;
  ca?: Buffer;
  insecureSkipTlsVerify: boolean;
  /** Bearer token, or a file re-read on every request (projected tokens rotate). */
  token?: string;
  tokenFile?: string;
  clientCert?: Buffer;
  clientKey?: Buffer;
}

export interface KubeResponse {
  status: number;
  body: unknown;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fail(message: string, cause?: unknown): AmbitError {
  return new AmbitError('AMBIT_ERR_CNI_KUBE_LOOKUP', message, cause === undefined ? {} : { cause });
}

/**
 * Parses kubeconfig text (JSON, or YAML when the yaml module is present) into the target of its
 * current context. File references are resolved against the kubeconfig's folder.
 */
export async function parseKubeconfig(text: string, file: string): Promise<KubeTarget> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    try {
      const yaml = await import('yaml');
      doc = yaml.parse(text);
    } catch (e) {
      throw fail(`kubeconfig ${file} is neither JSON nor readable YAML: ${errorMessage(e)}`, e);
    }
  }
  if (!isRecord(doc)) throw fail(`kubeconfig ${file} is not a kubeconfig object`);
  const named = (list: unknown, name: unknown, what: string): Record<string, unknown> => {
    const entries = Array.isArray(list) ? list.filter(isRecord) : [];
    const hit = name === undefined ? entries[0] : entries.find((e) => e['name'] === name);
    const inner = hit?.[what];
    if (!isRecord(inner)) throw fail(`kubeconfig ${file}: no ${what} ${name === undefined ? '' : JSON.stringify(name)} found`);
    return inner;
  };
  const contextName = doc['current-context'];
  const context = named(doc['contexts'], contextName === '' ? undefined : contextName, 'context');
  const cluster = named(doc['clusters'], context['cluster'], 'cluster');
  const user = context['user'] === undefined ? {} : named(doc['users'], context['user'], 'user');
  const base = dirname(file);
  const readRef = (value: unknown, data: unknown, what: string): Buffer | undefined => {
    if (typeof data === 'string' && data !== '') return Buffer.from(data, 'base64');
    if (typeof value === 'string' && value !== '') {
      const p = isAbsolute(value) ? value : join(base, value);
      try {
        return readFileSync(p);
      } catch (e) {
        throw fail(`kubeconfig ${file}: cannot read ${what} ${p}: ${errorMessage(e)}`, e);
      }
    }
    return undefined;
  };
  let server: URL;
  try {
    server = new URL(String(cluster['server']));
  } catch (e) {
    throw fail(`kubeconfig ${file}: cluster server ${JSON.stringify(cluster['server'])} is not a URL`, e);
  }
  if (server.protocol !== 'https:') throw fail(`kubeconfig ${file}: server ${server.href} must use https (the plugin sends a token)`);
  const target: KubeTarget = { server, insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true };
  const ca = readRef(cluster['certificate-authority'], cluster['certificate-authority-data'], 'certificate-authority');
  if (ca) target.ca = ca;
  if (typeof user['token'] === 'string' && user['token'] !== '') target.token = user['token'];
  if (typeof user['tokenFile'] === 'string' && user['tokenFile'] !== '') {
    target.tokenFile = isAbsolute(user['tokenFile']) ? user['tokenFile'] : join(base, user['tokenFile']);
  }
  const cert = readRef(user['client-certificate'], user['client-certificate-data'], 'client-certificate');
  const key = readRef(user['client-key'], user['client-key-data'], 'client-key');
  if (cert) target.clientCert = cert;
  if (key) target.clientKey = key;
  return target;
}

/** Reads and parses a kubeconfig file. */
export async function loadKubeconfig(file: string): Promise<KubeTarget> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw fail(`cannot read kubeconfig ${file}: ${errorMessage(e)}; has the installer (the agent DaemonSet) run on this node?`, e);
  }
  return parseKubeconfig(text, file);
}

/** The service-account files every pod gets (unless automount is off). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The in-cluster target of a pod: KUBERNETES_SERVICE_HOST/PORT, its CA and its (rotating) token. */
export function inClusterTarget(env: Readonly<Record<string, string | undefined>>, saDir = SERVICE_ACCOUNT_DIR): KubeTarget {
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '443';
  if (!host) throw fail('KUBERNETES_SERVICE_HOST is not set: not running in a pod?');
  const hostPart = host.includes(':') ? `[${host}]` : host;
  let ca: Buffer;
  try {
    ca = readFileSync(join(saDir, 'ca.crt'));
  } catch (e) {
    throw fail(`cannot read ${join(saDir, 'ca.crt')}: ${errorMessage(e)}; is the service-account token mounted?`, e);
  }
  return { server: new URL(`https://${hostPart}:${port}`), ca, insecureSkipTlsVerify: false, tokenFile: join(saDir, 'token') };
}

function bearer(target: KubeTarget): string | undefined {
  if (target.tokenFile) {
    try {
      return readFileSync(target.tokenFile, 'utf8').trim();
    } catch (e) {
      throw fail(`cannot read token file ${target.tokenFile}: ${errorMessage(e)}`, e);
    }
  }
  return target.token;
}

/**
 * One request; resolves with the status and the parsed JSON body (or the raw text), rejects
 * (AMBIT_ERR_CNI_KUBE_LOOKUP) on connection errors and on the timeout.
 */
export function kubeRequest(target: KubeTarget, method: string, path: string, body: unknown, timeoutMs: number): Promise<KubeResponse> {
  const token = bearer(target);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const url = new URL(path, target.server);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        agent: false,
        ...(target.ca ? { ca: target.ca } : {}),
        ...(target.clientCert ? { cert: target.clientCert } : {}),
        ...(target.clientKey ? { key: target.clientKey } : {}),
        rejectUnauthorized: !target.insecureSkipTlsVerify,
        headers: {
          accept: 'application/json',
          'user-agent': 'ambit-cni',
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // Keep the text: error pages from proxies are not JSON.
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(fail(`${method} ${url.href}: ${errorMessage(e)}`, e));
        });
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(fail(`${method} ${url.href} failed: ${errorMessage(e)}; is the API server reachable from this node?`, e));
    });
    req.end(payload);
  });
}

/** The `message` of a Kubernetes Status body, for error texts. */
export function statusMessage(body: unknown): string {
  if (isRecord(body) && typeof body['message'] === 'string') return body['message'];
  return typeof body === 'string' ? body.slice(0, 200) : JSON.stringify(body)?.slice(0, 200) ?? '';
}

/** GET of one object; rejects with AMBIT_ERR_CNI_KUBE_LOOKUP unless the answer is 200 with an object. */
export async function kubeGetObject(target: KubeTarget, path: string, timeoutMs: number): Promise<Record<string, unknown>> {
  const res = await kubeRequest(target, 'GET', path, undefined, timeoutMs);
  if (res.status !== 200 || !isRecord(res.body)) {
    const hint = res.status === 401 ? '; is the plugin\'s token (written by the installer) expired?' : res.status === 403 ? '; does the ambit-cni ClusterRole allow it?' : '';
    throw fail(`GET ${path} answered ${res.status}: ${statusMessage(res.body)}${hint}`);
  }
  return res.body;
}
