/**
 * The schema of built-in kinds, read from @kubernetes/client-node's generated models (each model's
 * `attributeTypeMap` was generated from the official OpenAPI document), plus the strategic-merge
 * patch metadata (patchStrategy/patchMergeKey) those models do not carry, written down from the
 * Kubernetes API types. Used to decode bodies as the real server's strict JSON decoder does
 * (type errors are 400s; unknown fields are reported for fieldValidation) and to drive SMP.
 */
import * as k8s from '@kubernetes/client-node';
import { badRequest } from './status.js';
import { isMap } from './types.js';

/** A type reference as the generated models spell it. */
export type TypeRef = string;

interface Attribute {
  baseName: string;
  type: string;
  format: string;
}

const modelCache = new Map<string, Map<string, Attribute> | null>();

/** The attributes of a generated model by JSON name, or undefined when the model does not exist. */
export function modelAttributes(model: string): Map<string, Attribute> | undefined {
  const cached = modelCache.get(model);
  if (cached !== undefined) return cached ?? undefined;
  const cls = (k8s as unknown as Record<string, unknown>)[model] as
    | { getAttributeTypeMap?: () => Array<{ baseName: string; type: string; format: string }> }
    | undefined;
  if (typeof cls?.getAttributeTypeMap !== 'function') {
    modelCache.set(model, null);
    return undefined;
  }
  const map = new Map<string, Attribute>();
  for (const a of cls.getAttributeTypeMap()) map.set(a.baseName, { baseName: a.baseName, type: a.type, format: a.format });
  modelCache.set(model, map);
  return map;
}

const ARRAY = /^Array<(.+)>$/;
const MAP = /^\{ \[key: string\]: (.+); \}$/;

export type TypeShape =
  | { shape: 'model'; model: string }
  | { shape: 'array'; elem: TypeRef }
  | { shape: 'map'; value: TypeRef }
  | { shape: 'scalar'; scalar: 'string' | 'boolean' | 'number' | 'Date' | 'IntOrString' }
  | { shape: 'any' };

export function typeShape(t: TypeRef): TypeShape {
  let m = ARRAY.exec(t);
  if (m) return { shape: 'array', elem: m[1]! };
  m = MAP.exec(t);
  if (m) return { shape: 'map', value: m[1]! };
  if (t === 'string' || t === 'boolean' || t === 'number' || t === 'Date' || t === 'IntOrString') return { shape: 'scalar', scalar: t };
  if (t === 'any' || t === 'object') return { shape: 'any' };
  return { shape: 'model', model: t };
}

/** The type of `key` inside a value of type `t`, or undefined when it is not declared. */
export function fieldType(t: TypeRef | undefined, key: string): TypeRef | undefined {
  if (t === undefined) return undefined;
  const s = typeShape(t);
  if (s.shape === 'model') return modelAttributes(s.model)?.get(key)?.type;
  if (s.shape === 'map') return s.value;
  return undefined;
}

export function elementType(t: TypeRef | undefined): TypeRef | undefined {
  if (t === undefined) return undefined;
  const s = typeShape(t);
  return s.shape === 'array' ? s.elem : undefined;
}

/** How SMP merges a list field: by a key (maps), as a set (primitives), or not at all (replace). */
export interface PatchMeta {
  strategy: 'merge' | 'merge,retainKeys' | 'retainKeys';
  key?: string;
}

/** The merged lists of a container (regular and ephemeral alike). */
const CONTAINER_LISTS: Record<string, PatchMeta> = {
  ports: { strategy: 'merge', key: 'containerPort' },
  env: { strategy: 'merge', key: 'name' },
  volumeMounts: { strategy: 'merge', key: 'mountPath' },
  volumeDevices: { strategy: 'merge', key: 'devicePath' },
};

/**
 * patchStrategy/patchMergeKey of the built-in types this server serves
 * (k8s.io/api core/v1, apps/v1, meta/v1 and friends, `+patchStrategy` tags).
 */
