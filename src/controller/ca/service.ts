/**
 * The controller's `istio.v1.auth.IstioCertificateService`: authenticates the caller from its bearer
 * token, lets a node agent request only identities of pods scheduled on its node (istiod's
 * NodeAuthorizer rule) and a pod only its own identity (callers.ts), and signs the CSR with the
 * CertificateAuthority for at most the configured maximum lifetime, whatever the request asks.
 *
 * Every request ends in exactly one of: issued, denied (PERMISSION_DENIED), unauthenticated
 * (UNAUTHENTICATED), invalid (INVALID_ARGUMENT) or error (INTERNAL), each counted once.
 */
import * as grpc from '@grpc/grpc-js';
import { Counter, type Registry } from 'prom-client';
import { errorMessage, isAmbitError } from '../../shared/errors.js';
import { tryParseSpiffeId } from '../../shared/identity.js';
import { silentLogger, type Logger } from '../../shared/log.js';
import { loadProto } from '../../shared/api/load.js';
import { readCsr, type CertificateAuthority } from './authority.js';
import { bearerToken, callerKey, type Caller, type CallerAuthenticator } from '../callers.js';

export const CA_SERVICE_PATH = '/istio.v1.auth.IstioCertificateService/CreateCertificate';
export const DEFAULT_CERT_TTL_MS = 24 * 3_600_000;
/** The longest workload lifetime the controller can be configured to sign. */
export const MAX_CERT_TTL_MS = 90 * 24 * 3_600_000;
/** Metadata key (inside the request's Struct) a node agent names the workload identity with. */
export const IMPERSONATED_IDENTITY_KEY = 'ImpersonatedIdentity';

/** Why a caller may not have a certificate for an identity, or undefined when it may (callers.ts). */
export type IdentityAuthorizer = (caller: Caller, spiffe: string) => string | undefined;

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
  authorize: IdentityAuthorizer;
  /** Lifetime of a certificate whose request names none (default 24h). */
  defaultTtlMs?: number;
  /** The longest lifetime the CA signs, whatever a request asks (default: defaultTtlMs). */
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

/** The error code each refusal is logged with. */
const REFUSAL_CODES: Partial<Record<CaRequestResult, string>> = {
  denied: 'AMBIT_ERR_CA_IDENTITY_DENIED',
  unauthenticated: 'AMBIT_ERR_CA_UNAUTHENTICATED',
  invalid: 'AMBIT_ERR_CA_CSR_INVALID',
};

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
  const maxTtlMs = opts.maxTtlMs ?? defaultTtlMs;
  const metrics = createCaServiceMetrics(opts.registry);

  async function handle(call: grpc.ServerUnaryCall<CertRequest, unknown>): Promise<string[]> {
    const token = bearerToken(call.metadata);
    const caller = token === undefined ? undefined : await opts.authenticator.authenticate(token);
    if (!caller) {
      throw new Refusal(
        grpc.status.UNAUTHENTICATED,
        'unauthenticated',
        'certificate request without a valid bearer token; send "authorization: Bearer <token>" with the node\'s or the pod\'s own credential',
      );
    }
    const who = callerKey(caller);
    const req = call.request;
    if (typeof req.csr !== 'string' || req.csr.length === 0) {
      throw new Refusal(grpc.status.INVALID_ARGUMENT, 'invalid', `certificate request from ${who} has an empty csr`);
    }
    const impersonated = req.metadata?.fields?.[IMPERSONATED_IDENTITY_KEY]?.stringValue;
    let identity = typeof impersonated === 'string' && impersonated.length > 0 ? impersonated : undefined;
    if (identity === undefined) {
      let uris: string[];
      try {
        uris = readCsr(req.csr).uris;
      } catch (e) {
        throw new Refusal(grpc.status.INVALID_ARGUMENT, 'invalid', `certificate request from ${who}: ${errorMessage(e)}`);
      }
      if (uris.length !== 1) {
        throw new Refusal(
          grpc.status.INVALID_ARGUMENT,
          'invalid',
          `certificate request from ${who} names no identity: set metadata ${IMPERSONATED_IDENTITY_KEY} or put one URI SAN in the csr (found ${uris.length})`,
        );
      }
      identity = uris[0]!;
    }
    if (!tryParseSpiffeId(identity)) {
      throw new Refusal(grpc.status.INVALID_ARGUMENT, 'invalid', `certificate request from ${who}: ${JSON.stringify(identity.slice(0, 200))} is not spiffe://<trust-domain>/ns/<ns>/sa/<sa>`);
    }
    const refusal = opts.authorize(caller, identity);
    if (refusal !== undefined) throw new Refusal(grpc.status.PERMISSION_DENIED, 'denied', refusal);
    const ttlMs = resolveTtlMs(Number(req.validityDuration ?? 0), defaultTtlMs, maxTtlMs);
    try {
      const chain = opts.authority.signCsr(req.csr, { identity, ttlMs });
      log.info({ identity, caller: who, ttlMs }, 'certificate issued');
      return chain;
    } catch (e) {
      if (isAmbitError(e, 'AMBIT_ERR_CA_CSR_INVALID')) {
        throw new Refusal(grpc.status.INVALID_ARGUMENT, 'invalid', `certificate request from ${who} for ${identity}: ${e.message}`);
      }
      if (isAmbitError(e, 'AMBIT_ERR_CA_IDENTITY_DENIED')) {
        throw new Refusal(grpc.status.PERMISSION_DENIED, 'denied', `${who}: ${e.message}`);
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
            log.warn({ code: REFUSAL_CODES[e.result], result: e.result, reason: e.message }, 'certificate request refused');
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
