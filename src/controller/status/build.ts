/**
 * The status this controller wants on each object (pure), from what translation found, which
 * objects failed validation, and the state of the workloads it runs for Gateways:
 *
 * - Istio objects (security.istio.io, networking.istio.io) get Istio's conditions (on an
 *   AuthorizationPolicy, what the node agents apply is `ZtunnelAccepted` and what waypoints apply
 *   `WaypointAccepted`, as istiod writes them), `observedGeneration`, and analyzer messages:
 *   IST0106 SchemaValidationError for an invalid object, IST0171 NegativeConditionStatus when a
 *   condition says something is not applied or only partly.
 * - ServiceEntries also get the addresses allocated to their hosts (`status.addresses`, as
 *   Istio 1.23+ writes them).
 * - Services get `istio.io/WaypointBound`.
 * - Gateway API Gateways of this controller's classes get Accepted/Programmed, one status per
 *   listener (supported kinds, attached routes, Accepted/Programmed/ResolvedRefs) and addresses.
 * - HTTPRoutes, GRPCRoutes, TCPRoutes and TLSRoutes get one `parents` entry per parent this controller serves (a
 *   Service, or a Gateway of its classes) with Accepted and ResolvedRefs.
 *
 * Only what this controller owns is replaced: its condition types, its analyzer codes, its
 * `parents` entries (by controllerName); everything else in a status is kept as it is. The result
 * equals the current status when nothing changed, so the writer can skip the write.
 */
import { GROUP_GATEWAY_API, GROUP_ISTIO_NETWORKING, GROUP_ISTIO_SECURITY, objectKey, splitApiVersion, type KubeObject } from '../objects.js';
import type { TranslateCondition } from '../translate/object-index.js';
import { asArray, asRecord, asString, asStrings, nsOf } from '../translate/util.js';
import { gatewayRole } from '../owned/render.js';
import { listenerKinds, listenerRefusal, pickedListeners } from '../translate/allowed-routes.js';
import type { OwnedState } from '../owned/reconciler.js';
import { mergeFindings, replaceOwned, toConditions, type Finding } from './conditions.js';
import type { Issue } from '../../shared/validate.js';
import { formatIssue } from '../../shared/validate.js';

/** controllerName of this controller in Gateway API statuses. */
export const CONTROLLER_NAME = 'ambit.dev/gateway-controller';

/** Condition types this controller writes on Istio objects and Services (and so replaces). */
export const ISTIO_CONDITION_TYPES: ReadonlySet<string> = new Set(['Accepted', 'Programmed', 'ZtunnelAccepted', 'WaypointAccepted', 'istio.io/WaypointBound']);
const ANALYSIS = {
  schema: { code: 'IST0106', name: 'SchemaValidationError', level: 'ERROR' },
  negative: { code: 'IST0171', name: 'NegativeConditionStatus', level: 'WARNING' },
} as const;
const OWNED_CODES: ReadonlySet<string> = new Set([ANALYSIS.schema.code, ANALYSIS.negative.code]);

/** Where a translation condition came from: the model (node agents), the route configs (waypoints, gateways) or the gateway listeners. */
export type ConditionOrigin = 'model' | 'routes' | 'listeners';

export interface StatusInputs {
  /** Translation conditions by objectKey, with their origin. */
  conditions: ReadonlyMap<string, ReadonlyArray<TranslateCondition & { origin: ConditionOrigin }>>;
  /** Objects that failed validation by objectKey, and whether a last good version is in force. */
  invalid: ReadonlyMap<string, { issues: readonly Issue[]; kept: boolean }>;
  /** The workloads of a Gateway API Gateway of this controller's classes. */
  gatewayState: (gw: KubeObject) => OwnedState | undefined;
  /** Gateway API Gateways by `ns/name` (route parents). */
  gateways: ReadonlyMap<string, KubeObject>;
  /** Services by `ns/name` (route parents). */
  services: ReadonlySet<string>;
  /** Addresses allocated to ServiceEntry hosts (`ns/host` → IPv4 and IPv6 address), written in their `status.addresses` as Istio does. */
  entryAddresses?: ReadonlyMap<string, readonly string[]>;
  /** Namespaces by name (a listener's `allowedRoutes.namespaces.selector` matches their labels). */
  namespaces?: ReadonlyMap<string, KubeObject>;
  /** HTTPRoutes, GRPCRoutes, TCPRoutes and TLSRoutes (attached routes per listener, by the kinds it takes). */
  routes: readonly KubeObject[];
  /** RFC 3339 time of this pass. */
  now: string;
}

