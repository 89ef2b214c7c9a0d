/** Services → mesh Services, and the per-pod port mappings of the Services that select each pod. */
import { formatSpiffeId } from '../../shared/identity.js';
import type { PortMapping, Service, ServicePort, Workload } from '../../shared/model.js';
import type { KubeObject } from '../objects.js';
import type { TranslateIndex } from './object-index.js';
import { detectPortProtocol } from './protocol.js';
import { ANNOTATION_EXPORT_TO, annotationsOf, asArray, asRecord, asString, exportNamespaces, matchesLabels, nsOf, sortedUnique, labelsOf } from './util.js';
import { isPodRunning, podServiceAccount } from './workloads.js';

export const ANNOTATION_TRAFFIC_DISTRIBUTION = 'networking.istio.io/traffic-distribution';

export interface PodWorkload {
  pod: KubeObject;
  workload: Workload;
}

/** Pods by namespace: Services and selector policies look only in their own (one pass, not one per object). */
export function podsByNamespace(pods: readonly PodWorkload[]): Map<string, PodWorkload[]> {
  const out = new Map<string, PodWorkload[]>();
  for (const p of pods) {
    const list = out.get(p.workload.namespace);
    if (list) list.push(p);
    else out.set(p.workload.namespace, [p]);
  }
  return out;
}

interface RawPort {
  name: string;
  port: number;
  protocol: string;
  appProtocol?: string;
  /** Number, container port name, or undefined (= port). */
  targetPort: number | string | undefined;
}

function servicePorts(svc: KubeObject): RawPort[] {
  return asArray(svc.spec?.['ports']).map((p) => {
    const r = asRecord(p);
    const port = typeof r['port'] === 'number' ? r['port'] : 0;
    const tp = r['targetPort'];
    const targetPort = typeof tp === 'number' ? tp : typeof tp === 'string' ? (/^\d+$/.test(tp) ? Number(tp) : tp) : undefined;
    const out: RawPort = { name: asString(r['name']) ?? '', port, protocol: asString(r['protocol']) ?? 'TCP', targetPort };
    const app = asString(r['appProtocol']);
    if (app) out.appProtocol = app;
    return out;
  });
}

/** Resolves a Service port's target on one pod; a named target needs a container port of that name. */
export function resolveTargetPort(p: RawPort, pod: KubeObject): number | undefined {
  if (p.targetPort === undefined) return p.port;
  if (typeof p.targetPort === 'number') return p.targetPort;
  for (const c of asArray(pod.spec?.['containers'])) {
    for (const cp of asArray(asRecord(c)['ports'])) {
      const r = asRecord(cp);
      if (r['name'] === p.targetPort && (asString(r['protocol']) ?? 'TCP') === p.protocol && typeof r['containerPort'] === 'number') return r['containerPort'];
    }
  }
  return undefined;
}

export function serviceHostname(svc: KubeObject, clusterDomain: string): string {
  return `${svc.metadata.name}.${nsOf(svc)}.svc.${clusterDomain}`;
}

export function serviceSelector(svc: KubeObject): Record<string, string> | undefined {
  const sel = asRecord(svc.spec?.['selector']);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(sel)) if (typeof v === 'string') out[k] = v;
  return Object.keys(out).length > 0 ? out : undefined;
}

function serviceVips(svc: KubeObject): string[] {
  const ips = asArray(svc.spec?.['clusterIPs']).filter((ip): ip is string => typeof ip === 'string');
  const single = asString(svc.spec?.['clusterIP']);
  const all = ips.length > 0 ? ips : single ? [single] : [];
  return all.filter((ip) => ip !== '' && ip !== 'None');
}

/** A Service's `networking.istio.io/exportTo` annotation, as the model's exportTo (absent: everyone). */
function exportToOf(svc: KubeObject, ns: string): Pick<Service, 'exportTo'> {
  const raw = annotationsOf(svc)[ANNOTATION_EXPORT_TO];
  const exportTo = raw === undefined ? undefined : exportNamespaces(raw.split(',').map((v) => v.trim()).filter((v) => v !== ''), ns);
  return exportTo ? { exportTo } : {};
}

function routingPreference(svc: KubeObject): Service['routingPreference'] {
  const value = asString(svc.spec?.['trafficDistribution']) ?? annotationsOf(svc)[ANNOTATION_TRAFFIC_DISTRIBUTION];
  switch (value) {
    case 'PreferClose':
    case 'PreferSameZone':
      return ['zone'];
    case 'PreferSameNode':
      return ['node', 'zone'];
    default:
      return [];
  }
}

/** Label an EndpointSlice names its Service with. */
export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';

