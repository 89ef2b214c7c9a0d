/**
 * What local mode's cluster DNS answers, pure (CoreDNS's kubernetes plugin for the common records,
 * as kubeadm configures it: zone `cluster.local`, TTL 30 s):
 * - `<svc>.<ns>.svc.<domain>` A/AAAA: the Service's ClusterIPs; a headless Service's ready endpoint
 *   addresses (every endpoint's with `publishNotReadyAddresses`), NXDOMAIN while it has none; an
 *   ExternalName Service a CNAME to its external name;
 * - a name that exists without a record of the asked type (the other address family, SRV, TXT...,
 *   the zone apex, `svc.<domain>`, `<ns>.svc.<domain>` of a namespace with Services): NOERROR
 *   with no answer and the zone's SOA (NODATA), so the client does not give up on the name;
 * - any other name in the zone: NXDOMAIN with the SOA;
 * - names outside the zone: forwarded (the server's upstream resolvers answer them).
 * Not served (as the README's limits say): pod records, SRV and PTR, hostname.subdomain records.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { KubeObject } from '../controller/objects.js';
import {
  CLASS_IN,
  OPCODE_QUERY,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NOTIMP,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  TYPE_A,
  TYPE_AAAA,
  TYPE_ANY,
  TYPE_CNAME,
  TYPE_NS,
  TYPE_SOA,
  answerTo,
  encodeName,
  type DnsMessage,
  type DnsRecord,
} from '../shared/dns/message.js';
import { SERVICE_NAME_LABEL } from './controllers/endpointslice.js';
import { rec } from './controllers/queue.js';

/** TTL of cluster answers (kubeadm's Corefile: `kubernetes cluster.local ... { ttl 30 }`). */
export const CLUSTER_DNS_TTL_SECONDS = 30;
/** The name server the zone's SOA and NS name (CoreDNS's `ns.dns.<zone>`). */
const NS_LABEL = 'ns.dns';

/** The addresses one Service name resolves to. */
export interface ServiceRecords {
  v4: string[];
  v6: string[];
  /** ExternalName: the name it is an alias of. */
  cname?: string;
  /** Headless (clusterIP None): addresses are the endpoints'. */
  headless: boolean;
}

export interface ClusterDnsIndex {
  /** The cluster domain (the zone), lowercase, no trailing dot. */
  domain: string;
  /** `<svc>.<ns>` → its records. */
  services: ReadonlyMap<string, ServiceRecords>;
  /** Namespaces holding at least one Service. */
  namespaces: ReadonlySet<string>;
}

export type ClusterDnsDecision = { kind: 'answer'; response: DnsMessage } | { kind: 'forward' };

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function addTo(r: ServiceRecords, ip: string): void {
  if (isIPv4(ip) && !r.v4.includes(ip)) r.v4.push(ip);
  else if (isIPv6(ip) && !r.v6.includes(ip)) r.v6.push(ip);
}

/** The index the server answers from: every Service, headless ones with their EndpointSlices' addresses. */
export function buildClusterDnsIndex(domain: string, services: readonly KubeObject[], slices: readonly KubeObject[]): ClusterDnsIndex {
  const index = new Map<string, ServiceRecords>();
  const namespaces = new Set<string>();
  const slicesOf = new Map<string, KubeObject[]>();
  for (const sl of slices) {
    const svc = sl.metadata.labels?.[SERVICE_NAME_LABEL];
    if (!svc) continue;
    const key = `${svc}.${sl.metadata.namespace ?? 'default'}`.toLowerCase();
    const list = slicesOf.get(key);
    if (list) list.push(sl);
    else slicesOf.set(key, [sl]);
  }
  for (const s of services) {
    const ns = (s.metadata.namespace ?? 'default').toLowerCase();
    const key = `${s.metadata.name}.${ns}`.toLowerCase();
    const spec = rec(s.spec);
    namespaces.add(ns);
    const r: ServiceRecords = { v4: [], v6: [], headless: false };
    if (spec.type === 'ExternalName') {
      const target = typeof spec.externalName === 'string' ? spec.externalName.toLowerCase().replace(/\.$/, '') : '';
      if (target !== '') r.cname = target;
    } else if (spec.clusterIP === 'None') {
      r.headless = true;
      const all = spec.publishNotReadyAddresses === true;
      for (const sl of slicesOf.get(key) ?? []) {
        for (const e of (Array.isArray(sl['endpoints']) ? sl['endpoints'] : []) as unknown[]) {
          const ep = rec(e);
          if (!all && rec(ep['conditions'])['ready'] === false) continue;
          for (const ip of strings(ep['addresses'])) addTo(r, ip);
        }
      }
      const order = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
      r.v4.sort(order);
      r.v6.sort(order);
    } else {
      const ips = strings(spec.clusterIPs);
      for (const ip of ips.length > 0 ? ips : strings([spec.clusterIP])) addTo(r, ip);
    }
    index.set(key, r);
  }
  return { domain: domain.toLowerCase().replace(/\.$/, ''), services: index, namespaces };
}

