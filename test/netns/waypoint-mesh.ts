/**
 * One `ambit local` mesh for a waypoint end-to-end test file: brought up from manifests under the
 * machine-wide lock, torn down after the test; requests are sent from the namespace's client pod
 * with the HTTP load generator (test/fixtures/waypoint-e2e/load.mjs) or the gRPC one
 * (test/fixtures/waypoint-resilience/grpc-load.mjs).
 */
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ambit, destroyMesh, lockLocalMesh, meshName, repoRoot } from '../helpers/local-mesh.js';
import type { LocalStatus } from '../../src/local/mesh.js';

export interface LoadResult {
  /** 200 answers by the echo's `text`. */
  texts: Record<string, number>;
  statuses: Record<string, number>;
  errors: number;
  /** Fastest and slowest answer per status, ms. */
  ms: Record<string, [number, number]>;
  /** Answers that took at least the slowMs argument. */
  slow?: number;
  stopped?: string;
}

export interface GrpcLoadResult {
  /** OK replies by the server's text. */
  texts: Record<string, number>;
  /** Calls by gRPC status code. */
  codes: Record<string, number>;
  details: Record<string, string>;
  stopped?: string;
}

export interface WaypointMesh {
  name: string;
  status(): Promise<LocalStatus>;
  /** Runs argv in the client pod. */
  exec(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** load.mjs arguments: url n concurrency [header|-] [close|-] [slowMs]. */
  load(args: string[]): Promise<LoadResult>;
  /** grpc-load.mjs arguments: target n concurrency [metadata|-] [status]. */
  grpcLoad(args: string[]): Promise<GrpcLoadResult>;
  apply(file: string): Promise<void>;
  remove(file: string): Promise<void>;
}

async function lastJsonLine<T>(what: string, r: { stdout: string; stderr: string }): Promise<T> {
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as T;
  } catch {
    throw new Error(`${what} printed ${JSON.stringify(r.stdout)} (stderr ${r.stderr})`);
  }
}

/** Brings a mesh up from `files` (tag: a short mesh-name prefix); `namespace` holds the client pod. */
export async function startWaypointMesh(t: TestContext, tag: string, files: string[], namespace: string): Promise<WaypointMesh> {
  const unlock = await lockLocalMesh();
  const name = meshName(tag);
  t.after(async () => {
    await destroyMesh(name);
    unlock();
  });
  const up = await ambit(['local', 'up', ...files.flatMap((f) => ['-f', f]), '--name', name, '--timeout', '120s']);
  assert.equal(up.code, 0, `local up failed:\n${up.stderr}`);
  const status = async (): Promise<LocalStatus> => JSON.parse((await ambit(['local', 'status', '--name', name, '-o', 'json'])).stdout) as LocalStatus;
  const client = (await status()).pods.find((p) => p.namespace === namespace && p.name.startsWith('client-'));
  assert.ok(client, 'the client pod runs');
  const exec = (argv: string[]) => ambit(['local', 'exec', '--name', name, `${namespace}/${client.name}`, '--', ...argv]);
  return {
    name,
    status,
    exec,
    load: async (args) => lastJsonLine<LoadResult>(`load ${args.join(' ')}`, await exec([process.execPath, join(repoRoot, 'test/fixtures/waypoint-e2e/load.mjs'), ...args])),
    grpcLoad: async (args) => lastJsonLine<GrpcLoadResult>(`grpc-load ${args.join(' ')}`, await exec([process.execPath, join(repoRoot, 'test/fixtures/waypoint-resilience/grpc-load.mjs'), ...args])),
    apply: async (file) => {
      const r = await ambit(['local', 'apply', '--name', name, '-f', file]);
      assert.equal(r.code, 0, `apply ${file}: ${r.stderr}`);
    },
    remove: async (file) => {
      const r = await ambit(['local', 'delete', '--name', name, '-f', file]);
      assert.equal(r.code, 0, `delete ${file}: ${r.stderr}`);
    },
  };
}
