/**
 * Validation of the L4 model on the kit (shared/validate.ts): Workloads, Services and
 * Authorizations as the controller pushes them. Each check returns a normalised copy (known fields
 * only, optional lists filled in) and records every problem; validate-resource.ts calls them.
 */
import { isIP } from 'node:net';
import { tryParseSpiffeId } from './identity.js';
import type { Authorization, AuthzClause, AuthzMatch, AuthzRule, Locality, PortMapping, Service, ServicePort, StringMatch, WaypointRef, Workload } from './model.js';
import { arr as list, bool as boolean, cidrProblem, isDnsLabel, isDnsSubdomain, isPort, isRecord, port as portValue, str as text, stringMap as stringMapValue, strList, type Issues } from './validate.js';

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const PROTOCOL = /^[a-z0-9][a-z0-9-]*$/;

// Field readers: the kit's, on `o[key]` at `<path>.<key>`, with a fallback so checking goes on.

function str(o: Record<string, unknown>, key: string, path: string, issues: Issues, opts: { empty?: boolean } = {}): string {
  return text(issues, o[key], `${path}.${key}`, { required: true, allowEmpty: opts.empty === true }) ?? '';
}

function oneOf<T extends string>(o: Record<string, unknown>, key: string, allowed: readonly T[], path: string, issues: Issues): T {
  return (text(issues, o[key], `${path}.${key}`, { required: true, oneOf: allowed }) ?? allowed[0]) as T;
}

/** An array field; `optional` treats an absent field as empty. */
function arr(o: Record<string, unknown>, key: string, path: string, issues: Issues, optional = false): unknown[] {
  return list(issues, o[key], `${path}.${key}`, { required: !optional }) ?? [];
}

function stringList(o: Record<string, unknown>, key: string, path: string, issues: Issues, check?: (s: string) => string | undefined, optional = false): string[] {
  return strList(issues, o[key], `${path}.${key}`, { required: !optional, unique: true, ...(check ? { check } : {}) }) ?? [];
}

function stringMap(o: Record<string, unknown>, key: string, path: string, issues: Issues): Record<string, string> {
  return stringMapValue(issues, o[key], `${path}.${key}`, true) ?? {};
}

function port(o: Record<string, unknown>, key: string, path: string, issues: Issues): number {
  return portValue(issues, o[key], `${path}.${key}`, true) ?? 0;
}

function bool(o: Record<string, unknown>, key: string, path: string, issues: Issues): boolean {
  return boolean(issues, o[key], `${path}.${key}`) ?? false;
}

const ipProblem = (s: string): string | undefined => (isIP(s) === 0 ? 'must be an IPv4 or IPv6 address' : undefined);

const dnsLabelProblem = (s: string): string | undefined => (isDnsLabel(s) ? undefined : 'must be a DNS-1123 label');
const dnsSubdomainProblem = (s: string): string | undefined => (isDnsSubdomain(s) ? undefined : 'must be a DNS-1123 subdomain');

/** `namespace/name` references (Service keys, Authorization names). */
/** A Service host: a DNS name, or a ServiceEntry's wildcard `*.<DNS name>` (served on the entry's own addresses). */
function isServiceHost(s: string): boolean {
  return isDnsSubdomain(s.startsWith('*.') ? s.slice(2) : s);
}

/** `<namespace>/<service host>`: a workload's key for a Service it serves. */
function serviceKeyProblem(s: string): string | undefined {
  const i = s.indexOf('/');
  if (i < 0 || !isDnsLabel(s.slice(0, i)) || !isServiceHost(s.slice(i + 1))) return 'must be <namespace>/<hostname>';
  return undefined;
}

function namespacedProblem(s: string): string | undefined {
  const i = s.indexOf('/');
  if (i < 0 || !isDnsLabel(s.slice(0, i)) || !isDnsSubdomain(s.slice(i + 1))) return 'must be <namespace>/<name>';
  return undefined;
}

function checkName(o: Record<string, unknown>, key: string, path: string, issues: Issues, problem: (s: string) => string | undefined): string {
  const v = str(o, key, path, issues);
  if (v.length > 0) {
    const p = problem(v);
    if (p) issues.add(`${path}.${key}`, p, v);
  }
  return v;
}

// ---- Workload ----

const TUNNEL_PROTOCOLS = ['HBONE', 'NONE'] as const;
const WORKLOAD_TYPES = ['deployment', 'pod', 'job', 'cronjob'] as const;
const HEALTH = ['Healthy', 'Unhealthy'] as const;
const PEER_AUTHN = ['STRICT', 'PERMISSIVE'] as const;

