/** Namespaces, Nodes, Events, Leases, Endpoints, EndpointSlices and PodDisruptionBudgets. */
import { fieldError, type FieldError } from '../status.js';
import { fieldString, statusWithMetadata, type KindStrategy } from '../strategy.js';
import { clone, isMap, type JsonMap } from '../types.js';
import { portProblem } from './names.js';

/** The finalizer the namespace controller removes once a namespace is empty. */
export const NAMESPACE_FINALIZER = 'kubernetes';

export const namespaceStrategy: KindStrategy = {
  defaults(obj) {
    const spec = isMap(obj['spec']) ? obj['spec'] : (obj['spec'] = {});
    spec['finalizers'] ??= [NAMESPACE_FINALIZER];
    const status = isMap(obj['status']) ? obj['status'] : (obj['status'] = {});
    status['phase'] ??= 'Active';
    const labels = obj.metadata.labels ?? {};
    // Every namespace carries its own name as a label (NamespaceDefaultLabelName, GA in 1.22).
    labels['kubernetes.io/metadata.name'] = obj.metadata.name ?? '';
    obj.metadata.labels = labels;
  },
  prepareForUpdate(obj, old) {
    // spec.finalizers change only through the finalize subresource.
    obj['spec'] = { ...(isMap(obj['spec']) ? obj['spec'] : {}), finalizers: clone((old['spec'] as JsonMap | undefined)?.['finalizers'] ?? []) };
  },
  blocksDeletion(obj) {
    const spec = isMap(obj['spec']) ? obj['spec'] : {};
    return Array.isArray(spec['finalizers']) && spec['finalizers'].length > 0;
  },
  onDeletionStarted(obj) {
    obj['status'] = { ...(isMap(obj['status']) ? obj['status'] : {}), phase: 'Terminating' };
  },
  selectableFields: ['status.phase'],
};

export const nodeStrategy: KindStrategy = {
  keepStatusOnCreate: true,
  defaults(obj) {
    if (!isMap(obj['spec'])) obj['spec'] = {};
    if (!isMap(obj['status'])) obj['status'] = {};
  },
  // nodes/status may change labels and annotations too (the kubelet writes them there).
  statusUpdate: statusWithMetadata,
  selectableFields: ['spec.unschedulable'],
};

export const eventStrategy: KindStrategy = {
  allowCreateOnUpdate: true,
  validate(obj) {
    const errs: FieldError[] = [];
    const io = isMap(obj['involvedObject']) ? obj['involvedObject'] : undefined;
    const ns = io?.['namespace'];
    if (typeof ns === 'string' && ns !== '' && ns !== obj.metadata.namespace) {
      errs.push(fieldError('Invalid', 'involvedObject.namespace', ns, 'does not match event.namespace'));
    }
    return errs;
  },
  selectableFields: [
    'involvedObject.kind',
    'involvedObject.namespace',
    'involvedObject.name',
    'involvedObject.uid',
    'involvedObject.apiVersion',
    'involvedObject.resourceVersion',
    'involvedObject.fieldPath',
    'reason',
    'reportingComponent',
    'source',
    'type',
  ],
  fieldValues(obj) {
    const source = isMap(obj['source']) ? obj['source']['component'] : undefined;
    return { source: fieldString(source ?? obj['reportingComponent']) };
  },
};

export const leaseStrategy: KindStrategy = {
  allowCreateOnUpdate: true,
  validate(obj) {
    const errs: FieldError[] = [];
    const spec = isMap(obj['spec']) ? obj['spec'] : {};
    const d = spec['leaseDurationSeconds'];
    if (d !== undefined && d !== null && (typeof d !== 'number' || d <= 0)) errs.push(fieldError('Invalid', 'spec.leaseDurationSeconds', d, 'must be greater than 0'));
    const t = spec['leaseTransitions'];
    if (typeof t === 'number' && t < 0) errs.push(fieldError('Invalid', 'spec.leaseTransitions', t, 'must be greater than or equal to 0'));
    return errs;
  },
};

const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'];

export const endpointSliceStrategy: KindStrategy = {
  generation: true,
  validate(obj) {
    const errs: FieldError[] = [];
    const at = obj['addressType'];
    if (at === undefined) errs.push(fieldError('Required', 'addressType', undefined));
    else if (!ADDRESS_TYPES.includes(String(at))) errs.push(fieldError('NotSupported', 'addressType', at, 'supported values: "FQDN", "IPv4", "IPv6"'));
    const eps = Array.isArray(obj['endpoints']) ? obj['endpoints'] : [];
    eps.forEach((e, i) => {
      const addrs = isMap(e) ? e['addresses'] : undefined;
      if (!Array.isArray(addrs) || addrs.length === 0) errs.push(fieldError('Required', `endpoints[${i}].addresses`, undefined, 'must contain at least 1 address'));
      else if (addrs.length > 100) errs.push(fieldError('TooMany', `endpoints[${i}].addresses`, addrs.length, 'must have at most 100 items'));
    });
    const ports = Array.isArray(obj['ports']) ? obj['ports'] : [];
    ports.forEach((p, i) => {
      if (isMap(p) && p['port'] !== undefined && p['port'] !== null && portProblem(p['port']) !== undefined) {
        errs.push(fieldError('Invalid', `ports[${i}].port`, p['port'], 'must be between 1 and 65535, inclusive'));
      }
    });
    return errs;
  },
  validateUpdate(obj, old) {
    return obj['addressType'] !== old['addressType'] ? [fieldError('Invalid', 'addressType', obj['addressType'], 'field is immutable')] : [];
  },
};

export const endpointsStrategy: KindStrategy = {
  allowCreateOnUpdate: true,
  validate(obj) {
    const errs: FieldError[] = [];
    const subsets = Array.isArray(obj['subsets']) ? obj['subsets'] : [];
    subsets.forEach((s, i) => {
      const ports = isMap(s) && Array.isArray(s['ports']) ? s['ports'] : [];
      ports.forEach((p, j) => {
        if (isMap(p) && portProblem(p['port']) !== undefined) errs.push(fieldError('Invalid', `subsets[${i}].ports[${j}].port`, p['port'], 'must be between 1 and 65535, inclusive'));
      });
    });
    return errs;
  },
};

export const podDisruptionBudgetStrategy: KindStrategy = {
  generation: true,
  defaults(obj) {
    if (!isMap(obj['status'])) obj['status'] = { currentHealthy: 0, desiredHealthy: 0, disruptionsAllowed: 0, expectedPods: 0 };
  },
  validate(obj) {
    const spec = isMap(obj['spec']) ? obj['spec'] : {};
    if (spec['minAvailable'] !== undefined && spec['maxUnavailable'] !== undefined) {
      return [fieldError('Invalid', 'spec', spec, 'minAvailable and maxUnavailable cannot be both set')];
    }
    return [];
  },
};
