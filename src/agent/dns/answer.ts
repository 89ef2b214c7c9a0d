/**
 * What the DNS proxy does with one query, pure: answer it from the mesh config (A/AAAA of a
 * Kubernetes Service or a ServiceEntry host the asking pod sees) or forward it upstream unchanged.
 *
 * Names answered locally, for a pod of namespace `ns` (cluster domain `d`, from the Services):
 * - a Service `svc` of namespace `n`: `svc.n.svc.d`, and the forms the pod's search list makes
 *   of it: `svc` (when n = ns), `svc.n`, `svc.n.svc`;
 * - a ServiceEntry host `h`: `h`, and `h.<search domain>` (`h.ns.svc.d`, `h.svc.d`, `h.d`: what a
 *   resolver with `ndots:5` asks first), answered with a CNAME to `h` and its records;
 * - a wildcard host `*.example.com`: every name below example.com; the longest suffix wins and an
 *   exact host beats every wildcard.
 * A host with no address at all (headless Service, wildcard or DNS entry without addresses) is
 * forwarded: the upstream resolver knows it.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { serviceVisibleTo, type Service } from '../../shared/model.js';
import {
  CLASS_IN,
  OPCODE_QUERY,
  RCODE_NOERROR,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
  answerTo,
  type DnsMessage,
  type DnsRecord,
} from '../../shared/dns/message.js';

/** TTL of local answers: short, so a changed address is picked up soon (ztunnel uses 30 s). */
export const LOCAL_TTL_SECONDS = 30;
export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

export interface DnsHost {
  /** The host's own name (a Service's FQDN, an entry's host). */
  name: string;
  v4: string[];
  v6: string[];
  exportTo?: string[] | undefined;
}

export interface DnsTable {
  /** Exact names (Service FQDNs, entry hosts) → hosts (several entries may name one host: the first visible wins). */
  exact: ReadonlyMap<string, readonly DnsHost[]>;
  /** `svc.ns` → the Service's host. */
  services: ReadonlyMap<string, readonly DnsHost[]>;
  /** Wildcard hosts by their suffix (`example.com` for `*.example.com`), longest first. */
  wildcards: ReadonlyArray<{ suffix: string; host: DnsHost }>;
  /** Cluster domains the Services use (`cluster.local`). */
  domains: readonly string[];
}

export const EMPTY_DNS_TABLE: DnsTable = { exact: new Map(), services: new Map(), wildcards: [], domains: [DEFAULT_CLUSTER_DOMAIN] };

function push<K>(m: Map<K, DnsHost[]>, k: K, h: DnsHost): void {
  const list = m.get(k);
  if (list) list.push(h);
  else m.set(k, [h]);
}

/** The table of every name the proxy can answer, from the config's Services (ServiceEntries included). */
export function buildDnsTable(services: Iterable<Service>): DnsTable {
  const exact = new Map<string, DnsHost[]>();
  const byService = new Map<string, DnsHost[]>();
  const wildcards: Array<{ suffix: string; host: DnsHost }> = [];
  const domains = new Set<string>();
  // Sorted so the first of several entries naming one host is the same on every agent (keys
  // built once, code-point order: no collator).
  const keyed = [...services].map((s) => ({ k: `${s.namespace}/${s.hostname}`, s }));
  keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
  for (const { s } of keyed) {
    const name = s.hostname.toLowerCase().replace(/\.$/, '');
    const host: DnsHost = { name, v4: s.vips.filter((a) => isIPv4(a)), v6: s.vips.filter((a) => isIPv6(a)), exportTo: s.exportTo };
    const kubePrefix = `${s.name}.${s.namespace}.svc.`.toLowerCase();
    if (name.startsWith(kubePrefix) && name.length > kubePrefix.length) {
      domains.add(name.slice(kubePrefix.length));
      push(byService, `${s.name}.${s.namespace}`.toLowerCase(), host);
      push(exact, name, host);
    } else if (name.startsWith('*.')) {
      wildcards.push({ suffix: name.slice(2), host });
    } else if (name !== '*') {
      push(exact, name, host);
    }
  }
  wildcards.sort((a, b) => b.suffix.length - a.suffix.length || (a.suffix < b.suffix ? -1 : a.suffix > b.suffix ? 1 : 0));
  return { exact, services: byService, wildcards, domains: domains.size > 0 ? [...domains].sort() : [DEFAULT_CLUSTER_DOMAIN] };
}

