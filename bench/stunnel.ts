/**
 * The comparison path: a pair of stunnel4 processes doing TLS 1.3 with mutual authentication.
 * The client stunnel runs inside the client pod (apps connect to it on loopback), the server stunnel
 * inside the server pod (it forwards to the servers on loopback). Certificates are RSA-2048 from the
 * project's test CA, the same key type the mesh's workload certificates use.
 * Processes run in the foreground as process groups this process owns and kills by pid.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { AmbitError } from '../src/shared/errors.js';
import { cpuOfProcesses } from './mesh.js';
import { startRelayPair, type PairOptions, type RelayPair } from './relay-pair.js';

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

/** Both stunnels in their pods (relay-pair.ts), TLS 1.3 mTLS between them. */
export function startStunnelPair(o: PairOptions): Promise<RelayPair> {
  return startRelayPair(o, {
    name: 'stunnel pair',
    version: stunnelVersion(),
    writeConfigs: (dir) => {
      for (const who of ['client', 'server'] as const) writeFileSync(join(dir, `${who}.conf`), renderStunnelConfig(dir, who, o.serverIp, o.sinkPort, o.echoPort));
    },
    argv: (who, dir) => ['stunnel4', join(dir, `${who}.conf`)],
    serverPorts: [SERVER_SINK, SERVER_ECHO],
    clientPorts: { sink: CLIENT_SINK, echo: CLIENT_ECHO },
    cpuSeconds: stunnelCpu,
  });
}

/** CPU seconds of the two stunnel processes started with a config in `dir` (found by their command line). */
function stunnelCpu(dir: string): number | undefined {
  return cpuOfProcesses((argv) => /stunnel/.test(argv[0] ?? '') && argv.some((a) => a.startsWith(`${dir}/`)), 2);
}
