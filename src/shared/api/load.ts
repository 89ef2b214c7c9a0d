/**
 * Loads the .proto files of src/shared/api with @grpc/proto-loader. tsc does not copy .proto files
 * into dist/, so the source folder is found by walking up from this module to the package root.
 * proto-loader (and protobufjs) load on the first call only: clients (agent, waypoint) encode their
 * few messages with src/shared/api/wire.ts and never need them.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { AmbitError } from '../errors.js';

/** Options every Ambit proto is loaded with: camelCase fields, int64 as JS numbers, defaults filled. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = Object.freeze({
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});

let cachedDir: string | undefined;

/** Absolute path of `<package root>/src/shared/api`, whether running from src/ or dist/src/. */
export function protoDir(): string {
  if (cachedDir) return cachedDir;
  let dir = dirname(fileURLToPath(import.meta.url));
  // Bounded walk: at most 10 levels up to the folder holding package.json.
  for (let i = 0; i < 10; i++) {
    if (existsSync(join(dir, 'package.json'))) {
      cachedDir = join(dir, 'src', 'shared', 'api');
      return cachedDir;
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `cannot find package.json above ${fileURLToPath(import.meta.url)}; is the install complete?`);
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
