/**
 * Structural validation of pushed mesh resources (Workload, Service, Authorization): the
 * controller runs it before sending and every receiver runs it on receipt, so a bad resource is
 * caught with a path-qualified issue naming the field and the value instead of failing later.
 * Returns a normalised copy (known fields only, optional arrays filled in) when there are no issues.
 */
import { isIP } from 'node:net';
import { tryParseSpiffeId } from './identity.js';
import { validateGatewayListener, validateRouteConfig, type GatewayListener, type RouteConfig } from './routes.js';
import { TYPE_AUTHORIZATION, TYPE_GATEWAY_LISTENER, TYPE_ROUTE_CONFIG, TYPE_SERVICE, TYPE_WORKLOAD, type Resource } from './resources.js';
import { type Authorization, type AuthzClause, type AuthzMatch, type AuthzRule, type Locality, type PortMapping, type Service, type ServicePort, type StringMatch, type WaypointRef, type Workload } from './model.js';
import { Issues, isDnsLabel, isDnsSubdomain, isPort, isRecord, type Issue } from './validate.js';

export interface ResourceValidation {
  /** The normalised resource; present only when `issues` is empty. */
  value?: Resource;
  issues: Issue[];
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const PROTOCOL = /^[a-z0-9][a-z0-9-]*$/;
const MAX_NAME = 1024;

const KIND_OF_TYPE: Record<string, string> = {
  [TYPE_WORKLOAD]: 'workload',
  [TYPE_SERVICE]: 'service',
  [TYPE_AUTHORIZATION]: 'authorization',
  [TYPE_ROUTE_CONFIG]: 'routeConfig',
  [TYPE_GATEWAY_LISTENER]: 'gatewayListener',
};

/**
 * Validates `body` as a resource of `typeUrl` named `name`. Issue paths start with `path`
 * (default `<kind>[<name>]`), e.g. `service[default/web.default.svc.cluster.local].ports[0].port`.
 */
export function validateResource(typeUrl: string, name: string, body: unknown, path?: string): ResourceValidation {
  const issues = new Issues();
  const kind = KIND_OF_TYPE[typeUrl];
  const base = path ?? `${kind ?? 'resource'}[${name}]`;
  if (kind === undefined) {
    issues.add(`${base}.typeUrl`, `unknown resource type; expected one of ${Object.keys(KIND_OF_TYPE).join(', ')}`, typeUrl);
    return { issues: issues.list };
  }
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME) {
    issues.add(`${base}.<resource name>`, `must be a non-empty string of at most ${MAX_NAME} characters`, name);
  }
  if (!isRecord(body)) {
    issues.add(base, 'must be an object', body);
    return { issues: issues.list };
  }
  let value: Resource | undefined;
  if (typeUrl === TYPE_WORKLOAD) value = checkWorkload(body, name, base, issues);
  else if (typeUrl === TYPE_SERVICE) value = checkService(body, name, base, issues);
  else if (typeUrl === TYPE_ROUTE_CONFIG) value = checkRouteConfig(body, name, base, issues);
  else if (typeUrl === TYPE_GATEWAY_LISTENER) value = checkGatewayListener(body, name, base, issues);
  else value = checkAuthorization(body, name, base, issues);
  return issues.ok && value !== undefined ? { value, issues: [] } : { issues: issues.list };
}

// ---- field readers: each records an issue and returns a fallback so checking can continue ----

function str(o: Record<string, unknown>, key: string, path: string, issues: Issues, opts: { empty?: boolean } = {}): string {
  const v = o[key];
  if (typeof v !== 'string') {
    issues.add(`${path}.${key}`, opts.empty ? 'must be a string' : 'must be a non-empty string', v);
    return '';
  }
  if (!opts.empty && v.length === 0) issues.add(`${path}.${key}`, 'must be a non-empty string', v);
  return v;
}

function oneOf<T extends string>(o: Record<string, unknown>, key: string, allowed: readonly T[], path: string, issues: Issues): T {
  const v = o[key];
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    issues.add(`${path}.${key}`, `must be one of ${allowed.join(', ')}`, v);
    return allowed[0] as T;
  }
  return v as T;
}

/** An array field; `optional` treats an absent field as empty. */
function arr(o: Record<string, unknown>, key: string, path: string, issues: Issues, optional = false): unknown[] {
  const v = o[key];
  if (v === undefined && optional) return [];
  if (!Array.isArray(v)) {
    issues.add(`${path}.${key}`, 'must be an array', v);
    return [];
  }
  return v;
}

