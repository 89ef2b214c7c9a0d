/** The `ambit` command line: dispatches subcommands; errors print their code and message. */
import { errorCode, errorMessage } from '../shared/errors.js';
import { ambitVersion } from '../shared/version.js';
import { processIo, type Io } from './io.js';
import { runLocal, LOCAL_USAGE } from './local.js';

export const USAGE = `ambit — a sidecarless service mesh

Usage:
  ambit local <up|apply|delete|exec|status|down|demo> ...   run the whole mesh on this machine
  ambit proxy-status [--controller URL] [-o json]          config sync state of agents and waypoints
  ambit demo-app <http-echo|http-front|tcp-echo|grpc-echo> [options] small servers the demo pods run
  ambit waypoint                                           run a waypoint proxy (configured by AMBIT_* env; local mode starts it)
  ambit version

${LOCAL_USAGE}
`;

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'local':
        if (rest[0] === 'demo') return await (await import('./demo.js')).runDemo(rest.slice(1), io);
        return await runLocal(rest, io);
      case 'proxy-status': {
        const { runProxyStatus } = await import('./proxy-status.js');
        return await runProxyStatus(rest, io);
      }
      case 'demo-app': {
        const { runDemoApp } = await import('./demo-app.js');
        return await runDemoApp(rest, io);
      }
      case 'waypoint':
        return await (await import('../waypoint/main.js')).runWaypoint(process.env);
      case 'version': {
        io.out(`ambit ${ambitVersion()} (node ${process.versions.node})\n`);
        return 0;
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.out(USAGE);
        return 0;
      default:
        io.err(`ambit: unknown command ${JSON.stringify(cmd)}\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    const code = errorCode(err);
    io.err(`ambit: ${code && code.startsWith('AMBIT_ERR') ? `${code}: ` : ''}${errorMessage(err)}\n`);
    return code === 'AMBIT_ERR_CLI_USAGE' || code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? 2 : 1;
  }
}
