/**
 * A waypoint or gateway on every core: N worker threads (worker.ts), each a whole Waypoint whose
 * HBONE or ingress listeners bind the same ports with SO_REUSEPORT, so the kernel spreads new
 * connections over the threads and a connection stays on the thread that accepted it (no byte
 * crosses threads). The main thread keeps the controller client and the CertManager: it sends
 * every config state to every worker (applyConfig resolves once all applied it), answers their
 * certificate asks, and merges their registries into its own for /metrics (same names and labels;
 * a series served by two threads is their sum). Design decision 47 (docs/design.md).
 */
import { cpuLimit, ownCpuMaxFiles, readCpuMaxLines } from '../shared/cpu-limit.js';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type * as Prom from 'prom-client';
import { AmbitError, errorMessage } from '../shared/errors.js';
import type { TunnelCertificate } from '../shared/hbone/tunnel.js';
import type { Logger, LogLevel } from '../shared/log.js';
import { Registry } from '../shared/metrics.js';
import { transferableState, type ConfigState } from '../shared/xds/client.js';
import type { WaypointOptions } from './waypoint.js';

const require = createRequire(import.meta.url);
const AggregatorRegistry = require('prom-client/lib/cluster') as typeof Prom.AggregatorRegistry;

type MetricsJson = Prom.MetricObjectWithValues<Prom.MetricValue<string>>[];

/** What a worker is started with: the Waypoint's options that are plain data, and the log level. */
export interface WaypointWorkerInit {
  waypoint: Pick<WaypointOptions, 'name' | 'podIp' | 'identity' | 'trustDomain' | 'clusterId' | 'gateway'>;
  logLevel: LogLevel;
}

export type ToWorker =
  | { type: 'config'; version: number; state: ConfigState }
  | { type: 'cert'; id: number; cert?: TunnelCertificate; error?: string }
  | { type: 'listen'; port: number; host: string }
  | { type: 'metrics'; id: number }
  | { type: 'close'; deadlineMs: number };

export type ToMain =
  | { type: 'ready' }
  | { type: 'applied'; version: number }
  | { type: 'cert'; id: number; identity: string }
  | { type: 'listening'; port?: number; error?: string }
  | { type: 'metrics'; id: number; metrics: MetricsJson }
  | { type: 'closed' };

/** The CPU limit (shared/cpu-limit.ts) given the cpu.max files to read (default: this process's cgroup and its parents). */
export function defaultWorkerCount(cpuMaxFiles: readonly string[] = ownCpuMaxFiles()): number {
  return cpuLimit(readCpuMaxLines(cpuMaxFiles));
}

interface Thread {
  worker: Worker;
  /** Waiters for this thread's next message of a type (one at a time per type). */
  on(type: ToMain['type'], cb: (m: ToMain) => void): void;
  applied: number;
  exited: boolean;
}

export class WaypointWorkers {
  private version = 0;
  private metricsSeq = 0;
  private readonly appliedWaiters = new Set<() => void>();
  private readonly metricsWaiters = new Map<number, (m: MetricsJson) => void>();

  private constructor(
    private readonly threads: Thread[],
    private readonly log: Logger,
  ) {}

