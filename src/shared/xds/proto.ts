/**
 * Loads src/shared/api/config.proto and describes its messages as TypeScript types (the shapes
 * @grpc/proto-loader produces with the options below: camelCase fields, enums as names, bytes as
 * Buffer, defaults filled in).
 */
import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { loadProto } from '../api/load.js';

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
  /** Size of the response on the wire (set by the client's decoder; the server leaves it out). */
  wireBytes?: number;
}

/** Loader options for config.proto, so both ends see the shapes declared above. */
export const CONFIG_PROTO_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
};

export const CONFIG_SERVICE_PATH = '/ambit.config.v1.ConfigDiscovery/DeltaConfig';

let cachedService: grpc.ServiceDefinition | undefined;

/** The ConfigDiscovery service definition (loaded once, via src/shared/api/load.ts). */
export function configServiceDefinition(): grpc.ServiceDefinition {
  if (cachedService) return cachedService;
  const loaded = loadProto('config.proto', CONFIG_PROTO_OPTIONS) as unknown as {
    ambit: { config: { v1: { ConfigDiscovery: grpc.ServiceClientConstructor } } };
  };
  cachedService = loaded.ambit.config.v1.ConfigDiscovery.service;
  return cachedService;
}

/** A generic client constructor for ConfigDiscovery. */
export function configClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(configServiceDefinition(), 'ConfigDiscovery');
}
