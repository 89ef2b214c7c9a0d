/**
 * The comparison path: a pair of stunnel4 processes doing TLS 1.3 with mutual authentication.
 * The client stunnel runs inside the client pod (apps connect to it on loopback), the server stunnel
 * inside the server pod (it forwards to the servers on loopback). Certificates are RSA-2048 from the
 * project's test CA, the same key type the mesh's workload certificates use.
 * Processes run in the foreground as process groups this process owns and kills by pid.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { AmbitError } from '../src/shared/errors.js';
import { createTestCa } from '../test/helpers/test-ca.js';
import { cpuOfProcesses, killGroup, waitExit, type BenchMesh } from './mesh.js';

export interface StunnelPorts {
  /** Loopback port in the client pod that tunnels to the sink server. */
  sink: number;
  /** Loopback port in the client pod that tunnels to the echo server. */
  echo: number;
}

export interface StunnelPair {
  ports: StunnelPorts;
  version: string;
  /** CPU seconds used so far by both stunnel processes (undefined when one is not found). */
  cpuSeconds(): number | undefined;
  stop(): Promise<void>;
}

interface PairOptions {
  mesh: BenchMesh;
  namespace: string;
  clientPod: string;
  serverPod: string;
  serverIp: string;
  sinkPort: number;
  echoPort: number;
}

const CLIENT_SINK = 19000;
const CLIENT_ECHO = 19001;
const SERVER_SINK = 9443;
const SERVER_ECHO = 9444;

/** Common per-service lines: TLS 1.3 only, chain verification against the test root, no Nagle. */
function tlsLines(dir: string, who: 'client' | 'server'): string[] {
  return [
    `cert = ${join(dir, `${who}.pem`)}`,
    `key = ${join(dir, `${who}.key`)}`,
    `CAfile = ${join(dir, 'ca.pem')}`,
    'verifyChain = yes',
    'sslVersionMin = TLSv1.3',
    'sslVersionMax = TLSv1.3',
    'socket = l:TCP_NODELAY=1',
    'socket = r:TCP_NODELAY=1',
  ];
}

/** stunnel.conf text for one side. */
export function renderStunnelConfig(dir: string, side: 'client' | 'server', serverIp: string, sinkPort: number, echoPort: number): string {
  const global = ['foreground = yes', 'pid =', 'syslog = no', 'debug = err'];
  const services =
    side === 'client'
      ? [
          ['[sink]', 'client = yes', `accept = 127.0.0.1:${CLIENT_SINK}`, `connect = ${serverIp}:${SERVER_SINK}`],
          ['[echo]', 'client = yes', `accept = 127.0.0.1:${CLIENT_ECHO}`, `connect = ${serverIp}:${SERVER_ECHO}`],
        ]
      : [
          ['[sink]', `accept = 0.0.0.0:${SERVER_SINK}`, `connect = 127.0.0.1:${sinkPort}`, 'requireCert = yes'],
          ['[echo]', `accept = 0.0.0.0:${SERVER_ECHO}`, `connect = 127.0.0.1:${echoPort}`, 'requireCert = yes'],
        ];
  return [...global, '', ...services.flatMap((s) => [...s, ...tlsLines(dir, side), ''])].join('\n');
}

function stunnelVersion(): string {
  const r = spawnSync('stunnel4', ['-version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `cannot run stunnel4: ${r.error.message}; install it (apt-get install stunnel4, scripts/setup.sh does)`);
  const text = `${r.stdout}${r.stderr}`;
  return /stunnel \S+/.exec(text)?.[0] ?? 'stunnel (unknown version)';
}

/** Writes certificates and configs into a temp dir, starts both stunnels, waits for their ports. */
export async function startStunnelPair(o: PairOptions): Promise<StunnelPair> {
  const version = stunnelVersion();
  const dir = mkdtempSync(join(tmpdir(), 'ambit-bench-stunnel-'));
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
      const id = `spiffe://cluster.local/ns/${o.namespace}/sa/bench-${who}`;
      const { certChainPem, keyPem } = ca.issue(id);
      writeFileSync(join(dir, `${who}.pem`), certChainPem.join(''));
      writeFileSync(join(dir, `${who}.key`), keyPem, { mode: 0o600 });
      chmodSync(join(dir, `${who}.key`), 0o600);
      writeFileSync(join(dir, `${who}.conf`), renderStunnelConfig(dir, who, o.serverIp, o.sinkPort, o.echoPort));
    }
    for (const [who, pod] of [
      ['server', o.serverPod],
      ['client', o.clientPod],
    ] as const) {
      const child = o.mesh.spawnIn(`${o.namespace}/${pod}`, ['stunnel4', join(dir, `${who}.conf`)]);
      child.stdout!.setEncoding('utf8').on('data', (d: string) => logs.push(`${who}: ${d}`));
      child.stderr!.setEncoding('utf8').on('data', (d: string) => logs.push(`${who}: ${d}`));
      child.stdin!.end();
      children.push(child);
    }
    await o.mesh.waitListening(o.namespace, o.serverPod, [SERVER_SINK, SERVER_ECHO], 15_000);
    await o.mesh.waitListening(o.namespace, o.clientPod, [CLIENT_SINK, CLIENT_ECHO], 15_000);
    return { ports: { sink: CLIENT_SINK, echo: CLIENT_ECHO }, version, stop, cpuSeconds: () => stunnelCpu(dir) };
  } catch (err) {
    await stop();
    throw new AmbitError('AMBIT_ERR_LOCAL_SETUP', `stunnel pair did not start: ${err instanceof Error ? err.message : String(err)}\n${logs.join('').slice(-2000)}`, { cause: err });
  }
}

/** CPU seconds of the two stunnel processes started with a config in `dir` (found by their command line). */
function stunnelCpu(dir: string): number | undefined {
  return cpuOfProcesses((argv) => /stunnel/.test(argv[0] ?? '') && argv.some((a) => a.startsWith(`${dir}/`)), 2);
}