/** The pod asking: its namespace decides the search list and what it sees (exportTo). */
export interface DnsClient {
  namespace: string;
}

export type DnsDecision =
  | { kind: 'answer'; response: DnsMessage; /** the host answered (for logs) */ host: string }
  | { kind: 'forward' };

function visible(list: readonly DnsHost[] | undefined, ns: string): DnsHost | undefined {
  return list?.find((h) => serviceVisibleTo(h, ns));
}

/** The host `name` (no search suffix) means to a pod of `ns`, without search expansion. */
function lookupDirect(table: DnsTable, name: string, ns: string): DnsHost | undefined {
  const exact = visible(table.exact.get(name), ns);
  if (exact) return exact;
  const labels = name.split('.');
  // Short forms of a Service: svc, svc.ns, svc.ns.svc.
  if (labels.length === 1) return visible(table.services.get(`${name}.${ns}`), ns);
  if (labels.length === 2) return visible(table.services.get(name), ns);
  if (labels.length === 3 && labels[2] === 'svc') return visible(table.services.get(`${labels[0]}.${labels[1]}`), ns);
  for (const w of table.wildcards) if (name.endsWith(`.${w.suffix}`) && serviceVisibleTo(w.host, ns)) return w.host;
  return undefined;
}

/**
 * The host a query name resolves to for a pod of `ns`: directly, else (a ServiceEntry host with
 * one of the pod's search domains appended) with a CNAME from the asked name to the host.
 */
export function lookupHost(table: DnsTable, name: string, ns: string): { host: DnsHost; cname?: string } | undefined {
  const direct = lookupDirect(table, name, ns);
  if (direct) return { host: direct };
  for (const d of table.domains) {
    for (const search of [`${ns}.svc.${d}`, `svc.${d}`, d]) {
      if (!name.endsWith(`.${search}`)) continue;
      const stripped = name.slice(0, -search.length - 1);
      // Only entry hosts (with a dot: a Service's short forms are their own names) are expanded.
      if (!stripped.includes('.')) continue;
      const exact = visible(table.exact.get(stripped), ns);
      const host = exact ?? table.wildcards.find((w) => stripped.endsWith(`.${w.suffix}`) && serviceVisibleTo(w.host, ns))?.host;
      if (host && host.name !== name) return { host, cname: host.name.startsWith('*.') ? stripped : host.name };
    }
  }
  return undefined;
}

/**
 * The proxy's decision for a parsed query: answered from `table` (A/AAAA of a known host: its
 * addresses of the asked family, NODATA when it has only the other family) or forwarded upstream
 * unchanged (any other name, type, class or opcode, several questions, a host without addresses).
 */
export function decideDnsQuery(query: DnsMessage, table: DnsTable, client: DnsClient): DnsDecision {
  const h = query.header;
  if (h.opcode !== OPCODE_QUERY || query.questions.length !== 1) return { kind: 'forward' };
  const q = query.questions[0]!;
  if (q.class !== CLASS_IN || (q.type !== TYPE_A && q.type !== TYPE_AAAA)) return { kind: 'forward' };
  const found = lookupHost(table, q.name, client.namespace);
  if (!found) return { kind: 'forward' };
  const { host, cname } = found;
  if (host.v4.length === 0 && host.v6.length === 0) return { kind: 'forward' };
  // Records are owned by the CNAME's target, else by the asked name (a wildcard's too).
  const owner = cname ?? q.name;
  const addrs = q.type === TYPE_A ? host.v4 : host.v6;
  const answers: DnsRecord[] = [];
  if (cname !== undefined && cname !== q.name) answers.push({ name: q.name, type: TYPE_CNAME, class: CLASS_IN, ttl: LOCAL_TTL_SECONDS, data: cname });
  for (const a of addrs) answers.push({ name: owner, type: q.type, class: CLASS_IN, ttl: LOCAL_TTL_SECONDS, data: a });
  return { kind: 'answer', host: host.name, response: answerTo(query, RCODE_NOERROR, answers) };
}
