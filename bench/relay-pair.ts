/**
 * A pair of relay processes in two pods (a client relay in the client pod listening on its
 * loopback, a server relay in the server pod in front of the sink and echo servers), as the L4
 * section's comparison paths use them: the stunnel pair and the plain Node pair. This module owns
 * what they share: a temporary folder with an RSA-2048 certificate for each side from the test CA
 * (the mesh's key type) and its root, the server relay started before the client relay, each as a
 * process group this process owns (killed by pid at stop), and the wait for their ports.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AmbitError } from '../src/shared/errors.js';
import { createTestCa } from '../test/helpers/test-ca.js';
import { killGroup, waitExit, type BenchMesh } from './mesh.js';

export interface RelayPorts {
  /** Loopback port in the client pod that relays to the sink server. */
  sink: number;
  /** Loopback port in the client pod that relays to the echo server. */
  echo: number;
}

export interface RelayPair {
  ports: RelayPorts;
  version: string;
  /** CPU seconds used so far by both relay processes (undefined when one is not found). */
  cpuSeconds(): number | undefined;
  stop(): Promise<void>;
}

export interface PairOptions {
  mesh: BenchMesh;
  namespace: string;
  clientPod: string;
  serverPod: string;
  serverIp: string;
  sinkPort: number;
  echoPort: number;
}

/** What differs between pairs. */
export interface RelaySpec {
  /** For the folder name and errors ("stunnel pair", "Node relay pair"). */
  name: string;
  version: string;
  /** Writes the pair's configs into `dir` (certificates are there already: ca.pem, {client,server}.{pem,key}). */
  writeConfigs(dir: string): void;
  /** The command line of one side. */
  argv(who: 'client' | 'server', dir: string): string[];
  /** Ports the server relay and the client relay listen on once up. */
  serverPorts: number[];
  clientPorts: RelayPorts;
  /** CPU seconds of both relay processes started with `dir`. */
  cpuSeconds(dir: string): number | undefined;
}

export async function startRelayPair(o: PairOptions, spec: RelaySpec): Promise<RelayPair> {
  const dir = mkdtempSync(join(tmpdir(), `ambit-bench-${spec.name.replace(/\W+/g, '-')}-`));
  const children: ChildProcess[] = [];
  const logs: string[] = [];
  const stop = async (): Promise<void> => {
    for (const c of children) killGroup(c, 'SIGTERM');
    await Promise.all(children.map((c) => waitExit(c, 3000)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ca = createTestCa();
    writeFileSync(join(dir, 'ca.pem'), ca.rootPem);
    for (const who of ['client', 'server'] as const) {
      const { certChainPem, keyPem } = ca.issue(`spiffe://cluster.local/ns/${o.namespace}/sa/bench-${who}`);
      writeFileSync(join(dir, `${who}.pem`), certChainPem.join(''));
      writeFileSync(join(dir, `${who}.key`), keyPem, { mode: 0o600 });
    }
    spec.writeConfigs(dir);
    for (const [who, pod] of [
      ['server', o.serverPod],
      ['client', o.clientPod],
    ] as const) {
      const child = o.mesh.spawnIn(`${o.namespace}/${pod}`, spec.argv(who, dir));
      child.stdout!.setEncoding('utf8').on('data', (d: string) => logs.push(`${who}: ${d}`));
      child.stderr!.setEncoding('utf8').on('data', (d: string) => logs.push(`${who}: ${d}`));
      child.stdin!.end();
      children.push(child);
    }
    await o.mesh.waitListening(o.namespace, o.serverPod, spec.serverPorts, 15_000);
    await o.mesh.waitListening(o.namespace, o.clientPod, [spec.clientPorts.sink, spec.clientPorts.echo], 15_000);
    return { ports: spec.clientPorts, version: spec.version, stop, cpuSeconds: () => spec.cpuSeconds(dir) };
  } catch (err) {
    await stop();
    throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `${spec.name} did not start: ${err instanceof Error ? err.message : String(err)}\n${logs.join('').slice(-2000)}`, { cause: err });
  }
}