const PATCH_META: Record<string, Record<string, PatchMeta>> = {
  V1ObjectMeta: { ownerReferences: { strategy: 'merge', key: 'uid' }, finalizers: { strategy: 'merge' } },
  V1PodSpec: {
    containers: { strategy: 'merge', key: 'name' },
    initContainers: { strategy: 'merge', key: 'name' },
    ephemeralContainers: { strategy: 'merge', key: 'name' },
    volumes: { strategy: 'merge,retainKeys', key: 'name' },
    imagePullSecrets: { strategy: 'merge', key: 'name' },
    hostAliases: { strategy: 'merge', key: 'ip' },
    topologySpreadConstraints: { strategy: 'merge', key: 'topologyKey' },
    schedulingGates: { strategy: 'merge', key: 'name' },
    resourceClaims: { strategy: 'merge,retainKeys', key: 'name' },
  },
  V1Container: CONTAINER_LISTS,
  V1EphemeralContainer: CONTAINER_LISTS,
  V1PodStatus: {
    conditions: { strategy: 'merge', key: 'type' },
    podIPs: { strategy: 'merge', key: 'ip' },
    hostIPs: { strategy: 'merge', key: 'ip' },
    resourceClaimStatuses: { strategy: 'merge,retainKeys', key: 'name' },
  },
  V1ServiceSpec: { ports: { strategy: 'merge', key: 'port' } },
  V1ServiceStatus: { conditions: { strategy: 'merge', key: 'type' } },
  V1NodeSpec: { podCIDRs: { strategy: 'merge' } },
  V1NodeStatus: { conditions: { strategy: 'merge', key: 'type' }, addresses: { strategy: 'merge', key: 'type' } },
  V1NamespaceStatus: { conditions: { strategy: 'merge', key: 'type' } },
  V1DeploymentSpec: { strategy: { strategy: 'retainKeys' } },
  V1DeploymentStatus: { conditions: { strategy: 'merge', key: 'type' } },
  V1ReplicaSetStatus: { conditions: { strategy: 'merge', key: 'type' } },
  V1DaemonSetStatus: { conditions: { strategy: 'merge', key: 'type' } },
  V1PodDisruptionBudgetStatus: { conditions: { strategy: 'merge', key: 'type' } },
  V1ServiceAccount: { secrets: { strategy: 'merge', key: 'name' } },
};

export function patchMeta(parentType: TypeRef | undefined, key: string): PatchMeta | undefined {
  if (parentType === undefined) return undefined;
  const s = typeShape(parentType);
  if (s.shape !== 'model') return undefined;
  return PATCH_META[s.model]?.[key];
}

/** String fields that hold a resource.Quantity, which the real decoder also accepts as a number. */
const QUANTITY_FIELDS = new Set([
  'limits',
  'requests',
  'capacity',
  'allocatable',
  'overhead',
  'hard',
  'used',
  'allocatedResources',
  'sizeLimit',
  'min',
  'max',
  'default',
  'defaultRequest',
  'maxLimitRequestRatio',
]);

function goType(t: TypeRef, format: string): string {
  const s = typeShape(t);
  switch (s.shape) {
    case 'array':
      return `[]${goType(s.elem, '')}`;
    case 'map':
      return `map[string]${goType(s.value, '')}`;
    case 'any':
      return 'interface {}';
    case 'model':
      return `v1.${structName(s.model)}`;
    case 'scalar':
      if (s.scalar === 'number') return format === 'int32' ? 'int32' : format === 'double' ? 'float64' : 'int64';
      if (s.scalar === 'boolean') return 'bool';
      if (s.scalar === 'Date') return 'v1.Time';
      if (s.scalar === 'IntOrString') return 'intstr.IntOrString';
      return 'string';
  }
}

function structName(model: string): string {
  return model.replace(/^(CoreV1|AuthenticationV1|DiscoveryV1|RbacV1|V1beta1|V1beta2|V1alpha1|V2|V1)/, '');
}

function jsonTypeName(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'object';
  if (typeof v === 'boolean') return 'bool';
  return typeof v;
}