/** The status to write on `obj` (its current status when nothing of ours changes), or undefined for objects this controller never writes. */
export function desiredStatus(obj: KubeObject, inputs: StatusInputs): Record<string, unknown> | undefined {
  const { group } = splitApiVersion(obj.apiVersion);
  if (group === GROUP_ISTIO_SECURITY || group === GROUP_ISTIO_NETWORKING) return istioStatus(obj, inputs);
  if (group === '' && obj.kind === 'Service') return serviceStatus(obj, inputs);
  if (group === GROUP_GATEWAY_API && obj.kind === 'Gateway') return gatewayStatus(obj, inputs);
  if (group === GROUP_GATEWAY_API && ROUTE_STATUS_KINDS.includes(obj.kind)) return routeStatus(obj, inputs);
  return undefined;
}

function generationOf(obj: KubeObject): number | undefined {
  return typeof obj.metadata.generation === 'number' ? obj.metadata.generation : undefined;
}

function invalidMessage(inv: { issues: readonly Issue[]; kept: boolean }): string {
  const list = inv.issues.map((i) => formatIssue({ ...i, path: i.path.replace(/^kubernetes: [^:]+: /, '') })).join('; ');
  return `${list}; ${inv.kept ? 'the previous version stays in force' : 'the object is not applied'}`;
}

/** Translation findings on one object; an AuthorizationPolicy's Accepted split by who applies it. */
function translationFindings(obj: KubeObject, inputs: StatusInputs): Finding[] {
  return (inputs.conditions.get(objectKey(obj)) ?? []).map((c) => {
    let type = c.type;
    if (obj.kind === 'AuthorizationPolicy' && c.type === 'Accepted') type = c.origin === 'model' ? 'ZtunnelAccepted' : 'WaypointAccepted';
    return { type, status: c.status, reason: c.reason, message: c.message };
  });
}

function istioStatus(obj: KubeObject, inputs: StatusInputs): Record<string, unknown> {
  const current = asRecord(obj.status);
  const inv = inputs.invalid.get(objectKey(obj));
  // An invalid version's verdict replaces whatever translation said of type Accepted (that was
  // about the version still in force; ZtunnelAccepted/WaypointAccepted keep saying so).
  const findings = translationFindings(obj, inputs).filter((f) => !(inv && f.type === 'Accepted'));
  if (inv) findings.push({ type: 'Accepted', status: 'False', reason: 'Invalid', message: invalidMessage(inv) });
  const merged = mergeFindings(findings);
  const hadOurs = asArray(current['conditions']).some((c) => ISTIO_CONDITION_TYPES.has(asString(asRecord(c)['type']) ?? ''));
  const hadCodes = asArray(current['validationMessages']).some((m) => OWNED_CODES.has(asString(asRecord(asRecord(m)['type'])['code']) ?? ''));
  if (merged.length === 0 && !hadOurs && !hadCodes) return current;
  const generation = generationOf(obj);
  const conditions = replaceOwned(current['conditions'], ISTIO_CONDITION_TYPES, toConditions(merged, current['conditions'], inputs.now, generation));
  const messages: Array<Record<string, unknown>> = asArray(current['validationMessages'])
    .map(asRecord)
    .filter((m) => !OWNED_CODES.has(asString(asRecord(m['type'])['code']) ?? ''));
  if (inv) messages.push({ type: { code: ANALYSIS.schema.code, name: ANALYSIS.schema.name }, level: ANALYSIS.schema.level });
  // An invalid object already carries IST0106; IST0171 is for what translation could not apply.
  if (merged.some((f) => isNegative(f) && f.reason !== 'Invalid')) messages.push({ type: { code: ANALYSIS.negative.code, name: ANALYSIS.negative.name }, level: ANALYSIS.negative.level });
  const out: Record<string, unknown> = { ...current, conditions };
  if (obj.kind === 'ServiceEntry') {
    const addresses = asStrings(asRecord(obj.spec)['hosts']).flatMap((h) => (inputs.entryAddresses?.get(`${nsOf(obj)}/${h.toLowerCase()}`) ?? []).map((value) => ({ value, host: h })));
    if (addresses.length > 0) out['addresses'] = addresses;
    else delete out['addresses'];
  }
  if (messages.length > 0) out['validationMessages'] = messages;
  else delete out['validationMessages'];
  if (conditions.length === 0) delete out['conditions'];
  if (generation !== undefined && merged.length > 0) out['observedGeneration'] = generation;
  return out;
}

