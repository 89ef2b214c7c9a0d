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
import type { RouteConfig, RouteTelemetry } from '../../shared/routes.js';
import { targetConfigs } from './authorization-l7.js';
import { condition, translateObject, type RouteContext } from './route-context.js';
import { asArray, asRecord, asString, compareAge, nsOf } from './util.js';
import { parseAccessFilter } from '../../shared/access-filter.js';

/** The knobs one Telemetry object sets (absent: it leaves that knob to the level below). */
type Knobs = Partial<RouteTelemetry>;

export const DEFAULT_ROUTE_TELEMETRY: Readonly<RouteTelemetry> = Object.freeze({ accessLog: true, samplingPercent: 100, reportSpans: true });

/**
 * What `spec.accessLogging` and `spec.tracing` of one Telemetry set; `problems` name entries whose
 * filter is not an expression Ambit evaluates (the object's accessLogging then sets nothing).
 * `accessLogFilters: []` means "log every request" (it overrides a lower level's filters).
 */
export function telemetryKnobs(spec: Record<string, unknown>): Knobs & { problems?: string[] } {
  const out: Knobs & { problems?: string[] } = {};
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
  const tracing = asRecord(asArray(spec['tracing'])[0]);
  const pct = tracing['randomSamplingPercentage'];
  if (typeof pct === 'number' && pct >= 0 && pct <= 100) out.samplingPercent = pct;
  if (typeof tracing['disableSpanReporting'] === 'boolean') out.reportSpans = !tracing['disableSpanReporting'];
  return out;
}

const hasTarget = (spec: Record<string, unknown>): boolean => spec['targetRefs'] !== undefined || spec['targetRef'] !== undefined;

/** The namespace of the proxy that serves a config: its waypoint's or gateway's, else its own. */
function proxyNamespace(cfg: RouteConfig): string {
  const owner = cfg.waypoint ?? cfg.gateway;
  return owner ? owner.slice(0, owner.indexOf('/')) : cfg.namespace;
}

export function translateTelemetry(ctx: RouteContext, list: readonly KubeObject[]): void {
  const oldestFirst = [...list].sort(compareAge);
  let mesh: Knobs = {};
  const byNamespace = new Map<string, Knobs>();
  const targeted = new Map<RouteConfig, Knobs>();
  // Newest first, so that at each level an older object's knobs overwrite a newer one's.
  for (const t of [...oldestFirst].reverse()) {
    const spec = asRecord(t.spec);
    translateObject(ctx, t, () => {
      const { problems, ...knobs } = telemetryKnobs(spec);
      if (problems) condition(ctx, t, 'PartiallyApplied', `${problems.join('; ')}; this Telemetry's accessLogging is not applied (the level below decides)`);
      if (hasTarget(spec)) {
        const targets = targetConfigs(ctx, t);
        for (const cfg of targets.configs) targeted.set(cfg, { ...targeted.get(cfg), ...knobs });
        if (targets.notes.length > 0) condition(ctx, t, 'PartiallyApplied', targets.notes.join('; '));
      } else if (asRecord(spec['selector'])['matchLabels'] !== undefined) {
        condition(ctx, t, 'NotEnforced', 'not served: a Telemetry with a workload selector applies to sidecars, which ambient mode does not run; attach it to a waypoint or gateway with targetRefs (kind Gateway or Service), or leave out the target for the whole namespace');
      } else if (nsOf(t) === ctx.opts.rootNamespace) mesh = { ...mesh, ...knobs };
      else byNamespace.set(nsOf(t), { ...byNamespace.get(nsOf(t)), ...knobs });
    });
  }
  for (const cfg of [...ctx.mesh.values(), ...ctx.ingress.values()]) {
    const ns = proxyNamespace(cfg);
    const knobs = { ...mesh, ...(ns === ctx.opts.rootNamespace ? {} : byNamespace.get(ns)), ...targeted.get(cfg) };
    if (Object.keys(knobs).length === 0) continue;
    const { accessLogFilters, ...rest } = knobs;
    cfg.telemetry = { ...DEFAULT_ROUTE_TELEMETRY, ...rest, ...(accessLogFilters && accessLogFilters.length > 0 ? { accessLogFilters } : {}) };
  }
}
