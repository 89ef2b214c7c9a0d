/**
 * Pods: defaults of the pod spec (shared with workload templates), ServiceAccount admission
 * (default account, the projected `kube-api-access-*` token volume), validation, the limits on
 * spec updates, pods/status semantics and graceful deletion.
 */
import { forbidden, fieldError, type FieldError } from '../status.js';
import { statusWithMetadata, type KindStrategy, type StrategyContext } from '../strategy.js';
import { clone, isMap, jsonEqual, type JsonMap, type KubeObject } from '../types.js';
import { dns1123Label, portProblem } from './names.js';

const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];
const RESTART_POLICIES = ['Always', 'OnFailure', 'Never'];

function imagePullPolicy(image: unknown): string {
  if (typeof image !== 'string') return 'IfNotPresent';
  const last = image.split('/').pop() ?? '';
  if (image.includes('@')) return 'IfNotPresent';
  const tag = last.includes(':') ? last.slice(last.indexOf(':') + 1) : '';
  return tag === '' || tag === 'latest' ? 'Always' : 'IfNotPresent';
}

function defaultContainer(c: JsonMap): void {
  c['imagePullPolicy'] ??= imagePullPolicy(c['image']);
  c['terminationMessagePath'] ??= '/dev/termination-log';
  c['terminationMessagePolicy'] ??= 'File';
  c['resources'] ??= {};
  if (Array.isArray(c['ports'])) for (const p of c['ports']) if (isMap(p)) p['protocol'] ??= 'TCP';
}

/** Defaults the real server applies to a pod spec (core/v1 defaults.go). */
export function defaultPodSpec(spec: JsonMap): void {
  spec['restartPolicy'] ??= 'Always';
  spec['dnsPolicy'] ??= 'ClusterFirst';
  spec['schedulerName'] ??= 'default-scheduler';
  spec['terminationGracePeriodSeconds'] ??= 30;
  spec['securityContext'] ??= {};
  spec['enableServiceLinks'] ??= true;
  for (const list of ['containers', 'initContainers']) {
    const cs = spec[list];
    if (Array.isArray(cs)) for (const c of cs) if (isMap(c)) defaultContainer(c);
  }
}

