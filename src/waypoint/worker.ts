/**
 * One worker thread of a waypoint or gateway (workers.ts starts them): a whole Waypoint (HBONE
 * front or ingress ports with SO_REUSEPORT, L7 server, upstream pool) with its own registry, fed
 * by the main thread: config states, certificates on request, and asks for its metrics.
 * Invariants: every message from the main thread is answered or acted on; certificates are asked
 * again after CERT_REUSE_MS (the main thread's CertManager renews them long before expiry).
 */
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { flushCopyCounters } from '../shared/hbone/copy.js';
import type { TunnelCertificate } from '../shared/hbone/tunnel.js';
import { createLogger } from '../shared/log.js';
import { createRegistry } from '../shared/metrics.js';
import type { ConfigState } from '../shared/xds/client.js';
import { Waypoint } from './waypoint.js';
import type { ToMain, ToWorker, WaypointWorkerInit } from './workers.js';

/** How long a certificate the main thread gave is used before asking again. */
const CERT_REUSE_MS = 60_000;

function run(port: NonNullable<typeof parentPort>, init: WaypointWorkerInit): void {
  const log = createLogger({ name: 'ambit-waypoint', level: init.logLevel }).child({ worker: threadId });
  const registry = createRegistry();
  const send = (m: ToMain): void => port.postMessage(m);
  let seq = 0;
  const waitingCerts = new Map<number, { resolve: (c: TunnelCertificate) => void; reject: (e: Error) => void }>();
  const certs = new Map<string, { at: number; cert: Promise<TunnelCertificate> }>();
  const getCertificate = (identity: string): Promise<TunnelCertificate> => {
    const known = certs.get(identity);
    if (known && performance.now() - known.at < CERT_REUSE_MS) return known.cert;
    const id = ++seq;
    const cert = new Promise<TunnelCertificate>((resolve, reject) => waitingCerts.set(id, { resolve, reject }));
    certs.set(identity, { at: performance.now(), cert });
    // A failed ask is not kept: the next connection asks again.
    cert.catch(() => certs.get(identity)?.cert === cert && certs.delete(identity));
    send({ type: 'cert', id, identity });
    return cert;
  };
  const waypoint = new Waypoint({ ...init.waypoint, log, registry, getCertificate, reusePort: true });
  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'config':
        waypoint.applyConfig(m.state as ConfigState);
        waypoint.applyListeners(m.state as ConfigState).then(
          () => send({ type: 'applied', version: m.version }),
          (e: unknown) => {
            log.error({ err: e }, 'ingress listeners not applied');
            send({ type: 'applied', version: m.version });
          },
        );
        return;
      case 'cert': {
        const w = waitingCerts.get(m.id);
        waitingCerts.delete(m.id);
        if (m.cert) w?.resolve(m.cert);
        else w?.reject(new Error(m.error ?? 'no certificate'));
        return;
      }
      case 'listen':
        waypoint.listenHbone(m.port, m.host).then(
          (addr) => send({ type: 'listening', port: addr.port }),
          (e: unknown) => send({ type: 'listening', error: e instanceof Error ? e.message : String(e) }),
        );
        return;
      case 'metrics':
        flushCopyCounters();
        registry.getMetricsAsJSON().then(
          (metrics) => send({ type: 'metrics', id: m.id, metrics }),
          () => send({ type: 'metrics', id: m.id, metrics: [] }),
        );
        return;
      case 'close':
        void waypoint
          .close(m.deadlineMs)
          .catch((e: unknown) => log.warn({ err: e }, 'waypoint worker close failed'))
          .then(() => {
            send({ type: 'closed' });
            port.close();
          });
        return;
    }
  });
  send({ type: 'ready' });
}

if (parentPort) run(parentPort, workerData as WaypointWorkerInit);
