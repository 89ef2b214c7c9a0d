/**
 * AuthorizationPolicy → L4 Authorization for the destination agent, with Istio's semantics.
 * Policies attached with targetRef(s) belong to waypoints and are skipped here. HTTP attributes
 * the agent cannot check fail closed: an ALLOW (or AUDIT) rule using them is omitted (allows less);
 * in a DENY rule they are removed (denies more). A condition says so. authorization-l7.ts, beside
 * it, translates the targetRef policies for waypoints, and the selector policies of ingress
 * gateway pods for those pods; a policy that applies to gateway pods only gets its condition from
 * there alone.
 */
import { emptyMatch, type Authorization, type AuthzClause, type AuthzMatch, type AuthzRule, type StringMatch } from '../../shared/model.js';
import type { KubeObject } from '../objects.js';
import { addCondition, type TranslateIndex } from './object-index.js';
import { CONDITION_ACCEPTED } from './peer-authentication.js';
import { podsByNamespace, type PodWorkload } from './services.js';
import { toStringMatch } from './string-match.js';
import { selectsOnlyGatewayPods } from './gateway-pods.js';
import { annotationsOf, asArray, asRecord, asString, asStrings, labelsOf, matchesLabels, nsOf, policySelector } from './util.js';

export const ANNOTATION_DRY_RUN = 'istio.io/dry-run';

export { emptyMatch };

const SOURCE_L7 = ['requestPrincipals', 'notRequestPrincipals'];
const OPERATION_L7 = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];

function ports(values: string[]): number[] {
  return values.map(Number).filter((n) => Number.isInteger(n) && n >= 1 && n <= 65535);
}

/** `ns/sa` service accounts as principal suffixes, so any trust domain matches. */
function serviceAccountMatches(values: string[]): StringMatch[] {
  return values.map((v) => {
    const [ns, sa] = v.split('/');
    return { suffix: `/ns/${ns}/sa/${sa}` };
  });
}

function sourceMatch(src: Record<string, unknown>, l7: Set<string>): AuthzMatch {
  const m = emptyMatch();
  m.principals = [...asStrings(src['principals']).map(toStringMatch), ...serviceAccountMatches(asStrings(src['serviceAccounts']))];
  m.notPrincipals = [...asStrings(src['notPrincipals']).map(toStringMatch), ...serviceAccountMatches(asStrings(src['notServiceAccounts']))];
  m.namespaces = asStrings(src['namespaces']).map(toStringMatch);
  m.notNamespaces = asStrings(src['notNamespaces']).map(toStringMatch);
  m.sourceIps = [...asStrings(src['ipBlocks']), ...asStrings(src['remoteIpBlocks'])];
  m.notSourceIps = [...asStrings(src['notIpBlocks']), ...asStrings(src['notRemoteIpBlocks'])];
  for (const f of SOURCE_L7) if (src[f] !== undefined) l7.add(`source.${f}`);
  return m;
}

function operationMatch(op: Record<string, unknown>, l7: Set<string>): AuthzMatch {
  const m = emptyMatch();
  m.destinationPorts = ports(asStrings(op['ports']));
  m.notDestinationPorts = ports(asStrings(op['notPorts']));
  for (const f of OPERATION_L7) if (op[f] !== undefined) l7.add(`operation.${f}`);
  return m;
}

/** The match of one `when` condition, or undefined when its key is not an L4 attribute. */
function conditionMatch(when: Record<string, unknown>): AuthzMatch | undefined {
  const values = asStrings(when['values']);
  const notValues = asStrings(when['notValues']);
  const m = emptyMatch();
  switch (asString(when['key'])) {
    case 'source.ip':
    case 'remote.ip':
      m.sourceIps = values;
      m.notSourceIps = notValues;
      return m;
    case 'source.namespace':
      m.namespaces = values.map(toStringMatch);
      m.notNamespaces = notValues.map(toStringMatch);
      return m;
    case 'source.principal':
      m.principals = values.map(toStringMatch);
      m.notPrincipals = notValues.map(toStringMatch);
      return m;
    case 'source.serviceAccount':
      m.principals = serviceAccountMatches(values);
      m.notPrincipals = serviceAccountMatches(notValues);
      return m;
    case 'destination.ip':
      m.destinationIps = values;
      m.notDestinationIps = notValues;
      return m;
    case 'destination.port':
      m.destinationPorts = ports(values);
      m.notDestinationPorts = ports(notValues);
      return m;
    default:
      return undefined;
  }
}

/**
 * One Istio rule as clauses: the `from` sources (ORed) form one clause, the `to` operations another,
 * each `when` condition its own; clauses are ANDed. Returns the HTTP attributes it had to ignore.
 */
