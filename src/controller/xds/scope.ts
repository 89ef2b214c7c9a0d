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
import type { NodeInfo } from '../../shared/xds/node.js';
import type { MeshTranslation } from '../translate/translate.js';
import { buildSnapshot, type Snapshot } from './snapshot.js';

export class RoleScopes {
  private agents: Snapshot | undefined;
  /** Snapshots with route configs, per scope (`waypoint:<ns/name>`, `gateway:<pod>`). */
  private readonly withRoutes = new Map<string, Snapshot>();

  constructor(
    private readonly t: MeshTranslation,
    previous?: RoleScopes,
  ) {
    if (!previous) return;
    const p = previous.t;
    if (p.model !== t.model) return;
    this.agents = previous.agents;
    if (p.routes.routes === t.routes.routes && p.listeners.byPod === t.listeners.byPod) for (const [k, v] of previous.withRoutes) this.withRoutes.set(k, v);
  }

  /** The snapshot of `node` (agents' when no node). */
  for(node?: NodeInfo): Snapshot {
    const model = this.t.model;
    if (!node || node.role === 'agent') {
      this.agents ??= buildSnapshot(model);
      return this.agents;
    }
    const waypoint = node.metadata?.['waypoint'] ?? '';
    const pod = node.metadata?.['pod'] ?? '';
    const key = node.role === 'gateway' ? `gateway:${pod}` : `waypoint:${waypoint}`;
    let snap = this.withRoutes.get(key);
    if (!snap) {
      if (node.role === 'gateway' && pod !== '') {
        const listeners = this.t.listeners.byPod.get(pod) ?? [];
        const served = new Set(listeners.flatMap((l) => l.gateways));
        const routes = this.t.routes.routes.filter((r) => (r.gateway === undefined ? true : served.has(r.gateway)));
        snap = buildSnapshot({ ...model, routes, listeners });
      } else {
        const routes = this.t.routes.routes.filter((r) => (node.role === 'gateway' ? r.gateway !== undefined : r.gateway === undefined && (waypoint === '' || r.waypoint === waypoint)));
        snap = buildSnapshot({ ...model, routes });
      }
      this.withRoutes.set(key, snap);
    }
    return snap;
  }
}
