/**
 * The controller's `istio.v1.auth.IstioCertificateService`: authenticates the calling node agent,
 * lets it request only identities of pods scheduled on its node (istiod's NodeAuthorizer rule), and
 * signs the CSR with the CertificateAuthority.
 *
 * Every request ends in exactly one of: issued, denied (PERMISSION_DENIED), unauthenticated
 * (UNAUTHENTICATED), invalid (INVALID_ARGUMENT) or error (INTERNAL), each counted once.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Counter, type Registry } from 'prom-client';
import { AmbitError, errorMessage, isAmbitError } from '../../shared/errors.js';
import { parseSpiffeId, tryParseSpiffeId } from '../../shared/identity.js';
import { silentLogger, type Logger } from '../../shared/log.js';
import { loadProto } from '../../shared/api/load.js';
import { readCsr, type CertificateAuthority } from './authority.js';

export const CA_SERVICE_PATH = '/istio.v1.auth.IstioCertificateService/CreateCertificate';
export const DEFAULT_CERT_TTL_MS = 24 * 3_600_000;
export const MAX_CERT_TTL_MS = 90 * 24 * 3_600_000;
/** Metadata key (inside the request's Struct) a node agent names the workload identity with. */
export const IMPERSONATED_IDENTITY_KEY = 'ImpersonatedIdentity';

/** Who is calling: a node agent. */
export interface CallerIdentity {
  node: string;
}

/** Authenticates a CA caller from its gRPC metadata (`authorization: Bearer <token>`). */
export interface CallerAuthenticator {
  authenticate(metadata: grpc.Metadata): Promise<CallerIdentity | undefined>;
}

/** Decides whether `node` may obtain a certificate for `spiffe`. */
export interface IdentityAuthorizer {
  isAllowed(node: string, spiffe: string): boolean;
}

/** A pod as the authorizer needs it. */
export interface PodIdentityRef {
  namespace: string;
  serviceAccount: string;
}

/** The bearer token of a gRPC call, or undefined. */
export function bearerToken(metadata: grpc.Metadata): string | undefined {
  for (const v of metadata.get('authorization')) {
    const text = typeof v === 'string' ? v : v.toString('utf8');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(text);
    if (m) return m[1];
  }
  return undefined;
}

/** A fresh random bootstrap token (32 bytes, base64url). Never log it. */
export function generateNodeToken(): string {
  return randomBytes(32).toString('base64url');
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/**
 * Per-node bootstrap tokens (local mode: the controller makes one per node and hands it to the agent
 * it starts). Tokens are compared as SHA-256 digests in constant time.
 */
export class StaticTokenAuthenticator implements CallerAuthenticator {
  readonly #byDigest = new Map<string, { d: Buffer; node: string }>();

  constructor(tokens: Map<string, string> | Record<string, string> = {}) {
    const entries = tokens instanceof Map ? tokens.entries() : Object.entries(tokens);
    for (const [token, node] of entries) this.set(token, node);
  }

  /** Adds or replaces the token for a node. */
  set(token: string, node: string): void {
    if (token.length === 0) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `empty ca token for node ${node}`);
    const d = digest(token);
    this.#byDigest.set(d.toString('hex'), { d, node });
  }

  delete(token: string): void {
    this.#byDigest.delete(digest(token).toString('hex'));
  }

  async authenticate(metadata: grpc.Metadata): Promise<CallerIdentity | undefined> {
    const token = bearerToken(metadata);
    if (token === undefined) return undefined;
    const d = digest(token);
    let found: string | undefined;
    for (const e of this.#byDigest.values()) {
      if (timingSafeEqual(e.d, d)) found = e.node;
    }
    return found === undefined ? undefined : { node: found };
  }
}

/**
 * istiod's node rule: `node` may have `spiffe` only if a pod with that namespace and service account
 * is scheduled on it. `podsOnNode` is supplied by the controller (its current view of pods).
 */
export function createNodeAuthorizer(podsOnNode: (node: string) => Iterable<PodIdentityRef>): IdentityAuthorizer {
  return {
    isAllowed(node: string, spiffe: string): boolean {
      const id = tryParseSpiffeId(spiffe);
      if (!id) return false;
      for (const p of podsOnNode(node)) {
        if (p.namespace === id.namespace && p.serviceAccount === id.serviceAccount) return true;
      }
      return false;
    },
  };
}

export type CaRequestResult = 'issued' | 'denied' | 'unauthenticated' | 'invalid' | 'error';

export interface CaServiceMetrics {
  requests: Counter<'result'>;
  issued: Counter<string>;
}

export function createCaServiceMetrics(registry: Registry): CaServiceMetrics {
  return {
    requests: new Counter({
      name: 'ambit_ca_requests_total',
      help: 'Certificate requests handled by the CA, by result (issued, denied, unauthenticated, invalid, error).',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    issued: new Counter({
      name: 'ambit_ca_certificates_issued_total',
      help: 'Workload certificates signed by the CA.',
      registers: [registry],
    }),
  };
}

export interface CaServiceOptions {
  authority: CertificateAuthority;
  authenticator: CallerAuthenticator;
  authorizer: IdentityAuthorizer;
  defaultTtlMs?: number;
  maxTtlMs?: number;
  registry: Registry;
  log?: Logger;
}

export interface CaService {
  /** Pass both to `server.addService(definition, implementation)`. */
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  metrics: CaServiceMetrics;
}

interface CertRequest {
  csr?: string;
  validityDuration?: number | string;
  metadata?: { fields?: Record<string, { stringValue?: string; kind?: string }> } | null;
}

class Refusal extends Error {
  constructor(readonly status: grpc.status, readonly result: CaRequestResult, message: string) {
    super(message);
  }
}

let cachedDefinition: grpc.ServiceDefinition | undefined;

/** The IstioCertificateService definition loaded from src/shared/api/ca.proto. */
export function caServiceDefinition(): grpc.ServiceDefinition {
  if (!cachedDefinition) {
    const pkg = loadProto('ca.proto') as unknown as {
      istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } };
    };
    cachedDefinition = pkg.istio.v1.auth.IstioCertificateService.service;
  }
  return cachedDefinition;
}

