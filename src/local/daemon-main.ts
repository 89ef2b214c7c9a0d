/**
 * Entry of the background process `ambit local up` starts: builds the mesh, serves the control
 * socket, and tears everything down on `down` or SIGTERM. Sole reader of argv/env for local mode.
 */
import { writeFile, rm } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createLogger } from '../shared/log.js';
import { LocalMesh, type CaptureMode } from './mesh.js';
import { serveControl } from './control.js';
import { validateNet, validatePrefix } from './plan.js';

const { values } = parseArgs({
  options: {
    prefix: { type: 'string', default: 'ambit' },
    nodes: { type: 'string', default: '2' },
    net: { type: 'string', default: '0' },
    'state-dir': { type: 'string' },
    capture: { type: 'string', default: 'auto' },
    'log-level': { type: 'string', default: 'info' },
    cwd: { type: 'string', default: process.cwd() },
  },
});

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const prefix = validatePrefix(values.prefix!);
const stateDir = values['state-dir'] ?? join('/run/ambit', prefix);
const logLevel = values['log-level'] as 'info';
const log = createLogger({ level: logLevel, name: 'ambit-local', destination: undefined });

async function main(): Promise<void> {
  const mesh = await LocalMesh.start({
    prefix,
    nodes: Number(values.nodes),
    net: validateNet(Number(values.net)),
    stateDir,
    repoRoot,
    cwd: values.cwd!,
    log,
    trustDomain: 'cluster.local',
    capture: values.capture as CaptureMode,
    logLevel,
  });
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info('stopping local mesh');
    server.close();
    try {
      const removed = await mesh.down();
      log.info({ removed: removed.length }, 'local mesh stopped');
    } catch (err) {
      log.error({ err: err }, 'cleanup failed');
    }
    await rm(join(stateDir, 'daemon.pid'), { force: true });
    process.exit(0);
  };
  const server = await serveControl(mesh, stateDir, log, () => void stop());
  await writeFile(join(stateDir, 'daemon.pid'), String(process.pid));
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  log.info({ stateDir }, 'local mesh ready for commands');
}

main().catch((err) => {
  log.fatal({ err: err }, 'local mesh failed to start');
  setTimeout(() => process.exit(1), 100);
});
