/**
 * prom-client registries: one per component (and per test), never the global default.
 *
 * prom-client's classes are loaded from their own files, never from the package's index: the index
 * also loads the Pushgateway (node:https, node:zlib), the cluster aggregator and, through the CPU
 * default metric, @opentelemetry/api, which together cost an agent ~10 MB of resident memory it
 * never uses. Every component takes Registry, Counter, Gauge and Histogram from here; types still
 * come from `import type ... from 'prom-client'`.
 */
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';

const require = createRequire(import.meta.url);
export const Registry = require('prom-client/lib/registry') as typeof Prom.Registry;
export type Registry = Prom.Registry;
export const Counter = require('prom-client/lib/counter') as typeof Prom.Counter;
export type Counter<T extends string = string> = Prom.Counter<T>;
export const Gauge = require('prom-client/lib/gauge') as typeof Prom.Gauge;
export type Gauge<T extends string = string> = Prom.Gauge<T>;
export const Histogram = require('prom-client/lib/histogram') as typeof Prom.Histogram;
export type Histogram<T extends string = string> = Prom.Histogram<T>;

/** prom-client's default process metrics, each from its own file (see above), the CPU one ours. */
const PROCESS_METRIC_FILES = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  'processResources',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
] as const;

type DefaultMetric = (registry: Registry, config: { prefix: string; eventLoopMonitoringPrecision: number }) => void;

/**
 * The metrics of prom-client's collectDefaultMetrics, same names and values:
 * process_cpu_{user,system}_seconds_total and process_cpu_seconds_total from process.cpuUsage()
 * at each scrape (prom-client's own version also loads @opentelemetry/api for exemplars).
 */
function registerProcessMetrics(registry: Registry, prefix: string): void {
  let last = process.cpuUsage();
  const user = new Counter({
    name: `${prefix}process_cpu_user_seconds_total`,
    help: 'Total user CPU time spent in seconds.',
    registers: [registry],
    collect() {
      const now = process.cpuUsage();
      const u = (now.user - last.user) / 1e6;
      const s = (now.system - last.system) / 1e6;
      last = now;
      user.inc(u);
      system.inc(s);
      total.inc(u + s);
    },
  });
  const system = new Counter({ name: `${prefix}process_cpu_system_seconds_total`, help: 'Total system CPU time spent in seconds.', registers: [registry] });
  const total = new Counter({ name: `${prefix}process_cpu_seconds_total`, help: 'Total user and system CPU time spent in seconds.', registers: [registry] });
  // Event-loop delay sampled every 100 ms (prom-client's default 10 ms woke an idle agent ~100
  // times a second for this metric alone).
  for (const f of PROCESS_METRIC_FILES) (require(`prom-client/lib/metrics/${f}`) as DefaultMetric)(registry, { prefix, eventLoopMonitoringPrecision: 100 });
}

export const AMBIT_PREFIX = 'ambit_';

/** The value Istio puts in any traffic label it cannot fill. */
export const UNKNOWN = 'unknown';

/** `istio_build{component,tag}`: which Istio component a process stands for, and its version. */
export const ISTIO_BUILD_METRIC = 'istio_build';

/**
 * The Istio component each Ambit process stands in for in `istio_build` (what Istio's dashboards
 * filter on): the agent is the node proxy (`ztunnel`), a waypoint or gateway the `proxy`, the
 * controller `pilot`.
 */
export type IstioComponent = 'ztunnel' | 'proxy' | 'pilot';

export interface RegistryOptions {
  /** prom-client's default process_* and nodejs_* metrics, under their standard names. */
  processMetrics?: boolean;
  /** Adds istio_build{component, tag=version} = 1. */
  build?: { component: IstioComponent; tag: string };
  labels?: Record<string, string>;
}

export function createRegistry(opts: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (opts.labels) registry.setDefaultLabels(opts.labels);
  if (opts.processMetrics) registerProcessMetrics(registry, '');
  if (opts.build) {
    new Gauge({ name: ISTIO_BUILD_METRIC, help: 'Istio component and version this process reports as.', labelNames: ['component', 'tag'], registers: [registry] }).set({ component: opts.build.component, tag: opts.build.tag }, 1);
  }
  return registry;
}

/** One label set's counter value. */
export interface CounterCell {
  value: number;
}

/** One label set's histogram: per-bucket (non-cumulative) counts, sum and count. */
export interface HistogramCell {
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

interface FamilyOptions<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registers?: Registry[];
}

/** What prom-client's Registry reads from a metric (get/reset); shared by the families below. */
abstract class SeriesFamily<L extends string, C> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  readonly aggregator = 'sum';
  abstract readonly type: 'counter' | 'histogram';
  protected readonly cells = new Map<string, { labels: Readonly<Record<L, string>>; cell: C }>();

  constructor(o: FamilyOptions<L>) {
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labelNames;
    for (const r of o.registers ?? []) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  protected abstract newCell(): C;

  /**
   * The cell of one label set. `key` must identify `labels` (e.g. the values joined); `labels` is
   * read only when the cell is new, so a caller that keeps the key can skip building it.
   */
  cell(key: string, labels: () => Readonly<Record<L, string>>): C {
    const found = this.cells.get(key);
    if (found) return found.cell;
    const cell = this.newCell();
    this.cells.set(key, { labels: { ...labels() }, cell });
    return cell;
  }

  reset(): void {
    this.cells.clear();
  }
}

/**
 * A counter whose label sets are bound once (a Map lookup per update) instead of prom-client's
 * validate-and-hash of every label on every inc(). Registered in a prom-client Registry, it
 * renders like a prom-client Counter.
 */
export class SeriesCounter<L extends string> extends SeriesFamily<L, CounterCell> {
  readonly type = 'counter';

  protected newCell(): CounterCell {
    return { value: 0 };
  }

  get(): Promise<{ name: string; help: string; type: 'counter'; aggregator: 'sum'; values: { labels: Record<string, string>; value: number }[] }> {
    const values = [...this.cells.values()].map(({ labels, cell }) => ({ labels: { ...labels }, value: cell.value }));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }
}

/** A histogram with bound label sets (see SeriesCounter); renders like a prom-client Histogram. */
export class SeriesHistogram<L extends string> extends SeriesFamily<L, HistogramCell> {
  readonly type = 'histogram';
  readonly upperBounds: readonly number[];

  constructor(o: FamilyOptions<L> & { buckets: readonly number[] }) {
    super(o);
    this.upperBounds = [...o.buckets].sort((a, b) => a - b);
  }

  protected newCell(): HistogramCell {
    return { buckets: new Float64Array(this.upperBounds.length), sum: 0, count: 0 };
  }

  /** Adds one observation to a cell of this histogram. */
  observe(cell: HistogramCell, value: number): void {
    const b = this.upperBounds;
    for (let i = 0; i < b.length; i++) {
      if (value <= b[i]!) {
        cell.buckets[i]!++;
        break;
      }
    }
    cell.sum += value;
    cell.count++;
  }

  get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: { labels: Record<string, string | number>; value: number; metricName: string }[] }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, cell } of this.cells.values()) {
      let acc = 0;
      this.upperBounds.forEach((le, i) => {
        acc += cell.buckets[i]!;
        values.push({ labels: { ...labels, le }, value: acc, metricName: bucket });
      });
      values.push({ labels: { ...labels, le: '+Inf' }, value: cell.count, metricName: bucket });
      values.push({ labels: { ...labels }, value: cell.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels }, value: cell.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }
}
