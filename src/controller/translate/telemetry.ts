/**
 * Telemetry objects → the access-log and trace-sampling knobs of each route config, as Istio
 * layers them: a Telemetry in the root namespace without a target is the mesh default, one in a
 * namespace without a target is that namespace's (the namespace of the proxy: the waypoint's or
 * the gateway's), and one with targetRefs (a Service, a waypoint Gateway, an ingress Gateway)
 * applies to those configs. Each knob comes from the most specific level that sets it; at one
 * level the oldest object wins. A selector Telemetry would need a sidecar, which ambient mode
 * does not run: accepted with a condition saying it is not enforced.
 */
import type { KubeObject } from '../objects.js';
import { OVERRIDABLE_METRICS, type MetricOverride, type OverridableMetric, type RouteConfig, type RouteTelemetry } from '../../shared/routes.js';
import { ISTIO_HTTP_LABELS } from '../../shared/istio-metrics.js';
import { enforcedAtGateways, gatewayPodConfigs, targetConfigs } from './authorization-l7.js';
import { gatewayPodsOfPolicy } from './gateway-pods.js';
import { condition, translateObject, type RouteContext } from './route-context.js';
import { asArray, asRecord, asString, compareAge, nsOf } from './util.js';
import { parseAccessFilter } from '../../shared/access-filter.js';
import { meshAccessLogProviders } from './mesh-config.js';

/** The knobs one Telemetry object sets (absent: it leaves that knob to the level below). */
type Knobs = Partial<RouteTelemetry>;

export const DEFAULT_ROUTE_TELEMETRY: Readonly<RouteTelemetry> = Object.freeze({ accessLog: true, samplingPercent: 100, reportSpans: true });

/**
 * What `spec.accessLogging` and `spec.tracing` of one Telemetry set; `problems` name entries whose
 * filter is not an expression Ambit evaluates (the object's accessLogging then sets nothing).
 * `accessLogFilters: []` means "log every request" (it overrides a lower level's filters).
 */
