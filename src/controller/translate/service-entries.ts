/**
 * Istio ServiceEntries → Services of the model, so the node agents treat their addresses as they
 * treat a Kubernetes Service's ClusterIPs (egress included: an endpoint outside the mesh is
 * reached in plain TCP by the client's agent). Per host, one Service: `spec.addresses` as its
 * VIPs, `spec.ports` (protocol from Istio's names), and endpoints by resolution:
 *  - STATIC: `spec.endpoints`, each a workload of its own (tunnel NONE), or with
 *    `spec.workloadSelector` the Running pods of the namespace it selects;
 *  - DNS / DNS_ROUND_ROBIN: the endpoints' addresses, or with none the host itself, resolved by
 *    the controller (TranslateOptions.dnsAnswers; every address for DNS, the first for
 *    DNS_ROUND_ROBIN as Envoy does);
 *  - NONE (and DYNAMIC_DNS, served as NONE): none; with `spec.addresses` (exact or CIDR ranges)
 *    the Service has `originalDestination`, so a connection to any of them is the entry's host on
 *    its ports (telemetry, waypoint, policy) and goes to the address the client dialed; without
 *    addresses (wildcard hosts included) no Service: connections pass through unnamed.
 * Hosts of an entry without `spec.addresses` get an address of 240.240.0.0/16 and one of
 * 2001:2::/48 (Istio's auto-allocation, address-allocation.ts). A wildcard host (STATIC, or DNS
 * with endpoints) is served on the entry's own `spec.addresses` with its endpoints; without them
 * nothing addresses it (no address is allocated for wildcards) and its condition says so.
 * An entry whose host is a Kubernetes Service, or another older entry's, is refused for that host.
 */
import { isIP } from 'node:net';
import type { KubeObject } from '../objects.js';
import type { PortMapping, Service, ServicePort, Workload } from '../../shared/model.js';
import { addCondition, type TranslateIndex } from './object-index.js';
import { CONDITION_ACCEPTED } from './peer-authentication.js';
import { detectPortProtocol } from './protocol.js';
import type { PodWorkload } from './services.js';
import { asArray, asRecord, asString, asStrings, compareAge, exportNamespaces, labelsOf, matchesLabels, nsOf } from './util.js';
import { isPodRunning } from './workloads.js';
import { cidrProblem } from '../../shared/validate.js';
import { allocatedEntryAddresses, AUTO_ALLOCATE_PREFIX, AUTO_ALLOCATE_PREFIX6 } from './address-allocation.js';

/** Host names the DNS-resolved ServiceEntries of `objects` need resolved (for the controller's resolver). */
export function serviceEntryDnsNames(entries: readonly KubeObject[]): string[] {
  const names = new Set<string>();
  for (const se of entries) {
    const spec = asRecord(se.spec);
    const resolution = asString(spec['resolution']) ?? 'NONE';
    if (resolution !== 'DNS' && resolution !== 'DNS_ROUND_ROBIN') continue;
    const endpoints = asArray(spec['endpoints']).map(asRecord);
    const targets = endpoints.length > 0 ? endpoints.map((e) => asString(e['address']) ?? '') : asStrings(spec['hosts']);
    for (const t of targets) if (t !== '' && isIP(t) === 0 && !t.startsWith('*')) names.add(t.toLowerCase());
  }
  return [...names].sort();
}

interface RawEndpoint {
  addresses: string[];
  ports: Record<string, number>;
  labels: Record<string, string>;
  serviceAccount: string | undefined;
}

function numberMap(v: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, x] of Object.entries(asRecord(v))) if (typeof x === 'number') out[k] = x;
  return out;
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(asRecord(v))) if (typeof x === 'string') out[k] = x;
  return out;
}

