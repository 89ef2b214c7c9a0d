/** ConfigMaps, Secrets (stringData folded into data, types) and ServiceAccounts. */
import { fieldError, type FieldError } from '../status.js';
import type { KindStrategy } from '../strategy.js';
import { isMap, jsonEqual, type KubeObject } from '../types.js';

const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const CONFIG_KEY_TEXT =
  "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
/** ConfigMap and Secret payloads are capped at 1 MiB, as etcd's value limit dictates upstream. */
const MAX_DATA_BYTES = 1024 * 1024;

function validateKeys(obj: KubeObject, fields: string[], sizeOf: (field: string, v: unknown) => number): FieldError[] {
  const errs: FieldError[] = [];
  const seen = new Set<string>();
  let total = 0;
  for (const f of fields) {
    const m = obj[f];
    if (!isMap(m)) continue;
    for (const [k, v] of Object.entries(m)) {
      if (k.length > 253 || !CONFIG_KEY.test(k) || k === '.' || k === '..') errs.push(fieldError('Invalid', `${f}[${k}]`, k, CONFIG_KEY_TEXT));
      if (seen.has(k)) errs.push(fieldError('Invalid', `${f}[${k}]`, k, 'duplicate of key present in data'));
      seen.add(k);
      total += sizeOf(f, v);
    }
  }
  if (total > MAX_DATA_BYTES) errs.push(fieldError('TooLong', '', undefined, `must have at most ${MAX_DATA_BYTES} bytes`));
  return errs;
}

function validateImmutable(obj: KubeObject, old: KubeObject, fields: string[]): FieldError[] {
  const errs: FieldError[] = [];
  if (old['immutable'] === true) {
    for (const f of fields) {
      if (!jsonEqual(obj[f] ?? {}, old[f] ?? {})) errs.push(fieldError('Forbidden', f, undefined, 'field is immutable when `immutable` is set'));
    }
    if (obj['immutable'] !== true) errs.push(fieldError('Forbidden', 'immutable', undefined, 'field is immutable when `immutable` is set'));
  }
  return errs;
}

export const configMapStrategy: KindStrategy = {
  validate: (obj) => validateKeys(obj, ['data', 'binaryData'], (f, v) => (f === 'binaryData' ? Math.floor((String(v).length * 3) / 4) : Buffer.byteLength(String(v)))),
  validateUpdate: (obj, old) => validateImmutable(obj, old, ['data', 'binaryData']),
};

export const secretStrategy: KindStrategy = {
  defaults(obj) {
    obj['type'] ??= 'Opaque';
    const sd = obj['stringData'];
    if (isMap(sd)) {
      const data = isMap(obj['data']) ? obj['data'] : {};
      for (const [k, v] of Object.entries(sd)) data[k] = Buffer.from(String(v ?? ''), 'utf8').toString('base64');
      obj['data'] = data;
      delete obj['stringData'];
    }
  },
  validate(obj) {
    const errs = validateKeys(obj, ['data'], (_f, v) => Math.floor((String(v).length * 3) / 4));
    const type = obj['type'];
    const data = isMap(obj['data']) ? obj['data'] : {};
    if (type === 'kubernetes.io/service-account-token' && !obj.metadata.annotations?.['kubernetes.io/service-account.name']) {
      errs.push(fieldError('Required', 'metadata.annotations[kubernetes.io/service-account.name]', undefined));
    }
    if (type === 'kubernetes.io/dockerconfigjson' && data['.dockerconfigjson'] === undefined) {
      errs.push(fieldError('Required', 'data[.dockerconfigjson]', undefined));
    }
    if (type === 'kubernetes.io/tls') {
      for (const k of ['tls.crt', 'tls.key']) if (data[k] === undefined) errs.push(fieldError('Required', `data[${k}]`, undefined));
    }
    return errs;
  },
  validateUpdate(obj, old) {
    const errs = validateImmutable(obj, old, ['data']);
    if (obj['type'] !== old['type']) errs.push(fieldError('Invalid', 'type', obj['type'], 'field is immutable'));
    return errs;
  },
  selectableFields: ['type'],
};

export const serviceAccountStrategy: KindStrategy = {};