/** The zone's SOA record (CoreDNS's shape: its name server, hostmaster, a serial, 5 s negative TTL). */
export function soaRecord(domain: string): DnsRecord {
  const fixed = Buffer.alloc(20);
  // serial, refresh, retry, expire, minimum (the negative-caching TTL).
  [1, 7200, 1800, 86400, 5].forEach((v, i) => fixed.writeUInt32BE(v, i * 4));
  const data = Buffer.concat([encodeName(`${NS_LABEL}.${domain}`), encodeName(`hostmaster.${domain}`), fixed]);
  return { name: domain, type: TYPE_SOA, class: CLASS_IN, ttl: 5, data };
}

/** What a name inside the zone is: a Service's records, a name without records, or nothing. */
function lookupInZone(index: ClusterDnsIndex, rest: string[]): ServiceRecords | 'exists' | undefined {
  if (rest.length === 0) return 'exists';
  if (rest.length === 1) return rest[0] === 'svc' || rest[0] === 'pod' ? 'exists' : undefined;
  if (rest[rest.length - 1] !== 'svc') return undefined;
  if (rest.length === 2) return index.namespaces.has(rest[0]!) ? 'exists' : undefined;
  if (rest.length === 3) return index.services.get(`${rest[0]}.${rest[1]}`);
  return undefined;
}

/** The server's decision for a parsed query (never throws for any parsed message). */
export function decideClusterDnsQuery(query: DnsMessage, index: ClusterDnsIndex): ClusterDnsDecision {
  const answer = (rcode: number, answers: DnsRecord[] = [], authorities: DnsRecord[] = []): ClusterDnsDecision => ({ kind: 'answer', response: answerTo(query, rcode, answers, authorities) });
  if (query.header.opcode !== OPCODE_QUERY) return answer(RCODE_NOTIMP);
  if (query.questions.length !== 1) return answer(RCODE_FORMERR);
  const q = query.questions[0]!;
  const name = q.name.toLowerCase();
  const zone = index.domain;
  if (name !== zone && !name.endsWith(`.${zone}`)) return { kind: 'forward' };
  if (q.class !== CLASS_IN && q.class !== TYPE_ANY) return answer(RCODE_REFUSED);
  const soa = soaRecord(zone);
  const rest = name === zone ? [] : name.slice(0, -zone.length - 1).split('.');
  const found = lookupInZone(index, rest);
  if (found === undefined) return answer(RCODE_NXDOMAIN, [], [soa]);
  const rr = (type: number, data: string | Buffer): DnsRecord => ({ name: q.name, type, class: CLASS_IN, ttl: CLUSTER_DNS_TTL_SECONDS, data });
  if (found === 'exists') {
    if (rest.length === 0 && q.type === TYPE_SOA) return answer(RCODE_NOERROR, [soa]);
    if (rest.length === 0 && q.type === TYPE_NS) return answer(RCODE_NOERROR, [rr(TYPE_NS, `${NS_LABEL}.${zone}`)]);
    return answer(RCODE_NOERROR, [], [soa]);
  }
  if (found.cname !== undefined) return answer(RCODE_NOERROR, [rr(TYPE_CNAME, found.cname)]);
  // A headless Service without endpoints has no name (CoreDNS answers NXDOMAIN).
  if (found.headless && found.v4.length === 0 && found.v6.length === 0) return answer(RCODE_NXDOMAIN, [], [soa]);
  const answers: DnsRecord[] = [];
  if (q.type === TYPE_A || q.type === TYPE_ANY) for (const ip of found.v4) answers.push(rr(TYPE_A, ip));
  if (q.type === TYPE_AAAA || q.type === TYPE_ANY) for (const ip of found.v6) answers.push(rr(TYPE_AAAA, ip));
  return answer(RCODE_NOERROR, answers, answers.length === 0 ? [soa] : []);
}
