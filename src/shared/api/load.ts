/**
 * Loads the .proto files of src/shared/api with @grpc/proto-loader. tsc does not copy .proto files
 * into dist/, so the source folder is found by walking up from this module to the package root.
 * proto-loader (and protobufjs) load on the first call only: clients (agent, waypoint) encode their
 * few messages with src/shared/api/wire.ts and never need them.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { AmbitError } from '../errors.js';
import { packageRoot } from '../version.js';

/** Options every Ambit proto is loaded with: camelCase fields, int64 as JS numbers, defaults filled. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = Object.freeze({
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});

/** Absolute path of `<package root>/src/shared/api`, whether running from src/ or dist/src/. */
export function protoDir(): string {
  return join(packageRoot(), 'src', 'shared', 'api');
}

/** Loads `<protoDir>/<fileName>` (e.g. `ca.proto`) and returns the grpc package object. */
export function loadProto(fileName: string, options: protoLoader.Options = PROTO_LOADER_OPTIONS): grpc.GrpcObject {
  const path = join(protoDir(), fileName);
  if (!existsSync(path)) {
    throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `proto file ${path} not found; src/shared/api must ship next to dist/`);
  }
  const loader = createRequire(import.meta.url)('@grpc/proto-loader') as typeof protoLoader;
  const def = loader.loadSync(path, { ...options, includeDirs: [protoDir()] });
  return grpc.loadPackageDefinition(def);
}
