/**
 * AuthorizationPolicies attached with targetRefs (to a Service, to a waypoint Gateway: every
 * Service bound to it, or to an ingress Gateway: every host it serves) → L7 authorization of the
 * waypoints' and gateways' route configs; selector (and namespace-wide) policies that select
 * ingress gateway pods → the ingress configs of those pods' Gateways, limited to those pods
 * (`pods`; decision 54). Beside authorization.ts, which turns selector policies into the agents'
 * L4 Authorizations; both read Istio string values with toStringMatch. Attributes a waypoint cannot check fail closed: an ALLOW rule using them
 * matches nothing, in DENY and AUDIT they are dropped (the rule matches more).
 */
import { GROUP_GATEWAY_API, GROUP_ISTIO_NETWORKING, REF_ISTIO_GATEWAY, type KubeObject } from '../objects.js';
import type { StringMatch } from '../../shared/model.js';
import type { L7AuthorizationPolicy, L7Condition, L7Operation, L7Rule, L7Source, RouteConfig } from '../../shared/routes.js';
import { ANNOTATION_DRY_RUN } from './authorization.js';
import { condition, Invalid, serviceHostname, translateObject, type RouteContext } from './route-context.js';
import { meshExtensionProviders, type MeshExtensionProviders } from './mesh-config.js';
import { toStringMatch } from './string-match.js';
import { gatewayPodsOfPolicy, selectsOnlyGatewayPods, type GatewayPod } from './gateway-pods.js';
import { cidrProblem } from '../../shared/validate.js';
import { annotationsOf, asArray, asRecord, asString, asStrings, compareAge, nsOf } from './util.js';

function authzValues(v: unknown): StringMatch[] {
  return asStrings(v).map(toStringMatch);
}

function portList(v: unknown, where: string): number[] {
  return asStrings(v).map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Invalid('InvalidPolicy', `${where}: ${JSON.stringify(p)} is not a port`);
    return n;
  });
}

const IP_SOURCE = ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'];
const L4_ONLY_SOURCE = ['serviceAccounts', 'notServiceAccounts'];

/**
 * CIDR lists of a rule. An ingress gateway matches them against the peer's address (remote.ip:
 * the X-Forwarded-For entry its trusted proxies name); a waypoint against the client address the
 * source agent forwarded in the HBONE CONNECT (`forwarded: for=`), as Istio's waypoints do.
 */
function ipBlocks(values: unknown, where: string): string[] {
  return asStrings(values).map((b) => {
    if (cidrProblem(b) !== undefined) throw new Invalid('InvalidPolicy', `${where}: ${JSON.stringify(b)} ${cidrProblem(b)!}`);
    return b;
  });
}