/** A condition that says something is not in force (IST0171's rule). */
function isNegative(f: Finding): boolean {
  return f.status === 'False' || f.reason === 'PartiallyApplied' || f.reason === 'PartiallyInvalid';
}

function serviceStatus(obj: KubeObject, inputs: StatusInputs): Record<string, unknown> {
  const current = asRecord(obj.status);
  const merged = mergeFindings(translationFindings(obj, inputs).filter((f) => f.type === 'istio.io/WaypointBound'));
  const owned = new Set(['istio.io/WaypointBound']);
  const hadOurs = asArray(current['conditions']).some((c) => owned.has(asString(asRecord(c)['type']) ?? ''));
  if (merged.length === 0 && !hadOurs) return current;
  const conditions = replaceOwned(current['conditions'], owned, toConditions(merged, current['conditions'], inputs.now, generationOf(obj)));
  const out: Record<string, unknown> = { ...current, conditions };
  if (conditions.length === 0) delete out['conditions'];
  return out;
}

/** Route kinds whose `parents` status this controller writes. */
const ROUTE_STATUS_KINDS: readonly string[] = ['HTTPRoute', 'GRPCRoute', 'TCPRoute', 'TLSRoute'];

function gatewayStatus(gw: KubeObject, inputs: StatusInputs): Record<string, unknown> | undefined {
  const state = inputs.gatewayState(gw);
  const role = gatewayRole(gw);
  if (!role) return undefined; // another controller's class: not ours to write
  const current = asRecord(gw.status);
  const generation = generationOf(gw);
  const inv = inputs.invalid.get(objectKey(gw));
  const problems = (inputs.conditions.get(objectKey(gw)) ?? []).filter((c) => c.section !== undefined);
  const listeners = asArray(gw.spec?.['listeners']).map(asRecord);
  const prevListeners = new Map(asArray(current['listeners']).map(asRecord).map((l) => [asString(l['name']) ?? '', l]));
  const listenerStatus = listeners.map((l) => {
    const name = asString(l['name']) ?? '';
    const protocol = (asString(l['protocol']) ?? '').toUpperCase();
    const mine = problems.filter((p) => p.section === name);
    const { kinds, invalid: invalidKinds } = role === 'ingress' ? listenerKinds(l) : { kinds: [], invalid: [] };
    if (invalidKinds.length > 0) mine.push({ objectKey: objectKey(gw), type: 'ResolvedRefs', status: 'False', reason: 'InvalidRouteKinds', message: `listener ${name}: allowedRoutes.kinds ${invalidKinds.join(', ')} cannot attach to a ${protocol} listener`, section: name, origin: 'listeners' });
    const refProblem = mine.find((p) => p.type === 'ResolvedRefs' || p.reason === 'InvalidCertificateRef' || p.reason === 'RefNotPermitted');
    const acceptProblem = mine.find((p) => p.type === 'Accepted');
    const otherProblem = mine.find((p) => p !== refProblem && p !== acceptProblem);
    const findings: Finding[] = [
      acceptProblem
        ? { type: 'Accepted', status: 'False', reason: acceptProblem.reason, message: acceptProblem.message }
        : { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'listener accepted' },
      refProblem
        ? { type: 'ResolvedRefs', status: 'False', reason: ['RefNotPermitted', 'InvalidRouteKinds'].includes(refProblem.reason) ? refProblem.reason : 'InvalidCertificateRef', message: refProblem.message }
        : { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'references resolved' },
      acceptProblem || refProblem || otherProblem
        ? { type: 'Programmed', status: 'False', reason: 'Invalid', message: (otherProblem ?? refProblem ?? acceptProblem)!.message }
        : { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'listener programmed' },
    ];
    return {
      name,
      supportedKinds: kinds,
      attachedRoutes: role === 'ingress' ? attachedRoutes(gw, l, inputs) : 0,
      conditions: toConditions(findings, asRecord(prevListeners.get(name))['conditions'], inputs.now, generation),
    };
  });
  const addresses = gatewayAddresses(state);
  const listenersBad = problems.length > 0;
  const accepted: Finding = inv
    ? { type: 'Accepted', status: 'False', reason: 'Invalid', message: invalidMessage(inv) }
    : { type: 'Accepted', status: 'True', reason: listenersBad ? 'ListenersNotValid' : 'Accepted', message: listenersBad ? 'some listeners are not valid; the others are served' : 'accepted by the ambit controller' };
  let programmed: Finding;
  if (state?.conflict) programmed = { type: 'Programmed', status: 'False', reason: 'Invalid', message: state.conflict };
  else if (!state?.service || !state.deployment) programmed = { type: 'Programmed', status: 'False', reason: 'Pending', message: `waiting for the ${role} Deployment and Service to be created` };
  else if (addresses.length === 0) programmed = { type: 'Programmed', status: 'False', reason: 'AddressNotAssigned', message: `Service ${nsOf(state.service)}/${state.service.metadata.name} has no address yet` };
  else programmed = { type: 'Programmed', status: 'True', reason: 'Programmed', message: `resources programmed, served by Service ${nsOf(state.service)}/${state.service.metadata.name}` };
  return {
    ...current,
    conditions: replaceOwned(current['conditions'], new Set(['Accepted', 'Programmed']), toConditions([accepted, programmed], current['conditions'], inputs.now, generation)),
    listeners: listenerStatus,
    addresses,
  };
}