/** Validity to sign for: the request's seconds when positive, else the default; never above the max. */
export function resolveTtlMs(validityDurationSec: number, defaultTtlMs: number, maxTtlMs: number): number {
  const requested = Number.isFinite(validityDurationSec) && validityDurationSec > 0 ? validityDurationSec * 1000 : defaultTtlMs;
  return Math.min(requested, maxTtlMs);
}

export function createCaService(opts: CaServiceOptions): CaService {
  const log = (opts.log ?? silentLogger()).child({ component: 'ca' });
  const defaultTtlMs = opts.defaultTtlMs ?? DEFAULT_CERT_TTL_MS;
  const maxTtlMs = opts.maxTtlMs ?? MAX_CERT_TTL_MS;
  const metrics = createCaServiceMetrics(opts.registry);
  const td = opts.authority.trustDomain;

  async function handle(call: grpc.ServerUnaryCall<CertRequest, unknown>): Promise<string[]> {
    const caller = await opts.authenticator.authenticate(call.metadata);
    if (!caller) {
      throw new Refusal(
        grpc.status.UNAUTHENTICATED,
        'unauthenticated',
        'certificate request without a valid bearer token; the agent must send "authorization: Bearer <node token>"',
      );
    }
    const node = caller.node;
    const req = call.request;
    if (typeof req.csr !== 'string' || req.csr.length === 0) {
      throw new Refusal(grpc.status.INVALID_ARGUMENT, 'invalid', `certificate request from node ${node} has an empty csr`);
    }
    const impersonated = req.metadata?.fields?.[IMPERSONATED_IDENTITY_KEY]?.stringValue;
    let identity = typeof impersonated === 'string' && impersonated.length > 0 ? impersonated : undefined;
    if (identity === undefined) {
      let uris: string[];
      try {
        uris = readCsr(req.csr).uris;
      } catch (e) {
        throw new Refusal(grpc.status.INVALID_ARGUMENT, 'invalid', `certificate request from node ${node}: ${errorMessage(e)}`);
      }
      if (uris.length !== 1) {
        throw new Refusal(
          grpc.status.INVALID_ARGUMENT,
          'invalid',
          `certificate request from node ${node} names no identity: set metadata ${IMPERSONATED_IDENTITY_KEY} or put one URI SAN in the csr (found ${uris.length})`,
        );
      }
      identity = uris[0]!;
    }
    let idTd: string;
    try {
      idTd = parseSpiffeId(identity).trustDomain;
    } catch (e) {
      throw new Refusal(grpc.status.INVALID_ARGUMENT, 'invalid', `certificate request from node ${node}: ${errorMessage(e)}`);
    }
    if (idTd !== td) {
      throw new Refusal(
        grpc.status.PERMISSION_DENIED,
        'denied',
        `identity ${identity} requested by node ${node} is in trust domain ${idTd}, but this ca serves ${td}`,
      );
    }
    if (!opts.authorizer.isAllowed(node, identity)) {
      throw new Refusal(
        grpc.status.PERMISSION_DENIED,
        'denied',
        `node ${node} may not request identity ${identity}: no pod with that service account is scheduled on node ${node}`,
      );
    }
    const ttlMs = resolveTtlMs(Number(req.validityDuration ?? 0), defaultTtlMs, maxTtlMs);
    try {
      const chain = opts.authority.signCsr(req.csr, { identity, ttlMs });
      log.info({ identity, node, ttlMs }, 'certificate issued');
      return chain;
    } catch (e) {
      if (isAmbitError(e, 'AMBIT_ERR_CA_CSR_INVALID')) {
        throw new Refusal(grpc.status.INVALID_ARGUMENT, 'invalid', `certificate request from node ${node} for ${identity}: ${e.message}`);
      }
      if (isAmbitError(e, 'AMBIT_ERR_CA_IDENTITY_DENIED')) {
        throw new Refusal(grpc.status.PERMISSION_DENIED, 'denied', `node ${node}: ${e.message}`);
      }
      throw e;
    }
  }

  const implementation: grpc.UntypedServiceImplementation = {
    CreateCertificate(call: grpc.ServerUnaryCall<CertRequest, unknown>, callback: grpc.sendUnaryData<unknown>): void {
      handle(call).then(
        (certChain) => {
          metrics.requests.inc({ result: 'issued' });
          metrics.issued.inc();
          callback(null, { certChain });
        },
        (e: unknown) => {
          if (e instanceof Refusal) {
            metrics.requests.inc({ result: e.result });
            log.warn({ result: e.result, reason: e.message }, 'certificate request refused');
            callback({ code: e.status, details: e.message });
            return;
          }
          metrics.requests.inc({ result: 'error' });
          log.error({ err: e }, 'certificate request failed');
          callback({ code: grpc.status.INTERNAL, details: `ca failed to sign: ${errorMessage(e)}` });
        },
      );
    },
  };

  return { definition: caServiceDefinition(), implementation, metrics };
}
