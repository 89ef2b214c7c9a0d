/**
 * Services: defaults, ClusterIP and NodePort allocation (the lowest free address of the service
 * CIDR after the `kubernetes` Service's; used addresses are read from the stored Services, so
 * nothing separate has to survive a restart), allocated values kept on update, validation.
 */
import { fieldError, invalid, type FieldError } from '../status.js';
import type { KindStrategy, StrategyContext } from '../strategy.js';
import { isMap, jsonEqual, type JsonMap, type KubeObject } from '../types.js';
import { portProblem } from './names.js';

const TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];

function ipToInt(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** First and last usable address of an IPv4 CIDR (network and broadcast excluded). */
export function cidrRange(cidr: string): { first: number; last: number } {
  const [ip, bitsText] = cidr.split('/');
  const base = ipToInt(ip ?? '');
  const bits = Number(bitsText);
  if (base === undefined || !Number.isInteger(bits) || bits < 8 || bits > 30) throw new Error(`invalid service CIDR ${cidr}`);
  const size = 2 ** (32 - bits);
  const network = base - (base % size);
  return { first: network + 1, last: network + size - 2 };
}

/** The ClusterIP of the `kubernetes` Service: the first address of the range. */
export function kubernetesServiceIp(cidr: string): string {
  return intToIp(cidrRange(cidr).first);
}

/**
 * The ClusterIP of the cluster DNS Service (kube-dns): the tenth address of the range, where
 * kubeadm puts it (10.96.0.10 in 10.96.0.0/12). Dynamic allocation never hands it out, so the DNS
 * Service can always be (re)created at it.
 */
export function dnsServiceIp(cidr: string): string {
  return intToIp(cidrRange(cidr).first + 9);
}

function usedClusterIps(ctx: StrategyContext): Set<string> {
  const used = new Set<string>();
  for (const s of ctx.store.list('/services')) {
    const spec = s['spec'];
    if (!isMap(spec)) continue;
    if (Array.isArray(spec['clusterIPs'])) for (const ip of spec['clusterIPs']) used.add(String(ip));
    if (typeof spec['clusterIP'] === 'string') used.add(spec['clusterIP']);
  }
  return used;
}

/** Node ports in use by Services other than `self`. */
function usedNodePorts(ctx: StrategyContext, self: KubeObject): Set<number> {
  const used = new Set<number>();
  for (const s of ctx.store.list('/services')) {
    if (s.metadata.namespace === self.metadata.namespace && s.metadata.name === self.metadata.name) continue;
    const ports = isMap(s['spec']) ? s['spec']['ports'] : undefined;
    if (Array.isArray(ports)) for (const p of ports) if (isMap(p) && typeof p['nodePort'] === 'number') used.add(p['nodePort']);
  }
  return used;
}

function serviceInvalid(obj: KubeObject, errs: FieldError[]): never {
  throw invalid({ group: '', kind: 'Service' }, obj.metadata.name ?? '', errs);
}

function allocate(obj: KubeObject, ctx: StrategyContext): void {
  const spec = obj['spec'] as JsonMap;
  const type = spec['type'];
  if (type === 'ExternalName') return;
  const requested = typeof spec['clusterIP'] === 'string' ? spec['clusterIP'] : '';
  if (requested === 'None') {
    spec['clusterIPs'] = ['None'];
  } else {
    const { first, last } = cidrRange(ctx.settings.serviceCidr);
    const used = usedClusterIps(ctx);
    let ip: string | undefined;
    if (requested !== '') {
      const n = ipToInt(requested);
      if (n === undefined || n < first || n > last) {
        serviceInvalid(obj, [fieldError('Invalid', 'spec.clusterIPs', [requested], `failed to allocate IP ${requested}: the provided IP (${requested}) is not in the valid range. The range of valid IPs is ${ctx.settings.serviceCidr}`)]);
      }
      if (used.has(requested)) serviceInvalid(obj, [fieldError('Invalid', 'spec.clusterIPs', [requested], `failed to allocate IP ${requested}: provided IP is already allocated`)]);
      ip = requested;
    } else {
      const reserved = dnsServiceIp(ctx.settings.serviceCidr);
      for (let n = first; n <= last; n++) {
        const cand = intToIp(n);
        if (!used.has(cand) && cand !== reserved) {
          ip = cand;
          break;
        }
      }
      if (ip === undefined) serviceInvalid(obj, [fieldError('Invalid', 'spec.clusterIPs', [], 'failed to allocate a serviceIP: range is full')]);
    }
    spec['clusterIP'] = ip;
    spec['clusterIPs'] = [ip];
  }
  allocateNodePorts(obj, ctx);
}

/** NodePort and LoadBalancer Services get a node port for every port that has none. */
function allocateNodePorts(obj: KubeObject, ctx: StrategyContext): void {
  const spec = obj['spec'] as JsonMap;
  const type = spec['type'];
  if (type === 'NodePort' || type === 'LoadBalancer') {
    const used = usedNodePorts(ctx, obj);
    const [lo, hi] = ctx.settings.nodePortRange;
    const ports = Array.isArray(spec['ports']) ? spec['ports'] : [];
    ports.forEach((p, i) => {
      if (!isMap(p)) return;
      if (typeof p['nodePort'] === 'number' && p['nodePort'] !== 0) {
        if (used.has(p['nodePort'])) {
          serviceInvalid(obj, [fieldError('Invalid', `spec.ports[${i}].nodePort`, p['nodePort'], 'provided port is already allocated')]);
        }
        used.add(p['nodePort']);
        return;
      }
      for (let n = lo; n <= hi; n++) {
        if (!used.has(n)) {
          p['nodePort'] = n;
          used.add(n);
          return;
        }
      }
    });
  }
}

export const serviceStrategy: KindStrategy = {
  returnDeletedObject: true,
  defaults(obj) {
    const spec = isMap(obj['spec']) ? obj['spec'] : (obj['spec'] = {});
    spec['type'] ??= 'ClusterIP';
    if (spec['type'] !== 'ExternalName') {
      spec['sessionAffinity'] ??= 'None';
      spec['internalTrafficPolicy'] ??= 'Cluster';
      spec['ipFamilies'] ??= ['IPv4'];
      spec['ipFamilyPolicy'] ??= 'SingleStack';
    }
    if (spec['type'] === 'NodePort' || spec['type'] === 'LoadBalancer') spec['externalTrafficPolicy'] ??= 'Cluster';
    if (spec['type'] === 'LoadBalancer') spec['allocateLoadBalancerNodePorts'] ??= true;
    if (Array.isArray(spec['ports'])) {
      for (const p of spec['ports']) {
        if (!isMap(p)) continue;
        p['protocol'] ??= 'TCP';
        if (p['targetPort'] === undefined && typeof p['port'] === 'number') p['targetPort'] = p['port'];
      }
    }
    if (!isMap(obj['status'])) obj['status'] = { loadBalancer: {} };
  },
  prepareForCreate(obj, ctx) {
    allocate(obj, ctx);
  },
  prepareForUpdate(obj, old, ctx) {
    // An update that leaves allocated values out keeps them (as the real server does since 1.20).
    const spec = obj['spec'] as JsonMap;
    const oldSpec = isMap(old['spec']) ? old['spec'] : {};
    if (spec['type'] === oldSpec['type'] && spec['type'] !== 'ExternalName') {
      if (spec['clusterIP'] === undefined || spec['clusterIP'] === '') spec['clusterIP'] = oldSpec['clusterIP'];
      if (spec['clusterIPs'] === undefined) spec['clusterIPs'] = oldSpec['clusterIPs'];
      if (Array.isArray(spec['ports']) && Array.isArray(oldSpec['ports'])) {
        for (const p of spec['ports']) {
          if (!isMap(p) || p['nodePort'] !== undefined) continue;
          const o = (oldSpec['ports'] as unknown[]).find((x) => isMap(x) && x['port'] === p['port'] && (x['protocol'] ?? 'TCP') === (p['protocol'] ?? 'TCP'));
          if (isMap(o) && o['nodePort'] !== undefined) p['nodePort'] = o['nodePort'];
        }
      }
    }
    // Ports still without one (a Service that became NodePort) get a free node port.
    allocateNodePorts(obj, ctx);
  },
  validate(obj) {
    const errs: FieldError[] = [];
    const spec = isMap(obj['spec']) ? obj['spec'] : {};
    const type = spec['type'];
    if (!TYPES.includes(String(type))) errs.push(fieldError('NotSupported', 'spec.type', type, 'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'));
    const ports = Array.isArray(spec['ports']) ? spec['ports'] : [];
    if (type === 'ExternalName') {
      if (typeof spec['externalName'] !== 'string' || spec['externalName'] === '') errs.push(fieldError('Required', 'spec.externalName', undefined));
    } else if (ports.length === 0 && spec['clusterIP'] !== 'None') {
      errs.push(fieldError('Required', 'spec.ports', undefined));
    }
    const names = new Set<string>();
    const keys = new Set<string>();
    ports.forEach((p, i) => {
      if (!isMap(p)) return;
      const path = `spec.ports[${i}]`;
      const name = typeof p['name'] === 'string' ? p['name'] : '';
      if (ports.length > 1 && name === '') errs.push(fieldError('Required', `${path}.name`, undefined));
      if (name !== '') {
        if (names.has(name)) errs.push(fieldError('Duplicate', `${path}.name`, name));
        names.add(name);
      }
      const pp = portProblem(p['port']);
      if (pp !== undefined) errs.push(fieldError('Invalid', `${path}.port`, p['port'], pp));
      if (!PROTOCOLS.includes(String(p['protocol']))) errs.push(fieldError('NotSupported', `${path}.protocol`, p['protocol'], 'supported values: "SCTP", "TCP", "UDP"'));
      const key = `${String(p['port'])}/${String(p['protocol'])}`;
      if (keys.has(key)) errs.push(fieldError('Duplicate', `${path}`, { port: p['port'], protocol: p['protocol'] }));
      keys.add(key);
      const tp = p['targetPort'];
      if (typeof tp === 'number' && portProblem(tp) !== undefined) errs.push(fieldError('Invalid', `${path}.targetPort`, tp, 'must be between 1 and 65535, inclusive'));
    });
    return errs;
  },
  validateUpdate(obj, old) {
    const spec = isMap(obj['spec']) ? obj['spec'] : {};
    const oldSpec = isMap(old['spec']) ? old['spec'] : {};
    if (spec['type'] !== 'ExternalName' && oldSpec['type'] !== 'ExternalName' && oldSpec['clusterIP'] !== undefined && !jsonEqual(spec['clusterIP'], oldSpec['clusterIP'])) {
      return [fieldError('Invalid', 'spec.clusterIPs[0]', spec['clusterIP'] ?? '', 'may not change once set')];
    }
    return [];
  },
  selectableFields: ['spec.clusterIP', 'spec.type'],
};
