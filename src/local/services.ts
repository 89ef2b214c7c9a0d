/**
 * Services and names of a local cluster (what kube-proxy and the cluster DNS do): every node's
 * nft table DNATs each ClusterIP port to the ready endpoints of the Service's EndpointSlices (for
 * pods the mesh does not capture; captured pods' traffic is redirected before it reaches the
 * node), and every pod's hosts file resolves `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc` and
 * `<svc>.<ns>.svc.cluster.local` to ClusterIPs. Reads Services and EndpointSlices as its own
 * identity; node runtimes register the pods whose hosts files it keeps.
 *
 * Invariant: rules and hosts files are rewritten only when their text changes, one pass at a time.
 */
import type { Logger } from '../shared/log.js';
import type { KubeObject } from '../controller/objects.js';
import { Informer, type KubeClient } from './kube-client.js';
import { applyServiceRules, renderServiceRules, writePodDns, type ServiceRule } from './network.js';
import type { NodePlan } from './plan.js';
import { renderHosts } from './workloads.js';
import { rec } from './controllers/queue.js';
import { SERVICE_NAME_LABEL } from './controllers/endpointslice.js';

/** kube-proxy's view: every TCP ClusterIP port and its endpoints (ready ones; serving terminating ones when none is ready). */
export function serviceRulesFromSlices(services: KubeObject[], slices: KubeObject[]): ServiceRule[] {
  const rules: ServiceRule[] = [];
  const sorted = [...services].sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
  for (const s of sorted) {
    const spec = rec(s.spec);
    const vip = spec.clusterIP;
    if (typeof vip !== 'string' || vip === 'None' || vip === '') continue;
    const mine = slices.filter((sl) => sl.metadata.namespace === s.metadata.namespace && sl.metadata.labels?.[SERVICE_NAME_LABEL] === s.metadata.name);
    for (const p of (spec.ports ?? []) as Array<Record<string, unknown>>) {
      if (typeof p.port !== 'number' || (p.protocol !== undefined && p.protocol !== 'TCP')) continue;
      const ready: ServiceRule['endpoints'] = [];
      const serving: ServiceRule['endpoints'] = [];
      for (const sl of mine) {
        const sp = ((sl['ports'] ?? []) as Array<Record<string, unknown>>).find((x) => String(x['name'] ?? '') === String(p.name ?? ''));
        if (!sp || typeof sp['port'] !== 'number') continue;
        for (const e of (sl['endpoints'] ?? []) as Array<Record<string, unknown>>) {
          const c = rec(e['conditions']);
          for (const ip of (e['addresses'] ?? []) as string[]) {
            if (c['ready'] !== false) ready.push({ ip, port: sp['port'] });
            else if (c['serving'] === true) serving.push({ ip, port: sp['port'] });
          }
        }
      }
      const endpoints = (ready.length > 0 ? ready : serving).sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port));
      rules.push({ vip, port: p.port, endpoints });
    }
  }
  return rules;
}

/** A pod whose hosts file this component keeps. */
export interface DnsPod {
  name: string;
  namespace: string;
  ip: string;
  netns: string;
}

export interface ServicesOptions {
  client: KubeClient;
  prefix: string;
  nodes: readonly NodePlan[];
  log: Logger;
}

export class ServicesAndDns {
  private readonly services: Informer;
  private readonly slices: Informer;
  private readonly pods = new Map<string, DnsPod>();
  private readonly hosts = new Map<string, string>();
  private lastRules = '';
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly opts: ServicesOptions) {
    const log = opts.log.child({ component: 'services' });
    this.services = new Informer({ client: opts.client, path: '/api/v1/services', apiVersion: 'v1', kind: 'Service', log, onEvent: () => this.schedule() });
    this.slices = new Informer({ client: opts.client, path: '/apis/discovery.k8s.io/v1/endpointslices', apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', log, onEvent: () => this.schedule() });
  }

  async start(): Promise<void> {
    await Promise.all([this.services.start(), this.slices.start()]);
    this.schedule();
    await this.queue;
  }

  /** The Services as last seen (for status). */
  serviceList(): KubeObject[] {
    return this.services.list();
  }

  /** Writes the pod's hosts file and resolv.conf now, and keeps the hosts file current. */
  async registerPod(key: string, pod: DnsPod): Promise<void> {
    this.pods.set(key, pod);
    await this.writeHosts(key, pod);
  }

  unregisterPod(key: string): void {
    this.pods.delete(key);
    this.hosts.delete(key);
  }

  /** Resolves once every change seen so far is applied. */
  async flush(): Promise<void> {
    this.schedule();
    await this.queue;
  }

  private schedule(): void {
    if (this.closed) return;
    this.queue = this.queue.then(() => this.sync()).catch((e) => this.opts.log.error({ err: e }, 'services sync failed'));
  }

  private async writeHosts(key: string, pod: DnsPod): Promise<void> {
    const text = renderHosts({ name: pod.name, namespace: pod.namespace, ip: pod.ip }, this.services.list());
    if (this.hosts.get(key) === text) return;
    await writePodDns(pod.netns, text, pod.namespace);
    this.hosts.set(key, text);
  }

  private async sync(): Promise<void> {
    if (this.closed || !this.services.ready || !this.slices.ready) return;
    const rules = serviceRulesFromSlices(this.services.list(), this.slices.list());
    const rendered = renderServiceRules(this.opts.prefix, rules);
    if (rendered !== this.lastRules) {
      for (const n of this.opts.nodes) await applyServiceRules(this.opts.prefix, n, rules);
      this.lastRules = rendered;
    }
    for (const [key, pod] of this.pods) await this.writeHosts(key, pod);
  }

  async stop(): Promise<void> {
    this.closed = true;
    this.services.stop();
    this.slices.stop();
    await this.queue.catch(() => undefined);
  }
}
