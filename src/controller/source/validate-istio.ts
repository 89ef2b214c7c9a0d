/**
 * Validation of Istio CRDs (security.istio.io PeerAuthentication/AuthorizationPolicy and
 * networking.istio.io VirtualService/DestinationRule/Gateway), following istio's own rules.
 */
import type { KindInfo } from '../objects.js';
import { isIP } from 'node:net';
import { Issues, bool, duration, int, isCidr, isDnsLabel, knownFields, num, port, rec, recs, str, strList } from '../../shared/validate.js';
import { labels } from './kube-fields.js';

export const PEER_AUTHENTICATION_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;
export const AUTHORIZATION_ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;

export function validateIstioSpec(c: Issues, obj: Record<string, unknown>, info: KindInfo): void {
  switch (info.kind) {
    case 'PeerAuthentication':
      validatePeerAuthentication(c, obj['spec']);
      return;
    case 'AuthorizationPolicy':
      validateAuthorizationPolicy(c, obj['spec']);
      return;
    case 'VirtualService':
      validateVirtualService(c, obj['spec']);
      return;
    case 'DestinationRule':
      validateDestinationRule(c, obj['spec']);
      return;
    case 'Gateway':
      validateIstioGateway(c, obj['spec']);
      return;
    case 'ServiceEntry':
      validateServiceEntry(c, obj['spec']);
      return;
    case 'RequestAuthentication':
      validateRequestAuthentication(c, obj['spec']);
      return;
    case 'Telemetry':
      validateTelemetry(c, obj['spec']);
      return;
    case 'WorkloadEntry':
      workloadEntry(c, rec(c, obj['spec'], 'spec', true), 'spec');
      return;
    case 'WorkloadGroup': {
      const spec = rec(c, obj['spec'], 'spec', true);
      if (!spec) return;
      knownFields(c, spec, 'spec', ['metadata', 'template', 'probe']);
      workloadEntry(c, rec(c, spec['template'], 'spec.template', true), 'spec.template');
      return;
    }
    case 'Sidecar': {
      const spec = rec(c, obj['spec'], 'spec');
      if (spec) knownFields(c, spec, 'spec', ['workloadSelector', 'ingress', 'egress', 'inboundConnectionPool', 'outboundTrafficPolicy']);
      return;
    }
    case 'EnvoyFilter': {
      const spec = rec(c, obj['spec'], 'spec');
      if (spec) knownFields(c, spec, 'spec', ['workloadSelector', 'targetRefs', 'configPatches', 'priority']);
      return;
    }
  }
}

/** Policy attachment shared by RequestAuthentication, AuthorizationPolicy and Telemetry: a selector or targetRef(s), not both. */
function policyAttachment(c: Issues, spec: Record<string, unknown>, kinds: readonly string[]): void {
  const hasSelector = spec['selector'] !== undefined;
  workloadSelector(c, spec['selector'], 'spec.selector');
  const targets: Array<[Record<string, unknown>, string]> = [];
  const tr = rec(c, spec['targetRef'], 'spec.targetRef');
  if (tr) targets.push([tr, 'spec.targetRef']);
  targets.push(...recs(c, spec['targetRefs'], 'spec.targetRefs'));
  for (const [t, p] of targets) {
    str(c, t['kind'], `${p}.kind`, { required: true, oneOf: kinds });
    str(c, t['name'], `${p}.name`, { required: true });
    str(c, t['group'], `${p}.group`);
    str(c, t['namespace'], `${p}.namespace`);
  }
  if (hasSelector && targets.length > 0) c.add('spec.selector', 'cannot be combined with targetRef/targetRefs; use one attachment', spec['selector']);
  if (tr && spec['targetRefs'] !== undefined) c.add('spec.targetRef', 'cannot be combined with spec.targetRefs', tr);
}