function joinPath(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

class DecodeError extends Error {}

/** What decoding found besides type errors: fields the schema does not declare. */
export interface DecodeReport {
  unknownFields: string[];
}

/**
 * Checks `obj` against model `model` as the strict JSON decoder would: a value of the wrong type
 * throws 400 BadRequest `<Kind> in version "<v>" cannot be handled as a <Kind>: json: cannot
 * unmarshal ...`; undeclared fields are removed from `obj` in place and their paths reported
 * (for fieldValidation).
 */
export function decodeBuiltin(obj: unknown, model: string, kind: string, version: string): DecodeReport {
  const report: DecodeReport = { unknownFields: [] };
  try {
    walk(obj, model, '', '', model, '', report);
  } catch (e) {
    if (e instanceof DecodeError) throw badRequest(`${kind} in version "${version}" cannot be handled as a ${kind}: ${e.message}`);
    throw e;
  }
  return report;
}

/** `field` is the JSON name of the attribute the value sits under (map values keep their map's). */
function walk(v: unknown, t: TypeRef, format: string, path: string, parentModel: string, field: string, report: DecodeReport): void {
  if (v === null || v === undefined) return;
  const s = typeShape(t);
  const fail = (): never => {
    throw new DecodeError(
      `json: cannot unmarshal ${jsonTypeName(v)} into Go struct field ${structName(parentModel)}.${path} of type ${goType(t, format)}`,
    );
  };
  switch (s.shape) {
    case 'any':
      return;
    case 'scalar':
      switch (s.scalar) {
        case 'string':
          if (typeof v === 'string') {
            if (format === 'byte' && !/^[A-Za-z0-9+/]*={0,2}$/.test(v.replace(/\s/g, ''))) {
              throw new DecodeError(`illegal base64 data at input byte 0 in ${path}`);
            }
            return;
          }
          if (typeof v === 'number' && QUANTITY_FIELDS.has(field)) return;
          return fail();
        case 'Date':
          if (typeof v !== 'string') return fail();
          if (Number.isNaN(Date.parse(v))) {
            throw new DecodeError(`parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05Z07:00": cannot parse ${JSON.stringify(v)}`);
          }
          return;
        case 'boolean':
          if (typeof v !== 'boolean') fail();
          return;
        case 'IntOrString':
          if (typeof v === 'string') return;
          if (typeof v === 'number' && Number.isInteger(v)) return;
          return fail();
        case 'number':
          if (typeof v !== 'number') return fail();
          if ((format === 'int32' || format === 'int64') && !Number.isInteger(v)) {
            throw new DecodeError(`json: cannot unmarshal number ${v} into Go struct field ${structName(parentModel)}.${path} of type ${goType(t, format)}`);
          }
          if (format === 'int32' && (v > 2147483647 || v < -2147483648)) {
            throw new DecodeError(`json: cannot unmarshal number ${v} into Go struct field ${structName(parentModel)}.${path} of type int32`);
          }
          return;
      }
      return;
    case 'array':
      if (!Array.isArray(v)) return fail();
      v.forEach((x, i) => walk(x, s.elem, '', `${path}[${i}]`, parentModel, field, report));
      return;
    case 'map':
      if (!isMap(v)) return fail();
      for (const [k, x] of Object.entries(v)) walk(x, s.value, format, `${path}[${k}]`, parentModel, field, report);
      return;
    case 'model': {
      const attrs = modelAttributes(s.model);
      if (attrs === undefined) return;
      if (!isMap(v)) return fail();
      for (const [k, x] of Object.entries(v)) {
        const a = attrs.get(k);
        const p = joinPath(path, k);
        if (a === undefined) {
          // Dropped as the Go decoder drops it; reported for fieldValidation.
          report.unknownFields.push(p);
          delete v[k];
          continue;
        }
        walk(x, a.type, a.format, p, s.model, k, report);
        // Go's omitempty leaves empty maps out (a label removed by patch leaves no `labels: {}`).
        if (isMap(x) && Object.keys(x).length === 0 && typeShape(a.type).shape === 'map') delete v[k];
      }
      return;
    }
  }
}
