/**
 * A stand-in for the Kubernetes API server (HTTPS on 127.0.0.1, a throwaway self-signed
 * certificate) serving fixture objects by path, with bearer-token authentication, per-token
 * allowed paths (a tiny RBAC) and TokenRequest. Mocking only the Kubernetes API is allowed
 * (STYLE.md §9); everything else in the tests that use it is real.
 */
import { createServer, type Server } from 'node:https';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

export interface StubRequest {
  method: string;
  path: string;
  token: string | undefined;
  body: unknown;
}

export interface KubeApiStub {
  url: string;
  caPem: string;
  requests: StubRequest[];
  /** Objects by API path (`/api/v1/namespaces/demo`). */
  objects: Map<string, Record<string, unknown>>;
  /** Token → the paths (regexps over `METHOD path`) it may use; TokenRequest results are added here. */
  tokens: Map<string, RegExp[]>;
  /** While set, every request answers 503 (an API server that is away). */
  unavailable: boolean;
  close(): Promise<void>;
}

/** A self-signed certificate for 127.0.0.1 (openssl is on every machine the tests run on). */
function selfSigned(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-kube-stub-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=kube-apiserver-stub', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const status = (code: number, reason: string, message: string): Record<string, unknown> => ({ apiVersion: 'v1', kind: 'Status', status: 'Failure', code, reason, message });

/** Tokens issued by TokenRequest get these permissions, keyed by service account name. */
export type IssuedPermissions = Record<string, RegExp[]>;

export async function startKubeApiStub(tokens: Record<string, RegExp[]>, issued: IssuedPermissions = {}): Promise<KubeApiStub> {
  const { key, cert } = selfSigned();
  const stub: KubeApiStub = {
    url: '',
    caPem: cert,
    requests: [],
    objects: new Map(),
    tokens: new Map(Object.entries(tokens)),
    unavailable: false,
    close: async () => undefined,
  };
  let issuedCount = 0;
  const server: Server = createServer({ key, cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const auth = req.headers.authorization;
      const token = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
      const path = (req.url ?? '').split('?')[0]!;
      let body: unknown;
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
      } catch {
        body = undefined;
      }
      stub.requests.push({ method: req.method ?? '', path, token, body });
      const send = (code: number, obj: unknown): void => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(obj));
      };
      if (stub.unavailable) return send(503, status(503, 'ServiceUnavailable', 'the server is currently unable to handle the request'));
      const allowed = token === undefined ? undefined : stub.tokens.get(token);
      if (!allowed) return send(401, status(401, 'Unauthorized', 'Unauthorized'));
      if (!allowed.some((r) => r.test(`${req.method} ${path}`))) return send(403, status(403, 'Forbidden', `forbidden: ${req.method} ${path}`));
      const tokenRequest = /^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts\/([^/]+)\/token$/.exec(path);
      if (req.method === 'POST' && tokenRequest) {
        const sa = tokenRequest[2]!;
        const issuedToken = `issued-${++issuedCount}-${sa}`;
        stub.tokens.set(issuedToken, issued[sa] ?? []);
        const ttl = ((body as { spec?: { expirationSeconds?: number } })?.spec?.expirationSeconds ?? 3600) * 1000;
        return send(201, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: (body as { spec?: unknown })?.spec, status: { token: issuedToken, expirationTimestamp: new Date(Date.now() + ttl).toISOString() } });
      }
      if (req.method === 'GET') {
        const obj = stub.objects.get(path);
        return obj ? send(200, obj) : send(404, status(404, 'NotFound', `${path} not found`));
      }
      send(405, status(405, 'MethodNotAllowed', `${req.method} is not supported by the stub`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stub.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  stub.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return stub;
}