function stringList(o: Record<string, unknown>, key: string, path: string, issues: Issues, check?: (s: string) => string | undefined, optional = false): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  arr(o, key, path, issues, optional).forEach((v, i) => {
    const p = `${path}.${key}[${i}]`;
    if (typeof v !== 'string' || v.length === 0) return issues.add(p, 'must be a non-empty string', v);
    const problem = check?.(v);
    if (problem) return issues.add(p, problem, v);
    if (seen.has(v)) return issues.add(p, 'is a duplicate', v);
    seen.add(v);
    out.push(v);
  });
  return out;
}

function stringMap(o: Record<string, unknown>, key: string, path: string, issues: Issues): Record<string, string> {
  const v = o[key];
  if (!isRecord(v)) {
    issues.add(`${path}.${key}`, 'must be a map of strings', v);
    return {};
  }
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') issues.add(`${path}.${key}.${k}`, 'must be a string', val);
    else out[k] = val;
  }
  return out;
}

function port(o: Record<string, unknown>, key: string, path: string, issues: Issues): number {
  const v = o[key];
  if (!isPort(v)) {
    issues.add(`${path}.${key}`, 'must be an integer port 1..65535', v);
    return 0;
  }
  return v;
}

function bool(o: Record<string, unknown>, key: string, path: string, issues: Issues): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') {
    issues.add(`${path}.${key}`, 'must be true or false', v);
    return false;
  }
  return v;
}

const ipProblem = (s: string): string | undefined => (isIP(s) === 0 ? 'must be an IPv4 or IPv6 address' : undefined);

/** A CIDR (`10.0.0.0/8`, `fd00::/64`) or a bare address. */
export function cidrProblem(s: string): string | undefined {
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) return 'must be an IP address or CIDR';
  if (slash < 0) return undefined;
  const len = s.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(len) || Number(len) > max) return `must have a prefix length 0..${max}`;
  return undefined;
}

const dnsLabelProblem = (s: string): string | undefined => (isDnsLabel(s) ? undefined : 'must be a DNS-1123 label');
const dnsSubdomainProblem = (s: string): string | undefined => (isDnsSubdomain(s) ? undefined : 'must be a DNS-1123 subdomain');

/** `namespace/name` references (Service keys, Authorization names). */
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

function checkWorkload(o: Record<string, unknown>, name: string, path: string, issues: Issues): Workload {
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
      const keyProblem = namespacedProblem(key);
      if (keyProblem) issues.add(p, `key ${keyProblem.replace('<name>', '<hostname>')}`, key);
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

function checkService(o: Record<string, unknown>, name: string, path: string, issues: Issues): Service {
  const svcName = checkName(o, 'name', path, issues, dnsLabelProblem);
  const namespace = checkName(o, 'namespace', path, issues, dnsLabelProblem);
  const hostname = checkName(o, 'hostname', path, issues, (s) => {
    if (!isDnsSubdomain(s)) return 'must be a DNS name';
    const prefix = `${svcName}.${namespace}.svc.`;
    if (svcName && namespace && (!s.startsWith(prefix) || s.length === prefix.length)) return `must be ${prefix}<cluster domain>`;
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
  return s;
}

// ---- Authorization ----

const SCOPES = ['global', 'namespace', 'workload'] as const;
const ACTIONS = ['ALLOW', 'DENY', 'AUDIT'] as const;

function checkAuthorization(o: Record<string, unknown>, name: string, path: string, issues: Issues): Authorization {
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

// ---- RouteConfig ----

/** Route config (routes.ts): its own validator; the resource name must equal its `name`. */
function checkGatewayListener(o: Record<string, unknown>, name: string, path: string, issues: Issues): GatewayListener | undefined {
  for (const i of validateGatewayListener(o, path)) issues.add(i.path, i.problem, i.value);
  if (typeof o['pod'] === 'string' && `${o['pod']}/${String(o['port'])}` !== name) issues.add(`${path}.port`, `pod/port must equal the resource name ${JSON.stringify(name)}`, o['port']);
  return issues.ok ? (structuredClone(o) as unknown as GatewayListener) : undefined;
}

function checkRouteConfig(o: Record<string, unknown>, name: string, path: string, issues: Issues): RouteConfig | undefined {
  for (const i of validateRouteConfig(o, path)) issues.add(i.path, i.problem, i.value);
  if (typeof o['name'] === 'string' && o['name'] !== name) issues.add(`${path}.name`, `must equal the resource name ${JSON.stringify(name)}`, o['name']);
  return issues.ok ? (structuredClone(o) as unknown as RouteConfig) : undefined;
}