export function telemetryKnobs(spec: Record<string, unknown>, providers?: ReturnType<typeof meshAccessLogProviders>): Knobs & { problems?: string[]; notes?: string[] } {
  const out: Knobs & { problems?: string[]; notes?: string[] } = {};
  const logging = asArray(spec['accessLogging']).map(asRecord);
  // Istio: logging is on when any entry is not disabled; a list of only disabled entries turns it
  // off. An enabled entry with a filter logs what the filter lets through; one without logs all.
  const enabled = logging.map((e, i) => ({ e, i })).filter(({ e }) => e['disabled'] !== true);
  const problems: string[] = [];
  const filters: string[] = [];
  let unfiltered = false;
  for (const { e, i } of enabled) {
    const expr = asString(asRecord(e['filter'])['expression']);
    if (expr === undefined) {
      unfiltered = true;
      continue;
    }
    try {
      parseAccessFilter(expr);
      if (!filters.includes(expr)) filters.push(expr);
    } catch (err) {
      problems.push(`spec.accessLogging[${i}].filter.expression ${JSON.stringify(expr)}: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) out.problems = problems;
  else if (logging.length > 0) {
    out.accessLog = enabled.length > 0;
    out.accessLogFilters = unfiltered ? [] : filters;
  }
  const notes: string[] = [];
  const metrics = metricOverrides(spec);
  if (metrics) {
    out.metricOverrides = metrics.overrides;
    notes.push(...metrics.notes);
  }
  if (providers && enabled.length > 0 && problems.length === 0) {
    // The access-log providers the enabled entries name (else the mesh's defaultProviders): the first usable one's format.
    const named = enabled.flatMap(({ e }) => asArray(e['providers']).map((p) => asString(asRecord(p)['name'])).filter((n): n is string => !!n));
    const names = named.length > 0 ? named : providers.defaults;
    let chosen: string | undefined;
    for (const name of [...new Set(names)]) {
      const p = providers.byName.get(name);
      if (!p) notes.push(`access-log provider ${name} is not declared in the mesh config`);
      else if ('problem' in p) notes.push(p.problem);
      else if (chosen === undefined) {
        chosen = name;
        out.accessLogFormat = p.format;
        if (p.note) notes.push(p.note);
      } else notes.push(`access-log provider ${name} is not used: a proxy writes one access log (${chosen}'s)`);
    }
  }
  if (notes.length > 0) out.notes = notes;
  const tracing = asRecord(asArray(spec['tracing'])[0]);
  const pct = tracing['randomSamplingPercentage'];
  if (typeof pct === 'number' && pct >= 0 && pct <= 100) out.samplingPercent = pct;
  if (typeof tracing['disableSpanReporting'] === 'boolean') out.reportSpans = !tracing['disableSpanReporting'];
  return out;
}

/** Istio's metric names in Telemetry overrides → the request metric families a proxy records. */
const METRIC_FAMILIES: Record<string, OverridableMetric[]> = {
  ALL_METRICS: [...OVERRIDABLE_METRICS],
  REQUEST_COUNT: ['requests'],
  REQUEST_DURATION: ['duration'],
  REQUEST_SIZE: ['requestBytes'],
  RESPONSE_SIZE: ['responseBytes'],
};

/**
 * `spec.metrics[].overrides` → the overrides a waypoint or gateway applies to its request
 * metrics, in order; `notes` name what is left out (TCP and gRPC message metrics, custom
 * metrics, labels outside Istio's standard set, expressions Ambit does not evaluate, providers
 * other than prometheus, reportingInterval). Undefined when the object sets no metrics.
 */
function metricOverrides(spec: Record<string, unknown>): { overrides: MetricOverride[]; notes: string[] } | undefined {
  const entries = asArray(spec['metrics']).map(asRecord);
  if (entries.length === 0) return undefined;
  const overrides: MetricOverride[] = [];
  const notes: string[] = [];
  entries.forEach((m, i) => {
    const mp = `spec.metrics[${i}]`;
    const providers = asArray(m['providers']).map((p) => asString(asRecord(p)['name']));
    if (providers.some((p) => p !== 'prometheus')) notes.push(`${mp}.providers: only prometheus is served (${providers.filter((p) => p !== 'prometheus').join(', ')} ignored)`);
    if (m['reportingInterval'] !== undefined) notes.push(`${mp}.reportingInterval is not supported (Prometheus scrapes the live values)`);
    asArray(m['overrides']).map(asRecord).forEach((o, j) => {
      const op = `${mp}.overrides[${j}]`;
      const match = asRecord(o['match']);
      if (match['customMetric'] !== undefined) return void notes.push(`${op}.match.customMetric is not supported (only Istio's standard metrics exist)`);
      const metric = asString(match['metric']) ?? 'ALL_METRICS';
      const families = METRIC_FAMILIES[metric];
      if (!families) return void notes.push(`${op}.match.metric ${metric}: only the request metrics (REQUEST_COUNT, REQUEST_DURATION, REQUEST_SIZE, RESPONSE_SIZE, ALL_METRICS) can be overridden; TCP and gRPC message metrics keep Istio's defaults`);
      if (metric === 'ALL_METRICS') notes.push(`${op}: ALL_METRICS changes the request metrics; the istio_tcp_* metrics keep Istio's defaults`);
      const mode = (asString(match['mode']) ?? 'CLIENT_AND_SERVER') as MetricOverride['mode'];
      const out: MetricOverride = { metrics: families, mode };
      if (typeof o['disabled'] === 'boolean') out.disabled = o['disabled'];
      const tags: NonNullable<MetricOverride['tags']> = {};
      for (const [name, raw] of Object.entries(asRecord(o['tagOverrides']))) {
        const t = asRecord(raw);
        if (!(ISTIO_HTTP_LABELS as readonly string[]).includes(name)) {
          notes.push(`${op}.tagOverrides.${name}: only Istio's standard labels can be changed (a new label is not added)`);
          continue;
        }
        if ((asString(t['operation']) ?? 'UPSERT') === 'REMOVE') tags[name] = { remove: true };
        else {
          const value = asString(t['value']) ?? '';
          try {
            parseAccessFilter(value);
            tags[name] = { value };
          } catch (err) {
            notes.push(`${op}.tagOverrides.${name}.value ${JSON.stringify(value)}: ${(err as Error).message}`);
          }
        }
      }
      if (Object.keys(tags).length > 0) out.tags = tags;
      overrides.push(out);
    });
  });
  return { overrides, notes };
}

const hasTarget = (spec: Record<string, unknown>): boolean => spec['targetRefs'] !== undefined || spec['targetRef'] !== undefined;

/** The namespace of the proxy that serves a config: its waypoint's or gateway's, else its own. */
function proxyNamespace(cfg: RouteConfig): string {
  const owner = cfg.waypoint ?? cfg.gateway;
  return owner ? owner.slice(0, owner.indexOf('/')) : cfg.namespace;
}

export function translateTelemetry(ctx: RouteContext, list: readonly KubeObject[]): void {
  const oldestFirst = [...list].sort(compareAge);
  const accessLogProviders = meshAccessLogProviders(ctx.configMaps, ctx.opts.rootNamespace);
  let mesh: Knobs = {};
  const byNamespace = new Map<string, Knobs>();
  const targeted = new Map<RouteConfig, Knobs>();
  // Newest first, so that at each level an older object's knobs overwrite a newer one's.
  for (const t of [...oldestFirst].reverse()) {
    const spec = asRecord(t.spec);
    translateObject(ctx, t, () => {
      const { problems, notes, ...knobs } = telemetryKnobs(spec, accessLogProviders);
      const said = [
        ...(problems ? [`${problems.join('; ')}; this Telemetry's accessLogging is not applied (the level below decides)`] : []),
        ...(notes ? [`${notes.join('; ')}; the rest of it applies`] : []),
      ];
      if (said.length > 0) condition(ctx, t, 'PartiallyApplied', said.join('; '));
      if (hasTarget(spec)) {
        const targets = targetConfigs(ctx, t);
        for (const cfg of targets.configs) targeted.set(cfg, { ...targeted.get(cfg), ...knobs });
        if (targets.notes.length > 0) condition(ctx, t, 'PartiallyApplied', targets.notes.join('; '));
      } else if (asRecord(spec['selector'])['matchLabels'] !== undefined) {
        // A selector reaches Envoy pods: in ambient mode, ingress gateway pods (as Istio applies it there).
        const pods = gatewayPodsOfPolicy(t, ctx.gatewayPods(), ctx.opts.rootNamespace);
        if (pods.length === 0) {
          condition(ctx, t, 'NotEnforced', 'not served: a Telemetry with a workload selector applies to proxies it selects, and it selects no ingress gateway pod (mesh workloads run no sidecars in ambient mode); attach it to a waypoint or gateway with targetRefs (kind Gateway or Service), or leave out the target for the whole namespace');
        } else {
          for (const cfg of gatewayPodConfigs(ctx, pods)) targeted.set(cfg, { ...targeted.get(cfg), ...knobs });
          if (said.length === 0) condition(ctx, t, 'Accepted', `${enforcedAtGateways(pods)}; every pod of those Gateways shares their settings`, 'True');
        }
      } else if (nsOf(t) === ctx.opts.rootNamespace) mesh = { ...mesh, ...knobs };
      else byNamespace.set(nsOf(t), { ...byNamespace.get(nsOf(t)), ...knobs });
    });
  }
  for (const cfg of [...ctx.mesh.values(), ...ctx.ingress.values()]) {
    const ns = proxyNamespace(cfg);
    const knobs = { ...mesh, ...(ns === ctx.opts.rootNamespace ? {} : byNamespace.get(ns)), ...targeted.get(cfg) };
    if (Object.keys(knobs).length === 0) continue;
    const { accessLogFilters, metricOverrides: overrides, ...rest } = knobs;
    cfg.telemetry = { ...DEFAULT_ROUTE_TELEMETRY, ...rest, ...(accessLogFilters && accessLogFilters.length > 0 ? { accessLogFilters } : {}), ...(overrides && overrides.length > 0 ? { metricOverrides: overrides } : {}) };
  }
}