const SE_RESOLUTIONS = ['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'DYNAMIC_DNS'] as const;
const PORT_PROTOCOLS = ['HTTP', 'HTTPS', 'GRPC', 'GRPC-WEB', 'HTTP2', 'MONGO', 'TCP', 'TLS', 'UDP', 'REDIS', 'MYSQL'];

/** A host of a ServiceEntry: a DNS name, optionally starting with "*." (no bare "*", no IP). */
function isServiceEntryHost(h: string): boolean {
  const name = h.startsWith('*.') ? h.slice(2) : h;
  return name.length > 0 && name.length <= 253 && /^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$/.test(name) && isIP(name) === 0;
}

function workloadEntry(c: Issues, we: Record<string, unknown> | undefined, path: string): string | undefined {
  if (!we) return undefined;
  knownFields(c, we, path, ['address', 'ports', 'labels', 'network', 'locality', 'weight', 'serviceAccount']);
  const address = str(c, we['address'], `${path}.address`);
  const ports = rec(c, we['ports'], `${path}.ports`);
  for (const [k, v] of Object.entries(ports ?? {})) port(c, v, `${path}.ports.${k}`, true);
  labels(c, we['labels'], `${path}.labels`);
  str(c, we['network'], `${path}.network`);
  str(c, we['locality'], `${path}.locality`);
  int(c, we['weight'], `${path}.weight`, { min: 0 });
  str(c, we['serviceAccount'], `${path}.serviceAccount`, { test: (s) => isDnsSubdomainLike(s), expect: 'a service account name' });
  return address;
}

function isDnsSubdomainLike(s: string): boolean {
  return /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(s);
}

function validateServiceEntry(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec', true);
  if (!spec) return;
  knownFields(c, spec, 'spec', ['hosts', 'addresses', 'ports', 'location', 'resolution', 'endpoints', 'workloadSelector', 'exportTo', 'subjectAltNames']);
  const hosts = strList(c, spec['hosts'], 'spec.hosts', { required: true, nonEmpty: true, unique: true, check: (h) => (isServiceEntryHost(h) ? undefined : 'must be a DNS name, optionally starting with "*." (not "*" or an IP address)') }) ?? [];
  strList(c, spec['addresses'], 'spec.addresses', { check: cidrCheck });
  const names = new Set<string>();
  const numbers = new Set<number>();
  for (const [p, pp] of recs(c, spec['ports'], 'spec.ports')) {
    knownFields(c, p, pp, ['number', 'protocol', 'name', 'targetPort']);
    const n = port(c, p['number'], `${pp}.number`, true);
    if (n !== undefined) {
      if (numbers.has(n)) c.add(`${pp}.number`, 'duplicates another port number', n);
      numbers.add(n);
    }
    const name = str(c, p['name'], `${pp}.name`, { required: true });
    if (name !== undefined) {
      if (names.has(name)) c.add(`${pp}.name`, 'duplicates another port name', name);
      names.add(name);
    }
    const proto = str(c, p['protocol'], `${pp}.protocol`);
    if (proto !== undefined && !PORT_PROTOCOLS.includes(proto.toUpperCase())) c.add(`${pp}.protocol`, `must be one of ${PORT_PROTOCOLS.join(', ')}`, proto);
    port(c, p['targetPort'], `${pp}.targetPort`);
  }
  str(c, spec['location'], 'spec.location', { oneOf: ['MESH_EXTERNAL', 'MESH_INTERNAL'] });
  const resolution = str(c, spec['resolution'], 'spec.resolution', { oneOf: SE_RESOLUTIONS }) ?? 'NONE';
  const endpoints = recs(c, spec['endpoints'], 'spec.endpoints');
  const selector = rec(c, spec['workloadSelector'], 'spec.workloadSelector');
  if (selector) {
    knownFields(c, selector, 'spec.workloadSelector', ['labels']);
    labels(c, selector['labels'], 'spec.workloadSelector.labels');
    if (endpoints.length > 0) c.add('spec.workloadSelector', 'cannot be combined with spec.endpoints', selector);
  }
  for (const [e, ep] of endpoints) {
    const address = workloadEntry(c, e, ep);
    if (address === undefined) {
      c.add(`${ep}.address`, 'is required');
      continue;
    }
    if (resolution === 'STATIC' && isIP(address) === 0 && !address.startsWith('unix://')) c.add(`${ep}.address`, 'must be an IP address when resolution is STATIC', address);
    for (const k of Object.keys(asRecordOf(e['ports']))) if (!names.has(k)) c.add(`${ep}.ports.${k}`, 'names no port of spec.ports', k);
  }
  if (resolution === 'NONE' && endpoints.length > 0) c.add('spec.endpoints', 'must be empty when resolution is NONE (connections go to the address the client asked for)', endpoints.length);
  if (resolution === 'STATIC' && endpoints.length === 0 && !selector) c.add('spec.endpoints', 'is required when resolution is STATIC (or use spec.workloadSelector)');
  if ((resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') && endpoints.length === 0) {
    hosts.forEach((h, i) => {
      // Istio's ValidateServiceEntry: a wildcard is no FQDN, and without endpoints the host itself is resolved.
      if (h.startsWith('*')) c.add(`spec.hosts[${i}]`, `hosts must be FQDN if no endpoints are provided for resolution mode ${resolution}`, h);
    });
  }
  exportTo(c, spec['exportTo']);
  strList(c, spec['subjectAltNames'], 'spec.subjectAltNames');
}

/** Istio `exportTo`: `.` (this namespace), `*` (all), `~` (none, alone) or namespace names. */
function exportTo(c: Issues, v: unknown): void {
  const values = strList(c, v, 'spec.exportTo', { check: (x) => (x === '.' || x === '*' || x === '~' || isDnsLabel(x) ? undefined : 'must be ".", "*", "~" or a namespace name') }) ?? [];
  if (values.includes('~') && values.length > 1) c.add('spec.exportTo', '"~" (exported nowhere) cannot be combined with other values', values);
}

function asRecordOf(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function httpUrlProblem(s: string): string | undefined {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:' ? undefined : 'must be an http or https URL';
  } catch {
    return 'must be an http or https URL';
  }
}

function validateRequestAuthentication(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec');
  if (!spec) return;
  knownFields(c, spec, 'spec', ['selector', 'targetRef', 'targetRefs', 'jwtRules']);
  policyAttachment(c, spec, ['Gateway', 'Service', 'GatewayClass', 'ServiceEntry']);
  for (const [r, rp] of recs(c, spec['jwtRules'], 'spec.jwtRules')) {
    knownFields(c, r, rp, ['issuer', 'audiences', 'jwksUri', 'jwks', 'fromHeaders', 'fromParams', 'fromCookies', 'outputPayloadToHeader', 'forwardOriginalToken', 'outputClaimToHeaders', 'timeout']);
    str(c, r['issuer'], `${rp}.issuer`, { required: true });
    strList(c, r['audiences'], `${rp}.audiences`);
    const uri = str(c, r['jwksUri'], `${rp}.jwksUri`);
    if (uri !== undefined && httpUrlProblem(uri)) c.add(`${rp}.jwksUri`, httpUrlProblem(uri)!, uri);
    const jwks = str(c, r['jwks'], `${rp}.jwks`);
    if (jwks !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(jwks);
      } catch {
        c.add(`${rp}.jwks`, 'must be a JSON Web Key Set (JSON text with a "keys" list)');
      }
      if (parsed !== undefined && !Array.isArray(asRecordOf(parsed)['keys'])) c.add(`${rp}.jwks`, 'must be a JSON Web Key Set (JSON text with a "keys" list)');
    }
    for (const [h, hp] of recs(c, r['fromHeaders'], `${rp}.fromHeaders`)) {
      knownFields(c, h, hp, ['name', 'prefix']);
      str(c, h['name'], `${hp}.name`, { required: true });
      str(c, h['prefix'], `${hp}.prefix`, { allowEmpty: true });
    }
    strList(c, r['fromParams'], `${rp}.fromParams`);
    strList(c, r['fromCookies'], `${rp}.fromCookies`);
    str(c, r['outputPayloadToHeader'], `${rp}.outputPayloadToHeader`);
    bool(c, r['forwardOriginalToken'], `${rp}.forwardOriginalToken`);
    for (const [o, op] of recs(c, r['outputClaimToHeaders'], `${rp}.outputClaimToHeaders`)) {
      knownFields(c, o, op, ['header', 'claim']);
      str(c, o['header'], `${op}.header`, { required: true });
      str(c, o['claim'], `${op}.claim`, { required: true });
    }
    duration(c, r['timeout'], `${rp}.timeout`, { minMs: 1 });
  }
}

function validateTelemetry(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec');
  if (!spec) return;
  knownFields(c, spec, 'spec', ['selector', 'targetRef', 'targetRefs', 'tracing', 'metrics', 'accessLogging']);
  policyAttachment(c, spec, ['Gateway', 'Service', 'GatewayClass', 'ServiceEntry']);
  const providers = (v: unknown, path: string): void => {
    for (const [p, pp] of recs(c, v, path)) str(c, p['name'], `${pp}.name`, { required: true });
  };
  for (const [t, tp] of recs(c, spec['tracing'], 'spec.tracing')) {
    knownFields(c, t, tp, ['match', 'providers', 'randomSamplingPercentage', 'disableSpanReporting', 'customTags', 'useRequestIdForTraceSampling', 'enableIstioTags']);
    providers(t['providers'], `${tp}.providers`);
    num(c, t['randomSamplingPercentage'], `${tp}.randomSamplingPercentage`, { min: 0, max: 100 });
    bool(c, t['disableSpanReporting'], `${tp}.disableSpanReporting`);
  }
  for (const [a, ap] of recs(c, spec['accessLogging'], 'spec.accessLogging')) {
    knownFields(c, a, ap, ['match', 'providers', 'disabled', 'filter']);
    providers(a['providers'], `${ap}.providers`);
    bool(c, a['disabled'], `${ap}.disabled`);
    const f = rec(c, a['filter'], `${ap}.filter`);
    if (f) str(c, f['expression'], `${ap}.filter.expression`, { required: true });
    const m = rec(c, a['match'], `${ap}.match`);
    if (m) str(c, m['mode'], `${ap}.match.mode`, { oneOf: ['CLIENT_AND_SERVER', 'CLIENT', 'SERVER'] });
  }
  for (const [m, mp] of recs(c, spec['metrics'], 'spec.metrics')) {
    knownFields(c, m, mp, ['providers', 'overrides', 'reportingInterval']);
    providers(m['providers'], `${mp}.providers`);
    for (const [o, op] of recs(c, m['overrides'], `${mp}.overrides`)) {
      knownFields(c, o, op, ['match', 'disabled', 'tagOverrides']);
      bool(c, o['disabled'], `${op}.disabled`);
      const match = rec(c, o['match'], `${op}.match`);
      if (match) {
        knownFields(c, match, `${op}.match`, ['metric', 'customMetric', 'mode']);
        str(c, match['metric'], `${op}.match.metric`, { oneOf: ['ALL_METRICS', 'REQUEST_COUNT', 'REQUEST_DURATION', 'REQUEST_SIZE', 'RESPONSE_SIZE', 'TCP_OPENED_CONNECTIONS', 'TCP_CLOSED_CONNECTIONS', 'TCP_SENT_BYTES', 'TCP_RECEIVED_BYTES', 'GRPC_REQUEST_MESSAGES', 'GRPC_RESPONSE_MESSAGES'] });
        str(c, match['customMetric'], `${op}.match.customMetric`);
        str(c, match['mode'], `${op}.match.mode`, { oneOf: ['CLIENT_AND_SERVER', 'CLIENT', 'SERVER'] });
      }
      const tags = rec(c, o['tagOverrides'], `${op}.tagOverrides`);
      for (const [name, raw] of Object.entries(tags ?? {})) {
        const t = rec(c, raw, `${op}.tagOverrides.${name}`);
        if (!t) continue;
        knownFields(c, t, `${op}.tagOverrides.${name}`, ['operation', 'value']);
        str(c, t['operation'], `${op}.tagOverrides.${name}.operation`, { oneOf: ['UPSERT', 'REMOVE'] });
        str(c, t['value'], `${op}.tagOverrides.${name}.value`);
      }
    }
  }
}

/** `selector: { matchLabels }` as Istio's WorkloadSelector. Returns true when it selects by labels. */
function workloadSelector(c: Issues, v: unknown, path: string): boolean {
  const sel = rec(c, v, path);
  if (!sel) return false;
  const ml = labels(c, sel['matchLabels'], `${path}.matchLabels`);
  return ml !== undefined && Object.keys(ml).length > 0;
}

function validatePeerAuthentication(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec');
  if (!spec) return;
  knownFields(c, spec, 'spec', ['selector', 'mtls', 'portLevelMtls']);
  const hasSelector = workloadSelector(c, spec['selector'], 'spec.selector');
  const mtls = rec(c, spec['mtls'], 'spec.mtls');
  if (mtls) {
    knownFields(c, mtls, 'spec.mtls', ['mode']);
    str(c, mtls['mode'], 'spec.mtls.mode', { oneOf: PEER_AUTHENTICATION_MODES });
  }
  const plm = rec(c, spec['portLevelMtls'], 'spec.portLevelMtls');
  if (!plm) return;
  if (!hasSelector && Object.keys(plm).length > 0) {
    c.add('spec.portLevelMtls', 'requires spec.selector: mesh-wide and namespace-wide PeerAuthentication cannot set port-level mTLS', Object.keys(plm));
  }
  for (const [k, val] of Object.entries(plm)) {
    const p = `spec.portLevelMtls.${k}`;
    if (!/^\d+$/.test(k) || Number(k) < 1 || Number(k) > 65535) c.add(p, 'key must be a port number between 1 and 65535', k);
    const m = rec(c, val, p, true);
    if (m) str(c, m['mode'], `${p}.mode`, { oneOf: PEER_AUTHENTICATION_MODES });
  }
}

/** `when` keys Istio accepts; the L4 ones are listed in translate/authorization.ts. */
const WHEN_KEYS = new Set([
  'source.ip',
  'remote.ip',
  'source.namespace',
  'source.principal',
  'source.serviceAccount',
  'destination.ip',
  'destination.port',
  'connection.sni',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
]);
const WHEN_KEY_PATTERNS = [/^request\.headers\[[^\]]+\]$/, /^request\.auth\.claims\[.+\]$/, /^request\.regex\.headers\[[^\]]+\]$/, /^experimental\.envoy\.filters\./];

