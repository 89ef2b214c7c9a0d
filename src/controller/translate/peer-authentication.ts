/**
 * PeerAuthentication resolution per workload: workload selector > namespace-wide > mesh-wide (root
 * namespace, no selector); UNSET inherits; DISABLE counts as PERMISSIVE (ambient always tunnels
 * with mTLS, so it cannot turn mTLS off). The agent enforces STRICT from the Workload fields.
 */
import type { Workload } from '../../shared/model.js';
import type { KubeObject } from '../objects.js';
import { addCondition, type TranslateIndex } from './object-index.js';
import type { PodWorkload } from './services.js';
import { asRecord, asString, compareAge, labelsOf, matchesLabels, nsOf, policySelector } from './util.js';

export const CONDITION_ACCEPTED = 'Accepted';

type Mode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

function modeOf(v: unknown): Mode {
  const m = asString(asRecord(v)['mode']);
  return m === 'DISABLE' || m === 'PERMISSIVE' || m === 'STRICT' ? m : 'UNSET';
}

function effective(mode: Mode): 'STRICT' | 'PERMISSIVE' {
  return mode === 'STRICT' ? 'STRICT' : 'PERMISSIVE';
}

/** Fills `peerAuthentication` and `portPeerAuthentication` on every workload and reports conditions. */
export function applyPeerAuthentication(idx: TranslateIndex, pods: readonly PodWorkload[]): void {
  const wide = new Map<string, KubeObject>();
  const conflicts = new Map<KubeObject, KubeObject>();
  for (const pa of [...idx.peerAuthentications].sort(compareAge)) {
    if (policySelector(pa)) continue;
    const prev = wide.get(nsOf(pa));
    if (prev) conflicts.set(pa, prev);
    else wide.set(nsOf(pa), pa);
  }
  const mesh = wide.get(idx.opts.rootNamespace);
  const selectorPolicies = idx.peerAuthentications.filter((pa) => policySelector(pa)).sort(compareAge);

  for (const { pod, workload } of pods) {
    const labels = labelsOf(pod);
    const own = selectorPolicies.find((pa) => nsOf(pa) === workload.namespace && matchesLabels(policySelector(pa)!, labels));
    const chain = [own, wide.get(workload.namespace), mesh].filter((p): p is KubeObject => p !== undefined);
    const mode = chain.map((p) => modeOf(p.spec?.['mtls'])).find((m) => m !== 'UNSET') ?? 'PERMISSIVE';
    workload.peerAuthentication = effective(mode);
    const ports: Workload['portPeerAuthentication'] = {};
    for (const [port, setting] of Object.entries(asRecord(own?.spec?.['portLevelMtls']))) {
      const m = modeOf(setting);
      ports[port] = m === 'UNSET' ? workload.peerAuthentication : effective(m);
    }
    workload.portPeerAuthentication = ports;
  }

  for (const pa of idx.peerAuthentications) {
    const winner = conflicts.get(pa);
    if (winner) {
      addCondition(idx, pa, {
        type: CONDITION_ACCEPTED,
        status: 'False',
        reason: 'Conflicted',
        message: `ignored: namespace ${nsOf(pa)} already has the older ${nsOf(pa) === idx.opts.rootNamespace ? 'mesh-wide' : 'namespace-wide'} PeerAuthentication ${winner.metadata.name}; only the oldest one applies`,
      });
      continue;
    }
    const disabled = [modeOf(pa.spec?.['mtls']), ...Object.values(asRecord(pa.spec?.['portLevelMtls'])).map(modeOf)].includes('DISABLE');
    addCondition(idx, pa, disabled
      ? {
          type: CONDITION_ACCEPTED,
          status: 'True',
          reason: 'PartiallyApplied',
          message: 'mode DISABLE is ignored in ambient mode (traffic between mesh workloads is always mTLS); it is treated as PERMISSIVE',
        }
      : { type: CONDITION_ACCEPTED, status: 'True', reason: 'Accepted', message: 'applied by the node agents' });
  }
}
