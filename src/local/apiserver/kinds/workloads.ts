/**
 * apps/v1 workloads (Deployment, ReplicaSet, DaemonSet): defaults, selector and template rules,
 * the immutable selector. Nothing here runs Pods: that is a controller's job, not the API's.
 */
import { labelSelectorFromObject, matchLabels } from '../selectors.js';
import { fieldError, type FieldError } from '../status.js';
import type { KindStrategy } from '../strategy.js';
import { isMap, jsonEqual, type JsonMap, type KubeObject } from '../types.js';
import { validateLabels } from './names.js';
import { defaultPodSpec, validatePodSpec } from './pod.js';

function specOf(obj: KubeObject): JsonMap {
  return isMap(obj['spec']) ? obj['spec'] : (obj['spec'] = {});
}

function defaultTemplate(spec: JsonMap): void {
  const template = isMap(spec['template']) ? spec['template'] : undefined;
  if (template === undefined) return;
  if (isMap(template['spec'])) defaultPodSpec(template['spec']);
  // A template's metadata carries no creationTimestamp, but the real server prints it as null.
  if (!isMap(template['metadata'])) template['metadata'] = {};
}

function validateWorkload(obj: KubeObject, kind: string, withReplicas: boolean): FieldError[] {
  const errs: FieldError[] = [];
  const spec = isMap(obj['spec']) ? obj['spec'] : {};
  if (withReplicas) {
    const r = spec['replicas'];
    if (typeof r === 'number' && r < 0) errs.push(fieldError('Invalid', 'spec.replicas', r, 'must be greater than or equal to 0'));
  }
  const selector = spec['selector'];
  const template = isMap(spec['template']) ? spec['template'] : undefined;
  if (selector === undefined || selector === null) {
    errs.push(fieldError('Required', 'spec.selector', undefined));
  } else if (isMap(selector) && Object.keys(selector['matchLabels'] ?? {}).length === 0 && (!Array.isArray(selector['matchExpressions']) || selector['matchExpressions'].length === 0)) {
    errs.push(fieldError('Invalid', 'spec.selector', selector, `empty selector is invalid for ${kind.toLowerCase()}`));
  }
  if (template === undefined) {
    errs.push(fieldError('Required', 'spec.template', undefined));
    return errs;
  }
  const labels = isMap(template['metadata']) ? (template['metadata']['labels'] as Record<string, string> | undefined) : undefined;
  errs.push(...validateLabels(labels, 'spec.template.metadata.labels'));
  if (isMap(selector)) {
    let matches = false;
    try {
      matches = matchLabels(labelSelectorFromObject(selector), labels);
    } catch {
      matches = false;
    }
    if (!matches) errs.push(fieldError('Invalid', 'spec.template.metadata.labels', labels ?? {}, '`selector` does not match template `labels`'));
  }
  errs.push(...validatePodSpec(template['spec'], 'spec.template.spec', ['Always']));
  return errs;
}

function validateSelectorUnchanged(obj: KubeObject, old: KubeObject): FieldError[] {
  const a = isMap(obj['spec']) ? obj['spec']['selector'] : undefined;
  const b = isMap(old['spec']) ? old['spec']['selector'] : undefined;
  return jsonEqual(a, b) ? [] : [fieldError('Invalid', 'spec.selector', a ?? null, 'field is immutable')];
}

export const deploymentStrategy: KindStrategy = {
  generation: true,
  defaults(obj) {
    const spec = specOf(obj);
    spec['replicas'] ??= 1;
    spec['revisionHistoryLimit'] ??= 10;
    spec['progressDeadlineSeconds'] ??= 600;
    const strategy = isMap(spec['strategy']) ? spec['strategy'] : (spec['strategy'] = {});
    strategy['type'] ??= 'RollingUpdate';
    if (strategy['type'] === 'RollingUpdate') {
      const ru = isMap(strategy['rollingUpdate']) ? strategy['rollingUpdate'] : (strategy['rollingUpdate'] = {});
      ru['maxUnavailable'] ??= '25%';
      ru['maxSurge'] ??= '25%';
    }
    defaultTemplate(spec);
    if (!isMap(obj['status'])) obj['status'] = {};
  },
  validate: (obj) => validateWorkload(obj, 'Deployment', true),
  validateUpdate: validateSelectorUnchanged,
};

export const replicaSetStrategy: KindStrategy = {
  generation: true,
  defaults(obj) {
    const spec = specOf(obj);
    spec['replicas'] ??= 1;
    defaultTemplate(spec);
    if (!isMap(obj['status'])) obj['status'] = { replicas: 0 };
  },
  validate: (obj) => validateWorkload(obj, 'ReplicaSet', true),
  validateUpdate: validateSelectorUnchanged,
  selectableFields: ['status.replicas'],
};

export const daemonSetStrategy: KindStrategy = {
  generation: true,
  defaults(obj) {
    const spec = specOf(obj);
    spec['revisionHistoryLimit'] ??= 10;
    const us = isMap(spec['updateStrategy']) ? spec['updateStrategy'] : (spec['updateStrategy'] = {});
    us['type'] ??= 'RollingUpdate';
    if (us['type'] === 'RollingUpdate') {
      const ru = isMap(us['rollingUpdate']) ? us['rollingUpdate'] : (us['rollingUpdate'] = {});
      ru['maxUnavailable'] ??= 1;
      ru['maxSurge'] ??= 0;
    }
    defaultTemplate(spec);
    if (!isMap(obj['status'])) {
      obj['status'] = { currentNumberScheduled: 0, desiredNumberScheduled: 0, numberMisscheduled: 0, numberReady: 0 };
    }
  },
  validate: (obj) => validateWorkload(obj, 'DaemonSet', false),
  validateUpdate: validateSelectorUnchanged,
};