  /** Starts `count` worker threads; resolves once each is up. */
  static async start(o: { count: number; init: WaypointWorkerInit; log: Logger; getCertificate: (identity: string) => Promise<TunnelCertificate> }): Promise<WaypointWorkers> {
    const log = o.log.child({ component: 'waypoint-workers' });
    const url = new URL('./worker.js', import.meta.url);
    const threads: Thread[] = [];
    let self: WaypointWorkers | undefined;
    const ups: Promise<void>[] = [];
    for (let i = 0; i < o.count; i++) {
      const worker = new Worker(url, { workerData: o.init });
      const waiters = new Map<string, (m: ToMain) => void>();
      const t: Thread = { worker, applied: 0, exited: false, on: (type, cb) => void waiters.set(type, cb) };
      threads.push(t);
      ups.push(new Promise<void>((resolve, reject) => {
        t.on('ready', () => resolve());
        worker.once('error', reject);
      }));
      worker.on('error', (e) => log.error({ err: e, worker: worker.threadId }, 'waypoint worker failed'));
      worker.on('exit', (code) => {
        t.exited = true;
        log.info({ worker: worker.threadId, code }, 'waypoint worker exited');
        // A config waiting for this worker's ACK waits no more.
        for (const w of [...(self?.appliedWaiters ?? [])]) w();
      });
      worker.on('message', (m: ToMain) => {
        switch (m.type) {
          case 'cert':
            o.getCertificate(m.identity).then(
              (cert) => worker.postMessage({ type: 'cert', id: m.id, cert } satisfies ToWorker),
              (e: unknown) => worker.postMessage({ type: 'cert', id: m.id, error: errorMessage(e) } satisfies ToWorker),
            );
            return;
          case 'applied':
            t.applied = Math.max(t.applied, m.version);
            for (const w of [...(self?.appliedWaiters ?? [])]) w();
            return;
          case 'metrics':
            self?.metricsWaiters.get(m.id)?.(m.metrics);
            return;
          default: {
            const cb = waiters.get(m.type);
            waiters.delete(m.type);
            cb?.(m);
          }
        }
      });
    }
    self = new WaypointWorkers(threads, log);
    try {
      await Promise.all(ups);
    } catch (e) {
      await Promise.all(threads.map((t) => t.worker.terminate()));
      throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `waypoint worker threads did not start: ${errorMessage(e)}`, { cause: e });
    }
    log.info({ workers: o.count }, 'waypoint workers started');
    return self;
  }

  get count(): number {
    return this.threads.length;
  }

  /** Sends a config state to every worker; resolves once every worker applied it (listeners included). */
  applyConfig(state: ConfigState): Promise<void> {
    const version = ++this.version;
    const plain = transferableState(state);
    for (const t of this.threads) t.worker.postMessage({ type: 'config', version, state: plain } satisfies ToWorker);
    return new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.threads.every((t) => t.applied >= version || t.exited)) {
          this.appliedWaiters.delete(check);
          resolve();
        }
      };
      this.appliedWaiters.add(check);
      check();
    });
  }

  /**
   * Every worker listens for HBONE on host:port (SO_REUSEPORT). Port 0: the first worker's
   * ephemeral port, which the others then bind too. Resolves with the port.
   */
  async listenHbone(port: number, host: string): Promise<number> {
    let bound = port;
    for (const t of this.threads) {
      const r = await new Promise<ToMain & { type: 'listening' }>((resolve) => {
        t.on('listening', (m) => resolve(m as ToMain & { type: 'listening' }));
        t.worker.postMessage({ type: 'listen', port: bound, host } satisfies ToWorker);
      });
      if (r.port === undefined) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `waypoint worker cannot listen on ${host}:${bound}: ${r.error ?? 'unknown error'}`);
      bound = r.port;
    }
    this.log.info({ addr: `${host}:${bound}`, workers: this.threads.length }, 'hbone listeners established on every worker');
    return bound;
  }

  /** Each worker's metrics (prom-client JSON), in worker order. */
  workerMetrics(): Promise<MetricsJson[]> {
    return Promise.all(
      this.threads.map(
        (t) =>
          new Promise<MetricsJson>((resolve) => {
            const id = ++this.metricsSeq;
            const timer = setTimeout(() => done([]), 5000);
            const done = (m: MetricsJson): void => {
              clearTimeout(timer);
              this.metricsWaiters.delete(id);
              resolve(m);
            };
            this.metricsWaiters.set(id, done);
            t.worker.postMessage({ type: 'metrics', id } satisfies ToWorker);
          }),
      ),
    );
  }

  /** `own` (the main thread's metrics) and the workers' summed per series, as one registry for /metrics. */
  async registry(own: Prom.Registry): Promise<Prom.Registry> {
    const merged = AggregatorRegistry.aggregate(await this.workerMetrics());
    return Registry.merge([own, merged as unknown as Prom.Registry]);
  }

  /** Drains every worker (in-flight requests until the deadline), then ends the threads. */
  async close(deadlineMs: number): Promise<void> {
    await Promise.all(
      this.threads.map(
        (t) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => void t.worker.terminate().then(() => resolve()), deadlineMs + 2000);
            t.worker.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            t.on('closed', () => undefined);
            t.worker.postMessage({ type: 'close', deadlineMs } satisfies ToWorker);
          }),
      ),
    );
  }
}