export function checkWorkload(o: Record<string, unknown>, name: string, path: string, issues: Issues): Workload {
  const uid = str(o, 'uid', path, issues);
  const podName = checkName(o, 'name', path, issues, dnsSubdomainProblem);
  const namespace = checkName(o, 'namespace', path, issues, dnsLabelProblem);
  if (uid.length > 0) {
    // `<cluster>/<group>/<version>/<kind>/<namespace>/<name>` as model.ts (and ztunnel) define it.
    const parts = uid.split('/');
    if (parts.length !== 6 || parts[2] === '' || parts[3] === '') {
      issues.add(`${path}.uid`, 'must be <cluster>/<group>/<version>/<kind>/<namespace>/<name>, e.g. cluster1//v1/Pod/ns/name', uid);
    } else if (parts[4] !== namespace || parts[5] !== podName) {
      issues.add(`${path}.uid`, `must end in /${namespace}/${podName} (the workload's namespace and name)`, uid);
    }
    if (uid !== name) issues.add(`${path}.uid`, `must equal the resource name ${JSON.stringify(name)}`, uid);
  }
  const serviceAccount = checkName(o, 'serviceAccount', path, issues, dnsSubdomainProblem);
  const trustDomain = checkName(o, 'trustDomain', path, issues, (s) => (TRUST_DOMAIN.test(s) ? undefined : 'must be a trust domain ([a-z0-9._-]+)'));
  const node = checkName(o, 'node', path, issues, dnsSubdomainProblem);
  const addresses = stringList(o, 'addresses', path, issues, ipProblem);
  const services: Record<string, PortMapping[]> = {};
  const svcMap = o['services'];
  if (!isRecord(svcMap)) {
    issues.add(`${path}.services`, 'must be a map of <namespace>/<hostname> to port mappings', svcMap);
  } else {
    for (const [key, list] of Object.entries(svcMap)) {
      const p = `${path}.services[${JSON.stringify(key)}]`;
      const keyProblem = serviceKeyProblem(key);
      if (keyProblem) issues.add(p, `key ${keyProblem}`, key);
      if (!Array.isArray(list)) {
        issues.add(p, 'must be an array of {servicePort, targetPort}', list);
        continue;
      }
      services[key] = list.map((m, i): PortMapping => {
        if (!isRecord(m)) {
          issues.add(`${p}[${i}]`, 'must be {servicePort, targetPort}', m);
          return { servicePort: 0, targetPort: 0 };
        }
        return { servicePort: port(m, 'servicePort', `${p}[${i}]`, issues), targetPort: port(m, 'targetPort', `${p}[${i}]`, issues) };
      });
    }
  }
  const portPeerAuthentication: Record<string, 'STRICT' | 'PERMISSIVE'> = {};
  const ppa = o['portPeerAuthentication'];
  if (ppa === undefined) {
    // absent means no overrides
  } else if (!isRecord(ppa)) {
    issues.add(`${path}.portPeerAuthentication`, 'must be a map of port to STRICT|PERMISSIVE', ppa);
  } else {
    for (const [k, v] of Object.entries(ppa)) {
      const p = `${path}.portPeerAuthentication[${JSON.stringify(k)}]`;
      if (!/^\d{1,5}$/.test(k) || !isPort(Number(k))) issues.add(p, 'key must be a port 1..65535', k);
      if (v !== 'STRICT' && v !== 'PERMISSIVE') issues.add(p, 'must be one of STRICT, PERMISSIVE', v);
      else portPeerAuthentication[k] = v;
    }
  }
  const w: Workload = {
    uid,
    name: podName,
    namespace,
    serviceAccount,
    trustDomain,
    node,
    addresses,
    tunnelProtocol: oneOf(o, 'tunnelProtocol', TUNNEL_PROTOCOLS, path, issues),
    canonicalName: str(o, 'canonicalName', path, issues, { empty: true }),
    canonicalRevision: str(o, 'canonicalRevision', path, issues, { empty: true }),
    workloadName: str(o, 'workloadName', path, issues, { empty: true }),
    workloadType: oneOf(o, 'workloadType', WORKLOAD_TYPES, path, issues),
    labels: stringMap(o, 'labels', path, issues),
    services,
    status: oneOf(o, 'status', HEALTH, path, issues),
    authorizationPolicies: stringList(o, 'authorizationPolicies', path, issues, namespacedProblem),
    peerAuthentication: oneOf(o, 'peerAuthentication', PEER_AUTHN, path, issues),
    portPeerAuthentication,
  };
  if (o['waypoint'] !== undefined) w.waypoint = checkWaypoint(o['waypoint'], `${path}.waypoint`, issues);
  if (o['locality'] !== undefined) w.locality = checkLocality(o['locality'], `${path}.locality`, issues);
  if (o['netns'] !== undefined) w.netns = str(o, 'netns', path, issues);
  if (o['dnsCapture'] === false) w.dnsCapture = false;
  else if (o['dnsCapture'] !== undefined) issues.add(`${path}.dnsCapture`, 'must be false or absent', o['dnsCapture']);
  return w;
}