/** The endpoints of an entry with resolution STATIC or DNS*, addresses resolved. */
function rawEndpoints(spec: Record<string, unknown>, host: string, dns: ReadonlyMap<string, readonly string[]>, notes: string[]): RawEndpoint[] {
  const resolution = asString(spec['resolution']) ?? 'NONE';
  const list = asArray(spec['endpoints']).map(asRecord);
  const resolve = (address: string): string[] => {
    if (isIP(address) !== 0) return [address];
    const answers = dns.get(address.toLowerCase()) ?? [];
    if (answers.length === 0) notes.push(`${address} has not resolved (yet); it has no endpoints, so connections to it are not served until it does`);
    return resolution === 'DNS_ROUND_ROBIN' ? answers.slice(0, 1) : [...answers];
  };
  if (list.length === 0) return resolution === 'STATIC' ? [] : [{ addresses: resolve(host), ports: {}, labels: {}, serviceAccount: undefined }];
  return list.map((e) => ({
    addresses: resolution === 'STATIC' ? [asString(e['address']) ?? ''].filter((a) => isIP(a) !== 0) : resolve(asString(e['address']) ?? ''),
    ports: numberMap(e['ports']),
    labels: stringMap(e['labels']),
    serviceAccount: asString(e['serviceAccount']),
  }));
}

