/**
 * Runs local mode's API server as its own process (tests, and `ambit local` later):
 * `node dist/src/local/apiserver/main.js --state-dir DIR [--host H] [--port P]
 * [--advertise-address A] [--kubeconfig FILE] [--service-cidr CIDR] [--log-level L]`.
 * Prints one JSON line `{"url":..., "kubeconfig":..., "pid":...}` on stdout once serving; stops
 * cleanly on SIGTERM/SIGINT. Sole reader of argv and env for the API server.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import { ApiServer } from './server.js';

function fail(message: string): never {
  process.stderr.write(`ambit-apiserver: ${message}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        'state-dir': { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        'advertise-address': { type: 'string' },
        kubeconfig: { type: 'string' },
        'service-cidr': { type: 'string' },
        'log-level': { type: 'string', default: 'info' },
      },
    }) as { values: Record<string, string | undefined> });
  } catch (e) {
    fail(errorMessage(e));
  }
  const stateDir = values['state-dir'];
  if (!stateDir) fail('--state-dir is required');
  let port: number | undefined;
  if (values['port'] !== undefined) {
    port = Number(values['port']);
    if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port must be 0..65535 (got ${values['port']})`);
  }
  const level = values['log-level'] as 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level)) fail(`--log-level must be a pino level (got ${level})`);
  const log = createLogger({ level, name: 'ambit-apiserver' });
  let server: ApiServer;
  try {
    server = await ApiServer.start({
      stateDir,
      ...(values['host'] ? { host: values['host'] } : {}),
      ...(port !== undefined ? { port } : {}),
      ...(values['advertise-address'] ? { advertiseAddress: values['advertise-address'] } : {}),
      ...(values['service-cidr'] ? { serviceCidr: values['service-cidr'] } : {}),
      log,
    });
  } catch (e) {
    log.fatal({ err: e, code: e instanceof AmbitError ? e.code : undefined }, 'api server failed to start');
    fail(errorMessage(e));
  }
  const kubeconfig = values['kubeconfig'] ?? join(stateDir, 'admin.kubeconfig');
  server.writeKubeconfig(kubeconfig);
  process.stdout.write(JSON.stringify({ url: server.url, kubeconfig, pid: process.pid }) + '\n');
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    server.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: e }, 'api server did not stop cleanly');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
