/**
 * Per-kind validation of Kubernetes-shaped objects. Collects every problem with the field path and
 * the offending value; shared by the manifest loader, the object store and the Kubernetes source.
 */
import { type Issue, Issues, arr, bool, int, isDns1035Label, isDnsLabel, isDnsSubdomain, isRecord, port, rec, recs, str, strList, stringMap } from '../../shared/validate.js';
import { isIP } from 'node:net';
import { lookupKind, splitApiVersion, KINDS, type KindInfo } from '../objects.js';
import { isPortName, labelSelector, labels } from './kube-fields.js';
import { validateIstioSpec } from './validate-istio.js';
import { validateGatewayApiSpec } from './validate-gateway-api.js';

/**
 * Size limits on every object (documented in the README): one policy or route object is read by
 * every agent or waypoint and re-translated on every change, so an oversized one would cost the
 * whole mesh memory and time. Kubernetes itself stores objects of up to ~1.5 MiB.
 */
export const OBJECT_LIMITS = {
  /** The object as compact JSON. */
  maxBytes: 512 * 1024,
  /** Entries of any one list (principals, hosts, rules, routes, containers, ...). */
  maxListItems: 1024,
} as const;

export interface ValidateOptions {
  /**
   * Local mode runs each container's `command` as a host process, so it is required there; on a
   * cluster the image's entrypoint applies, so the Kubernetes source turns this off.
   */
  requireContainerCommand?: boolean;
}

/**
 * Validates one object. `where` names its origin (`app.yaml#2`, `apply[0]`); every issue path reads
 * `<where>: <Kind> <namespace>/<name>: <field path>`.
 */
export function validateObject(obj: unknown, where: string, opts: ValidateOptions = {}): Issue[] {
  const issues: Issue[] = [];
  if (!isRecord(obj)) {
    new Issues(where, issues).add('(document)', 'must be an object with apiVersion, kind and metadata', obj);
    return issues;
  }
  const c = new Issues(`${where}: ${subjectOf(obj)}`, issues);
  if (!checkLimits(c, obj)) return issues;
  const apiVersion = str(c, obj['apiVersion'], 'apiVersion', { required: true });
  const kind = str(c, obj['kind'], 'kind', { required: true });
  if (apiVersion === undefined || kind === undefined) return issues;
  const info = lookupKind(apiVersion, kind);
  if (!info) {
    c.add('kind', unknownKindProblem(apiVersion, kind), `${apiVersion} ${kind}`);
    return issues;
  }
  validateMetadata(c, obj['metadata'], info);
  validateSpec(c, obj, info, opts);
  return issues;
}

/** Records size-limit problems (at most 5 lists named); false when the object is too large to validate further. */
function checkLimits(c: Issues, obj: Record<string, unknown>): boolean {
  let bytes: number;
  try {
    bytes = Buffer.byteLength(JSON.stringify(obj));
  } catch {
    c.add('(document)', 'cannot be serialized as JSON');
    return false;
  }
  if (bytes > OBJECT_LIMITS.maxBytes) {
    c.add('(document)', `is ${bytes} bytes as JSON, more than the limit of ${OBJECT_LIMITS.maxBytes}; split it into several objects`);
    return false;
  }
  const long: string[] = [];
  const walk = (v: unknown, path: string): void => {
    if (long.length >= 5) return;
    if (Array.isArray(v)) {
      if (v.length > OBJECT_LIMITS.maxListItems) {
        long.push(path);
        c.add(path, `has ${v.length} entries, more than the limit of ${OBJECT_LIMITS.maxListItems}`);
        return;
      }
      v.forEach((x, i) => walk(x, `${path}[${i}]`));
    } else if (isRecord(v)) {
      for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
    }
  };
  walk(obj, '');
  return long.length === 0;
}

function subjectOf(obj: Record<string, unknown>): string {
  const kind = typeof obj['kind'] === 'string' ? obj['kind'] : '<no kind>';
  const md = isRecord(obj['metadata']) ? obj['metadata'] : {};
  const name = typeof md['name'] === 'string' && md['name'] ? md['name'] : '<no name>';
  const ns = typeof md['namespace'] === 'string' && md['namespace'] ? `${md['namespace']}/` : '';
  return `${kind} ${ns}${name}`;
}

