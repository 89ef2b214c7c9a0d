/**
 * Services of a local cluster (what kube-proxy does): every node's nft table DNATs each TCP and
 * UDP ClusterIP port to the ready endpoints of the Service's EndpointSlices (for pods the mesh
 * does not capture; captured pods' traffic is redirected before it reaches the node). Names are
 * the cluster DNS's (cluster-dns.ts). Reads Services and EndpointSlices as its own identity.
 *
 * Invariant: rules are rewritten only when their text changes, one pass at a time.
 */
import type { Logger } from '../shared/log.js';
import type { KubeObject } from '../controller/objects.js';
import { Informer, type KubeClient } from './kube-client.js';
import { applyServiceRules, renderServiceRules, type ServiceRule } from './network.js';
import type { NodePlan } from './plan.js';
import { rec } from './controllers/queue.js';
import { SERVICE_NAME_LABEL } from './controllers/endpointslice.js';

/** kube-proxy's view: every TCP and UDP ClusterIP port and its endpoints (ready ones; serving terminating ones when none is ready). */
export function serviceRulesFromSlices(services: KubeObject[], slices: KubeObject[]): ServiceRule[] {
  const rules: ServiceRule[] = [];
  const sorted = [...services].sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
  for (const s of sorted) {
    const spec = rec(s.spec);
    const vip = spec.clusterIP;
    if (typeof vip !== 'string' || vip === 'None' || vip === '') continue;
    const mine = slices.filter((sl) => sl.metadata.namespace === s.metadata.namespace && sl.metadata.labels?.[SERVICE_NAME_LABEL] === s.metadata.name);
    for (const p of (spec.ports ?? []) as Array<Record<string, unknown>>) {
      const protocol = p.protocol === undefined || p.protocol === 'TCP' ? 'tcp' : p.protocol === 'UDP' ? 'udp' : undefined;
      if (typeof p.port !== 'number' || protocol === undefined) continue;
      const ready: ServiceRule['endpoints'] = [];
      const serving: ServiceRule['endpoints'] = [];
      for (const sl of mine) {
        const sp = ((sl['ports'] ?? []) as Array<Record<string, unknown>>).find((x) => String(x['name'] ?? '') === String(p.name ?? '') && String(x['protocol'] ?? 'TCP') === String(p.protocol ?? 'TCP'));
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
      rules.push({ vip, protocol, port: p.port, endpoints });
    }
  }
  return rules;
}

export interface ServiceProxyOptions {
  client: KubeClient;
  prefix: string;
  nodes: readonly NodePlan[];
  log: Logger;
}

export class ServiceProxy {
  private readonly services: Informer;
  private readonly slices: Informer;
  private lastRules = '';
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly opts: ServiceProxyOptions) {
    const log = opts.log.child({ component: 'services' });
    this.services = new Informer({ client: opts.client, path: '/api/v1/services', apiVersion: 'v1', kind: 'Service', log, onEvent: () => this.schedule() });
    this.slices = new Informer({ client: opts.client, path: '/apis/discovery.k8s.io/v1/endpointslices', apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', log, onEvent: () => this.schedule() });
  }

  async start(): Promise<void> {
    await Promise.all([this.services.start(), this.slices.start()]);
    this.schedule();
    await this.queue;
  }

  private schedule(): void {
    if (this.closed) return;
    this.queue = this.queue.then(() => this.sync()).catch((e) => this.opts.log.error({ err: e }, 'services sync failed'));
  }

  private async sync(): Promise<void> {
    if (this.closed || !this.services.ready || !this.slices.ready) return;
    const rules = serviceRulesFromSlices(this.services.list(), this.slices.list());
    const rendered = renderServiceRules(this.opts.prefix, rules);
    if (rendered === this.lastRules) return;
    for (const n of this.opts.nodes) await applyServiceRules(this.opts.prefix, n, rules);
    this.lastRules = rendered;
  }

  async stop(): Promise<void> {
    this.closed = true;
    this.services.stop();
    this.slices.stop();
    await this.queue.catch(() => undefined);
  }
}
