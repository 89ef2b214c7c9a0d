/**
 * RequestAuthentications attached with targetRef(s) (a Service, a waypoint Gateway: every Service
 * bound to it, or an ingress Gateway: every host it serves) → the JWT rules of those route
 * configs, enforced by the waypoint or gateway (waypoint/filters/jwt.ts). A selector (or
 * namespace-wide) RequestAuthentication is enforced by the ingress gateway pods it selects (Istio's
 * gateways are Envoy proxies that apply it as a sidecar would), as the ingress configs of their
 * Gateways limited to those pods; for any other workload it would need a sidecar, which ambient
 * mode does not run, and a condition says it is not enforced when it selects no gateway pod.
 */
import type { KubeObject } from '../objects.js';
import type { JwtRule } from '../../shared/routes.js';
import { enforcedAtGateways, gatewayPodConfigs, targetConfigs } from './authorization-l7.js';
import { gatewayPodsOfPolicy } from './gateway-pods.js';
import { condition, translateObject, type RouteContext } from './route-context.js';
import { asArray, asRecord, asString, asStrings, compareAge } from './util.js';

function jwtRule(v: unknown): JwtRule {
  const r = asRecord(v);
  const jwks = asString(r['jwks']);
  const jwksUri = asString(r['jwksUri']);
  const out: JwtRule = {
    issuer: asString(r['issuer']) ?? '',
    audiences: asStrings(r['audiences']),
    fromHeaders: asArray(r['fromHeaders']).map(asRecord).map((h) => ({ name: (asString(h['name']) ?? '').toLowerCase(), prefix: asString(h['prefix']) ?? '' })),
    fromParams: asStrings(r['fromParams']),
    forwardOriginalToken: r['forwardOriginalToken'] === true,
    ...(jwks !== undefined ? { jwks } : jwksUri !== undefined ? { jwksUri } : {}),
  };
  const output = asString(r['outputPayloadToHeader']);
  if (output) out.outputPayloadToHeader = output;
  return out;
}

export function translateRequestAuthentication(ctx: RouteContext, list: readonly KubeObject[]): void {
  for (const ra of [...list].sort(compareAge)) {
    const spec = asRecord(ra.spec);
    translateObject(ctx, ra, () => {
      const attached = spec['targetRefs'] !== undefined || spec['targetRef'] !== undefined;
      const gatewayPods = attached ? [] : gatewayPodsOfPolicy(ra, ctx.gatewayPods(), ctx.opts.rootNamespace);
      if (!attached && gatewayPods.length === 0) {
        condition(ctx, ra, 'NotEnforced', 'not served: a RequestAuthentication with a workload selector needs a sidecar, which ambient mode does not run, unless it selects ingress gateway pods (none now); attach it to a waypoint with targetRefs (kind Gateway or Service)');
        return;
      }
      const notes: string[] = [];
      const rules = asArray(spec['jwtRules']).flatMap((r, i) => {
        const rule = jwtRule(r);
        if (rule.jwks === undefined && rule.jwksUri === undefined) {
          notes.push(`spec.jwtRules[${i}] names no jwks or jwksUri; Istio would look the issuer's keys up by OpenID discovery, which Ambit does not: no key verifies, so tokens of its issuer are refused`);
          return [{ ...rule, jwks: '{"keys":[]}' }];
        }
        return [rule];
      });
      const pods = gatewayPods.map((p) => p.key);
      const targets = attached ? targetConfigs(ctx, ra) : { configs: gatewayPodConfigs(ctx, gatewayPods), notes: [] };
      for (const cfg of targets.configs) (cfg.jwtRules ??= []).push(...structuredClone(attached ? rules : rules.map((r) => ({ ...r, pods }))));
      notes.push(...targets.notes);
      const where = attached ? '' : `${enforcedAtGateways(gatewayPods)}; `;
      if (notes.length > 0) condition(ctx, ra, 'PartiallyApplied', `${where}${notes.join('; ')}`);
      else if (!attached) condition(ctx, ra, 'Accepted', enforcedAtGateways(gatewayPods), 'True');
    });
  }
}