function unknownKindProblem(apiVersion: string, kind: string): string {
  const { group } = splitApiVersion(apiVersion);
  const sameKind = KINDS.filter((k) => k.kind === kind);
  if (sameKind.length > 0) {
    const accepted = sameKind.flatMap((k) => k.versions.map((v) => (k.group ? `${k.group}/${v}` : v)));
    return `apiVersion ${apiVersion} is not supported for kind ${kind}; use one of ${accepted.join(', ')}`;
  }
  const known = [...new Set(KINDS.map((k) => k.kind))].join(', ');
  return `unknown kind ${kind}${group ? ` in group ${group}` : ''}; supported kinds are ${known}`;
}

function validateMetadata(c: Issues, v: unknown, info: KindInfo): void {
  const md = rec(c, v, 'metadata', true);
  if (!md) return;
  const name = str(c, md['name'], 'metadata.name', { required: true });
  if (name !== undefined) {
    const ok = info.kind === 'Service' ? isDns1035Label(name) : info.kind === 'Namespace' ? isDnsLabel(name) : isDnsSubdomain(name);
    if (!ok) {
      const rule =
        info.kind === 'Service'
          ? 'a DNS-1035 label (lowercase letters, digits and "-", starting with a letter, at most 63 characters)'
          : info.kind === 'Namespace'
            ? 'a DNS label (lowercase letters, digits and "-", at most 63 characters)'
            : 'a DNS subdomain (lowercase letters, digits, "-" and ".", at most 253 characters)';
      c.add('metadata.name', `must be ${rule}`, name);
    }
  }
  if (info.namespaced) {
    str(c, md['namespace'], 'metadata.namespace', { test: isDnsLabel, expect: 'a DNS label (lowercase letters, digits and "-")' });
  }
  labels(c, md['labels'], 'metadata.labels');
  stringMap(c, md['annotations'], 'metadata.annotations');
  for (const [o, p] of recs(c, md['ownerReferences'], 'metadata.ownerReferences')) {
    str(c, o['apiVersion'], `${p}.apiVersion`, { required: true });
    str(c, o['kind'], `${p}.kind`, { required: true });
    str(c, o['name'], `${p}.name`, { required: true });
  }
}

function validateSpec(c: Issues, obj: Record<string, unknown>, info: KindInfo, opts: ValidateOptions): void {
  switch (info.group) {
    case '':
    case 'apps':
      validateCoreSpec(c, obj, info, opts);
      return;
    case 'discovery.k8s.io':
      validateEndpointSlice(c, obj);
      return;
    case 'security.istio.io':
    case 'networking.istio.io':
    case 'telemetry.istio.io':
      validateIstioSpec(c, obj, info);
      return;
    case 'networking.k8s.io':
      validateIngress(c, obj['spec']);
      return;
    case 'gateway.networking.k8s.io':
      validateGatewayApiSpec(c, obj, info);
      return;
  }
}

function validateCoreSpec(c: Issues, obj: Record<string, unknown>, info: KindInfo, opts: ValidateOptions): void {
  switch (info.kind) {
    case 'Pod':
      validatePodSpec(c, obj['spec'], 'spec', opts);
      validatePodStatus(c, obj['status']);
      return;
    case 'Deployment':
      validateDeployment(c, obj['spec'], opts);
      return;
    case 'Service':
      validateService(c, obj['spec']);
      return;
    case 'Secret':
      validateSecret(c, obj);
      return;
    case 'ConfigMap':
      stringMap(c, obj['data'], 'data');
      return;
    case 'ServiceAccount':
    case 'Namespace':
    case 'Node':
      return;
  }
}

/** EndpointSlice: address type, endpoints (addresses, ready condition, target pod) and ports. */
function validateEndpointSlice(c: Issues, obj: Record<string, unknown>): void {
  str(c, obj['addressType'], 'addressType', { required: true, oneOf: ['IPv4', 'IPv6', 'FQDN'] });
  for (const [ep, p] of recs(c, obj['endpoints'], 'endpoints')) {
    strList(c, ep['addresses'], `${p}.addresses`, { required: true, nonEmpty: true });
    const cond = rec(c, ep['conditions'], `${p}.conditions`);
    if (cond) for (const k of ['ready', 'serving', 'terminating']) bool(c, cond[k], `${p}.conditions.${k}`);
    const ref = rec(c, ep['targetRef'], `${p}.targetRef`);
    if (ref) {
      str(c, ref['kind'], `${p}.targetRef.kind`);
      str(c, ref['name'], `${p}.targetRef.name`);
      str(c, ref['namespace'], `${p}.targetRef.namespace`);
    }
    str(c, ep['nodeName'], `${p}.nodeName`);
  }
  for (const [sp, p] of recs(c, obj['ports'], 'ports')) {
    str(c, sp['name'], `${p}.name`);
    port(c, sp['port'], `${p}.port`);
    str(c, sp['protocol'], `${p}.protocol`, { oneOf: ['TCP', 'UDP', 'SCTP'] });
  }
}