export function isKnownWhenKey(key: string): boolean {
  return WHEN_KEYS.has(key) || WHEN_KEY_PATTERNS.some((r) => r.test(key));
}

const SOURCE_FIELDS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
  'ipBlocks',
  'notIpBlocks',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
  'serviceAccounts',
  'notServiceAccounts',
];
const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'];

/** Istio string match syntax: "*", "prefix*", "*suffix" or exact; no "*" in the middle. */
function matchValues(c: Issues, v: unknown, path: string, check?: (s: string) => string | undefined): void {
  const list = strList(c, v, path);
  list?.forEach((s, i) => {
    if (s.length === 0) c.add(`${path}[${i}]`, 'must not be empty', s);
    else if (s.length > 1 && s.slice(1, -1).includes('*')) c.add(`${path}[${i}]`, 'may use "*" only as a whole value, a prefix or a suffix', s);
    else if (check) {
      const problem = check(s);
      if (problem) c.add(`${path}[${i}]`, problem, s);
    }
  });
}

const cidrCheck = (s: string): string | undefined => (isCidr(s) ? undefined : 'must be an IP address or CIDR such as 10.0.0.0/8');
const portProblem = (s: string): string | undefined =>
  /^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 65535 ? undefined : 'must be a port number between 1 and 65535 (as a string)';