/** LoadBalancer ingress addresses of the Gateway's Service, else its cluster IPs. */
function gatewayAddresses(state: OwnedState | undefined): Array<{ type: string; value: string }> {
  if (!state?.service) return [];
  const ingress = asArray(asRecord(asRecord(state.service.status)['loadBalancer'])['ingress']).map(asRecord);
  const lb = ingress.flatMap((i) => (asString(i['ip']) ? [{ type: 'IPAddress', value: asString(i['ip'])! }] : asString(i['hostname']) ? [{ type: 'Hostname', value: asString(i['hostname'])! }] : []));
  if (lb.length > 0) return lb;
  const spec = asRecord(state.service.spec);
  const ips = asArray(spec['clusterIPs']).filter((x): x is string => typeof x === 'string' && x !== 'None');
  const single = asString(spec['clusterIP']);
  return [...new Set(ips.length > 0 ? ips : single && single !== 'None' ? [single] : [])].map((value) => ({ type: 'IPAddress', value }));
}

/** Routes a parentRef of which picks this listener (by its sectionName and port) and that the listener's allowedRoutes lets attach. */
function attachedRoutes(gw: KubeObject, listener: Record<string, unknown>, inputs: StatusInputs): number {
  let n = 0;
  const namespaces = inputs.namespaces ?? new Map<string, KubeObject>();
  for (const r of inputs.routes) {
    const hit = asArray(r.spec?.['parentRefs']).map(asRecord).some((p) => {
      const ref = parentOf(p, r);
      return ref.kind === 'Gateway' && ref.group === GROUP_GATEWAY_API && ref.namespace === nsOf(gw) && ref.name === gw.metadata.name && pickedListeners(gw, p).includes(listener);
    });
    if (hit && listenerRefusal(gw, listener, r.kind, nsOf(r), namespaces) === undefined) n++;
  }
  return n;
}

interface ParentRef {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  sectionName?: string;
}

function parentOf(p: Record<string, unknown>, route: KubeObject): ParentRef {
  const kind = asString(p['kind']) ?? 'Gateway';
  const group = asString(p['group']) ?? (kind === 'Service' ? '' : GROUP_GATEWAY_API);
  const section = asString(p['sectionName']);
  return { group, kind, namespace: asString(p['namespace']) ?? nsOf(route), name: asString(p['name']) ?? '', ...(section ? { sectionName: section } : {}) };
}

/** Route translation reasons that mean a backend could not be resolved. */
const REF_REASONS: Record<string, string> = { BackendNotFound: 'BackendNotFound', InvalidBackend: 'InvalidKind', Unsupported: 'InvalidKind' };

