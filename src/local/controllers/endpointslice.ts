/**
 * The EndpointSlice controller: for every Service with a selector, the slices listing the pods it
 * selects (label `kubernetes.io/service-name`, owned by the Service), one slice per distinct set
 * of resolved target ports (a named targetPort may resolve differently per pod), each endpoint
 * with its address, node, pod reference and conditions: `ready` (the pod is Ready and not being
 * deleted), `serving` (the pod is Ready), `terminating` (it is being deleted). A Service selecting
 * nothing gets one empty slice, as upstream's placeholder. `desiredSlices` decides (pure).
 */
import type { Logger } from '../../shared/log.js';
import type { KubeObject } from '../../controller/objects.js';
import { Informer, isAlreadyExists, type KubeClient } from '../kube-client.js';
import { WorkQueue, controllerRef, nodeNameOf, nsName, podIp, podPhase, rec, serviceSelects, splitKey, stableJson } from './queue.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const MANAGED_BY = 'endpointslice-controller.k8s.io';

interface SlicePort {
  name: string;
  port: number;
  protocol: string;
  appProtocol?: string;
}

/** A Service port's target on one pod: a number, or a named container port of that pod. */
export function resolvePort(pod: KubeObject, targetPort: unknown, port: number): number | undefined {
  if (typeof targetPort === 'number') return targetPort;
  if (targetPort === undefined || targetPort === '') return port;
  if (typeof targetPort === 'string' && /^\d+$/.test(targetPort)) return Number(targetPort);
  for (const c of (rec(pod.spec).containers ?? []) as Array<Record<string, unknown>>) {
    for (const p of (c.ports ?? []) as Array<Record<string, unknown>>) {
      if (p.name === targetPort && typeof p.containerPort === 'number') return p.containerPort;
    }
  }
  return undefined;
}

function isReadyCondition(pod: KubeObject): boolean {
  const conds = (rec(pod.status).conditions ?? []) as Array<Record<string, unknown>>;
  return conds.some((c) => c.type === 'Ready' && c.status === 'True');
}

/** Short stable suffix naming a slice by its port set. */
function portsKey(ports: SlicePort[]): string {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(stableJson(ports))) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(36);
}

/** The slices Service `svc` should have, given the pods of its namespace. */
export function desiredSlices(svc: KubeObject, pods: KubeObject[]): KubeObject[] {
  const spec = rec(svc.spec);
  const svcPorts = (spec.ports ?? []) as Array<Record<string, unknown>>;
  const groups = new Map<string, { ports: SlicePort[]; endpoints: Array<Record<string, unknown>> }>();
  const selected = pods
    .filter((p) => serviceSelects(spec.selector, p.metadata.labels) && podIp(p) !== undefined && !['Succeeded', 'Failed'].includes(podPhase(p)))
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  for (const pod of selected) {
    const ports: SlicePort[] = [];
    for (const sp of svcPorts) {
      if (typeof sp.port !== 'number') continue;
      const target = resolvePort(pod, sp.targetPort, sp.port);
      if (target === undefined) continue;
      ports.push({ name: String(sp.name ?? ''), port: target, protocol: String(sp.protocol ?? 'TCP'), ...(typeof sp.appProtocol === 'string' ? { appProtocol: sp.appProtocol } : {}) });
    }
    const key = portsKey(ports);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { ports, endpoints: [] }));
    const terminating = pod.metadata.deletionTimestamp !== undefined;
    const serving = isReadyCondition(pod);
    g.endpoints.push({
      addresses: [podIp(pod)!],
      conditions: { ready: serving && !terminating, serving, terminating },
      ...(nodeNameOf(pod) ? { nodeName: nodeNameOf(pod) } : {}),
      targetRef: { kind: 'Pod', namespace: pod.metadata.namespace ?? 'default', name: pod.metadata.name, uid: pod.metadata.uid ?? '' },
    });
  }
  if (groups.size === 0) groups.set('empty', { ports: [], endpoints: [] });
  const owner = controllerRef({ ...svc, apiVersion: 'v1', kind: 'Service' });
  return [...groups].map(([key, g]) => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${svc.metadata.name.slice(0, 50)}-${key}`,
      namespace: svc.metadata.namespace ?? 'default',
      labels: { [SERVICE_NAME_LABEL]: svc.metadata.name, [MANAGED_BY_LABEL]: MANAGED_BY },
      ownerReferences: [owner],
    },
    addressType: 'IPv4',
    endpoints: g.endpoints,
    ports: g.ports,
  }));
}

export class EndpointSliceController {
  private readonly services: Informer;
  private readonly pods: Informer;
  private readonly slices: Informer;
  private readonly queue: WorkQueue;

  constructor(
    private readonly client: KubeClient,
    log: Logger,
  ) {
    this.queue = new WorkQueue('endpointslice', (key) => this.sync(key), log);
    const onPod = (p: KubeObject, old?: KubeObject): void => {
      for (const s of this.services.list()) {
        if (s.metadata.namespace !== p.metadata.namespace) continue;
        const sel = rec(s.spec).selector;
        if (serviceSelects(sel, p.metadata.labels) || (old && serviceSelects(sel, old.metadata.labels))) this.queue.add(nsName(s));
      }
    };
    this.services = new Informer({ client, path: '/api/v1/services', apiVersion: 'v1', kind: 'Service', log, onEvent: (_t, s) => this.queue.add(nsName(s)) });
    this.pods = new Informer({ client, path: '/api/v1/pods', apiVersion: 'v1', kind: 'Pod', log, onEvent: (_t, p, old) => onPod(p, old) });
    this.slices = new Informer({
      client,
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}`,
      log,
      onEvent: (_t, s) => {
        const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
        if (svc) this.queue.add(`${s.metadata.namespace}/${svc}`);
      },
    });
  }

  async start(): Promise<void> {
    await Promise.all([this.services.start(), this.pods.start(), this.slices.start()]);
  }

  stop(): void {
    this.queue.stop();
    this.services.stop();
    this.pods.stop();
    this.slices.stop();
  }

  private async sync(key: string): Promise<void> {
    const [ns, name] = splitKey(key);
    const svc = this.services.get(ns, name);
    const existing = this.slices.list().filter((s) => s.metadata.namespace === ns && s.metadata.labels?.[SERVICE_NAME_LABEL] === name);
    const base = `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(ns)}/endpointslices`;
    const want = svc && rec(svc.spec).selector && svc.metadata.deletionTimestamp === undefined ? desiredSlices(svc, this.pods.list().filter((p) => p.metadata.namespace === ns)) : [];
    for (const w of want) {
      const cur = existing.find((e) => e.metadata.name === w.metadata.name);
      if (!cur) {
        try {
          await this.client.create(base, w);
        } catch (e) {
          if (!isAlreadyExists(e)) throw e;
        }
      } else if (stableJson([cur['endpoints'] ?? [], cur['ports'] ?? []]) !== stableJson([w['endpoints'], w['ports']])) {
        await this.client.request({ method: 'PUT', path: `${base}/${encodeURIComponent(w.metadata.name)}`, body: { ...w, metadata: { ...w.metadata, resourceVersion: cur.metadata.resourceVersion } } });
      }
    }
    for (const e of existing) if (!want.some((w) => w.metadata.name === e.metadata.name)) await this.client.delete(`${base}/${encodeURIComponent(e.metadata.name)}`);
  }
}