/** Adds the Services (and endpoint workloads) of every ServiceEntry to `services` and `workloads`. */
export function buildServiceEntries(idx: TranslateIndex, pods: readonly PodWorkload[], services: Service[], workloads: Workload[], entries: Array<{ svc: KubeObject; service: Service }> = []): void {
  const taken = new Map<string, string>(services.map((s) => [s.hostname, `Service ${s.namespace}/${s.name}`]));
  const dns = idx.opts.dnsAnswers ?? new Map<string, readonly string[]>();
  const allocated = allocatedEntryAddresses(idx.of('ServiceEntry'));
  for (const se of [...idx.of('ServiceEntry')].sort(compareAge)) {
    const ns = nsOf(se);
    const spec = asRecord(se.spec);
    const resolution = asString(spec['resolution']) ?? 'NONE';
    const notes: string[] = [];
    const vips = asStrings(spec['addresses']).filter((a) => isIP(a) !== 0);
    // Ranges: every address inside is the entry's host on its ports (the most specific range wins, an exact address over any range).
    const ranges = asStrings(spec['addresses']).filter((a) => {
      if (isIP(a) !== 0) return false;
      const problem = cidrProblem(a);
      if (problem !== undefined) notes.push(`spec.addresses: ${JSON.stringify(a)} ${problem}; ignored`);
      return problem === undefined;
    });
    // NONE (DYNAMIC_DNS served as NONE): the client's address is the endpoint. With addresses the
    // entry names those connections (a Service whose endpoint is the original destination).
    const originalDestination = resolution === 'NONE' || resolution === 'DYNAMIC_DNS';
    const dynamic = resolution === 'DYNAMIC_DNS' ? '; DYNAMIC_DNS is served as NONE (no proxy resolves the Host of a request)' : '';
    if (originalDestination && vips.length === 0 && ranges.length === 0) {
      const wildcard = asStrings(spec['hosts']).some((h) => h.startsWith('*'));
      const why = wildcard ? ' (wildcard hosts included: any name they match is passed through)' : '';
      notes.unshift(`resolution ${resolution}: connections go to the address the client asked for${why}${dynamic}`);
      addCondition(idx, se, { type: CONDITION_ACCEPTED, status: 'True', reason: notes.length > 1 ? 'PartiallyApplied' : 'Accepted', message: notes.join('; ') });
      continue;
    }
    if (ranges.length > 0 && !originalDestination && resolution !== 'STATIC') {
      notes.push(`address ranges ${ranges.join(', ')} are not served with resolution ${resolution} (Istio refuses CIDR addresses unless resolution is NONE or STATIC); ${vips.length > 0 ? 'the entry is served on its other addresses' : 'it names no other address, so no connection is addressed to it'}`);
    }
    const allocations: string[] = [];
    const vipRanges = resolution === 'STATIC' || originalDestination ? ranges : [];
    const rawPorts = asArray(spec['ports']).map(asRecord);
    const ports: ServicePort[] = rawPorts.map((p) => {
      const number = typeof p['number'] === 'number' ? p['number'] : 0;
      return { name: asString(p['name']) ?? '', port: number, targetPort: typeof p['targetPort'] === 'number' ? p['targetPort'] : number, protocol: detectPortProtocol({ appProtocol: asString(p['protocol']) ?? 'TCP', name: asString(p['name']) ?? '' }) };
    });
    const selector = asRecord(asRecord(spec['workloadSelector'])['labels']);
    const selected = spec['workloadSelector'] !== undefined && !originalDestination ? pods.filter((p) => p.workload.namespace === ns && matchesLabels(stringMap(selector), labelsOf(p.pod))) : [];
    asStrings(spec['hosts']).forEach((hostRaw, h) => {
      const host = hostRaw.toLowerCase();
      if (host.startsWith('*') && vips.length === 0 && vipRanges.length === 0) {
        // Istio allocates no address for a wildcard host (only DYNAMIC_DNS ones get one), so nothing addresses it.
        notes.push(`host ${host}: not served: a wildcard host gets no auto-allocated address (Istio allocates none for wildcard hosts unless resolution is DYNAMIC_DNS) and the entry names no spec.addresses, so no connection is addressed to it; give spec.addresses to serve it on them, or use resolution NONE or DYNAMIC_DNS to pass connections through`);
        return;
      }
      const owner = taken.get(host);
      if (owner) {
        notes.push(`host ${host} is already ${owner}'s; this entry is ignored for it`);
        return;
      }
      taken.set(host, `ServiceEntry ${ns}/${se.metadata.name}`);
      const key = `${ns}/${host}`;
      const endpoints: string[] = [];
      const mapping = (portsByName: Record<string, number>): PortMapping[] => ports.map((p) => ({ servicePort: p.port, targetPort: portsByName[p.name] ?? p.targetPort }));
      for (const p of selected) {
        p.workload.services[key] = mapping({});
        if (isPodRunning(p.pod)) endpoints.push(p.workload.uid);
      }
      if (spec['workloadSelector'] === undefined && !originalDestination) {
        let k = 0;
        for (const e of rawEndpoints(spec, host, dns, notes)) {
          for (const address of e.addresses) {
            const name = `${se.metadata.name}.${h}.${k++}`;
            const w: Workload = {
              uid: `${idx.opts.clusterId}/networking.istio.io/v1/ServiceEntry/${ns}/${name}`,
              name,
              namespace: ns,
              serviceAccount: e.serviceAccount ?? 'default',
              trustDomain: idx.opts.trustDomain,
              node: 'external',
              addresses: [address],
              tunnelProtocol: 'NONE',
              canonicalName: e.labels['app'] ?? se.metadata.name,
              canonicalRevision: e.labels['version'] ?? 'latest',
              workloadName: se.metadata.name,
              workloadType: 'pod',
              labels: e.labels,
              services: { [key]: mapping(e.ports) },
              status: 'Healthy',
              authorizationPolicies: [],
              peerAuthentication: 'PERMISSIVE',
              portPeerAuthentication: {},
            };
            workloads.push(w);
            endpoints.push(w.uid);
          }
        }
      }
      const exportTo = exportNamespaces(asStrings(spec['exportTo']), ns);
      const auto = vips.length === 0 && vipRanges.length === 0 ? allocated.get(key) : undefined;
      if (auto) allocations.push(`${host}=${auto.join(' and ')}`);
      const service: Service = { name: se.metadata.name, namespace: ns, hostname: host, vips: auto ? [...auto] : vips, ...(vipRanges.length > 0 ? { vipRanges } : {}), ...(originalDestination ? { originalDestination: true as const } : {}), ports, subjectAltNames: asStrings(spec['subjectAltNames']), routingPreference: [], endpoints: endpoints.sort(), ...(exportTo ? { exportTo } : {}) };
      services.push(service);
      entries.push({ svc: se, service });
    });
    const alloc = allocations.length > 0 ? `; no spec.addresses, so addresses were allocated (Istio's auto-allocation, ${AUTO_ALLOCATE_PREFIX}0.0/16 and ${AUTO_ALLOCATE_PREFIX6}/48): ${allocations.join(', ')}` : '';
    addCondition(idx, se, notes.length > 0 ? { type: CONDITION_ACCEPTED, status: 'True', reason: 'PartiallyApplied', message: `${notes.join('; ')}${alloc}` } : { type: CONDITION_ACCEPTED, status: 'True', reason: 'Accepted', message: originalDestination ? `resolution ${resolution}: connections to its addresses on its ports are its host's and go to the address the client asked for${dynamic}` : `served by the node agents${alloc}` });
  }
}
