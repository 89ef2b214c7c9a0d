/**
 * Ingress gateway pods and the selector-attached policies they enforce themselves (pure). A pod is
 * an ingress gateway pod when an Istio Gateway's `spec.selector` matches its labels (any
 * namespace, as Istio), or when it is the pod of a Gateway API Gateway of an ingress class
 * (label `gateway.networking.k8s.io/gateway-name` in the Gateway's namespace). Istio's ingress
 * gateways are Envoy proxies that apply the AuthorizationPolicies and RequestAuthentications
 * selecting them as a sidecar would: those of the pod's namespace (every one without a selector,
 * the ones whose `selector.matchLabels` match) and those of the root namespace (every namespace).
 */
import { REF_ISTIO_GATEWAY, type KubeObject } from '../objects.js';
import type { ObjectIndex } from './object-index.js';
import { isIngressGateway } from './gateway-api-listeners.js';
import { LABEL_GATEWAY_NAME } from './waypoints.js';
import { asRecord, compareStrings, labelsOf, matchesLabels, nsOf, policySelector } from './util.js';
import { isPodTerminated } from './workloads.js';

export interface GatewayPod {
  /** `ns/name` of the pod. */
  key: string;
  pod: KubeObject;
  /** The Gateways (`ns/name`, Istio and Gateway API) it serves, sorted. */
  gateways: string[];
}

/** Every running ingress gateway pod, by `ns/name`. */
export function ingressGatewayPods(idx: Pick<ObjectIndex, 'of' | 'pods' | 'gateways'>): Map<string, GatewayPod> {
  const out = new Map<string, GatewayPod>();
  const istio = idx.of(REF_ISTIO_GATEWAY).map((gw) => ({ key: `${nsOf(gw)}/${gw.metadata.name}`, selector: stringMap(asRecord(gw.spec)['selector']) }));
  const gwApi = idx.gateways.filter(isIngressGateway).map((gw) => ({ key: `${nsOf(gw)}/${gw.metadata.name}`, ns: nsOf(gw), name: gw.metadata.name }));
  for (const pod of idx.pods) {
    if (isPodTerminated(pod)) continue;
    const labels = labelsOf(pod);
    const gateways = [
      ...istio.filter((g) => Object.keys(g.selector).length > 0 && matchesLabels(g.selector, labels)).map((g) => g.key),
      ...gwApi.filter((g) => g.ns === nsOf(pod) && labels[LABEL_GATEWAY_NAME] === g.name).map((g) => g.key),
    ];
    if (gateways.length === 0) continue;
    const key = `${nsOf(pod)}/${pod.metadata.name}`;
    out.set(key, { key, pod, gateways: [...new Set(gateways)].sort(compareStrings) });
  }
  return out;
}

/**
 * True when every pod a selector policy can select is an ingress gateway pod, judged from the
 * objects alone: its `matchLabels` include all of an Istio Gateway's selector, or name an ingress
 * Gateway API Gateway's pods (gateway-name label). No pod is read, so one namespace's part of the
 * model (incremental.ts) decides as the whole model does.
 */
export function selectsOnlyGatewayPods(obj: KubeObject, idx: Pick<ObjectIndex, 'of' | 'gateways'>): boolean {
  const selector = policySelector(obj);
  if (!selector) return false;
  const istio = idx.of(REF_ISTIO_GATEWAY).map((gw) => stringMap(asRecord(gw.spec)['selector']));
  if (istio.some((s) => Object.keys(s).length > 0 && Object.entries(s).every(([k, v]) => selector[k] === v))) return true;
  const name = selector[LABEL_GATEWAY_NAME];
  return name !== undefined && idx.gateways.some((gw) => isIngressGateway(gw) && gw.metadata.name === name && nsOf(gw) === nsOf(obj));
}

/** True when a selector (or namespace-wide) policy `obj` applies to `pod` (Istio: its namespace, or the root namespace). */
export function policySelectsPod(obj: KubeObject, pod: KubeObject, rootNamespace: string): boolean {
  const ns = nsOf(obj);
  if (ns !== rootNamespace && ns !== nsOf(pod)) return false;
  const selector = policySelector(obj);
  return selector === undefined || matchesLabels(selector, labelsOf(pod));
}

/** The gateway pods a policy without targetRefs applies to, sorted by key. */
export function gatewayPodsOfPolicy(obj: KubeObject, pods: ReadonlyMap<string, GatewayPod>, rootNamespace: string): GatewayPod[] {
  return [...pods.values()].filter((p) => policySelectsPod(obj, p.pod, rootNamespace)).sort((a, b) => compareStrings(a.key, b.key));
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(asRecord(v))) if (typeof x === 'string') out[k] = x;
  return out;
}
