/** The translation input grouped by kind, plus options and the condition sink shared by all steps. */
import { kindRef, objectKey, REF_GATEWAY_API_GATEWAY, type KubeObject } from '../objects.js';
import { compareStrings, nsOf } from './util.js';

export interface TranslateOptions {
  trustDomain: string;
  clusterId: string;
  clusterDomain: string;
  rootNamespace: string;
}

export const DEFAULT_TRANSLATE_OPTIONS: Readonly<TranslateOptions> = Object.freeze({
  trustDomain: 'cluster.local',
  clusterId: 'local',
  clusterDomain: 'cluster.local',
  rootNamespace: 'istio-system',
});

/** A status condition translation wants written on an object (by the status writer). */
export interface TranslateCondition {
  /** objectKey() of the object it belongs to. */
  objectKey: string;
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export interface TranslateIndex {
  opts: TranslateOptions;
  namespaces: Map<string, KubeObject>;
  pods: KubeObject[];
  services: KubeObject[];
  gateways: KubeObject[];
  gatewayClasses: Map<string, KubeObject>;
  peerAuthentications: KubeObject[];
  authorizationPolicies: KubeObject[];
  conditions: TranslateCondition[];
}

/** Groups objects by the kinds translation reads; each list sorted by namespace/name. */
export function buildIndex(objects: readonly KubeObject[], opts: TranslateOptions): TranslateIndex {
  const idx: TranslateIndex = {
    opts,
    namespaces: new Map(),
    pods: [],
    services: [],
    gateways: [],
    gatewayClasses: new Map(),
    peerAuthentications: [],
    authorizationPolicies: [],
    conditions: [],
  };
  const sorted = [...objects].sort((a, b) => compareStrings(`${nsOf(a)}/${a.metadata.name}`, `${nsOf(b)}/${b.metadata.name}`));
  for (const o of sorted) {
    switch (kindRef(o)) {
      case 'Namespace':
        idx.namespaces.set(o.metadata.name, o);
        break;
      case 'Pod':
        idx.pods.push(o);
        break;
      case 'Service':
        idx.services.push(o);
        break;
      case REF_GATEWAY_API_GATEWAY:
        idx.gateways.push(o);
        break;
      case 'GatewayClass':
        idx.gatewayClasses.set(o.metadata.name, o);
        break;
      case 'PeerAuthentication':
        idx.peerAuthentications.push(o);
        break;
      case 'AuthorizationPolicy':
        idx.authorizationPolicies.push(o);
        break;
    }
  }
  return idx;
}

export function addCondition(idx: TranslateIndex, obj: KubeObject, c: Omit<TranslateCondition, 'objectKey'>): void {
  idx.conditions.push({ objectKey: objectKey(obj), ...c });
}