function podQosClass(spec: JsonMap): string {
  const cs = Array.isArray(spec['containers']) ? spec['containers'].filter(isMap) : [];
  let any = false;
  let guaranteed = cs.length > 0;
  for (const c of cs) {
    const r = isMap(c['resources']) ? c['resources'] : {};
    const limits = isMap(r['limits']) ? r['limits'] : {};
    const requests = isMap(r['requests']) ? r['requests'] : {};
    if (Object.keys(limits).length > 0 || Object.keys(requests).length > 0) any = true;
    for (const res of ['cpu', 'memory']) {
      if (limits[res] === undefined) guaranteed = false;
      if (requests[res] !== undefined && String(requests[res]) !== String(limits[res])) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

/** Validates a pod spec under `path` (`spec` or `spec.template.spec`). */
export function validatePodSpec(spec: unknown, path: string, restartPolicies = RESTART_POLICIES): FieldError[] {
  const errs: FieldError[] = [];
  if (!isMap(spec)) return [fieldError('Required', path, undefined)];
  const containers = spec['containers'];
  if (!Array.isArray(containers) || containers.length === 0) {
    errs.push(fieldError('Required', `${path}.containers`, undefined));
  }
  const volumes = new Set<string>();
  if (Array.isArray(spec['volumes'])) {
    spec['volumes'].forEach((v, i) => {
      const name = isMap(v) ? v['name'] : undefined;
      const p = `${path}.volumes[${i}].name`;
      if (typeof name !== 'string' || name === '') errs.push(fieldError('Required', p, undefined));
      else if (volumes.has(name)) errs.push(fieldError('Duplicate', p, name));
      else {
        const np = dns1123Label(name);
        if (np !== undefined) errs.push(fieldError('Invalid', p, name, np));
        volumes.add(name);
      }
    });
  }
  const names = new Set<string>();
  for (const list of ['initContainers', 'containers']) {
    const cs = spec[list];
    if (!Array.isArray(cs)) continue;
    cs.forEach((c, i) => {
      const p = `${path}.${list}[${i}]`;
      if (!isMap(c)) return;
      const name = c['name'];
      if (typeof name !== 'string' || name === '') errs.push(fieldError('Required', `${p}.name`, undefined));
      else if (names.has(name)) errs.push(fieldError('Duplicate', `${p}.name`, name));
      else {
        const np = dns1123Label(name);
        if (np !== undefined) errs.push(fieldError('Invalid', `${p}.name`, name, np));
        names.add(name);
      }
      if (typeof c['image'] !== 'string' || c['image'].trim() === '') errs.push(fieldError('Required', `${p}.image`, undefined));
      if (Array.isArray(c['ports'])) {
        c['ports'].forEach((port, j) => {
          if (!isMap(port)) return;
          const pp = `${p}.ports[${j}]`;
          const cp = portProblem(port['containerPort']);
          if (cp !== undefined) errs.push(fieldError('Invalid', `${pp}.containerPort`, port['containerPort'], cp));
          if (port['protocol'] !== undefined && !PROTOCOLS.includes(String(port['protocol']))) {
            errs.push(fieldError('NotSupported', `${pp}.protocol`, port['protocol'], 'supported values: "SCTP", "TCP", "UDP"'));
          }
        });
      }
      if (Array.isArray(c['volumeMounts'])) {
        c['volumeMounts'].forEach((m, j) => {
          if (!isMap(m)) return;
          const mp = `${p}.volumeMounts[${j}]`;
          if (typeof m['name'] !== 'string' || !volumes.has(m['name'])) errs.push(fieldError('NotFound', `${mp}.name`, m['name'] ?? ''));
          if (typeof m['mountPath'] !== 'string' || m['mountPath'] === '') errs.push(fieldError('Required', `${mp}.mountPath`, undefined));
        });
      }
      if (Array.isArray(c['env'])) {
        c['env'].forEach((e, j) => {
          if (isMap(e) && (typeof e['name'] !== 'string' || e['name'] === '')) errs.push(fieldError('Required', `${p}.env[${j}].name`, undefined));
        });
      }
    });
  }
  const rp = spec['restartPolicy'];
  if (rp !== undefined && !restartPolicies.includes(String(rp))) {
    errs.push(fieldError('NotSupported', `${path}.restartPolicy`, rp, `supported values: ${restartPolicies.map((x) => `"${x}"`).join(', ')}`));
  }
  return errs;
}

const SA_VOLUME_PREFIX = 'kube-api-access-';
const SA_MOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';
/** The projected token's lifetime the real admission plugin asks for (1 h + 7 s). */
const SA_TOKEN_SECONDS = 3607;

/** ServiceAccount admission: default account, must exist, projected API-access volume and mounts. */
function admitServiceAccount(pod: KubeObject, ctx: StrategyContext): void {
  const spec = pod['spec'] as JsonMap;
  const ns = pod.metadata.namespace ?? '';
  const saName = typeof spec['serviceAccountName'] === 'string' && spec['serviceAccountName'] !== '' ? spec['serviceAccountName'] : typeof spec['serviceAccount'] === 'string' && spec['serviceAccount'] !== '' ? spec['serviceAccount'] : 'default';
  spec['serviceAccountName'] = saName;
  spec['serviceAccount'] = saName;
  const sa = ctx.store.get('/serviceaccounts', ns, saName);
  if (sa === undefined) {
    throw forbidden({ group: '', resource: 'pods' }, pod.metadata.name ?? '', `error looking up service account ${ns}/${saName}: serviceaccount "${saName}" not found`);
  }
  const automount = spec['automountServiceAccountToken'] ?? sa['automountServiceAccountToken'];
  if (automount === false) return;
  const volumes = Array.isArray(spec['volumes']) ? (spec['volumes'] as JsonMap[]) : [];
  const hasMount = (c: JsonMap): boolean => Array.isArray(c['volumeMounts']) && c['volumeMounts'].some((m) => isMap(m) && m['mountPath'] === SA_MOUNT_PATH);
  const volName = SA_VOLUME_PREFIX + ctx.randomSuffix(5);
  volumes.push({
    name: volName,
    projected: {
      defaultMode: 420,
      sources: [
        { serviceAccountToken: { expirationSeconds: SA_TOKEN_SECONDS, path: 'token' } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
      ],
    },
  });
  spec['volumes'] = volumes;
  for (const list of ['initContainers', 'containers']) {
    const cs = spec[list];
    if (!Array.isArray(cs)) continue;
    for (const c of cs) {
      if (!isMap(c) || hasMount(c)) continue;
      const mounts = Array.isArray(c['volumeMounts']) ? (c['volumeMounts'] as JsonMap[]) : [];
      mounts.push({ name: volName, readOnly: true, mountPath: SA_MOUNT_PATH });
      c['volumeMounts'] = mounts;
    }
  }
}

const DEFAULT_TOLERATIONS = ['node.kubernetes.io/not-ready', 'node.kubernetes.io/unreachable'];

/**
 * Pod spec fields an update may change: container images, activeDeadlineSeconds, added
 * tolerations; everything else is fixed once created.
 */
function mutableSpecView(spec: unknown): unknown {
  if (!isMap(spec)) return spec;
  const s = clone(spec);
  for (const list of ['containers', 'initContainers']) {
    const cs = s[list];
    if (Array.isArray(cs)) for (const c of cs) if (isMap(c)) delete c['image'];
  }
  delete s['activeDeadlineSeconds'];
  delete s['tolerations'];
  delete s['terminationGracePeriodSeconds'];
  return s;
}

export const podStrategy: KindStrategy = {
  returnDeletedObject: true,
  defaults(obj) {
    const spec = isMap(obj['spec']) ? obj['spec'] : (obj['spec'] = {});
    defaultPodSpec(spec);
  },
  prepareForCreate(obj, ctx) {
    const spec = obj['spec'] as JsonMap;
    admitServiceAccount(obj, ctx);
    const tolerations = Array.isArray(spec['tolerations']) ? (spec['tolerations'] as JsonMap[]) : [];
    for (const key of DEFAULT_TOLERATIONS) {
      if (!tolerations.some((t) => isMap(t) && t['key'] === key && t['effect'] === 'NoExecute')) {
        tolerations.push({ key, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 });
      }
    }
    spec['tolerations'] = tolerations;
    spec['priority'] ??= 0;
    spec['preemptionPolicy'] ??= 'PreemptLowerPriority';
    const status = isMap(obj['status']) ? obj['status'] : {};
    obj['status'] = { ...status, phase: status['phase'] ?? 'Pending', qosClass: podQosClass(spec) };
  },
  validate(obj) {
    return validatePodSpec(obj['spec'], 'spec');
  },
  validateUpdate(obj, old) {
    if (!jsonEqual(mutableSpecView(obj['spec']), mutableSpecView(old['spec']))) {
      return [
        fieldError(
          'Forbidden',
          'spec',
          undefined,
          'pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)',
        ),
      ];
    }
    return [];
  },
  // pods/status keeps label and annotation changes (Istio's CNI agent writes annotations there).
  statusUpdate: statusWithMetadata,
  gracePeriodSeconds(obj, requested) {
    const spec = isMap(obj['spec']) ? obj['spec'] : {};
    const phase = isMap(obj['status']) ? obj['status']['phase'] : undefined;
    if (!spec['nodeName'] || phase === 'Succeeded' || phase === 'Failed') return 0;
    if (requested !== undefined) return requested;
    const g = spec['terminationGracePeriodSeconds'];
    return typeof g === 'number' ? g : 30;
  },
  selectableFields: [
    'spec.nodeName',
    'spec.restartPolicy',
    'spec.schedulerName',
    'spec.serviceAccountName',
    'spec.hostNetwork',
    'status.phase',
    'status.podIP',
    'status.nominatedNodeName',
  ],
};
