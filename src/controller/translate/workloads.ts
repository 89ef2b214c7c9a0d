/** Pods → Workloads: enrollment, identity, addresses, health, telemetry names, locality. */
import type { Locality, Workload } from '../../shared/model.js';
import type { KubeObject } from '../objects.js';
import type { TranslateIndex } from './object-index.js';
import { annotationsOf, asArray, asRecord, asString, labelsOf, nsOf } from './util.js';

export const LABEL_DATAPLANE_MODE = 'istio.io/dataplane-mode';
export const ANNOTATION_SIDECAR_STATUS = 'sidecar.istio.io/status';
export const ANNOTATION_NETNS = 'ambit.dev/netns';
/** Istio's per-pod DNS capture switch (hidden in Istio, honoured by ztunnel): "false" opts the pod out. */
export const ANNOTATION_DNS_CAPTURE = 'ambient.istio.io/dns-capture';
export const LABEL_ZONE = 'topology.kubernetes.io/zone';
export const LABEL_REGION = 'topology.kubernetes.io/region';

/**
 * Istio's ambient enrollment: pod label `istio.io/dataplane-mode` wins over the namespace's;
 * `ambient` enrolls, `none` opts out; sidecar-injected and host-network pods never enroll.
 */
export function isEnrolled(pod: KubeObject, namespace: KubeObject | undefined): boolean {
  if (annotationsOf(pod)[ANNOTATION_SIDECAR_STATUS] !== undefined) return false;
  if (pod.spec?.['hostNetwork'] === true) return false;
  const podMode = labelsOf(pod)[LABEL_DATAPLANE_MODE];
  if (podMode !== undefined) return podMode === 'ambient';
  return labelsOf(namespace)[LABEL_DATAPLANE_MODE] === 'ambient';
}

export function podPhase(pod: KubeObject): string {
  return asString(pod.status?.['phase']) ?? 'Pending';
}

export function isPodRunning(pod: KubeObject): boolean {
  return podPhase(pod) === 'Running';
}

/** Terminated pods (Succeeded/Failed) are not workloads any more. */
export function isPodTerminated(pod: KubeObject): boolean {
  const phase = podPhase(pod);
  return phase === 'Succeeded' || phase === 'Failed';
}

export function isPodReady(pod: KubeObject): boolean {
  return asArray(pod.status?.['conditions']).some((c) => asRecord(c)['type'] === 'Ready' && asRecord(c)['status'] === 'True');
}

/** status.podIPs (all families), falling back to status.podIP. */
export function podIps(pod: KubeObject): string[] {
  const ips = asArray(pod.status?.['podIPs'])
    .map((e) => asString(asRecord(e)['ip']))
    .filter((ip): ip is string => !!ip);
  const single = asString(pod.status?.['podIP']);
  if (single) ips.unshift(single);
  return [...new Set(ips)];
}

export function podServiceAccount(pod: KubeObject): string {
  return asString(pod.spec?.['serviceAccountName']) || asString(pod.spec?.['serviceAccount']) || 'default';
}

export function workloadUid(clusterId: string, namespace: string, name: string): string {
  return `${clusterId}//v1/Pod/${namespace}/${name}`;
}

const CRONJOB_JOB_NAME = /^(.+)-\d{8,10}$/;

/** Owning workload from ownerReferences (Deployment via its ReplicaSet, Job, CronJob) or pod-template-hash. */
export function workloadOwner(pod: KubeObject): { workloadName: string; workloadType: Workload['workloadType'] } {
  const owners = pod.metadata.ownerReferences ?? [];
  const owner = owners.find((o) => o.controller === true) ?? owners[0];
  const hash = labelsOf(pod)['pod-template-hash'];
  if (owner) {
    switch (owner.kind) {
      case 'Deployment':
        return { workloadName: owner.name, workloadType: 'deployment' };
      case 'ReplicaSet':
        if (hash && owner.name.endsWith(`-${hash}`)) return { workloadName: owner.name.slice(0, -hash.length - 1), workloadType: 'deployment' };
        return { workloadName: owner.name, workloadType: 'pod' };
      case 'Job': {
        const m = CRONJOB_JOB_NAME.exec(owner.name);
        if (m) return { workloadName: m[1]!, workloadType: 'cronjob' };
        return { workloadName: owner.name, workloadType: 'job' };
      }
      case 'CronJob':
        return { workloadName: owner.name, workloadType: 'cronjob' };
      default:
        return { workloadName: owner.name, workloadType: 'pod' };
    }
  }
  if (hash) {
    const marker = `-${hash}-`;
    const at = pod.metadata.name.lastIndexOf(marker);
    if (at > 0) return { workloadName: pod.metadata.name.slice(0, at), workloadType: 'deployment' };
  }
  return { workloadName: pod.metadata.name, workloadType: 'pod' };
}

function firstLabel(labels: Record<string, string>, keys: string[]): string | undefined {
  for (const k of keys) if (labels[k]) return labels[k];
  return undefined;
}

/**
 * A pod's locality: its own topology labels, else its node's (where Kubernetes puts them; Istio
 * reads the node's too), else undefined.
 */
export function podLocality(pod: KubeObject, node?: KubeObject): Locality | undefined {
  for (const source of [pod, node]) {
    const l = labelsOf(source);
    const zone = l[LABEL_ZONE];
    const region = l[LABEL_REGION];
    if (zone || region) return { region: region ?? '', zone: zone ?? '', subzone: '' };
  }
  return undefined;
}

/**
 * The Workload of one pod, with `services`, `waypoint`, `authorizationPolicies` and the
 * PeerAuthentication fields left at their defaults for the later steps to fill.
 */
export function buildWorkload(idx: TranslateIndex, pod: KubeObject): Workload {
  const ns = nsOf(pod);
  const labels = labelsOf(pod);
  const owner = workloadOwner(pod);
  const w: Workload = {
    uid: workloadUid(idx.opts.clusterId, ns, pod.metadata.name),
    name: pod.metadata.name,
    namespace: ns,
    serviceAccount: podServiceAccount(pod),
    trustDomain: idx.opts.trustDomain,
    node: asString(pod.spec?.['nodeName']) ?? '',
    addresses: podIps(pod),
    tunnelProtocol: isEnrolled(pod, idx.namespaces.get(ns)) ? 'HBONE' : 'NONE',
    canonicalName: firstLabel(labels, ['service.istio.io/canonical-name', 'app.kubernetes.io/name', 'app']) ?? owner.workloadName,
    canonicalRevision: firstLabel(labels, ['service.istio.io/canonical-revision', 'app.kubernetes.io/version', 'version']) ?? 'latest',
    workloadName: owner.workloadName,
    workloadType: owner.workloadType,
    labels: { ...labels },
    services: {},
    status: isPodRunning(pod) && isPodReady(pod) ? 'Healthy' : 'Unhealthy',
    authorizationPolicies: [],
    peerAuthentication: 'PERMISSIVE',
    portPeerAuthentication: {},
  };
  const locality = podLocality(pod, idx.nodes.get(w.node));
  if (locality) w.locality = locality;
  const netns = annotationsOf(pod)[ANNOTATION_NETNS];
  if (netns) w.netns = netns;
  // Istio's per-pod DNS capture switch; only "false" opts out (the mesh-wide default is on).
  if (annotationsOf(pod)[ANNOTATION_DNS_CAPTURE]?.trim().toLowerCase() === 'false') w.dnsCapture = false;
  return w;
}