function checkWaypoint(v: unknown, path: string, issues: Issues): WaypointRef {
  if (!isRecord(v)) {
    issues.add(path, 'must be {name, namespace, addresses, identity}', v);
    return { name: '', namespace: '', addresses: [], identity: '' };
  }
  const namespace = checkName(v, 'namespace', path, issues, dnsLabelProblem);
  const name = checkName(v, 'name', path, issues, (s) => {
    const i = s.indexOf('/');
    if (i < 0) return dnsSubdomainProblem(s);
    if (s.slice(0, i) !== namespace) return `must be ${namespace}/<gateway name> (namespace must match)`;
    return dnsSubdomainProblem(s.slice(i + 1));
  });
  const addresses = stringList(v, 'addresses', path, issues, ipProblem);
  const identity = checkName(v, 'identity', path, issues, (s) =>
    tryParseSpiffeId(s) ? undefined : 'must be a SPIFFE id spiffe://<trust-domain>/ns/<ns>/sa/<sa>',
  );
  return { name, namespace, addresses, identity };
}

function checkLocality(v: unknown, path: string, issues: Issues): Locality {
  if (!isRecord(v)) {
    issues.add(path, 'must be {region, zone, subzone}', v);
    return { region: '', zone: '', subzone: '' };
  }
  return {
    region: str(v, 'region', path, issues, { empty: true }),
    zone: str(v, 'zone', path, issues, { empty: true }),
    subzone: str(v, 'subzone', path, issues, { empty: true }),
  };
}

// ---- Service ----

const ROUTING_PREFERENCES = ['node', 'zone', 'region'] as const;

export function checkService(o: Record<string, unknown>, name: string, path: string, issues: Issues): Service {
  const svcName = checkName(o, 'name', path, issues, dnsLabelProblem);
  const namespace = checkName(o, 'namespace', path, issues, dnsLabelProblem);
  const hostname = checkName(o, 'hostname', path, issues, (s) => {
    if (!isServiceHost(s)) return 'must be a DNS name (a ServiceEntry\'s may start with "*.")';
    // A Kubernetes Service's host is <name>.<namespace>.svc.<domain>; a ServiceEntry's any DNS name outside .svc.
    const prefix = `${svcName}.${namespace}.svc.`;
    if (svcName && namespace && s.includes('.svc.') && (!s.startsWith(prefix) || s.length === prefix.length)) return `must be ${prefix}<cluster domain>`;
    return undefined;
  });
  if (namespace && hostname && name !== `${namespace}/${hostname}`) {
    issues.add(`${path}.hostname`, `resource name ${JSON.stringify(name)} must be <namespace>/<hostname> = ${JSON.stringify(`${namespace}/${hostname}`)}`, hostname);
  }
  const seenPorts = new Set<number>();
  const ports = arr(o, 'ports', path, issues).map((p, i): ServicePort => {
    const pp = `${path}.ports[${i}]`;
    if (!isRecord(p)) {
      issues.add(pp, 'must be {name, port, targetPort, protocol}', p);
      return { name: '', port: 0, targetPort: 0, protocol: 'tcp' };
    }
    const sp: ServicePort = {
      name: str(p, 'name', pp, issues, { empty: true }),
      port: port(p, 'port', pp, issues),
      targetPort: port(p, 'targetPort', pp, issues),
      protocol: checkName(p, 'protocol', pp, issues, (s) => (PROTOCOL.test(s) ? undefined : 'must be a lowercase protocol name such as tcp, http, grpc')),
    };
    if (sp.port !== 0) {
      if (seenPorts.has(sp.port)) issues.add(`${pp}.port`, 'is a duplicate', sp.port);
      seenPorts.add(sp.port);
    }
    return sp;
  });
  const routingPreference = stringList(o, 'routingPreference', path, issues, (s) =>
    (ROUTING_PREFERENCES as readonly string[]).includes(s) ? undefined : `must be one of ${ROUTING_PREFERENCES.join(', ')}`,
  ) as Service['routingPreference'];
  const s: Service = {
    name: svcName,
    namespace,
    hostname,
    vips: stringList(o, 'vips', path, issues, ipProblem),
    ports,
    subjectAltNames: stringList(o, 'subjectAltNames', path, issues),
    routingPreference,
    endpoints: stringList(o, 'endpoints', path, issues),
  };
  if (o['waypoint'] !== undefined) s.waypoint = checkWaypoint(o['waypoint'], `${path}.waypoint`, issues);
  if (o['vipRanges'] !== undefined) s.vipRanges = stringList(o, 'vipRanges', path, issues, cidrProblem);
  if (o['originalDestination'] !== undefined) {
    if (o['originalDestination'] === true) s.originalDestination = true;
    else issues.add(`${path}.originalDestination`, 'must be true when present', o['originalDestination']);
  }
  if (o['exportTo'] !== undefined) s.exportTo = stringList(o, 'exportTo', path, issues, (x) => (x === '*' ? undefined : dnsLabelProblem(x)));
  return s;
}