/** One Istio rule, or undefined when it cannot match (an ALLOW rule using attributes we lack). */
function authzRule(v: unknown, action: string, where: string, unsupported: string[]): L7Rule | undefined {
  const r = asRecord(v);
  let impossible = false;
  const from: L7Source[] = asArray(r['from']).map((f, i) => {
    const s = asRecord(asRecord(f)['source']);
    for (const k of L4_ONLY_SOURCE) {
      if (s[k] !== undefined) {
        unsupported.push(`${where}.from[${i}].source.${k}`);
        if (action === 'ALLOW') impossible = true;
      }
    }
    const jwt = {
      ...(s['requestPrincipals'] !== undefined ? { requestPrincipals: authzValues(s['requestPrincipals']) } : {}),
      ...(s['notRequestPrincipals'] !== undefined ? { notRequestPrincipals: authzValues(s['notRequestPrincipals']) } : {}),
    };
    const at = `${where}.from[${i}].source`;
    const addr: Partial<L7Source> = {};
    for (const k of IP_SOURCE) {
      const blocks = ipBlocks(s[k], `${at}.${k}`);
      if (blocks.length > 0) addr[k as 'ipBlocks' | 'notIpBlocks' | 'remoteIpBlocks' | 'notRemoteIpBlocks'] = blocks;
    }
    return { principals: authzValues(s['principals']), notPrincipals: authzValues(s['notPrincipals']), namespaces: authzValues(s['namespaces']), notNamespaces: authzValues(s['notNamespaces']), ...jwt, ...addr };
  });
  const to: L7Operation[] = asArray(r['to']).map((t, i) => {
    const o = asRecord(asRecord(t)['operation']);
    return {
      hosts: authzValues(o['hosts']).map((m) => ('exact' in m ? { exact: m.exact.toLowerCase() } : m)),
      notHosts: authzValues(o['notHosts']),
      paths: authzValues(o['paths']),
      notPaths: authzValues(o['notPaths']),
      methods: asStrings(o['methods']).map((x) => x.toUpperCase()),
      notMethods: asStrings(o['notMethods']).map((x) => x.toUpperCase()),
      ports: portList(o['ports'], `${where}.to[${i}].operation.ports`),
      notPorts: portList(o['notPorts'], `${where}.to[${i}].operation.notPorts`),
    };
  });
  const when: L7Condition[] = [];
  // source.* conditions from `when`: ANDed with `from` and with each other.
  const fromAll: L7Source[] = [];
  asArray(r['when']).forEach((c, i) => {
    const cr = asRecord(c);
    const key = asString(cr['key']) ?? '';
    const values = authzValues(cr['values']);
    const notValues = authzValues(cr['notValues']);
    const header = /^request\.headers\[(.+)\]$/.exec(key);
    const claim = /^request\.auth\.claims((?:\[[^\]]+\])+)$/.exec(key);
    if (header) when.push({ header: header[1]!.toLowerCase(), values, notValues });
    else if (claim) when.push({ header: '', claim: [...claim[1]!.matchAll(/\[([^\]]+)\]/g)].map((m) => m[1]!), values, notValues });
    else if (key === 'request.auth.principal') fromAll.push({ principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], requestPrincipals: values, notRequestPrincipals: notValues });
    else if (key === 'source.namespace') fromAll.push({ principals: [], notPrincipals: [], namespaces: values, notNamespaces: notValues });
    else if (key === 'source.principal') fromAll.push({ principals: values, notPrincipals: notValues, namespaces: [], notNamespaces: [] });
    else if (key === 'source.ip' || key === 'remote.ip') {
      const at = `${where}.when[${i}]`;
      const ips = ipBlocks(cr['values'], `${at}.values`);
      const notIps = ipBlocks(cr['notValues'], `${at}.notValues`);
      const [yes, no] = key === 'source.ip' ? (['ipBlocks', 'notIpBlocks'] as const) : (['remoteIpBlocks', 'notRemoteIpBlocks'] as const);
      fromAll.push({ principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], ...(ips.length > 0 ? { [yes]: ips } : {}), ...(notIps.length > 0 ? { [no]: notIps } : {}) });
    } else {
      unsupported.push(`${where}.when[${i}] key ${JSON.stringify(key)}`);
      if (action === 'ALLOW') impossible = true;
    }
  });
  if (impossible) return undefined;
  return { from, to, when, ...(fromAll.length > 0 ? { fromAll } : {}) };
}

/**
 * The route configs a policy's targetRef(s) name: a Service's; every Service's bound to a waypoint
 * Gateway; or, for an ingress Gateway (Istio or Gateway API), every host config that gateway serves.
 */
export function targetConfigs(ctx: RouteContext, ap: KubeObject): { configs: RouteConfig[]; notes: string[] } {
  const spec = asRecord(ap.spec);
  const refs = [...asArray(spec['targetRefs']), ...(spec['targetRef'] !== undefined ? [spec['targetRef']] : [])].map(asRecord);
  const out = { configs: [] as RouteConfig[], notes: [] as string[] };
  const ns = nsOf(ap);
  for (const ref of refs) {
    const kind = asString(ref['kind']);
    const name = asString(ref['name']) ?? '';
    const group = asString(ref['group']) ?? '';
    if (kind === 'Service' && group === '') {
      const cfg = ctx.mesh.get(serviceHostname(name, ns, ctx.opts.clusterDomain));
      if (cfg) out.configs.push(cfg);
      else out.notes.push(`target Service ${ns}/${name} does not exist`);
    } else if (kind === 'Gateway' && (group === GROUP_GATEWAY_API || group === GROUP_ISTIO_NETWORKING || group === '')) {
      const key = `${ns}/${name}`;
      const bound = [...ctx.mesh.values()].filter((c) => c.waypoint === key);
      const ingress = [...ctx.ingress.values()].filter((c) => c.gateway === key);
      if (bound.length === 0 && ingress.length === 0) out.notes.push(`no Service uses waypoint ${key} and no route is bound to a gateway of that name`);
      out.configs.push(...bound, ...ingress);
    } else out.notes.push(`target ${group ? group + '/' : ''}${kind} ${name} is not supported`);
  }
  return out;
}

