/**
 * gRPC client of the controller's IstioCertificateService: TLS to the controller (server verified
 * against the mesh root), bearer token on every call, the workload identity in
 * `ImpersonatedIdentity`. Checks the reply names the identity asked for before returning it.
 */
import * as grpc from '@grpc/grpc-js';
import { AmbitError, errorMessage } from '../errors.js';
import { decodeCertificateResponse, encodeCertificateRequest } from '../api/wire.js';
import { spiffeIdOf, splitPemChain } from '../tls.js';

/** What the cert manager needs from a CA: a chain (leaf first, root last) for a CSR. */
export interface CertificateFetcher {
  fetchCertificate(spiffeId: string, csrPem: string, ttlSec: number): Promise<string[]>;
}

export interface CaClientOptions {
  /** `host:port` of the controller's gRPC endpoint (15012). */
  address: string;
  /** PEM roots the controller's serving certificate must chain to. */
  rootsPem: string[];
  /** Bearer token, or a function read before every call (token files rotate). Never logged. */
  token: string | (() => string | Promise<string>);
  /** Name to check the server certificate against when `address` is not in its SANs. */
  serverName?: string;
  /** Per-call deadline; default 10 s. */
  timeoutMs?: number;
}

export interface CaClient extends CertificateFetcher {
  close(): void;
}

/** ca.proto's one method; messages are encoded by src/shared/api/wire.ts (no proto-loader). */
export const CREATE_CERTIFICATE_PATH = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

export function createCaClient(opts: CaClientOptions): CaClient {
  if (opts.rootsPem.length === 0) {
    throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `ca client for ${opts.address} has no trust roots; pass the mesh root certificate`);
  }
  const creds = grpc.credentials.createSsl(Buffer.from(opts.rootsPem.join('\n')));
  const channelOptions: grpc.ChannelOptions = {};
  if (opts.serverName) channelOptions['grpc.ssl_target_name_override'] = opts.serverName;
  const client = new grpc.Client(opts.address, creds, channelOptions);
  const timeoutMs = opts.timeoutMs ?? 10_000;

  async function fetchCertificate(spiffeId: string, csrPem: string, ttlSec: number): Promise<string[]> {
    const token = typeof opts.token === 'string' ? opts.token : await opts.token();
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    const req = {
      csr: csrPem,
      validityDuration: Math.max(0, Math.floor(ttlSec)),
      metadata: { fields: { ImpersonatedIdentity: { stringValue: spiffeId } } },
    };
    const res = await new Promise<{ certChain?: string[] }>((resolve, reject) => {
      client.makeUnaryRequest(CREATE_CERTIFICATE_PATH, encodeCertificateRequest, decodeCertificateResponse, req, md, { deadline: Date.now() + timeoutMs }, (err, r) => {
        if (err) {
          reject(
            new AmbitError(
              'AMBIT_ERR_CERT_FETCH',
              `certificate request for ${spiffeId} to ${opts.address} failed: ${grpc.status[err.code] ?? err.code} ${err.details || errorMessage(err)}`,
              { cause: err, details: { grpcCode: err.code, identity: spiffeId } },
            ),
          );
        } else resolve(r ?? {});
      });
    });
    // A chain element may hold several PEM blocks; normalise to one certificate per element.
    const chain = (res.certChain ?? []).flatMap((p) => splitPemChain(p));
    if (chain.length === 0) {
      throw new AmbitError('AMBIT_ERR_CERT_FETCH', `ca at ${opts.address} returned an empty chain for ${spiffeId}`);
    }
    let leafId: string | undefined;
    try {
      leafId = spiffeIdOf(chain[0]!);
    } catch (e) {
      throw new AmbitError('AMBIT_ERR_CERT_FETCH', `ca at ${opts.address} returned an unreadable certificate for ${spiffeId}`, { cause: e });
    }
    if (leafId !== spiffeId) {
      throw new AmbitError('AMBIT_ERR_CERT_FETCH', `ca at ${opts.address} returned a certificate for ${leafId ?? 'no SPIFFE id'} when ${spiffeId} was requested`);
    }
    return chain;
  }

  return {
    fetchCertificate,
    close: () => client.close(),
  };
}