// ---- Authorization ----

const SCOPES = ['global', 'namespace', 'workload'] as const;
const ACTIONS = ['ALLOW', 'DENY', 'AUDIT'] as const;

export function checkAuthorization(o: Record<string, unknown>, name: string, path: string, issues: Issues): Authorization {
  const authzName = checkName(o, 'name', path, issues, dnsSubdomainProblem);
  const namespace = checkName(o, 'namespace', path, issues, dnsLabelProblem);
  if (authzName && namespace && name !== `${namespace}/${authzName}`) {
    issues.add(`${path}.name`, `resource name ${JSON.stringify(name)} must be <namespace>/<name> = ${JSON.stringify(`${namespace}/${authzName}`)}`, authzName);
  }
  const rules = arr(o, 'rules', path, issues).map((r, i) => checkRule(r, `${path}.rules[${i}]`, issues));
  return {
    name: authzName,
    namespace,
    scope: oneOf(o, 'scope', SCOPES, path, issues),
    action: oneOf(o, 'action', ACTIONS, path, issues),
    rules,
    dryRun: o['dryRun'] === undefined ? false : bool(o, 'dryRun', path, issues),
  };
}

function checkRule(r: unknown, path: string, issues: Issues): AuthzRule {
  if (!isRecord(r)) {
    issues.add(path, 'must be {clauses: [...]}', r);
    return { clauses: [] };
  }
  const clauses = arr(r, 'clauses', path, issues, true).map((c, i): AuthzClause => {
    const cp = `${path}.clauses[${i}]`;
    if (!isRecord(c)) {
      issues.add(cp, 'must be {matches: [...]}', c);
      return { matches: [] };
    }
    return { matches: arr(c, 'matches', cp, issues, true).map((m, j) => checkMatch(m, `${cp}.matches[${j}]`, issues)) };
  });
  return { clauses };
}

function checkMatch(m: unknown, path: string, issues: Issues): AuthzMatch {
  const empty: AuthzMatch = {
    namespaces: [], notNamespaces: [], principals: [], notPrincipals: [],
    sourceIps: [], notSourceIps: [], destinationIps: [], notDestinationIps: [],
    destinationPorts: [], notDestinationPorts: [],
  };
  if (!isRecord(m)) {
    issues.add(path, 'must be an object of match lists', m);
    return empty;
  }
  const strings = (key: keyof AuthzMatch): StringMatch[] =>
    arr(m, key, path, issues, true).map((s, i) => checkStringMatch(s, `${path}.${key}[${i}]`, issues));
  const cidrs = (key: keyof AuthzMatch): string[] => stringList(m, key, path, issues, cidrProblem, true);
  const ports = (key: keyof AuthzMatch): number[] =>
    arr(m, key, path, issues, true).flatMap((p, i) => {
      if (isPort(p)) return [p];
      issues.add(`${path}.${key}[${i}]`, 'must be an integer port 1..65535', p);
      return [];
    });
  return {
    namespaces: strings('namespaces'),
    notNamespaces: strings('notNamespaces'),
    principals: strings('principals'),
    notPrincipals: strings('notPrincipals'),
    sourceIps: cidrs('sourceIps'),
    notSourceIps: cidrs('notSourceIps'),
    destinationIps: cidrs('destinationIps'),
    notDestinationIps: cidrs('notDestinationIps'),
    destinationPorts: ports('destinationPorts'),
    notDestinationPorts: ports('notDestinationPorts'),
  };
}

function checkStringMatch(v: unknown, path: string, issues: Issues): StringMatch {
  const shape = 'must be exactly one of {exact}, {prefix}, {suffix} (strings) or {presence: true}';
  if (!isRecord(v)) {
    issues.add(path, shape, v);
    return { exact: '' };
  }
  const keys = Object.keys(v);
  if (keys.length !== 1) {
    issues.add(path, shape, v);
    return { exact: '' };
  }
  const key = keys[0] as string;
  const val = v[key];
  if (key === 'presence') {
    if (val !== true) issues.add(`${path}.presence`, 'must be true', val);
    return { presence: true };
  }
  if (key !== 'exact' && key !== 'prefix' && key !== 'suffix') {
    issues.add(path, shape, v);
    return { exact: '' };
  }
  if (typeof val !== 'string') {
    issues.add(`${path}.${key}`, 'must be a string', val);
    return { exact: '' };
  }
  if (key === 'exact') return { exact: val };
  if (key === 'prefix') return { prefix: val };
  return { suffix: val };
}