/**
 * A CUSTOM policy's provider, resolved against the mesh config: its service must be a Service or
 * ServiceEntry host the mesh knows (Istio). When it is unknown or unusable the policy goes out
 * without one, and waypoints deny the requests it matches, as Istio's
 * `deny-due-to-bad-CUSTOM-action` rule does; `problem` says why.
 */
function customProvider(ctx: RouteContext, ap: KubeObject, mesh: MeshExtensionProviders): { fields: Pick<L7AuthorizationPolicy, 'providerName' | 'provider'>; problem?: string } {
  const name = asString(asRecord(asRecord(ap.spec)['provider'])['name']) ?? '';
  if (name === '') throw new Invalid('InvalidPolicy', 'spec.provider.name must name an extension provider for action CUSTOM');
  const deny = (why: string) => ({ fields: { providerName: name }, problem: `${why}; requests the policy matches are denied (Istio)` });
  if (mesh.error) return deny(`extension provider ${JSON.stringify(name)} is unknown: ${mesh.error}`);
  const declared = mesh.byName.get(name);
  if (!declared) {
    const known = [...mesh.byName.keys()].sort();
    return deny(`extension provider ${JSON.stringify(name)} is not declared in ${mesh.source} (declared: ${known.length > 0 ? known.join(', ') : 'none'})`);
  }
  if (!declared.ok) return deny(`extension provider ${JSON.stringify(name)} cannot be used: ${declared.reason}`);
  const svc = ctx.services.get(declared.provider.service);
  const entry = serviceEntryHosts(ctx).has(declared.provider.service);
  if ((!svc && !entry) || (declared.namespace !== undefined && svc && nsOf(svc) !== declared.namespace)) {
    return deny(`extension provider ${JSON.stringify(name)}: service ${JSON.stringify(declared.provider.service)}${declared.namespace ? ` in namespace ${declared.namespace}` : ''} is not a Service or ServiceEntry host of the mesh`);
  }
  return { fields: { providerName: name, provider: declared.provider } };
}

function serviceEntryHosts(ctx: RouteContext): Set<string> {
  return new Set(ctx.serviceEntries.flatMap((se) => asStrings(asRecord(se.spec)['hosts']).map((h) => h.toLowerCase())));
}

