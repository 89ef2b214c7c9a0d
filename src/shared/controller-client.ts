/**
 * How an agent or a waypoint talks to the controller: the mesh root read once, the bearer token
 * from its file (token-file.ts: re-read whenever the kubelet rotates it), a CA client and a
 * certificate manager for workload certificates, and config-stream clients with the same TLS and
 * bearer token (each connection presents the token current when it opens). Both binaries'
 * main.ts start here.
 */
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { formatHostPort } from './address.js';
import { createCaClient, type CaClient } from './certs/ca-client.js';
import { CertManager } from './certs/cert-manager.js';
import type { ControllerClientSettings } from './env.js';
import { AmbitError, errorMessage } from './errors.js';
import type { Logger } from './log.js';
import type { Registry } from './metrics.js';
import { splitPemChain } from './tls.js';
import { TokenFile } from './token-file.js';
import { ConfigClient, type ConfigClientOptions } from './xds/client.js';

/** What a config-stream client needs beyond the connection itself. */
export type ConfigStreamOptions = Omit<ConfigClientOptions, 'address' | 'credentials' | 'channelOptions' | 'callMetadata'>;

export interface ControllerConnection {
  /** `host:port` of the controller, for logs. */
  readonly address: string;
  readonly rootsPem: string[];
  readonly caClient: CaClient;
  /** Workload certificates, fetched from the controller's CA. */
  readonly certs: CertManager;
  /** A config-stream client (not started) over the same TLS and token. */
  configClient(opts: ConfigStreamOptions): ConfigClient;
  /** Stops certificate renewal and closes the CA channel. */
  close(): Promise<void>;
}

/**
 * Reads the mesh root and builds the controller clients. Throws AMBIT_ERR_CONFIG_INVALID when the
 * root cannot be read; nothing is dialled until a certificate or the config stream is asked for.
 */
export async function connectToController(
  settings: ControllerClientSettings & { certTtlSec: number },
  deps: { registry: Registry; log: Logger },
): Promise<ControllerConnection> {
  let rootsText: string;
  try {
    rootsText = await readFile(settings.caRootFile, 'utf8');
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `cannot read the mesh root ${settings.caRootFile}: ${errorMessage(e)}; is the controller's root-cert.pem mounted?`, { cause: e });
  }
  const rootsPem = splitPemChain(rootsText);
  const tokenFile = new TokenFile(settings.tokenFile, { log: deps.log });
  const readToken = (): Promise<string> => tokenFile.read();
  const address = formatHostPort(settings.controller);
  const serverName = settings.controllerServerName;
  const caClient = createCaClient({ address, rootsPem, token: readToken, ...(serverName ? { serverName } : {}) });
  const certs = new CertManager({ fetcher: caClient, rootsPem, ttlSec: settings.certTtlSec, registry: deps.registry, log: deps.log });
  return {
    address,
    rootsPem,
    caClient,
    certs,
    configClient: (opts) =>
      new ConfigClient({
        ...opts,
        address,
        credentials: grpc.credentials.createSsl(Buffer.from(rootsPem.join('\n'))),
        ...(serverName ? { channelOptions: { 'grpc.ssl_target_name_override': serverName } } : {}),
        callMetadata: async () => {
          const md = new grpc.Metadata();
          md.set('authorization', `Bearer ${await readToken()}`);
          return md;
        },
      }),
    close: async () => {
      await certs.close().catch(() => undefined);
      caClient.close();
    },
  };
}
