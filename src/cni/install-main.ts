/**
 * Entry of the CNI installer container (`node dist/src/cni/install-main.js`): load the config,
 * install and keep the plugin chained; on SIGTERM, uninstall only if the DaemonSet is going away.
 * The sole reader of process.env for the installer.
 */
import { createLogger, type Logger } from '../shared/log.js';
import { errorCode } from '../shared/errors.js';
import { loadInstallConfig } from './install-config.js';
import { CniInstaller } from './installer.js';
import { inClusterTarget } from './kube.js';

let log: Logger = createLogger({ name: 'ambit-cni-installer' });
try {
  const cfg = loadInstallConfig(process.env);
  log = createLogger({ name: 'ambit-cni-installer', level: cfg.logLevel });
  const kube = inClusterTarget(process.env);
  const installer = new CniInstaller(cfg, { kube, log });
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'cni installer stopping');
    const { uninstalled } = await installer.close();
    log.info({ uninstalled }, 'cni installer stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  await installer.start();
} catch (e) {
  log.fatal({ err: e, code: errorCode(e) }, 'cni installer failed');
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 200).unref();
}