function routeStatus(route: KubeObject, inputs: StatusInputs): Record<string, unknown> {
  const current = asRecord(route.status);
  const generation = generationOf(route);
  const inv = inputs.invalid.get(objectKey(route));
  const found = inputs.conditions.get(objectKey(route)) ?? [];
  // An object-level verdict (the route as a whole was not applied), as opposed to notes about parents.
  const verdict = found.find((c) => c.status === 'False' && c.reason !== 'PartiallyApplied');
  const ours: Array<Record<string, unknown>> = [];
  for (const p of asArray(route.spec?.['parentRefs']).map(asRecord)) {
    const ref = parentOf(p, route);
    const key = `${ref.namespace}/${ref.name}`;
    let parentProblem: Finding | undefined;
    if (ref.kind === 'Service' && ref.group === '') {
      if (!inputs.services.has(key)) parentProblem = { type: 'Accepted', status: 'False', reason: 'NoMatchingParent', message: `parent Service ${key} does not exist` };
    } else if (ref.kind === 'Gateway' && ref.group === GROUP_GATEWAY_API) {
      const gw = inputs.gateways.get(key);
      const role = gw ? gatewayRole(gw) : undefined;
      if (!role) continue; // a missing Gateway, or another controller's: not ours to report on
      if (role === 'waypoint') parentProblem = { type: 'Accepted', status: 'False', reason: 'NotAllowedByListeners', message: `parent Gateway ${key} is a waypoint; attach routes to a Service instead` };
      else parentProblem = listenerProblem(gw!, p, route, inputs.namespaces ?? new Map());
    } else continue;
    let accepted: Finding;
    let resolved: Finding = { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'all references resolved' };
    if (inv) accepted = { type: 'Accepted', status: 'False', reason: 'UnsupportedValue', message: invalidMessage(inv) };
    else if (parentProblem) accepted = parentProblem;
    else if (verdict) {
      accepted = { type: 'Accepted', status: 'False', reason: 'UnsupportedValue', message: verdict.message };
      const refReason = REF_REASONS[verdict.reason];
      if (refReason) resolved = { type: 'ResolvedRefs', status: 'False', reason: refReason, message: verdict.message };
    } else accepted = { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'route accepted' };
    const prev = asArray(current['parents']).map(asRecord).find((x) => x['controllerName'] === CONTROLLER_NAME && sameParent(asRecord(x['parentRef']), p));
    ours.push({ parentRef: { ...p }, controllerName: CONTROLLER_NAME, conditions: toConditions([accepted, resolved], asRecord(prev)['conditions'], inputs.now, generation) });
  }
  const others = asArray(current['parents']).map(asRecord).filter((x) => x['controllerName'] !== CONTROLLER_NAME);
  if (ours.length === 0 && others.length === asArray(current['parents']).length) return current;
  return { ...current, parents: [...others, ...ours] };
}

/** Why no listener of an ingress Gateway takes the route through this parentRef (its sectionName and port, then allowedRoutes), or undefined when one does. */
function listenerProblem(gw: KubeObject, parentRef: Record<string, unknown>, route: KubeObject, namespaces: ReadonlyMap<string, KubeObject>): Finding | undefined {
  const section = asString(parentRef['sectionName']);
  const port = typeof parentRef['port'] === 'number' ? parentRef['port'] : undefined;
  const picked = pickedListeners(gw, parentRef);
  const key = `${nsOf(gw)}/${gw.metadata.name}`;
  if (picked.length === 0) return { type: 'Accepted', status: 'False', reason: 'NoMatchingParent', message: `parent Gateway ${key} has no listener${section !== undefined ? ` named ${section}` : ''}${port !== undefined ? ` on port ${port}` : ''}` };
  const why = picked.map((l) => listenerRefusal(gw, l, route.kind, nsOf(route), namespaces));
  if (why.some((w) => w === undefined)) return undefined;
  return { type: 'Accepted', status: 'False', reason: 'NotAllowedByListeners', message: `no listener of parent Gateway ${key} it names allows it: ${[...new Set(why)].join('; ')}` };
}

function sameParent(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const keys = ['group', 'kind', 'namespace', 'name', 'sectionName', 'port'];
  return keys.every((k) => a[k] === b[k]);
}
