/**
 * Name and metadata validation shared by every kind (apimachinery validation: DNS-1123 labels and
 * subdomains, DNS-1035 labels, qualified names, labels, annotations, owner references).
 */
import { labelKeyProblem, labelValueProblem } from '../selectors.js';
import { fieldError, type FieldError } from '../status.js';
import { isMap, type KubeObject } from '../types.js';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

export type NameRule = (name: string) => string | undefined;

export const dns1123Label: NameRule = (n) => {
  if (n.length > 63) return 'must be no more than 63 characters';
  if (!DNS1123_LABEL.test(n)) {
    return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
  }
  return undefined;
};

export const dns1123Subdomain: NameRule = (n) => {
  if (n.length > 253) return 'must be no more than 253 characters';
  if (!DNS1123_SUBDOMAIN.test(n)) {
    return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
  }
  return undefined;
};

export const dns1035Label: NameRule = (n) => {
  if (n.length > 63) return 'must be no more than 63 characters';
  if (!DNS1035_LABEL.test(n)) {
    return "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
  }
  return undefined;
};

/** RBAC and a few others only forbid what cannot be a path segment. */
export const pathSegmentName: NameRule = (n) => {
  if (n === '.' || n === '..') return `may not be '${n}'`;
  if (n.includes('/')) return "may not contain '/'";
  if (n.includes('%')) return "may not contain '%'";
  return undefined;
};

/** Errors of an object's metadata for create or update (name, namespace, labels, annotations, owners). */
export function validateObjectMeta(obj: KubeObject, namespaced: boolean, nameRule: NameRule): FieldError[] {
  const errs: FieldError[] = [];
  const m = obj.metadata;
  const name = m.name ?? '';
  if (name === '') {
    errs.push(fieldError('Required', 'metadata.name', undefined, 'name or generateName is required'));
  } else {
    const p = nameRule(name);
    if (p !== undefined) errs.push(fieldError('Invalid', 'metadata.name', name, p));
  }
  if (namespaced) {
    const ns = m.namespace ?? '';
    if (ns === '') errs.push(fieldError('Required', 'metadata.namespace', undefined));
    else {
      const p = dns1123Label(ns);
      if (p !== undefined) errs.push(fieldError('Invalid', 'metadata.namespace', ns, p));
    }
  }
  errs.push(...validateLabels(m.labels, 'metadata.labels'));
  errs.push(...validateAnnotations(m.annotations, 'metadata.annotations'));
  const owners = m.ownerReferences ?? [];
  let controllers = 0;
  owners.forEach((o, i) => {
    const p = `metadata.ownerReferences[${i}]`;
    if (!o.apiVersion) errs.push(fieldError('Invalid', `${p}.apiVersion`, o.apiVersion ?? '', 'version must not be empty'));
    if (!o.kind) errs.push(fieldError('Invalid', `${p}.kind`, o.kind ?? '', 'kind must not be empty'));
    if (!o.name) errs.push(fieldError('Invalid', `${p}.name`, o.name ?? '', 'name must not be empty'));
    if (!o.uid) errs.push(fieldError('Invalid', `${p}.uid`, o.uid ?? '', 'uid must not be empty'));
    if (o.controller === true) controllers++;
  });
  if (controllers > 1) {
    errs.push(fieldError('Invalid', 'metadata.ownerReferences', owners, 'Only one reference can have Controller set to true'));
  }
  (m.finalizers ?? []).forEach((f, i) => {
    const p = labelKeyProblem(f);
    if (p !== undefined) errs.push(fieldError('Invalid', `metadata.finalizers[${i}]`, f, p));
  });
  return errs;
}

export function validateLabels(labels: unknown, path: string): FieldError[] {
  const errs: FieldError[] = [];
  if (!isMap(labels)) return errs;
  for (const [k, v] of Object.entries(labels)) {
    const kp = labelKeyProblem(k);
    if (kp !== undefined) errs.push(fieldError('Invalid', path, k, kp));
    const vp = labelValueProblem(String(v ?? ''));
    if (vp !== undefined) errs.push(fieldError('Invalid', `${path}`, v, vp));
  }
  return errs;
}

const TOTAL_ANNOTATION_BYTES = 256 * 1024;

export function validateAnnotations(annotations: unknown, path: string): FieldError[] {
  const errs: FieldError[] = [];
  if (!isMap(annotations)) return errs;
  let total = 0;
  for (const [k, v] of Object.entries(annotations)) {
    const kp = labelKeyProblem(k.toLowerCase());
    if (kp !== undefined) errs.push(fieldError('Invalid', path, k, kp));
    total += k.length + String(v ?? '').length;
  }
  if (total > TOTAL_ANNOTATION_BYTES) errs.push(fieldError('TooLong', path, undefined, `must have at most ${TOTAL_ANNOTATION_BYTES} bytes`));
  return errs;
}

/** `field is immutable` when a value changed on update. */
export function immutable(path: string, value: unknown): FieldError {
  return fieldError('Invalid', path, value, 'field is immutable');
}

/** Ports are 1..65535. */
export function portProblem(p: unknown): string | undefined {
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) return 'must be between 1 and 65535, inclusive';
  return undefined;
}