/** Secret: type, data (base64) and stringData. Problems never quote the values (they are secret). */
function validateSecret(c: Issues, obj: Record<string, unknown>): void {
  str(c, obj['type'], 'type');
  for (const field of ['data', 'stringData'] as const) {
    const v = obj[field];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'object' || Array.isArray(v)) {
      c.add(field, 'must be a map of strings');
      continue;
    }
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (!/^[-._a-zA-Z0-9]+$/.test(k)) c.add(`${field}.${k}`, 'key must consist of alphanumerics, "-", "_" or "."');
      if (typeof x !== 'string') c.add(`${field}.${k}`, 'must be a string');
      else if (field === 'data' && !/^[A-Za-z0-9+/=\s]*$/.test(x)) c.add(`${field}.${k}`, 'must be base64 (use stringData for plain text)');
    }
  }
}

/** Pod spec: containers (name, command, ports), service account, node. */
export function validatePodSpec(c: Issues, v: unknown, path: string, opts: ValidateOptions): void {
  const spec = rec(c, v, path, true);
  if (!spec) return;
  const seen = new Set<string>();
  const portNames = new Set<string>();
  for (const [ctr, p] of recs(c, spec['containers'], `${path}.containers`, { required: true, nonEmpty: true })) {
    const name = str(c, ctr['name'], `${p}.name`, { required: true, test: isDnsLabel, expect: 'a DNS label' });
    if (name !== undefined) {
      if (seen.has(name)) c.add(`${p}.name`, 'duplicates another container name', name);
      seen.add(name);
    }
    const requireCommand = opts.requireContainerCommand !== false;
    strList(c, ctr['command'], `${p}.command`, { nonEmpty: requireCommand });
    if (requireCommand && (ctr['command'] === undefined || ctr['command'] === null)) {
      c.add(`${p}.command`, 'is required: local mode runs the command as a host process (images are ignored)');
    }
    strList(c, ctr['args'], `${p}.args`);
    str(c, ctr['workingDir'], `${p}.workingDir`);
    for (const [env, ep] of recs(c, ctr['env'], `${p}.env`)) {
      str(c, env['name'], `${ep}.name`, { required: true });
      if (env['value'] !== undefined && typeof env['value'] !== 'string') c.add(`${ep}.value`, 'must be a string (quote numbers and booleans in YAML)', env['value']);
    }
    for (const [cp, pp] of recs(c, ctr['ports'], `${p}.ports`)) {
      port(c, cp['containerPort'], `${pp}.containerPort`, true);
      const pn = str(c, cp['name'], `${pp}.name`, { test: isPortName, expect: 'a port name (at most 15 lowercase letters, digits and "-", with a letter)' });
      if (pn !== undefined) {
        if (portNames.has(pn)) c.add(`${pp}.name`, 'duplicates another port name in this pod', pn);
        portNames.add(pn);
      }
      str(c, cp['protocol'], `${pp}.protocol`, { oneOf: ['TCP', 'UDP', 'SCTP'] });
    }
  }
  str(c, spec['serviceAccountName'], `${path}.serviceAccountName`, { test: isDnsSubdomain, expect: 'a DNS subdomain' });
  str(c, spec['nodeName'], `${path}.nodeName`);
  bool(c, spec['hostNetwork'], `${path}.hostNetwork`);
}

function validatePodStatus(c: Issues, v: unknown): void {
  const st = rec(c, v, 'status');
  if (!st) return;
  str(c, st['phase'], 'status.phase', { oneOf: ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] });
  str(c, st['podIP'], 'status.podIP', { test: (s) => s === '' || isIP(s) !== 0, expect: 'an IP address' });
  for (const [ip, p] of recs(c, st['podIPs'], 'status.podIPs')) {
    str(c, ip['ip'], `${p}.ip`, { required: true, test: (s) => isIP(s) !== 0, expect: 'an IP address' });
  }
  for (const [cond, p] of recs(c, st['conditions'], 'status.conditions')) {
    str(c, cond['type'], `${p}.type`, { required: true });
    str(c, cond['status'], `${p}.status`, { required: true, oneOf: ['True', 'False', 'Unknown'] });
  }
}

