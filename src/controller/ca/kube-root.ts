/**
 * The mesh CA kept in a Kubernetes Secret (`<namespace>/ambit-ca`), so every controller replica
 * signs with the same root: the first leader creates it when it is absent, every replica reads it.
 * A user may put their own CA there instead (an intermediate of their root), with Istio's
 * `cacerts` key names: ca-cert.pem, ca-key.pem and optionally cert-chain.pem and root-cert.pem.
 *
 * Invariants: the key never leaves the Secret and this process (never logged); creation is a
 * plain create, so two replicas racing get one winner (409 AlreadyExists for the other, which then
 * reads the winner's).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { isAlreadyExists, type KubeClient } from '../source/kube-client.js';
import { collectionPath, objectPath, RESOURCES } from '../source/kube-paths.js';
import { CertificateAuthority, generateRootPem } from './authority.js';

export const CA_SECRET_NAME = 'ambit-ca';
export const CA_SECRET_TYPE = 'istio.io/ca-root';
export const CA_CERT_KEY = 'ca-cert.pem';
export const CA_KEY_KEY = 'ca-key.pem';
export const CA_CHAIN_KEY = 'cert-chain.pem';
export const CA_ROOT_KEY = 'root-cert.pem';

export interface KubeCaOptions {
  client: KubeClient;
  /** The controller's namespace (where the Secret lives). */
  namespace: string;
  trustDomain: string;
  /** Whether this replica may create the Secret now (the leader). */
  mayCreate: () => boolean;
  log: Logger;
  /** Between reads while waiting for the leader to create it (default 1 s). */
  pollMs?: number;
  /** Give up after this long (default: never). */
  timeoutMs?: number;
  signal?: AbortSignal;
  now?: () => number;
}

interface SecretObject {
  metadata?: { name?: string };
  type?: string;
  data?: Record<string, string>;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The signing chain of a CA Secret: ca-cert.pem, then cert-chain.pem, then root-cert.pem, each certificate once. */
export function caChainFromSecret(data: Record<string, string>): { certPem: string; keyPem: string } | undefined {
  const text = (k: string): string => (data[k] === undefined ? '' : Buffer.from(data[k], 'base64').toString('utf8'));
  const keyPem = text(CA_KEY_KEY);
  const caCert = text(CA_CERT_KEY);
  if (!keyPem || !caCert) return undefined;
  const seen = new Set<string>();
  const chain: string[] = [];
  for (const pem of [caCert, text(CA_CHAIN_KEY), text(CA_ROOT_KEY)].flatMap((t) => t.match(PEM_CERT) ?? [])) {
    const norm = pem.replace(/\s+/g, '');
    if (seen.has(norm)) continue;
    seen.add(norm);
    chain.push(`${pem}\n`);
  }
  return { certPem: chain.join(''), keyPem };
}

/**
 * Reads the CA from its Secret, creating it (a new self-signed root) when absent and this replica
 * may; otherwise waits for it. Throws AMBIT_ERR_CA_INIT when the Secret is unusable (wrong keys,
 * a key that does not match) or the timeout passes.
 */
export async function loadOrCreateKubeCa(opts: KubeCaOptions): Promise<CertificateAuthority> {
  const path = objectPath(RESOURCES.secrets, opts.namespace, CA_SECRET_NAME);
  const where = `Secret ${opts.namespace}/${CA_SECRET_NAME}`;
  const started = Date.now();
  let waitingLogged = false;
  for (;;) {
    opts.signal?.throwIfAborted();
    let secret: SecretObject | undefined;
    let readFailed = false;
    try {
      secret = await opts.client.getOptional<SecretObject>(path);
    } catch (e) {
      readFailed = true;
      opts.log.warn({ err: e }, `cannot read the CA ${where}; retrying`);
    }
    if (secret) {
      const pem = caChainFromSecret(secret.data ?? {});
      if (!pem) throw new AmbitError('AMBIT_ERR_CA_INIT', `${where} must hold ${CA_CERT_KEY} and ${CA_KEY_KEY}`);
      try {
        const ca = CertificateAuthority.fromPem({ ...pem, trustDomain: opts.trustDomain, ...(opts.now ? { now: opts.now } : {}) });
        opts.log.info({ secret: `${opts.namespace}/${CA_SECRET_NAME}`, notAfter: ca.notAfter.toISOString() }, 'mesh CA loaded');
        return ca;
      } catch (e) {
        throw new AmbitError('AMBIT_ERR_CA_INIT', `${where} holds no usable CA: ${errorMessage(e)}`, { cause: e });
      }
    }
    if (!readFailed && opts.mayCreate()) {
      const { certPem, keyPem } = generateRootPem({ trustDomain: opts.trustDomain, ...(opts.now ? { now: opts.now } : {}) });
      const b64 = (t: string): string => Buffer.from(t).toString('base64');
      try {
        await opts.client.create(collectionPath(RESOURCES.secrets, opts.namespace), {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: CA_SECRET_NAME, namespace: opts.namespace, labels: { 'app.kubernetes.io/managed-by': 'ambit-controller' } },
          type: CA_SECRET_TYPE,
          data: { [CA_CERT_KEY]: b64(certPem), [CA_KEY_KEY]: b64(keyPem), [CA_ROOT_KEY]: b64(certPem) },
        });
        opts.log.info({ secret: `${opts.namespace}/${CA_SECRET_NAME}` }, 'created a new mesh root CA');
      } catch (e) {
        if (!isAlreadyExists(e)) opts.log.warn({ err: e }, `cannot create the CA ${where}; retrying`);
      }
      continue;
    }
    if (!waitingLogged && !readFailed) {
      waitingLogged = true;
      opts.log.info(`waiting for the leader to create the CA ${where}`);
    }
    if (opts.timeoutMs !== undefined && Date.now() - started > opts.timeoutMs) {
      throw new AmbitError('AMBIT_ERR_CA_INIT', `the CA ${where} did not appear within ${opts.timeoutMs}ms; is a controller replica leading, and may it create Secrets there?`);
    }
    await sleep(opts.pollMs ?? 1000, undefined, opts.signal ? { signal: opts.signal } : undefined);
  }
}