/**
 * The pods a Service without a selector reaches: the ready endpoints of its EndpointSlices (label
 * kubernetes.io/service-name) whose targetRef is a Pod, with each slice's port numbers by port
 * name. Endpoints that are not pods (external addresses) have no workload and are left out.
 */
function podsOfEndpointSlices(slices: readonly KubeObject[], svc: KubeObject, nsPods: readonly PodWorkload[]): { pods: PodWorkload[]; portsByName: Map<string, number> } {
  const ns = nsOf(svc);
  const byName = new Map(nsPods.map((p) => [p.pod.metadata.name, p]));
  const out = new Map<string, PodWorkload>();
  const portsByName = new Map<string, number>();
  for (const slice of slices) {
    const raw = slice as Record<string, unknown>;
    for (const p of asArray(raw['ports']).map(asRecord)) {
      if (typeof p['port'] === 'number' && !portsByName.has(asString(p['name']) ?? '')) portsByName.set(asString(p['name']) ?? '', p['port']);
    }
    for (const ep of asArray(raw['endpoints']).map(asRecord)) {
      if (asRecord(ep['conditions'])['ready'] === false) continue;
      const ref = asRecord(ep['targetRef']);
      if (asString(ref['kind']) !== 'Pod' || (asString(ref['namespace']) ?? ns) !== ns) continue;
      const pod = byName.get(asString(ref['name']) ?? '');
      if (pod) out.set(pod.pod.metadata.name, pod);
    }
  }
  return { pods: [...out.values()], portsByName };
}

/**
 * Builds every Service (ExternalName services are skipped: nothing for the data plane to do) and
 * fills `services` on the workloads each one selects. Endpoints are the Running selected pods; a
 * Service without a selector takes its pods from its EndpointSlices.
 */
export function buildServices(idx: TranslateIndex, pods: readonly PodWorkload[]): Service[] {
  const out: Service[] = [];
  const inNamespace = podsByNamespace(pods);
  const slicesOf = new Map<string, KubeObject[]>();
  for (const slice of idx.of('EndpointSlice')) {
    const key = `${nsOf(slice)}/${labelsOf(slice)[LABEL_SERVICE_NAME] ?? ''}`;
    const list = slicesOf.get(key);
    if (list) list.push(slice);
    else slicesOf.set(key, [slice]);
  }
  for (const svc of idx.services) {
    if (asString(svc.spec?.['type']) === 'ExternalName') continue;
    const ns = nsOf(svc);
    const hostname = serviceHostname(svc, idx.opts.clusterDomain);
    const raw = servicePorts(svc);
    const selector = serviceSelector(svc);
    let selected: PodWorkload[];
    const nsPods = inNamespace.get(ns) ?? [];
    if (selector) {
      selected = nsPods.filter((p) => matchesLabels(selector, labelsOf(p.pod)));
    } else {
      // Without a selector the EndpointSlices say where each port goes (by port name).
      const sliced = podsOfEndpointSlices(slicesOf.get(`${ns}/${svc.metadata.name}`) ?? [], svc, nsPods);
      selected = sliced.pods;
      for (const rp of raw) {
        const target = sliced.portsByName.get(rp.name);
        if (target !== undefined) rp.targetPort = target;
      }
    }
    const endpoints = selected.filter((p) => isPodRunning(p.pod));
    const key = `${ns}/${hostname}`;
    for (const p of selected) {
      const mappings: PortMapping[] = [];
      for (const rp of raw) {
        const target = resolveTargetPort(rp, p.pod);
        if (target !== undefined) mappings.push({ servicePort: rp.port, targetPort: target });
      }
      p.workload.services[key] = mappings;
    }
    // A named targetPort may differ per pod: the Service shows the first endpoint's number (0 when
    // no endpoint resolves it); the per-pod truth is in Workload.services.
    const ports: ServicePort[] = raw.map((rp) => {
      let targetPort = typeof rp.targetPort === 'number' ? rp.targetPort : rp.targetPort === undefined ? rp.port : 0;
      if (typeof rp.targetPort === 'string') {
        for (const e of endpoints) {
          const t = resolveTargetPort(rp, e.pod);
          if (t !== undefined) {
            targetPort = t;
            break;
          }
        }
      }
      return { name: rp.name, port: rp.port, targetPort, protocol: detectPortProtocol(rp) };
    });
    out.push({
      name: svc.metadata.name,
      namespace: ns,
      hostname,
      vips: serviceVips(svc),
      ports,
      subjectAltNames: sortedUnique(
        endpoints.map((e) => formatSpiffeId({ trustDomain: idx.opts.trustDomain, namespace: ns, serviceAccount: podServiceAccount(e.pod) })),
      ),
      routingPreference: routingPreference(svc),
      endpoints: sortedUnique(endpoints.map((e) => e.workload.uid)),
      ...exportToOf(svc, ns),
    });
  }
  return out;
}