export function translateAuthorization(ctx: RouteContext, list: readonly KubeObject[]): void {
  let mesh: MeshExtensionProviders | undefined;
  const providers = (): MeshExtensionProviders => (mesh ??= meshExtensionProviders(ctx.configMaps, ctx.opts.rootNamespace));
  for (const ap of [...list].sort(compareAge)) {
    const spec = asRecord(ap.spec);
    const attached = spec['targetRefs'] !== undefined || spec['targetRef'] !== undefined;
    // Selector (and namespace-wide) policies: node agents enforce them (authorization.ts); ingress gateway pods they select enforce them here.
    const gatewayPods = attached ? [] : gatewayPodsOfPolicy(ap, ctx.gatewayPods(), ctx.opts.rootNamespace);
    if (!attached && gatewayPods.length === 0) {
      // The node agents' builder says nothing of a policy only gateways can have: say it here.
      if (selectsOnlyGatewayPods(ap, gatewayObjects(ctx))) condition(ctx, ap, 'Accepted', 'enforced by the ingress gateway pods it selects (none runs now)', 'True');
      continue;
    }
    translateObject(ctx, ap, () => {
      const action = asString(spec['action']) ?? 'ALLOW';
      if (action !== 'ALLOW' && action !== 'DENY' && action !== 'AUDIT' && action !== 'CUSTOM') throw new Invalid('InvalidPolicy', `action ${JSON.stringify(action)} is not ALLOW, DENY, AUDIT or CUSTOM`);
      const custom = action === 'CUSTOM' ? customProvider(ctx, ap, providers()) : undefined;
      const unsupported: string[] = [];
      const rules: L7Rule[] = [];
      const targets = attached ? targetConfigs(ctx, ap) : { configs: gatewayPodConfigs(ctx, gatewayPods), notes: [] };
      asArray(spec['rules']).forEach((r, i) => {
        const rule = authzRule(r, action, `spec.rules[${i}]`, unsupported);
        if (rule) rules.push(rule);
      });
      const pods = gatewayPods.map((p) => p.key);
      const policy: L7AuthorizationPolicy = { name: `${nsOf(ap)}/${ap.metadata.name}`, action, rules, dryRun: annotationsOf(ap)[ANNOTATION_DRY_RUN] === 'true', ...custom?.fields, ...(attached ? {} : { pods }) };
      for (const cfg of targets.configs) cfg.authorization.push(structuredClone(policy));
      const notes = [...targets.notes];
      if (custom?.problem) notes.push(custom.problem);
      if (custom?.fields.provider?.protocol === 'http') {
        const tcp = targets.configs.filter(carriesTcp).map((c) => c.name);
        if (tcp.length > 0) notes.push(`extension provider ${JSON.stringify(custom.fields.providerName)} is envoyExtAuthzHttp, which cannot check TCP connections: the policy is ignored for the TCP and TLS passthrough traffic of ${[...new Set(tcp)].sort().join(', ')}, as Istio ignores a CUSTOM action with an HTTP provider on a TCP filter chain (an envoyExtAuthzGrpc provider checks it)`);
      }
      if (unsupported.length > 0) notes.push(`unsupported attributes ${unsupported.join(', ')}; ${action === 'ALLOW' ? 'rules using them match nothing' : 'they are ignored, so the rule matches more'} (fail closed)`);
      const where = attached ? '' : `${enforcedAtGateways(gatewayPods)}; `;
      if (notes.length > 0) condition(ctx, ap, custom?.problem ? 'InvalidProvider' : 'PartiallyApplied', `${where}${notes.join('; ')}`);
      else if (!attached) condition(ctx, ap, 'Accepted', enforcedAtGateways(gatewayPods), 'True');
    });
  }
}

/** Protocols a proxy terminates as HTTP (a waypoint's Service ports; a gateway also terminates https). */
const HTTP_PORT_PROTOCOLS: readonly string[] = ['http', 'http2', 'grpc', 'grpc-web'];

/** Whether a route config carries connections as bytes (TCP or TLS routes, or a port the proxy does not terminate as HTTP). */
function carriesTcp(c: RouteConfig): boolean {
  const http = c.gateway !== undefined ? [...HTTP_PORT_PROTOCOLS, 'https'] : HTTP_PORT_PROTOCOLS;
  return (c.tcpRoutes?.length ?? 0) > 0 || (c.tlsRoutes?.length ?? 0) > 0 || c.ports.some((p) => !http.includes(p.protocol));
}

/** The Istio and Gateway API Gateways of the run, as selectsOnlyGatewayPods reads them. */
function gatewayObjects(ctx: RouteContext): { of: (ref: string) => readonly KubeObject[]; gateways: readonly KubeObject[] } {
  const istio = [...ctx.istioGateways.values()];
  return { of: (ref) => (ref === REF_ISTIO_GATEWAY ? istio : []), gateways: [...ctx.gatewayApiGateways.values()] };
}

/** The ingress configs of every Gateway the pods serve. */
export function gatewayPodConfigs(ctx: RouteContext, pods: readonly GatewayPod[]): RouteConfig[] {
  const gateways = new Set(pods.flatMap((p) => p.gateways));
  return [...ctx.ingress.values()].filter((c) => c.gateway !== undefined && gateways.has(c.gateway));
}

/** Who enforces a selector policy at ingress, by Gateway (stable while pods come and go). */
export function enforcedAtGateways(pods: readonly GatewayPod[]): string {
  const gateways = [...new Set(pods.flatMap((p) => p.gateways))].sort();
  return `enforced by the ingress gateway pods it selects (Gateway ${gateways.join(', ')})`;
}
