/**
 * Role scoping: what each kind of subscriber holds, beside the snapshot it is built into. Agents
 * get workloads, services and authorizations; a waypoint also gets the mesh route configs of the
 * services bound to it (node metadata `waypoint` = `ns/name`; all mesh configs when absent); a
 * gateway pod (node metadata `pod` = `ns/name`) gets the listeners of the Gateways selecting it,
 * their ingress route configs and the mesh configs (for destination policies); a gateway without
 * `pod` gets every ingress route config. Snapshots are built once per scope and translation, and
 * kept from the previous translation's scopes when what they are built from is the same objects
 * (translate/stable.ts keeps unchanged parts identical).
 */
import { authorizationResourceName, serviceResourceName, TYPE_AUTHORIZATION, TYPE_SERVICE, TYPE_WORKLOAD, workloadResourceName } from '../../shared/resources.js';
import type { NodeInfo } from '../../shared/xds/node.js';
import type { MeshTranslation, TranslateResult } from '../translate/translate.js';
import { buildSnapshot, deriveByName, type Snapshot } from './snapshot.js';

export class RoleScopes {
  private agents: Snapshot | undefined;
  /** The previous translation's agents' snapshot and model, to derive this one's maps from. */
  private previousAgents: { model: TranslateResult; snapshot: Snapshot } | undefined;
  /** Snapshots with route configs, per scope (`waypoint:<ns/name>`, `gateway:<pod>`). */
  private readonly withRoutes = new Map<string, Snapshot>();

  constructor(
    private readonly t: MeshTranslation,
    previous?: RoleScopes,
  ) {
    if (!previous) return;
    const p = previous.t;
    if (p.model !== t.model) {
      const snapshot = previous.agents;
      if (snapshot) this.previousAgents = { model: p.model, snapshot };
      return;
    }
    this.agents = previous.agents;
    if (p.routes.routes === t.routes.routes && p.listeners.byPod === t.listeners.byPod) for (const [k, v] of previous.withRoutes) this.withRoutes.set(k, v);
  }

  /** The snapshot of `node` (agents' when no node). */
  for(node?: NodeInfo): Snapshot {
    if (!node || node.role === 'agent') return this.agentSnapshot();
    const waypoint = node.metadata?.['waypoint'] ?? '';
    const pod = node.metadata?.['pod'] ?? '';
    const key = node.role === 'gateway' ? `gateway:${pod}` : `waypoint:${waypoint}`;
    let snap = this.withRoutes.get(key);
    if (!snap) {
      if (node.role === 'gateway' && pod !== '') {
        const listeners = this.t.listeners.byPod.get(pod) ?? [];
        const served = new Set(listeners.flatMap((l) => l.gateways));
        const routes = this.t.routes.routes.filter((r) => (r.gateway === undefined ? true : served.has(r.gateway)));
        snap = this.withAgents(buildSnapshot({ routes, listeners }));
      } else {
        const routes = this.t.routes.routes.filter((r) => (node.role === 'gateway' ? r.gateway !== undefined : r.gateway === undefined && (waypoint === '' || r.waypoint === waypoint)));
        snap = this.withAgents(buildSnapshot({ routes }));
      }
      this.withRoutes.set(key, snap);
    }
    return snap;
  }

  /** Workloads, services and authorizations: derived from the previous translation's maps where the model arrays line up. */
  private agentSnapshot(): Snapshot {
    if (this.agents) return this.agents;
    const model = this.t.model;
    const prev = this.previousAgents;
    const from = <K extends 'workloads' | 'services' | 'authorizations'>(key: K, type: typeof TYPE_WORKLOAD | typeof TYPE_SERVICE | typeof TYPE_AUTHORIZATION) => {
      const map = prev?.snapshot.resources[type];
      return prev && map ? { items: prev.model[key], map } : undefined;
    };
    this.agents = {
      resources: {
        [TYPE_WORKLOAD]: deriveByName(from('workloads', TYPE_WORKLOAD), model.workloads, workloadResourceName),
        [TYPE_SERVICE]: deriveByName(from('services', TYPE_SERVICE), model.services, serviceResourceName),
        [TYPE_AUTHORIZATION]: deriveByName(from('authorizations', TYPE_AUTHORIZATION), model.authorizations, authorizationResourceName),
      },
    };
    this.previousAgents = undefined; // let the previous translation go
    return this.agents;
  }

  /** A waypoint's or gateway's snapshot: the agents' model maps (shared) plus its route configs and listeners. */
  private withAgents(routed: Snapshot): Snapshot {
    const agents = this.agentSnapshot().resources;
    return { resources: { ...routed.resources, [TYPE_WORKLOAD]: agents[TYPE_WORKLOAD], [TYPE_SERVICE]: agents[TYPE_SERVICE], [TYPE_AUTHORIZATION]: agents[TYPE_AUTHORIZATION] } };
  }
}