function validateDeployment(c: Issues, v: unknown, opts: ValidateOptions): void {
  const spec = rec(c, v, 'spec', true);
  if (!spec) return;
  int(c, spec['replicas'], 'spec.replicas', { min: 0 });
  const selector = labelSelector(c, spec['selector'], 'spec.selector', true);
  const template = rec(c, spec['template'], 'spec.template', true);
  if (!template) return;
  const tmd = rec(c, template['metadata'], 'spec.template.metadata');
  const tlabels = tmd ? labels(c, tmd['labels'], 'spec.template.metadata.labels') : undefined;
  const match = selector && isRecord(selector['matchLabels']) ? selector['matchLabels'] : undefined;
  if (match) {
    for (const [k, val] of Object.entries(match)) {
      if (tlabels?.[k] !== val) {
        c.add('spec.template.metadata.labels', `must include the selector label ${k}=${String(val)} (spec.selector.matchLabels)`, tlabels ?? {});
        break;
      }
    }
  }
  validatePodSpec(c, template['spec'], 'spec.template.spec', opts);
}

/** Ingress (networking.k8s.io/v1): the shape only; Ambit reports it as not served (translate/field-warnings.ts). */
function validateIngress(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec');
  if (!spec) return;
  str(c, spec['ingressClassName'], 'spec.ingressClassName');
  for (const [r, rp] of recs(c, spec['rules'], 'spec.rules')) {
    str(c, r['host'], `${rp}.host`);
    const http = rec(c, r['http'], `${rp}.http`);
    if (http) for (const [p, pp] of recs(c, http['paths'], `${rp}.http.paths`, { required: true })) {
      str(c, p['pathType'], `${pp}.pathType`, { required: true, oneOf: ['Exact', 'Prefix', 'ImplementationSpecific'] });
      rec(c, p['backend'], `${pp}.backend`, true);
    }
  }
  for (const [t, tp] of recs(c, spec['tls'], 'spec.tls')) {
    strList(c, t['hosts'], `${tp}.hosts`);
    str(c, t['secretName'], `${tp}.secretName`);
  }
}

const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const TRAFFIC_DISTRIBUTIONS = ['PreferClose', 'PreferSameZone', 'PreferSameNode'];

function validateService(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec', true);
  if (!spec) return;
  const type = str(c, spec['type'], 'spec.type', { oneOf: SERVICE_TYPES });
  const ports = recs(c, spec['ports'], 'spec.ports', { required: type !== 'ExternalName', nonEmpty: type !== 'ExternalName' });
  const names = new Set<string>();
  const numbers = new Set<string>();
  for (const [sp, p] of ports) {
    const n = port(c, sp['port'], `${p}.port`, true);
    const name = str(c, sp['name'], `${p}.name`, { required: ports.length > 1, test: isDnsLabel, expect: 'a DNS label' });
    if (name !== undefined) {
      if (names.has(name)) c.add(`${p}.name`, 'duplicates another port name', name);
      names.add(name);
    }
    const proto = str(c, sp['protocol'], `${p}.protocol`, { oneOf: ['TCP', 'UDP', 'SCTP'] }) ?? 'TCP';
    if (n !== undefined) {
      if (numbers.has(`${proto}/${n}`)) c.add(`${p}.port`, 'duplicates another port with the same protocol', n);
      numbers.add(`${proto}/${n}`);
    }
    const tp = sp['targetPort'];
    if (typeof tp === 'string') {
      if (!/^\d+$/.test(tp) && !isPortName(tp)) c.add(`${p}.targetPort`, 'must be a port number or a container port name', tp);
      else if (/^\d+$/.test(tp) && (Number(tp) < 1 || Number(tp) > 65535)) c.add(`${p}.targetPort`, 'must be between 1 and 65535', tp);
    } else if (tp !== undefined) {
      port(c, tp, `${p}.targetPort`);
    }
    str(c, sp['appProtocol'], `${p}.appProtocol`);
  }
  labels(c, spec['selector'], 'spec.selector');
  str(c, spec['clusterIP'], 'spec.clusterIP', { test: (s) => s === '' || s === 'None' || isIP(s) !== 0, expect: 'an IP address, "None" or ""' });
  const ips = arr(c, spec['clusterIPs'], 'spec.clusterIPs') ?? [];
  ips.forEach((ip, i) => str(c, ip, `spec.clusterIPs[${i}]`, { test: (s) => s === 'None' || isIP(s) !== 0, expect: 'an IP address or "None"' }));
  str(c, spec['trafficDistribution'], 'spec.trafficDistribution', { oneOf: TRAFFIC_DISTRIBUTIONS });
}