export function convertRule(rule: Record<string, unknown>): { rule: AuthzRule; l7: string[] } {
  const l7 = new Set<string>();
  const clauses: AuthzClause[] = [];
  const from = asArray(rule['from']).map((f) => sourceMatch(asRecord(asRecord(f)['source']), l7));
  if (from.length > 0) clauses.push({ matches: from });
  const to = asArray(rule['to']).map((t) => operationMatch(asRecord(asRecord(t)['operation']), l7));
  if (to.length > 0) clauses.push({ matches: to });
  for (const w of asArray(rule['when'])) {
    const m = conditionMatch(asRecord(w));
    if (m) clauses.push({ matches: [m] });
    else l7.add(`when ${asString(asRecord(w)['key']) ?? '?'}`);
  }
  return { rule: { clauses }, l7: [...l7].sort() };
}

function isWaypointAttached(ap: KubeObject): boolean {
  return ap.spec?.['targetRef'] !== undefined || asArray(ap.spec?.['targetRefs']).length > 0;
}

/**
 * Builds the agent's Authorizations and adds `ns/name` of each workload-scoped one to the
 * Workloads it selects (a selector policy in the root namespace selects in every namespace).
 */
export function buildAuthorizations(idx: TranslateIndex, pods: readonly PodWorkload[]): Authorization[] {
  const out: Authorization[] = [];
  // Selector policies match pods of their own namespace (all, from the root namespace).
  const inNamespace = podsByNamespace(pods);
  for (const ap of idx.authorizationPolicies) {
    if (isWaypointAttached(ap)) continue;
    const ns = nsOf(ap);
    const action = asString(ap.spec?.['action']) ?? 'ALLOW';
    // A policy whose selector can only pick ingress gateway pods is theirs (authorization-l7.ts
    // says so on it), not the agents'.
    const gatewayOnly = selectsOnlyGatewayPods(ap, idx);
    if (action === 'CUSTOM') {
      if (gatewayOnly) continue;
      addCondition(idx, ap, {
        type: CONDITION_ACCEPTED,
        status: 'False',
        reason: 'UnsupportedValue',
        message: 'action CUSTOM (external authorization) is not supported by the node agent; the policy is not applied; attach it to a waypoint with targetRefs',
      });
      continue;
    }
    if (action !== 'ALLOW' && action !== 'DENY' && action !== 'AUDIT') continue;
    const selector = policySelector(ap);
    const scope: Authorization['scope'] = selector ? 'workload' : ns === idx.opts.rootNamespace ? 'global' : 'namespace';
    const rules: AuthzRule[] = [];
    const ignored = new Set<string>();
    for (const raw of asArray(ap.spec?.['rules'])) {
      const { rule, l7 } = convertRule(asRecord(raw));
      l7.forEach((a) => ignored.add(a));
      if (l7.length > 0 && action !== 'DENY') continue;
      rules.push(rule);
    }
    out.push({ name: ap.metadata.name, namespace: ns, scope, action, rules, dryRun: annotationsOf(ap)[ANNOTATION_DRY_RUN] === 'true' });
    if (selector) {
      const key = `${ns}/${ap.metadata.name}`;
      for (const { pod, workload } of ns === idx.opts.rootNamespace ? pods : (inNamespace.get(ns) ?? [])) {
        if (matchesLabels(selector, labelsOf(pod))) workload.authorizationPolicies.push(key);
      }
    }
    if (!gatewayOnly) addCondition(idx, ap, acceptedCondition(action, [...ignored].sort(), rules.length));
  }
  return out;
}

function acceptedCondition(action: string, ignored: string[], ruleCount: number) {
  if (ignored.length === 0) return { type: CONDITION_ACCEPTED, status: 'True' as const, reason: 'Accepted', message: 'applied by the node agents' };
  const found = `the node agent cannot check HTTP attributes (found: ${ignored.join(', ')}); attach the policy to a waypoint with targetRefs to enforce them`;
  const none = ruleCount === 0 ? ' (no rules remain: this policy matches nothing)' : '';
  const effect =
    action === 'DENY'
      ? 'in a DENY policy they are ignored, so its rules deny more than requested'
      : action === 'AUDIT'
        ? `in an AUDIT policy the rules using them are omitted, so fewer connections are audited${none}`
        : `in an ALLOW policy the rules using them are omitted, which is more restrictive than requested${none}`;
  return { type: CONDITION_ACCEPTED, status: 'True' as const, reason: 'PartiallyApplied', message: `${found}; ${effect}` };
}
