/**
 * Loads src/shared/api/config.proto and describes its messages as TypeScript types (the shapes
 * @grpc/proto-loader produces with the options below: camelCase fields, enums as names, bytes as
 * Buffer, defaults filled in).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { AmbitError } from '../errors.js';

export type RoleName = 'ROLE_UNSPECIFIED' | 'ROLE_AGENT' | 'ROLE_WAYPOINT' | 'ROLE_GATEWAY';

export interface NodeMessage {
  id: string;
  nodeName: string;
  role: RoleName;
  metadata: Record<string, string>;
}

export interface StatusMessage {
  code: number;
  message: string;
}

export interface WorkloadStatusMessage {
  uid: string;
  captured: boolean;
  mode: string;
  message: string;
}

export interface DeltaConfigRequestMessage {
  node: NodeMessage | null;
  typeUrl: string;
  resourceNamesSubscribe: string[];
  resourceNamesUnsubscribe: string[];
  initialResourceVersions: Record<string, string>;
  responseNonce: string;
  errorDetail: StatusMessage | null;
  status: { workloads: WorkloadStatusMessage[] } | null;
}

export interface ResourceMessage {
  name: string;
  version: string;
  body: Buffer;
}

export interface DeltaConfigResponseMessage {
  systemVersionInfo: string;
  typeUrl: string;
  resources: ResourceMessage[];
  removedResources: string[];
  nonce: string;
}

/** Options shared by every loader of our .proto files, so both ends see the same shapes. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
};

export const CONFIG_SERVICE_PATH = '/ambit.config.v1.ConfigDiscovery/DeltaConfig';

/**
 * The project root: the nearest ancestor of this module holding package.json. Works from src/
 * (ts runners) and from dist/ (compiled), because .proto files are not copied into dist/.
 */
function findProjectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 12; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new AmbitError('AMBIT_ERR_XDS_STREAM', `cannot find package.json above ${fileURLToPath(import.meta.url)}; is the installation complete?`);
}

let cachedService: grpc.ServiceDefinition | undefined;

/** The ConfigDiscovery service definition (loaded once). */
export function configServiceDefinition(): grpc.ServiceDefinition {
  if (cachedService) return cachedService;
  const file = join(findProjectRoot(), 'src', 'shared', 'api', 'config.proto');
  let pkg: protoLoader.PackageDefinition;
  try {
    pkg = protoLoader.loadSync(file, PROTO_LOADER_OPTIONS);
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_XDS_STREAM', `cannot load ${file}; is the source tree shipped beside dist/?`, { cause: e });
  }
  const loaded = grpc.loadPackageDefinition(pkg) as unknown as {
    ambit: { config: { v1: { ConfigDiscovery: grpc.ServiceClientConstructor } } };
  };
  cachedService = loaded.ambit.config.v1.ConfigDiscovery.service;
  return cachedService;
}

/** A generic client constructor for ConfigDiscovery. */
export function configClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(configServiceDefinition(), 'ConfigDiscovery');
}