function validateAuthorizationPolicy(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec');
  if (!spec) return;
  knownFields(c, spec, 'spec', ['selector', 'targetRef', 'targetRefs', 'action', 'provider', 'rules']);
  policyAttachment(c, spec, ['Gateway', 'Service', 'GatewayClass', 'ServiceEntry']);
  const action = str(c, spec['action'], 'spec.action', { oneOf: AUTHORIZATION_ACTIONS });
  const provider = rec(c, spec['provider'], 'spec.provider');
  if (action === 'CUSTOM') {
    if (!provider) c.add('spec.provider', 'is required when action is CUSTOM');
    else str(c, provider['name'], 'spec.provider.name', { required: true });
  } else if (provider) {
    c.add('spec.provider', 'is only allowed when action is CUSTOM', provider);
  }
  for (const [rule, rp] of recs(c, spec['rules'], 'spec.rules')) {
    knownFields(c, rule, rp, ['from', 'to', 'when']);
    for (const [from, fp] of recs(c, rule['from'], `${rp}.from`)) {
      knownFields(c, from, fp, ['source']);
      const source = rec(c, from['source'], `${fp}.source`, true);
      if (!source) continue;
      if (!SOURCE_FIELDS.some((f) => source[f] !== undefined)) c.add(`${fp}.source`, `must set at least one of ${SOURCE_FIELDS.join(', ')}`, source);
      for (const f of Object.keys(source)) if (!SOURCE_FIELDS.includes(f)) c.add(`${fp}.source.${f}`, 'is not a source field', source[f]);
      for (const f of ['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces']) {
        matchValues(c, source[f], `${fp}.source.${f}`);
      }
      for (const f of ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks']) matchValues(c, source[f], `${fp}.source.${f}`, cidrCheck);
      for (const f of ['serviceAccounts', 'notServiceAccounts']) {
        matchValues(c, source[f], `${fp}.source.${f}`, (s) => (/^[^/*]+\/[^/*]+$/.test(s) ? undefined : 'must be <namespace>/<service account>'));
      }
    }
    for (const [to, tp] of recs(c, rule['to'], `${rp}.to`)) {
      knownFields(c, to, tp, ['operation']);
      const op = rec(c, to['operation'], `${tp}.operation`, true);
      if (!op) continue;
      if (!OPERATION_FIELDS.some((f) => op[f] !== undefined)) c.add(`${tp}.operation`, `must set at least one of ${OPERATION_FIELDS.join(', ')}`, op);
      for (const f of Object.keys(op)) if (!OPERATION_FIELDS.includes(f)) c.add(`${tp}.operation.${f}`, 'is not an operation field', op[f]);
      for (const f of ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths']) matchValues(c, op[f], `${tp}.operation.${f}`);
      for (const f of ['ports', 'notPorts']) matchValues(c, op[f], `${tp}.operation.${f}`, portProblem);
    }
    for (const [when, wp] of recs(c, rule['when'], `${rp}.when`)) {
      knownFields(c, when, wp, ['key', 'values', 'notValues']);
      const key = str(c, when['key'], `${wp}.key`, { required: true });
      if (key !== undefined && !isKnownWhenKey(key)) c.add(`${wp}.key`, 'is not a supported condition key (e.g. source.ip, source.namespace, source.principal, destination.port, request.headers[...])', key);
      if (when['values'] === undefined && when['notValues'] === undefined) c.add(`${wp}`, 'must set values or notValues', when);
      const check = key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip' ? cidrCheck : key === 'destination.port' ? portProblem : undefined;
      matchValues(c, when['values'], `${wp}.values`, check);
      matchValues(c, when['notValues'], `${wp}.notValues`, check);
    }
  }
}

/** Istio StringMatch: exactly one of exact, prefix, regex. */
function stringMatch(c: Issues, v: unknown, path: string): void {
  const m = rec(c, v, path);
  if (!m) return;
  const set = ['exact', 'prefix', 'regex'].filter((k) => m[k] !== undefined);
  if (set.length !== 1) c.add(path, 'must set exactly one of exact, prefix, regex', m);
  for (const k of set) {
    const s = str(c, m[k], `${path}.${k}`);
    if (k === 'regex' && s !== undefined) {
      try {
        new RegExp(s);
      } catch {
        c.add(`${path}.regex`, 'is not a valid regular expression', s);
      }
    }
  }
}

function percentage(c: Issues, v: unknown, path: string): void {
  const p = rec(c, v, path);
  if (p) num(c, p['value'], `${path}.value`, { min: 0, max: 100 });
}

function destination(c: Issues, v: unknown, path: string): void {
  const d = rec(c, v, path, true);
  if (!d) return;
  knownFields(c, d, path, ['host', 'subset', 'port']);
  str(c, d['host'], `${path}.host`, { required: true });
  str(c, d['subset'], `${path}.subset`);
  const p = rec(c, d['port'], `${path}.port`);
  if (p) port(c, p['number'], `${path}.port.number`, true);
}

/** Route destinations with weights; more than one destination must have weights summing to 100. */
function routeDestinations(c: Issues, v: unknown, path: string, required: boolean): number {
  const routes = recs(c, v, path, { required, nonEmpty: required });
  let total = 0;
  let allNumbers = true;
  for (const [r, p] of routes) {
    knownFields(c, r, p, ['destination', 'weight', 'headers']);
    destination(c, r['destination'], `${p}.destination`);
    const w = int(c, r['weight'], `${p}.weight`, { min: 0, max: 100 });
    if (w === undefined && r['weight'] !== undefined) allNumbers = false;
    total += w ?? 0;
  }
  if (routes.length > 1 && allNumbers && total !== 100) {
    c.add(`${path}`, `destination weights must sum to 100 (sum is ${total})`, routes.map(([r]) => r['weight'] ?? null));
  }
  return routes.length;
}

const HTTP_ROUTE_FIELDS = [
  'name', 'match', 'route', 'redirect', 'directResponse', 'delegate', 'rewrite', 'timeout', 'retries', 'fault',
  'mirror', 'mirrors', 'mirrorPercentage', 'mirrorPercent', 'corsPolicy', 'headers',
];
const HTTP_MATCH_FIELDS = [
  'name', 'uri', 'scheme', 'method', 'authority', 'headers', 'port', 'sourceLabels', 'gateways', 'queryParams',
  'ignoreUriCase', 'withoutHeaders', 'sourceNamespace', 'statPrefix',
];

/** Istio HTTPRedirect: Envoy answers with 301, 302, 303, 307 or 308. */
function validateRedirect(c: Issues, r: Record<string, unknown>, path: string): void {
  knownFields(c, r, path, ['uri', 'authority', 'port', 'derivePort', 'scheme', 'redirectCode']);
  str(c, r['uri'], `${path}.uri`);
  str(c, r['authority'], `${path}.authority`);
  str(c, r['scheme'], `${path}.scheme`);
  port(c, r['port'], `${path}.port`);
  str(c, r['derivePort'], `${path}.derivePort`, { oneOf: ['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT'] });
  if (r['port'] !== undefined && r['derivePort'] !== undefined) c.add(`${path}.derivePort`, 'cannot be combined with port', r['derivePort']);
  const code = int(c, r['redirectCode'], `${path}.redirectCode`);
  if (code !== undefined && code !== 0 && ![301, 302, 303, 307, 308].includes(code)) c.add(`${path}.redirectCode`, 'must be a redirect status: 301, 302, 303, 307 or 308', code);
}

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

/** Istio CorsPolicy, with Istio's checks: known methods, header names, a max age in whole seconds. */
function validateCorsPolicy(c: Issues, r: Record<string, unknown>, path: string): void {
  knownFields(c, r, path, ['allowOrigins', 'allowOrigin', 'allowMethods', 'allowHeaders', 'exposeHeaders', 'maxAge', 'allowCredentials', 'unmatchedPreflights']);
  for (const [m, mp] of recs(c, r['allowOrigins'], `${path}.allowOrigins`)) stringMatch(c, m, mp);
  strList(c, r['allowOrigin'], `${path}.allowOrigin`);
  strList(c, r['allowMethods'], `${path}.allowMethods`, { check: (m) => (HTTP_METHODS.includes(m) ? undefined : `must be an HTTP method (${HTTP_METHODS.join(', ')})`) });
  const headerName = (h: string): string | undefined => (/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(h) ? undefined : 'must be an HTTP header name');
  strList(c, r['allowHeaders'], `${path}.allowHeaders`, { check: headerName });
  strList(c, r['exposeHeaders'], `${path}.exposeHeaders`, { check: headerName });
  const ms = duration(c, r['maxAge'], `${path}.maxAge`);
  if (ms !== undefined && ms % 1000 !== 0) c.add(`${path}.maxAge`, 'must be whole seconds (CORS max age has seconds precision)', r['maxAge']);
  bool(c, r['allowCredentials'], `${path}.allowCredentials`);
  str(c, r['unmatchedPreflights'], `${path}.unmatchedPreflights`, { oneOf: ['UNSPECIFIED', 'FORWARD', 'IGNORE'] });
}

function validateVirtualService(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec', true);
  if (!spec) return;
  knownFields(c, spec, 'spec', ['hosts', 'gateways', 'http', 'tls', 'tcp', 'exportTo']);
  strList(c, spec['hosts'], 'spec.hosts', { required: true, nonEmpty: true });
  strList(c, spec['gateways'], 'spec.gateways');
  strList(c, spec['exportTo'], 'spec.exportTo');
  for (const [h, hp] of recs(c, spec['http'], 'spec.http')) {
    knownFields(c, h, hp, HTTP_ROUTE_FIELDS);
    str(c, h['name'], `${hp}.name`);
    for (const [m, mp] of recs(c, h['match'], `${hp}.match`)) {
      knownFields(c, m, mp, HTTP_MATCH_FIELDS);
      for (const k of ['uri', 'scheme', 'method', 'authority']) stringMatch(c, m[k], `${mp}.${k}`);
      for (const k of ['headers', 'queryParams', 'withoutHeaders']) {
        const hm = rec(c, m[k], `${mp}.${k}`);
        if (hm) for (const [hk, hv] of Object.entries(hm)) stringMatch(c, hv, `${mp}.${k}.${hk}`);
      }
      port(c, m['port'], `${mp}.port`);
      bool(c, m['ignoreUriCase'], `${mp}.ignoreUriCase`);
      labels(c, m['sourceLabels'], `${mp}.sourceLabels`);
      strList(c, m['gateways'], `${mp}.gateways`);
      str(c, m['sourceNamespace'], `${mp}.sourceNamespace`);
    }
    const nRoutes = routeDestinations(c, h['route'], `${hp}.route`, false);
    const redirect = rec(c, h['redirect'], `${hp}.redirect`);
    if (redirect) validateRedirect(c, redirect, `${hp}.redirect`);
    const cors = rec(c, h['corsPolicy'], `${hp}.corsPolicy`);
    if (cors) validateCorsPolicy(c, cors, `${hp}.corsPolicy`);
    const direct = rec(c, h['directResponse'], `${hp}.directResponse`);
    if (direct) int(c, direct['status'], `${hp}.directResponse.status`, { required: true, min: 200, max: 599 });
    if (nRoutes === 0 && !redirect && !direct && h['delegate'] === undefined) {
      c.add(`${hp}`, 'needs a route, redirect, directResponse or delegate', Object.keys(h));
    }
    if (nRoutes > 0 && (redirect || direct)) c.add(`${hp}`, 'cannot combine route with redirect or directResponse', Object.keys(h));
    const rewrite = rec(c, h['rewrite'], `${hp}.rewrite`);
    if (rewrite) {
      str(c, rewrite['uri'], `${hp}.rewrite.uri`);
      str(c, rewrite['authority'], `${hp}.rewrite.authority`);
    }
    duration(c, h['timeout'], `${hp}.timeout`);
    const retries = rec(c, h['retries'], `${hp}.retries`);
    if (retries) {
      knownFields(c, retries, `${hp}.retries`, ['attempts', 'perTryTimeout', 'retryOn', 'retryRemoteLocalities', 'retryIgnorePreviousHosts', 'backoff']);
      int(c, retries['attempts'], `${hp}.retries.attempts`, { min: 0 });
      duration(c, retries['perTryTimeout'], `${hp}.retries.perTryTimeout`, { minMs: 1 });
      str(c, retries['retryOn'], `${hp}.retries.retryOn`);
      bool(c, retries['retryRemoteLocalities'], `${hp}.retries.retryRemoteLocalities`);
    }
    const fault = rec(c, h['fault'], `${hp}.fault`);
    if (fault) {
      knownFields(c, fault, `${hp}.fault`, ['delay', 'abort']);
      const delay = rec(c, fault['delay'], `${hp}.fault.delay`);
      if (delay) {
        knownFields(c, delay, `${hp}.fault.delay`, ['fixedDelay', 'percentage', 'percent', 'exponentialDelay']);
        duration(c, delay['fixedDelay'], `${hp}.fault.delay.fixedDelay`, { required: true, minMs: 1 });
        percentage(c, delay['percentage'], `${hp}.fault.delay.percentage`);
      }
      const abort = rec(c, fault['abort'], `${hp}.fault.abort`);
      if (abort) {
        knownFields(c, abort, `${hp}.fault.abort`, ['httpStatus', 'grpcStatus', 'http2Error', 'percentage']);
        if (abort['httpStatus'] === undefined && abort['grpcStatus'] === undefined) c.add(`${hp}.fault.abort`, 'must set httpStatus or grpcStatus', abort);
        int(c, abort['httpStatus'], `${hp}.fault.abort.httpStatus`, { min: 200, max: 599 });
        str(c, abort['grpcStatus'], `${hp}.fault.abort.grpcStatus`);
        percentage(c, abort['percentage'], `${hp}.fault.abort.percentage`);
      }
      if (!delay && !abort) c.add(`${hp}.fault`, 'must set delay or abort', fault);
    }
    const mirror = rec(c, h['mirror'], `${hp}.mirror`);
    if (mirror) str(c, mirror['host'], `${hp}.mirror.host`, { required: true });
    percentage(c, h['mirrorPercentage'], `${hp}.mirrorPercentage`);
  }
  for (const [t, tp] of recs(c, spec['tcp'], 'spec.tcp')) {
    for (const [m, mp] of recs(c, t['match'], `${tp}.match`)) {
      port(c, m['port'], `${mp}.port`);
      strList(c, m['destinationSubnets'], `${mp}.destinationSubnets`);
    }
    routeDestinations(c, t['route'], `${tp}.route`, true);
  }
  for (const [t, tp] of recs(c, spec['tls'], 'spec.tls')) {
    for (const [m, mp] of recs(c, t['match'], `${tp}.match`, { required: true, nonEmpty: true })) {
      strList(c, m['sniHosts'], `${mp}.sniHosts`, { required: true, nonEmpty: true });
      port(c, m['port'], `${mp}.port`);
    }
    routeDestinations(c, t['route'], `${tp}.route`, true);
  }
}

const LB_SIMPLE = ['UNSPECIFIED', 'LEAST_CONN', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST'];
const TLS_MODES_CLIENT = ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'];

function trafficPolicy(c: Issues, v: unknown, path: string, allowPortLevel: boolean): void {
  const tp = rec(c, v, path);
  if (!tp) return;
  knownFields(c, tp, path, allowPortLevel
    ? ['loadBalancer', 'connectionPool', 'outlierDetection', 'tls', 'portLevelSettings', 'tunnel', 'proxyProtocol', 'retryBudget']
    : ['loadBalancer', 'connectionPool', 'outlierDetection', 'tls']);
  const cp = rec(c, tp['connectionPool'], `${path}.connectionPool`);
  if (cp) {
    knownFields(c, cp, `${path}.connectionPool`, ['tcp', 'http']);
    const tcp = rec(c, cp['tcp'], `${path}.connectionPool.tcp`);
    if (tcp) {
      knownFields(c, tcp, `${path}.connectionPool.tcp`, ['maxConnections', 'connectTimeout', 'tcpKeepalive', 'maxConnectionDuration', 'idleTimeout']);
      int(c, tcp['maxConnections'], `${path}.connectionPool.tcp.maxConnections`, { min: 0 });
      duration(c, tcp['connectTimeout'], `${path}.connectionPool.tcp.connectTimeout`, { minMs: 1 });
      duration(c, tcp['idleTimeout'], `${path}.connectionPool.tcp.idleTimeout`);
      duration(c, tcp['maxConnectionDuration'], `${path}.connectionPool.tcp.maxConnectionDuration`);
    }
    const http = rec(c, cp['http'], `${path}.connectionPool.http`);
    if (http) {
      knownFields(c, http, `${path}.connectionPool.http`, [
        'http1MaxPendingRequests', 'http2MaxRequests', 'maxRequestsPerConnection', 'maxRetries', 'idleTimeout', 'h2UpgradePolicy',
        'useClientProtocol', 'maxConcurrentStreams',
      ]);
      for (const k of ['http1MaxPendingRequests', 'http2MaxRequests', 'maxRequestsPerConnection', 'maxRetries', 'maxConcurrentStreams']) {
        int(c, http[k], `${path}.connectionPool.http.${k}`, { min: 0 });
      }
      duration(c, http['idleTimeout'], `${path}.connectionPool.http.idleTimeout`);
      str(c, http['h2UpgradePolicy'], `${path}.connectionPool.http.h2UpgradePolicy`, { oneOf: ['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE'] });
    }
  }
  const od = rec(c, tp['outlierDetection'], `${path}.outlierDetection`);
  if (od) {
    knownFields(c, od, `${path}.outlierDetection`, [
      'splitExternalLocalOriginErrors', 'consecutiveLocalOriginFailures', 'consecutiveGatewayErrors', 'consecutive5xxErrors',
      'interval', 'baseEjectionTime', 'maxEjectionPercent', 'minHealthPercent', 'consecutiveErrors',
    ]);
    for (const k of ['consecutive5xxErrors', 'consecutiveGatewayErrors', 'consecutiveErrors', 'consecutiveLocalOriginFailures']) {
      int(c, od[k], `${path}.outlierDetection.${k}`, { min: 0 });
    }
    duration(c, od['interval'], `${path}.outlierDetection.interval`, { minMs: 1 });
    duration(c, od['baseEjectionTime'], `${path}.outlierDetection.baseEjectionTime`, { minMs: 1 });
    int(c, od['maxEjectionPercent'], `${path}.outlierDetection.maxEjectionPercent`, { min: 0, max: 100 });
    int(c, od['minHealthPercent'], `${path}.outlierDetection.minHealthPercent`, { min: 0, max: 100 });
    bool(c, od['splitExternalLocalOriginErrors'], `${path}.outlierDetection.splitExternalLocalOriginErrors`);
  }
  const lb = rec(c, tp['loadBalancer'], `${path}.loadBalancer`);
  if (lb) {
    str(c, lb['simple'], `${path}.loadBalancer.simple`, { oneOf: LB_SIMPLE });
    rec(c, lb['consistentHash'], `${path}.loadBalancer.consistentHash`);
    if (lb['simple'] !== undefined && lb['consistentHash'] !== undefined) c.add(`${path}.loadBalancer`, 'cannot set both simple and consistentHash', lb);
  }
  const tls = rec(c, tp['tls'], `${path}.tls`);
  if (tls) str(c, tls['mode'], `${path}.tls.mode`, { oneOf: TLS_MODES_CLIENT });
  if (!allowPortLevel && tp['portLevelSettings'] !== undefined) {
    c.add(`${path}.portLevelSettings`, 'is only allowed at the top-level trafficPolicy of a subset or rule', tp['portLevelSettings']);
  }
  for (const [pl, pp] of recs(c, allowPortLevel ? tp['portLevelSettings'] : undefined, `${path}.portLevelSettings`)) {
    const p = rec(c, pl['port'], `${pp}.port`, true);
    if (p) port(c, p['number'], `${pp}.port.number`, true);
    trafficPolicy(c, { ...pl, port: undefined }, pp, false);
  }
}

function validateDestinationRule(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec', true);
  if (!spec) return;
  knownFields(c, spec, 'spec', ['host', 'trafficPolicy', 'subsets', 'exportTo', 'workloadSelector']);
  str(c, spec['host'], 'spec.host', { required: true });
  trafficPolicy(c, spec['trafficPolicy'], 'spec.trafficPolicy', true);
  const names = new Set<string>();
  for (const [s, sp] of recs(c, spec['subsets'], 'spec.subsets')) {
    knownFields(c, s, sp, ['name', 'labels', 'trafficPolicy']);
    const name = str(c, s['name'], `${sp}.name`, { required: true, test: isDnsLabel, expect: 'a DNS label' });
    if (name !== undefined) {
      if (names.has(name)) c.add(`${sp}.name`, 'duplicates another subset name', name);
      names.add(name);
    }
    labels(c, s['labels'], `${sp}.labels`);
    trafficPolicy(c, s['trafficPolicy'], `${sp}.trafficPolicy`, true);
  }
  strList(c, spec['exportTo'], 'spec.exportTo');
  const ws = rec(c, spec['workloadSelector'], 'spec.workloadSelector');
  if (ws) labels(c, ws['matchLabels'], 'spec.workloadSelector.matchLabels');
}

const SERVER_PROTOCOLS = ['HTTP', 'HTTPS', 'GRPC', 'GRPC-WEB', 'HTTP2', 'MONGO', 'TCP', 'TLS'];
const SERVER_TLS_MODES = ['PASSTHROUGH', 'SIMPLE', 'MUTUAL', 'AUTO_PASSTHROUGH', 'ISTIO_MUTUAL', 'OPTIONAL_MUTUAL'];

function validateIstioGateway(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec', true);
  if (!spec) return;
  labels(c, spec['selector'], 'spec.selector');
  for (const [s, sp] of recs(c, spec['servers'], 'spec.servers', { required: true, nonEmpty: true })) {
    const p = rec(c, s['port'], `${sp}.port`, true);
    let protocol: string | undefined;
    if (p) {
      port(c, p['number'], `${sp}.port.number`, true);
      const raw = str(c, p['protocol'], `${sp}.port.protocol`, { required: true });
      if (raw !== undefined && !SERVER_PROTOCOLS.includes(raw.toUpperCase())) c.add(`${sp}.port.protocol`, `must be one of ${SERVER_PROTOCOLS.join(', ')}`, raw);
      protocol = raw?.toUpperCase();
      str(c, p['name'], `${sp}.port.name`);
    }
    strList(c, s['hosts'], `${sp}.hosts`, { required: true, nonEmpty: true });
    const tls = rec(c, s['tls'], `${sp}.tls`);
    if (tls) {
      str(c, tls['mode'], `${sp}.tls.mode`, { oneOf: SERVER_TLS_MODES });
      str(c, tls['credentialName'], `${sp}.tls.credentialName`);
      bool(c, tls['httpsRedirect'], `${sp}.tls.httpsRedirect`);
    }
    if ((protocol === 'HTTPS' || protocol === 'TLS') && !tls) c.add(`${sp}.tls`, `is required for protocol ${protocol}`);
  }
}

